"""Warm workers: a launcher process that has imported the library once forks each worker.

Starting a worker costs an interpreter start and the library's imports (about 100 ms); a
fork of a process that already paid them costs a few milliseconds, and a fork made before
the request costs nothing at the time of the request. Once `enable()` ran (the pytest
plugin's worker pools call it), `start_worker` asks this process's launcher for a worker
instead of spawning a new interpreter. The launcher keeps a spare forked: the spare waits
on the launcher's socket itself, takes the next request, becomes that worker and tells the
launcher, which forks the next spare once that worker is registered (a fork made while it
starts would take CPU from it), or at once when another request waits meanwhile. The
worker is what a spawned one is: it runs the `islandora-job worker --pidfile PATH` command's
code with the caller's environment and working directory, its own session and process
group, its output in its log, and the same command line (rewritten in place once the
request came, so the identity check and `ps` see a worker). Job modules are imported after
the request, never by the launcher or a spare before it: each worker sees them as they are
when it starts. A spare ends when the launcher ends.

The launcher is private to its owner and runs nothing else: it listens on a Unix socket in
a directory of its own (created 0700), serves only peers of its own user (SO_PEERCRED), and
a request is JSON naming a pidfile, an environment and a directory, never code. It ends
when the process that started it ends (its stdin, a pipe from that process, closes); the
workers it forked live on.

Outside pytest it stays off unless `enable()` is called: a long-lived launcher keeps the
library code it imported at its start, so an upgrade of islandora_job would reach the
workers it forks only once the process that started it ends.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from islandora_job.workers.ready import ENV_READY_FD, StatusLines

__all__ = ["Child", "LaunchedWorker", "disable", "enable", "launch", "prestart", "running"]

MODULE = "islandora_job.workers.launcher"
# Room reserved on the launcher's command line for a worker's (the command line can only be
# rewritten within the memory the kernel gave it at exec); a longer one is spawned instead.
_ROOM = 2048
_READY_TIMEOUT = 10.0
_REPLY_TIMEOUT = 5.0
# Environment variables that decide what an interpreter imports: a launcher serves only
# callers whose values (and working directory) it was started with.
_IMPORT_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "PYTHONNOUSERSITE", "PYTHONUSERBASE")
_MAX_REQUEST = 1 << 20
# Seconds between a spare's unexpected death and the next spare (doubled at each death in
# a row), and the deaths in a row after which the launcher gives up and ends.
_RESPARE_DELAY = 0.1
_SPARE_DEATHS = 5
# Seconds the next spare waits for the worker that took the last request to be registered.
_SUCCESSOR_WAIT = 0.5


class Child(Protocol):
    """What start_worker needs of a worker it started: a spawned one (spawn._Spawned), or a
    LaunchedWorker."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...

    def terminate(self) -> None: ...

    def wait_ready(self, timeout: float) -> bool | None: ...

    def close(self) -> None: ...


class LaunchError(RuntimeError):
    """The launcher could not fork a worker (start_worker then spawns one instead)."""


# -- the caller's side ----------------------------------------------------------------


class LaunchedWorker:
    """A worker the launcher forked: its PID, and its exit status as it reports it.

    Signals go through a pidfd, so they never reach a process that reused the PID.
    """

    def __init__(self, pid: int, conn: socket.socket, status: StatusLines) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._conn: socket.socket | None = conn
        self._pidfd = os.pidfd_open(pid)
        self._status = status

    def __repr__(self) -> str:
        return f"<LaunchedWorker {self.pid} returncode={self.returncode}>"

    def _read(self, timeout: float | None) -> None:
        conn = self._conn
        if conn is None:
            return
        conn.settimeout(timeout)
        try:
            data = conn.recv(4096)
        except (BlockingIOError, TimeoutError):
            return
        except OSError:
            data = b""
        if data:
            try:
                self._status.feed(data)
            except ValueError:
                data = b""  # not the worker's lines: as good as closed
        if self._status.exit is not None:
            self.returncode = self._status.exit
            self._release()
        elif not data:
            # The worker reports its own exit status; closed without one, it was killed (or
            # its descriptor closed): the pidfd says whether it exited.
            self._release()
            if _exited(self._pidfd, 0):
                self.returncode = -1

    def poll(self) -> int | None:
        """The exit status once the worker exited (-1 when killed by a signal, which leaves
        no status to report), else None."""
        if self.returncode is None:
            if self._conn is None:
                if _exited(self._pidfd, 0):
                    self.returncode = -1
            else:
                self._read(0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the worker to exit and return its status; TimeoutError after
        ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"worker {self.pid} still runs after {timeout} s")
            if self._conn is not None:
                self._read(left)
            else:
                _exited(self._pidfd, left)
        assert self.returncode is not None
        return self.returncode

    def wait_ready(self, timeout: float) -> bool | None:
        """True once the worker said it is registered on every server; False when it closed
        its end first (it exits: wait() gives its status); None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self._status.ready:
            if self._conn is None:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._read(left)
        return True

    def kill(self) -> None:
        """SIGKILL the worker (nothing when it has exited)."""
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM the worker: it stops once the job in hand is done (nothing when it has
        exited)."""
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self._pidfd, signal.SIGTERM)

    def _release(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Stop listening for the exit status (the worker runs on); idempotent."""
        self._release()
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


def _exited(pidfd: int, timeout: float | None) -> bool:
    """True once the process of the pidfd has exited, waiting up to ``timeout`` seconds."""
    with selectors.DefaultSelector() as selector:
        selector.register(pidfd, selectors.EVENT_READ)
        return bool(selector.select(timeout))


class _Launcher:
    """The launcher process this one started, for one import environment."""

    def __init__(self, key: tuple[str, ...]) -> None:
        self.key = key
        self.directory = Path(tempfile.mkdtemp(prefix="islandora-job-launcher-"))
        self.socket_path = self.directory / "socket"
        self.process = subprocess.Popen(
            [sys.executable, "-m", MODULE, str(self.socket_path), "-" * _ROOM],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # Known once the launcher said it is ready (see _wait_ready).
        self.room: int | None = None

    def _wait_ready(self) -> int:
        """The room on the launcher's command line, once it said it is ready; LaunchError
        when it does not start."""
        if self.room is None:
            assert self.process.stdout is not None
            with selectors.DefaultSelector() as selector:
                selector.register(self.process.stdout, selectors.EVENT_READ)
                ready = self.process.stdout.readline() if selector.select(_READY_TIMEOUT) else b""
            if not ready.startswith(b"ready "):
                self.close()  # not alive() any more: the next request starts another
                raise LaunchError(f"the worker launcher did not start (it said {ready[:200]!r})")
            self.room = int(ready.split()[1])
        return self.room

    def alive(self) -> bool:
        return self.process.poll() is None

    def launch(self, argv: Sequence[str], env: Mapping[str, str], log_fd: int) -> LaunchedWorker:
        """Ask for a worker; LaunchError when the launcher cannot fork one."""
        if len(_title(argv)) > self._wait_ready():
            raise LaunchError("the worker's command line is longer than the launcher's room")
        request = json.dumps({"argv": list(argv), "env": dict(env), "cwd": os.getcwd()})
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            conn.settimeout(_REPLY_TIMEOUT)
            conn.connect(str(self.socket_path))
            socket.send_fds(conn, [request.encode() + b"\n"], [log_fd])
            reply = b""
            while b"\n" not in reply:
                data = conn.recv(4096)
                if not data:
                    raise LaunchError("the worker launcher closed the connection")
                reply += data
        except OSError as exc:
            conn.close()
            raise LaunchError(f"the worker launcher did not answer: {exc}") from exc
        line, _, rest = reply.partition(b"\n")
        answer = json.loads(line)
        if "pid" not in answer:
            conn.close()
            raise LaunchError(f"the worker launcher refused: {answer.get('error', answer)}")
        pid = answer["pid"]
        status = StatusLines()
        try:
            if type(pid) is not int or len(answer) != 1:
                raise ValueError(f"not a worker's PID: {line[:100]!r}")
            status.feed(rest)
            return LaunchedWorker(pid, conn, status)
        except ValueError as exc:
            conn.close()
            raise LaunchError(f"the worker launcher garbled its answer: {exc}") from exc
        except OSError as exc:  # it exited at once: pidfd_open found no process
            conn.close()
            raise LaunchError(f"the forked worker is gone: {exc}") from exc

    def close(self) -> None:
        """End the launcher (its workers live on) and remove its directory."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        if self.room is None:
            # Never asked for a worker (a run that ended first): it may still be importing,
            # and no worker of it runs (its spare ends with it), so it need not be waited for.
            self.process.kill()
        try:
            self.process.wait(2.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        with contextlib.suppress(OSError):
            self.socket_path.unlink(missing_ok=True)
            self.directory.rmdir()


_lock = threading.Lock()
_enabled = False
_current: _Launcher | None = None


def enable() -> None:
    """Let start_worker in this process fork its workers from a launcher (started on first
    use, ended with this process)."""
    global _enabled
    _enabled = True


def disable() -> None:
    """Spawn workers again, and end this process's launcher (its workers live on)."""
    global _enabled, _current
    with _lock:
        _enabled = False
        if _current is not None:
            _current.close()
            _current = None


def running() -> tuple[int, Path] | None:
    """The PID and socket of this process's launcher, when one runs."""
    with _lock:
        if _current is None or not _current.alive():
            return None
        return _current.process.pid, _current.socket_path


def _key(env: Mapping[str, str]) -> tuple[str, ...]:
    return (sys.executable, os.getcwd(), *(env.get(name, "") for name in _IMPORT_ENV))


def _launcher(env: Mapping[str, str]) -> _Launcher:
    """Under _lock: the launcher for this environment, started when none runs for it."""
    global _current
    key = _key(env)
    if _current is not None and (_current.key != key or not _current.alive()):
        _current.close()
        _current = None
    if _current is None:
        _current = _Launcher(key)
        atexit.register(_close_at_exit)
    return _current


def prestart() -> None:
    """Start this process's launcher now, without waiting for it, when enabled and none
    runs: it imports the library while the caller goes on, and the first start_worker finds
    it ready. A launcher that cannot start is noticed (and the worker spawned) then."""
    if not _enabled or not hasattr(os, "pidfd_open"):
        return
    with _lock, contextlib.suppress(OSError):
        _launcher(os.environ)


def launch(argv: Sequence[str], env: Mapping[str, str], log_fd: int) -> LaunchedWorker | None:
    """Fork the worker of `argv` (`python -m islandora_job worker --pidfile PATH`) with this
    environment and its output on `log_fd`, when enabled; None when not enabled or when the
    launcher cannot (the caller then spawns the worker)."""
    if not _enabled or not hasattr(os, "pidfd_open"):
        return None
    with _lock:
        try:
            return _launcher(env).launch(argv, env, log_fd)
        except (LaunchError, OSError, ValueError):
            return None


def _close_at_exit() -> None:
    global _current
    with _lock:
        if _current is not None:
            _current.close()
            _current = None


# -- the launcher's side --------------------------------------------------------------


def _cmdline_area() -> tuple[int, int]:
    """Where the kernel keeps this process's command line (what /proc/PID/cmdline shows)."""
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rpartition(b")")[2].split()
    # Fields 48 and 49 of proc(5), arg_start and arg_end; the split begins at field 3.
    return int(fields[45]), int(fields[46])


def _title(argv: Sequence[str]) -> bytes:
    """``argv`` as a process title: the arguments joined by spaces, NUL-terminated."""
    if any(not arg or " " in arg or "\0" in arg for arg in argv):
        raise LaunchError("an argument is empty or holds a space: the title cannot carry it")
    return " ".join(argv).encode() + b"\0"


def _set_cmdline(argv: Sequence[str]) -> None:
    """Make /proc/self/cmdline (what ps and psutil show) read as ``argv``.

    The command line's own memory is overwritten with the title, as setproctitle does: a
    non-NUL last byte tells the kernel the memory now holds one NUL-terminated string,
    which psutil splits at its spaces (hence no argument may hold one, see _title).
    """
    start, end = _cmdline_area()
    title = _title(argv)
    if len(title) > end - start:
        raise LaunchError("no room for the worker's command line")
    ctypes.memmove(start, title.ljust(end - start, b" "), end - start)


def _refuse(conn: socket.socket, why: str) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps({"error": why}).encode() + b"\n")
    conn.close()


def _check(request: object) -> tuple[list[str], dict[str, str], str]:
    """The worker command line, environment and directory of a request; ValueError for
    anything but a worker of this interpreter with string values."""
    if not isinstance(request, dict):
        raise ValueError("a request is a JSON object")
    argv, env, cwd = request.get("argv"), request.get("env"), request.get("cwd")
    if not (
        isinstance(argv, list)
        and len(argv) == 6
        and all(isinstance(a, str) for a in argv)
        and argv[:5] == [sys.executable, "-m", "islandora_job", "worker", "--pidfile"]
    ):
        raise ValueError("only `python -m islandora_job worker --pidfile PATH` is launched")
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ValueError("env must map names to strings")
    if not isinstance(cwd, str):
        raise ValueError("cwd must be a string")
    return argv, env, cwd


def _worker(
    conn: socket.socket, taken: int, log_fd: int, argv: list[str], env: dict[str, str], cwd: str
) -> int:
    """In the forked child: become the worker of ``argv``, which says on ``conn`` and on
    the launcher's pipe ``taken`` when it is registered; its exit status."""
    _set_cmdline(argv)
    # The caller learns the PID once the command line says what the process is.
    conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(devnull)
    os.close(log_fd)
    # Line-buffered output, as the PYTHONUNBUFFERED=1 a spawned worker gets: the log is
    # current while the worker runs.
    sys.stdout = open(1, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
    # The caller's environment, changing only what differs from the launcher's (each change
    # is a putenv or unsetenv, and most of the two are the same).
    for name in [name for name in os.environ if name not in env]:
        del os.environ[name]
    for name, value in env.items():
        if os.environ.get(name) != value:
            os.environ[name] = value
    # The worker says "registered" on the caller's connection and to the launcher (see
    # ready.py).
    os.environ[ENV_READY_FD] = f"{os.dup(conn.fileno())},{taken}"
    os.chdir(cwd)
    # As `python -m` would: the working directory first on the path, then what was there.
    sys.path[0] = cwd
    sys.argv = [sys.argv[0], *argv[3:]]
    _refresh_finders()
    from islandora_job import cli

    # The request was checked to be `worker --pidfile PATH`: no parser to build and run.
    return cli.worker_main(argv[5])


def _refresh_finders() -> None:
    """importlib.invalidate_caches(), but for the directories unchanged since shortly before
    the launcher started: their listings, made since, are right (a later change moves their
    time, which the import system notices), and listing the standard library and the
    installed packages again would cost every worker milliseconds."""
    from islandora_job.registry import SETTLED

    since = _started - SETTLED
    kept = {}
    for path, finder in sys.path_importer_cache.items():
        if finder is None or not os.path.isabs(path):
            continue
        try:
            if os.stat(path).st_mtime < since:
                kept[path] = finder
        except OSError:
            pass
    for path in kept:
        del sys.path_importer_cache[path]
    importlib.invalidate_caches()
    sys.path_importer_cache.update(kept)


# When the launcher process began (epoch seconds; set by serve): it listed no directory
# before.
_started = 0.0


def serve(socket_path: str) -> None:
    """The launcher's loop: keep a spare forked for the next request of its owner (the
    spare becomes that worker); end when stdin closes."""
    import gc

    import psutil

    import islandora_job.cli  # what every worker runs
    from islandora_job import registry

    # What every worker needs, imported once, and the entry points read once: a worker
    # reuses what was read unless an install changed it since (see registry). Frozen, these
    # objects are never scanned by a forked worker's collector, which would copy every page
    # they sit on.
    registry.installed_job_modules()
    global _started
    _started = psutil.Process().create_time()
    # A worker's first connect resolves its server's host name, which imports the idna
    # codec (and stringprep): done here, it is not done again in every worker.
    socket.getaddrinfo("localhost", None)
    # So is the first use of logging's record and time formatting, which a worker's first
    # log lines would pay for (a tenth of a millisecond or two each).
    record = logging.LogRecord(MODULE, logging.INFO, __file__, 0, "worker %d", (0,), None)
    logging.Formatter(islandora_job.cli.WORKER_LOG_FORMAT).format(record)
    gc.freeze()
    uid = os.getuid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old_mask = os.umask(0o177)
    try:
        listener.bind(socket_path)
    finally:
        os.umask(old_mask)
    listener.listen(64)
    # The kernel reaps the workers the moment they exit (no zombie for stop_worker to see);
    # each worker reports its own exit status to its caller.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    start, end = _cmdline_area()
    sys.stdout.write(f"ready {end - start}\n")
    sys.stdout.flush()
    _set_cmdline(sys.orig_argv[:-1])
    _keep_spares(listener, uid, sys.stdin.fileno())
    # Leave nothing behind; callers then spawn their workers (the launcher is gone).
    listener.close()
    with contextlib.suppress(OSError):
        os.unlink(socket_path)
        os.rmdir(os.path.dirname(socket_path))


def _keep_spares(listener: socket.socket, uid: int, owner: int) -> None:
    """Keep a spare forked until the owner's pipe closes (or spares keep dying).

    A spare says on its pipe when it took a request ("!"), and again when its worker is
    registered (READY, then the pipe closes) or at its exit. The next spare is forked then,
    not while that worker starts: a fork costs a millisecond of CPU, and the kernel runs the
    woken launcher on the starting worker's own CPU. It is forked at once when another
    request comes meanwhile (the socket is readable, no spare accepts it), and after
    _SUCCESSOR_WAIT seconds in any case.
    """
    # The spares watch this pipe, whose write end the launcher alone holds: at its end, they end.
    life, life_write = os.pipe()
    # The pipes of workers that took a request, read to their end and closed only then: a
    # worker whose job module restored SIGPIPE's default would die writing to a closed one.
    taken: set[int] = set()
    deadline = 0.0
    # Spares that died in a row, without taking a request: something keeps them from
    # living, and each death makes a waiting caller lose its reply timeout.
    deaths = 0
    with selectors.DefaultSelector() as selector:
        selector.register(owner, selectors.EVENT_READ)
        first = _fork_spare(listener, uid, life, life_write, owner)
        selector.register(first, selectors.EVENT_READ)
        spare: int | None = first
        while deaths < _SPARE_DEATHS:
            timeout = None if spare is not None else max(0.0, deadline - time.monotonic())
            events = selector.select(timeout)
            due = not events  # the worker that took the last request took too long
            for key, _ in events:
                if key.fd == owner:
                    if not os.read(owner, 4096):
                        deaths = _SPARE_DEATHS  # the owner is gone (maybe killed)
                        due = False
                        break
                elif key.fd == spare:
                    if os.read(spare, 1):  # taken: the successor waits for its word
                        deaths = 0
                        taken.add(spare)
                        spare = None
                        deadline = time.monotonic() + _SUCCESSOR_WAIT
                        selector.register(listener, selectors.EVENT_READ)
                        continue
                    deaths += 1
                    if deaths == _SPARE_DEATHS:
                        break
                    # Never fork in a tight loop: wait longer after each death in a row.
                    time.sleep(_RESPARE_DELAY * 2 ** (deaths - 1))
                    selector.unregister(spare)
                    os.close(spare)
                    spare = None
                    due = True
                elif key.fd in taken:  # a worker is registered, or gone
                    if not os.read(key.fd, 4096):
                        selector.unregister(key.fd)
                        os.close(key.fd)
                        taken.discard(key.fd)
                    due = True
                else:  # the socket: a request waits, and no spare takes it
                    due = True
            if due and spare is None:
                if listener.fileno() in selector.get_map():
                    selector.unregister(listener)
                spare = _fork_spare(listener, uid, life, life_write, owner)
                selector.register(spare, selectors.EVENT_READ)


def _fork_spare(listener: socket.socket, uid: int, life: int, life_write: int, owner: int) -> int:
    """Fork a spare: a child that waits for the next request itself, so that a request finds
    a process already forked. Returns the pipe on which it says it took one, then that its
    worker is registered (or closes at its death)."""
    taken, taken_write = os.pipe()
    if os.fork() == 0:
        status = 1
        try:
            os.close(taken)
            os.close(life_write)
            # /dev/null in the owner pipe's place (stdin): no descriptor made later lands
            # on 0, which the worker gives /dev/null again.
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, owner)
            os.close(devnull)
            for signum in (signal.SIGCHLD, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            # Its own session and process group from the start, as a spawned worker's.
            os.setsid()
            status = _spare(listener, uid, life, taken_write)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(status)
    os.close(taken_write)
    return taken


def _spare(listener: socket.socket, uid: int, life: int, taken: int) -> int:
    """In a spare: wait for a request of the owner's user naming a worker (refusing any
    other), say so on ``taken``, and become that worker (which says on ``taken`` too when
    it is registered); its exit status. 0 when the launcher ended first."""
    listener.setblocking(False)
    with selectors.DefaultSelector() as selector:
        selector.register(listener, selectors.EVENT_READ)
        selector.register(life, selectors.EVENT_READ)
        request = None
        while request is None:
            if any(key.fileobj == life for key, _ in selector.select()):
                return 0
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                continue  # gone before it was accepted
            request = _take(conn, uid)
    os.write(taken, b"!")
    listener.close()
    os.close(life)
    return _serve_request(conn, taken, *request)


def _take(conn: socket.socket, uid: int) -> tuple[int, list[str], dict[str, str], str] | None:
    """The log descriptor, command line, environment and directory of one request; None
    (the request refused, the connection closed) unless it comes from the owner's user and
    names a worker."""
    conn.setblocking(True)
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    peer_uid = int.from_bytes(creds[4:8], sys.byteorder)
    if peer_uid != uid:
        _refuse(conn, f"user {peer_uid} is not this launcher's owner")
        return None
    conn.settimeout(_REPLY_TIMEOUT)
    fds: list[int] = []
    try:
        data, fds, _, _ = socket.recv_fds(conn, 65536, 1)
        while not data.endswith(b"\n") and len(data) < _MAX_REQUEST:
            more = conn.recv(65536)
            if not more:
                break
            data += more
        if len(fds) != 1:
            raise ValueError("a request carries the worker's log descriptor")
        argv, env, cwd = _check(json.loads(data))
    except (OSError, ValueError) as exc:
        for fd in fds:
            os.close(fd)
        _refuse(conn, str(exc))
        return None
    return fds[0], argv, env, cwd


def _serve_request(
    conn: socket.socket, taken: int, log_fd: int, argv: list[str], env: dict[str, str], cwd: str
) -> int:
    """Become the worker of a taken request; report its exit status on ``conn``; return it."""
    status = 1
    try:
        status = _worker(conn, taken, log_fd, argv, env, cwd)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
            conn.sendall(json.dumps({"exit": status}).encode() + b"\n")
    return status


if __name__ == "__main__":
    serve(sys.argv[1])
    # Nothing is left to finalize (serve removed what it made): ending without the
    # interpreter's teardown of the library it imported (tens of milliseconds) ends the
    # test run that much sooner, since the run waits for its launcher to be gone.
    sys.stdout.flush()
    os._exit(0)
