"""Worker processes: the foreground worker, pidfile-managed detached workers, the router.

`run_worker()` is the `islandora-job worker` process. `start_worker(name)` starts one
detached, named by a pidfile in the temp dir, and returns once it is registered with every
server; `stop_worker(name)` stops it, after checking that the PID really is that worker.
`route()` is the `islandora-job route` command run by the C `gearman -w` tool per job.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import logging
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import psutil

from islandora_job import payload
from islandora_job.config import Settings, settings, settings_env
from islandora_job.gearman.admin import AdminError, GearmanAdmin
from islandora_job.gearman.protocol import ProtocolError
from islandora_job.gearman.worker import GearmanWorker, WorkerJob, WorkFailure
from islandora_job.registry import Registry, RegistryError, UnknownJob, load_registry

log = logging.getLogger(__name__)

CLIENT_ID_PREFIX = "islandora-job:"
_POLL = 0.005
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Detached workers this process started, kept so they can be waited for (reaped).
_children: dict[int, subprocess.Popen[bytes]] = {}


class PidfileError(Exception):
    """A pidfile that is unsafe to use (a symbolic link, not a regular file) or garbled."""


class GarbledPidfile(PidfileError):
    """A pidfile whose content is not a PID."""


class WorkerRunning(RuntimeError):
    """The pidfile already names a live worker."""


class WorkerStartError(RuntimeError):
    """A worker that exited, or did not register, while starting; carries its log tail."""


def client_id(pid: int) -> str:
    """The Gearman client id of our worker with this PID, as admin `workers` shows it."""
    return f"{CLIENT_ID_PREFIX}{pid}"


def check_pidfile_name(name: str) -> str:
    """Return the name when it is a bare file name; ValueError otherwise (nothing touched)."""
    if not isinstance(name, str):
        raise TypeError(f"a pidfile name must be a str, not {type(name).__name__}")
    problem = None
    if not name:
        problem = "is empty"
    elif "\0" in name:
        problem = "contains a NUL byte"
    elif "/" in name or (os.altsep and os.altsep in name):
        problem = "contains a path separator"
    elif name in (".", ".."):
        problem = "is a directory name"
    if problem:
        raise ValueError(
            f"pidfile name {name!r} {problem}: give a bare file name such as 'worker-1.pid'; "
            "it is created in the temp dir (ISLANDORA_JOB_TEMP_DIR)"
        )
    return name


def pidfile_path(name: str) -> Path:
    """Where the pidfile of that name lives: the temp dir of the settings; ValueError for a
    name that is not a bare file name."""
    return settings().temp_dir / check_pidfile_name(name)


def worker_log_path(pidfile: str) -> Path:
    """The log file (stdout and stderr) of the worker of a pidfile name: `<name>.log` next to
    the pidfile. ValueError for a name that is not a bare file name."""
    return _log_path(pidfile_path(pidfile))


def _log_path(path: Path) -> Path:
    return path.with_name(path.name + ".log")


def _resolve_pidfile(pidfile: str | os.PathLike[str]) -> Path:
    path = Path(pidfile)
    return path if path.is_absolute() else pidfile_path(os.fspath(pidfile))


def _open_no_link(path: Path, flags: int, what: str) -> int:
    """os.open that never follows a symbolic link: PidfileError (naming `what`) for one."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PidfileError(
                f"{what} {path} is a symbolic link; it is never followed: remove it"
            ) from None
        raise


def _read_pidfile(path: Path) -> int | None:
    """The PID a pidfile names, None when there is none; never follows a symbolic link."""
    try:
        fd = _open_no_link(path, os.O_RDONLY | os.O_NONBLOCK, "pidfile")
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PidfileError(f"pidfile {path} is not a regular file: remove it")
        data = f.read(64)
    text = data.decode("ascii", errors="replace").strip()
    if not text.isdigit() or int(text) <= 0:
        raise GarbledPidfile(
            f"pidfile {path} holds {data[:32]!r}, not a PID: remove it if no worker runs"
        )
    return int(text)


def _remove_pidfile(path: Path, pid: int) -> None:
    """Remove the pidfile if it still names pid (a later worker may own the name now)."""
    try:
        if _read_pidfile(path) == pid:
            path.unlink()
    except (OSError, PidfileError):
        pass


def _is_worker_cmdline(cmdline: Sequence[str], path: Path) -> bool:
    """True for `python -m islandora_job ... worker ... --pidfile PATH` (or the console
    script), PATH being this pidfile's absolute path or, for a worker started by hand, its
    bare name."""
    if "worker" not in cmdline:
        return False
    at = cmdline.index("worker")
    launcher = list(cmdline[:at])
    via_module = any(a == "-m" and b == "islandora_job" for a, b in itertools.pairwise(launcher))
    via_script = any(Path(a).name == "islandora-job" for a in launcher)
    if not (via_module or via_script):
        return False
    options = list(cmdline[at + 1 :])
    given = [b for a, b in itertools.pairwise(options) if a == "--pidfile"]
    given += [a.partition("=")[2] for a in options if a.startswith("--pidfile=")]
    return any(p == str(path) or p == path.name for p in given)


def _our_worker(pid: int, path: Path) -> psutil.Process | None:
    """The process when pid is a live worker of this pidfile, else None (reaping a child
    of ours that already exited)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return None
        cmdline = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return process if _is_worker_cmdline(cmdline, path) else None


def _reap(pid: int) -> None:
    child = _children.pop(pid, None)
    if child is not None:
        child.poll()


def _reap_exited_children() -> None:
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            del _children[pid]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise check / remove-stale / create of one pidfile across processes and threads.

    A blocking flock on `<pidfile>.lock`: it wakes the moment the holder is done, never
    follows a symbolic link, and costs a worker's start-up no import.
    """
    fd = os.open(
        path.with_name(path.name + ".lock"),
        os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o644,
    )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _clear_stale(path: Path) -> int | None:
    """Under the lock: the PID of the live worker the pidfile names, else None after
    removing a stale or garbled pidfile. PidfileError for an unsafe one."""
    try:
        pid = _read_pidfile(path)
    except GarbledPidfile as exc:
        log.warning("%s; removing it", exc)
        path.unlink(missing_ok=True)
        return None
    if pid is None or pid == os.getpid():
        return pid
    if _our_worker(pid, path) is not None:
        return pid
    log.info("removing stale pidfile %s (PID %d is not a live worker)", path, pid)
    path.unlink(missing_ok=True)
    return None


def _write_pid(fd: int, pid: int) -> None:
    try:
        os.write(fd, f"{pid}\n".encode())
    finally:
        os.close(fd)


def _open_log(path: Path) -> int:
    return _open_no_link(_log_path(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, "worker log")


def _spawn(path: Path, resolved: Settings) -> subprocess.Popen[bytes]:
    """Under the lock: create the pidfile exclusively, start the worker, write its PID."""
    log_fd = _open_log(path)
    try:
        fd = os.open(path, _CREATE_FLAGS, 0o644)
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "islandora_job", "worker", "--pidfile", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **settings_env(resolved), "PYTHONUNBUFFERED": "1"},
            )
        except BaseException:
            os.close(fd)
            path.unlink()
            raise
        try:
            _write_pid(fd, child.pid)
        except BaseException:
            child.kill()
            child.wait()
            path.unlink()
            raise
    finally:
        os.close(log_fd)
    _children[child.pid] = child
    return child


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_registered(
    child: subprocess.Popen[bytes], path: Path, resolved: Settings, jobs: set[str], timeout: float
) -> None:
    """Poll admin `workers` on every server until the child shows there with all its jobs."""
    pending = list(resolved.servers)
    deadline = time.monotonic() + timeout
    last_error = ""
    code = None
    words = {word for job in jobs for word in job.split(" ") if word}
    with contextlib.ExitStack() as stack:
        admins = {s: stack.enter_context(GearmanAdmin(s, timeout=2.0)) for s in pending}
        while pending:
            try:
                # Admin `workers` separates function names by spaces: "a b" shows as a, b.
                if any(
                    w.client_id == client_id(child.pid) and words <= set(w.functions)
                    for w in admins[pending[0]].workers()
                ):
                    pending.pop(0)
                    continue
            except (OSError, AdminError, ProtocolError) as exc:
                last_error = f" (last error: {exc})"
            code = child.poll()
            if code is not None or time.monotonic() > deadline:
                break
            time.sleep(_POLL)
    if not pending:
        return
    if code is None:
        # Not registered, so no job in hand: nothing to let finish.
        child.kill()
        child.wait()
    _children.pop(child.pid, None)
    _remove_pidfile(path, child.pid)
    what = (
        f"exited with status {code}"
        if code is not None
        else f"did not register on {pending[0]} within {timeout} s{last_error}"
    )
    raise WorkerStartError(
        f"worker for pidfile {path} {what}; its log {_log_path(path)} ends:\n"
        + _log_tail(_log_path(path))
    )


def start_worker(pidfile: str, *, timeout: float = 30.0) -> bool:
    """Start a detached worker for every registered job, its PID in pidfile (a bare name in
    the temp dir), its output in `worker_log_path(pidfile)`.

    Returns True once the worker is registered on every configured server, False when the
    pidfile already names a live worker (a stale pidfile is removed). Two calls with one name
    at the same moment start one worker. Raises ValueError for a name that is not a bare
    file name (nothing created), PidfileError for a pidfile that is a symbolic link or not a
    regular file, RegistryError when no job is registered, WorkerStartError (with the log
    tail) when the worker exits or does not register within `timeout` seconds.
    """
    resolved = settings()
    path = resolved.temp_dir / check_pidfile_name(pidfile)
    jobs = {
        payload.gearman_function(job, resolved.site) for job in load_registry(resolved.modules).jobs
    }
    if not jobs:
        raise RegistryError(_NO_JOBS)
    resolved.temp_dir.mkdir(parents=True, exist_ok=True)
    _reap_exited_children()
    with _locked(path):
        if _clear_stale(path) is not None:
            return False
        child = _spawn(path, resolved)
    _wait_registered(child, path, resolved, jobs, timeout)
    return True


def _wait_gone(process: psutil.Process, timeout: float) -> bool:
    """Wait up to timeout seconds for the process to exit; reap it if it is our child."""
    child = _children.get(process.pid)
    try:
        # A pidfd wakes us the moment the process exits, where polling would lag.
        fd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        fd = -1
    if fd >= 0:
        try:
            if not select.select([fd], [], [], timeout)[0]:
                return False
        finally:
            os.close(fd)
        if child is None:
            return True
    try:
        if child is not None:
            child.wait(timeout)
        else:
            process.wait(timeout)
    except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
        return False
    _children.pop(process.pid, None)
    return True


def _kill(process: psutil.Process) -> None:
    """SIGKILL the worker, and its process group when it leads one (a detached worker
    does): the C tool and its routers must not outlive it."""
    with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()


def stop_worker(pidfile: str, *, grace: float = 10.0) -> bool:
    """Stop the worker a pidfile (a bare name in the temp dir) names: SIGTERM, wait up to
    `grace` seconds for the job in hand to finish, then SIGKILL; remove the pidfile; True.

    Returns False, signalling nothing, when there is no pidfile, when it names no live
    worker of this pidfile (a reused PID, an unrelated process) or holds no PID; the reason
    is logged. Raises ValueError for a name that is not a bare file name.
    """
    path = pidfile_path(pidfile)
    if not os.path.lexists(path):
        log.info("no pidfile %s: no worker to stop", path)
        return False
    with _locked(path):
        try:
            pid = _read_pidfile(path)
        except PidfileError as exc:
            log.warning("%s", exc)
            return False
        if pid is None:
            return False
        process = _our_worker(pid, path)
        if process is None:
            if psutil.pid_exists(pid):
                log.warning(
                    "pidfile %s names PID %d, which is not the islandora-job worker of this "
                    "pidfile: not signalled; remove the pidfile if it is stale",
                    path,
                    pid,
                )
            else:
                log.info("removing stale pidfile %s (PID %d is gone)", path, pid)
                path.unlink(missing_ok=True)
            return False
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
        if not _wait_gone(process, grace):
            log.warning("worker %d still runs %s s after SIGTERM: sending SIGKILL", pid, grace)
            _kill(process)
            _wait_gone(process, grace)
        _remove_pidfile(path, pid)
    return True


_NO_JOBS = (
    "no jobs are registered: list job modules in ISLANDORA_JOB_MODULES (or configure("
    "modules=...)) or declare an `islandora_job.jobs` entry point"
)


def _select_jobs(registry: Registry, only: Iterable[str] | None) -> list[str]:
    names = list(registry.jobs) if not only else [registry.spec(n).name for n in only]
    if not names:
        raise RegistryError(_NO_JOBS)
    return names


def _claim_pidfile(path: Path) -> None:
    """Make the pidfile name this process (start_worker already wrote it, or we create it);
    WorkerRunning when it names another live worker."""
    with contextlib.suppress(PidfileError):
        if _read_pidfile(path) == os.getpid():
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        pid = _clear_stale(path)
        if pid == os.getpid():
            return
        if pid is not None:
            raise WorkerRunning(f"a worker already runs with pidfile {path} (PID {pid})")
        _write_pid(os.open(path, _CREATE_FLAGS, 0o644), os.getpid())


@contextlib.contextmanager
def _pidfile(pidfile: str | os.PathLike[str] | None) -> Iterator[None]:
    if pidfile is None:
        yield
        return
    path = _resolve_pidfile(pidfile)
    _claim_pidfile(path)
    try:
        yield
    finally:
        # No lock here: stop_worker holds it while it waits for this exit.
        _remove_pidfile(path, os.getpid())


def _encode_result(value: object, json_result: bool) -> bytes:
    """JSON for our own client, which asks for it; else the text the original router echoes."""
    return payload.encode_result(value) if json_result else payload.encode_text_result(value)


def _handler(
    registry: Registry, max_payload: int, site: str | None = None
) -> Callable[[WorkerJob], bytes]:
    """The worker's handler for every job: decode, check, resolve, call, encode."""

    def handle(job: WorkerJob) -> bytes:
        try:
            name, args, json_result = payload.decode_job(
                job.data, job.function, max_size=max_payload, site=site
            )
            return _encode_result(registry.resolve(name)(*args), json_result)
        except (payload.PayloadError, UnknownJob, RegistryError) as exc:
            log.warning("job %s on %r refused: %s", job.handle, job.function, exc)
            raise WorkFailure(payload.encode_failure(exc)) from exc
        except (Exception, SystemExit) as exc:
            log.exception("job %s on %r raised", job.handle, job.function)
            raise WorkFailure(payload.encode_failure(exc)) from exc

    return handle


def run_worker(
    only: Iterable[str] | None = None, pidfile: str | os.PathLike[str] | None = None
) -> None:
    """Run a worker in this process until SIGTERM or SIGINT (the job in hand finishes and its
    result reaches the client first).

    Serves every registered job, or the `only` ones; pidfile is a bare name (in the temp
    dir) or an absolute path, written with this PID and removed at exit if it still names
    it. Raises UnknownJob for an `only` name nobody registered, RegistryError when there
    are no jobs, WorkerRunning when the pidfile names another live worker.
    """
    resolved = settings()
    registry = load_registry(resolved.modules)
    names = _select_jobs(registry, only)
    # exceptions=False: clients that did not ask for exceptions (the C tool, PHP's extension)
    # hang on a forwarded WORK_EXCEPTION in gearmand 1.1.20, so failures go as WORK_WARNING
    # (our failure JSON) then WORK_FAIL, which every client understands.
    with (
        _pidfile(pidfile),
        GearmanWorker(resolved.servers, client_id(os.getpid()), exceptions=False) as worker,
    ):
        handle = _handler(registry, resolved.max_payload, resolved.site)
        for name in names:
            worker.register(payload.gearman_function(name, resolved.site), handle)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: worker.request_stop())
        log.info(
            "worker %d serving %s on %s", os.getpid(), ", ".join(names), ", ".join(resolved.servers)
        )
        worker.work()
        log.info("worker %d stopped", os.getpid())


def gearman_cli_command(names: Sequence[str], site: str | None = None) -> list[str]:
    """The C tool command line of the original architecture, for these jobs (their
    functions prefixed `{site}_` with a site).

    The tool takes one -h/-p pair; it reads the whole server list from the GEARMAN_SERVER
    environment variable instead, which `run_gearman_cli_worker` sets. FileNotFoundError
    when the `gearman` tool is not installed.
    """
    tool = shutil.which("gearman")
    if tool is None:
        raise FileNotFoundError(
            "the C `gearman` tool is not installed: apt-get install gearman-tools, "
            "or run the native worker (without --via-gearman-cli)"
        )
    functions = [arg for name in names for arg in ("-f", payload.gearman_function(name, site))]
    return [tool, "-w", *functions, "--", sys.executable, "-m", "islandora_job", "route"]


def run_gearman_cli_worker(
    only: Iterable[str] | None = None, pidfile: str | os.PathLike[str] | None = None
) -> int:
    """Run the original architecture: `gearman -w -f job ... -- python -m islandora_job
    route` as a child, one router process per job; returns the tool's exit status.

    SIGTERM and SIGINT are passed on to the tool, which stops at once: unlike the native
    worker it cannot finish the job in hand first. Raises like `run_worker`, and
    FileNotFoundError when the tool is not installed.
    """
    resolved = settings()
    names = _select_jobs(load_registry(resolved.modules), only)
    command = gearman_cli_command(names, resolved.site)
    env = {**os.environ, **settings_env(resolved), "GEARMAN_SERVER": ",".join(resolved.servers)}
    with _pidfile(pidfile):
        tool = subprocess.Popen(command, stdin=subprocess.DEVNULL, env=env)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda signum, _: tool.send_signal(signum))
        log.info("worker %d runs %s", os.getpid(), " ".join(command))
        return tool.wait()


def route(stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Run the one job whose payload is on stdin, write its result on stdout; 0.

    The result is JSON when the payload asks for it (our client does), else the text the
    original router echoes (see `payload.encode_text_result`).

    On a failure (bad payload, unregistered job, the job raised) write the failure JSON on
    stdout and return 1: the C tool then sends it as WORK_DATA followed by WORK_FAIL, so
    the client sees a failure, not an empty success. The C tool does not say which
    function the job came on, so the payload's "func" names the job.
    """
    resolved = settings()
    data = stdin.read(resolved.max_payload + 1)
    try:
        name, args, json_result = payload.decode_job(data, None, max_size=resolved.max_payload)
        value = load_registry(resolved.modules).resolve(name)(*args)
        result = _encode_result(value, json_result)
    except (payload.PayloadError, UnknownJob, RegistryError) as exc:
        log.error("job refused: %s", exc)
        stdout.write(payload.encode_failure(exc))
        return 1
    except (Exception, SystemExit) as exc:
        log.exception("job raised")
        stdout.write(payload.encode_failure(exc))
        return 1
    stdout.write(result)
    return 0
