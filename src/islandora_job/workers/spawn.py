"""Starting a detached worker: pidfile created under its lock, child forked or spawned, its
word that it is registered awaited."""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from islandora_job import config
from islandora_job.config import Settings, settings_env
from islandora_job.gearman.admin import AdminError, GearmanAdmin
from islandora_job.gearman.protocol import ProtocolError
from islandora_job.logs import tail
from islandora_job.registry import RegistryError, load_registry
from islandora_job.workers import children, launcher
from islandora_job.workers.identity import client_id, live_worker
from islandora_job.workers.jobs import select_jobs
from islandora_job.workers.pidfiles import (
    create_pidfile,
    locked,
    log_path,
    open_no_link,
    pidfile_path,
    remove_pidfile,
    write_pid,
)
from islandora_job.workers.ready import ENV_READY_FD, StatusLines
from islandora_job.workers.stop import DEFAULT_GRACE

#: Lines of the worker's log a WorkerStartError carries.
_LOG_LINES = 20
# Seconds a worker that closed its end of the readiness pipe gets to be seen exiting.
_EXIT_GRACE = 2.0


class WorkerStartError(RuntimeError):
    """A worker that exited, or did not register, while starting; carries its log tail."""


class _Spawned:
    """A worker spawned as a new interpreter: its Popen and the read end of the pipe it
    says "registered" on (see ready.py)."""

    def __init__(self, popen: subprocess.Popen[bytes], ready_fd: int) -> None:
        self.popen = popen
        self._ready_fd = ready_fd
        self._status = StatusLines()

    @property
    def pid(self) -> int:
        """The worker's PID."""
        return self.popen.pid

    def poll(self) -> int | None:
        """Its exit status once it exited, else None."""
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for it to exit; its status; TimeoutError after ``timeout`` seconds."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"worker {self.pid} still runs after {timeout} s") from None

    def kill(self) -> None:
        """SIGKILL it (nothing when it has exited)."""
        self.popen.kill()

    def terminate(self) -> None:
        """SIGTERM it: it stops once the job in hand is done (nothing when it has exited)."""
        self.popen.terminate()

    def wait_ready(self, timeout: float) -> bool | None:
        """True once it said it is registered on every server; False when it closed the
        pipe first (it exits); None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self._ready_fd, selectors.EVENT_READ)
            while not self._status.ready:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    return None
                data = os.read(self._ready_fd, 4096)
                try:
                    self._status.feed(data)
                except ValueError:
                    return False  # not the worker's line: as good as closed
                if not data:
                    return False
        return True

    def close(self) -> None:
        """Close the pipe (the worker runs on); idempotent."""
        if self._ready_fd >= 0:
            os.close(self._ready_fd)
            self._ready_fd = -1


def _spawn(path: Path, resolved: Settings) -> launcher.LaunchedWorker | _Spawned:
    """Under the lock: create the pidfile exclusively, start the worker (forked by the
    launcher when enabled, else spawned), write its PID."""
    log_fd = open_no_link(log_path(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, "worker log")
    try:
        fd = create_pidfile(path)
        argv = [sys.executable, "-m", "islandora_job", "worker", "--pidfile", str(path)]
        env = {**os.environ, **settings_env(resolved), "PYTHONUNBUFFERED": "1"}
        try:
            child: launcher.LaunchedWorker | _Spawned | None = launcher.launch(argv, env, log_fd)
            if child is None:
                child = _popen(argv, env, log_fd)
        except BaseException:
            os.close(fd)
            path.unlink()
            raise
        try:
            write_pid(fd, child.pid)
        except BaseException:
            child.kill()
            child.wait()
            child.close()
            path.unlink()
            raise
    finally:
        os.close(log_fd)
    if isinstance(child, _Spawned):
        children.track(child.popen)
    return child


def _popen(argv: list[str], env: dict[str, str], log_fd: int) -> _Spawned:
    """Spawn the worker of ``argv`` with its output on ``log_fd`` and a readiness pipe."""
    ready_read, ready_write = os.pipe()
    try:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**env, ENV_READY_FD: str(ready_write)},
            pass_fds=(ready_write,),
        )
    except BaseException:
        os.close(ready_read)
        raise
    finally:
        os.close(ready_write)
    return _Spawned(popen, ready_read)


def _stop_started(child: launcher.Child, path: Path) -> None:
    """Stop a worker start_worker gives up on, unless it exited, and remove its pidfile.
    SIGTERM: registered on some server, it may hold a job, which then finishes (SIGKILL after
    the grace of stop_worker); else it ends at once (before its handler is set, SIGTERM
    ends it outright)."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(DEFAULT_GRACE)
        except TimeoutError:
            child.kill()
            child.wait()
    children.forget(child.pid)
    remove_pidfile(path, child.pid)


def _missing_on(servers: Sequence[str], pid: int) -> str:
    """The servers whose admin `workers` do not list worker ``pid``, each with the error
    that kept it from answering, if any (for the message of a start that failed)."""
    missing = []
    for server in servers:
        try:
            with GearmanAdmin(server, timeout=1.0) as admin:
                if any(w.client_id == client_id(pid) for w in admin.workers()):
                    continue
            missing.append(server)
        except (OSError, AdminError, ProtocolError) as exc:
            missing.append(f"{server} (which did not answer admin `workers`: {exc})")
    return ", ".join(missing) or f"every server ({', '.join(servers)}) in time"


def _wait_registered(child: launcher.Child, path: Path, resolved: Settings, timeout: float) -> None:
    """Wait for the child to say it is registered on every server (it says so once each
    has answered after its CAN_DOs); else stop it, remove its pidfile and raise
    WorkerStartError with its log tail, at once when it exits first (RegistryError, caused
    by that, when this process cannot load the registry either: the likely reason)."""
    ready = child.wait_ready(timeout)
    if ready:
        return
    code = None
    if ready is False:
        with contextlib.suppress(TimeoutError):
            code = child.wait(_EXIT_GRACE)
    if code is not None:
        what = f"exited with status {code}"
    elif ready is False:
        what = "closed its readiness pipe without saying it registered, and runs on"
    else:
        # Asked while it still runs: the servers that do not list it.
        what = (
            f"did not register on {_missing_on(resolved.servers, child.pid)} within {timeout:g} s"
        )
    _stop_started(child, path)
    failed = WorkerStartError(
        f"worker for pidfile {path} {what}; its log {log_path(path)} ends:\n"
        + tail(log_path(path), _LOG_LINES)
    )
    if ready is False:
        # It ended its start itself (exited, or closed its pipe): a registry this process
        # cannot load either is the likely reason. Checked here, not while every worker
        # starts, where it would take CPU from the worker.
        try:
            select_jobs(load_registry(resolved.modules), None)
        except RegistryError as problem:
            raise problem from failed
    raise failed


def start_worker(pidfile: str, *, timeout: float = 30.0, settings: Settings | None = None) -> bool:
    """Start a detached worker for every registered job, its PID in pidfile (a bare name in
    the temp dir), its output in `worker_log_path(pidfile)`.

    The worker gets `settings` (the settings in force when None, resolved once). Returns
    True once the worker is registered on every server of the settings, False when the
    pidfile already names a live worker (a stale pidfile is removed). Two calls with one name
    at the same moment start one worker. Raises ValueError for a name that is not a bare
    file name (nothing created), PidfileError for a pidfile, log or lock that is a symbolic
    link, a FIFO, not a regular file or not ours, LockTimeout when its lock stays held past
    `timeout`, RegistryError when no job is registered or a job module cannot be loaded
    (the worker exited on it; the WorkerStartError with its log tail is the cause),
    WorkerStartError (with the log tail) when the worker exits or does not register within
    `timeout` seconds.
    """
    resolved = config.settings() if settings is None else settings
    path = pidfile_path(pidfile, settings=resolved)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    children.reap_exited()
    deadline = time.monotonic() + timeout
    with locked(path, timeout):
        if live_worker(path) is not None:
            return False
        child = _spawn(path, resolved)
    try:
        _wait_registered(child, path, resolved, max(0.0, deadline - time.monotonic()))
    finally:
        child.close()
    return True
