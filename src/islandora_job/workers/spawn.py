"""Starting a detached worker: pidfile created under its lock, child spawned, registration awaited."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from islandora_job import config, payload
from islandora_job.config import Settings, settings_env
from islandora_job.gearman.admin import AdminError, GearmanAdmin
from islandora_job.gearman.protocol import ProtocolError
from islandora_job.logs import tail
from islandora_job.registry import load_registry
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

_POLL = 0.005
#: Lines of the worker's log a WorkerStartError carries.
_LOG_LINES = 20


class WorkerStartError(RuntimeError):
    """A worker that exited, or did not register, while starting; carries its log tail."""


def _spawn(path: Path, resolved: Settings) -> launcher.Child:
    """Under the lock: create the pidfile exclusively, start the worker (forked by the
    launcher when enabled, else spawned), write its PID."""
    log_fd = open_no_link(log_path(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, "worker log")
    try:
        fd = create_pidfile(path)
        argv = [sys.executable, "-m", "islandora_job", "worker", "--pidfile", str(path)]
        env = {**os.environ, **settings_env(resolved), "PYTHONUNBUFFERED": "1"}
        try:
            child: launcher.Child | None = launcher.launch(argv, env, log_fd)
            if child is None:
                child = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_fd,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                )
        except BaseException:
            os.close(fd)
            path.unlink()
            raise
        try:
            write_pid(fd, child.pid)
        except BaseException:
            child.kill()
            child.wait()
            path.unlink()
            raise
    finally:
        os.close(log_fd)
    if isinstance(child, subprocess.Popen):
        children.track(child)
    return child


def _wait_registered(
    child: launcher.Child, path: Path, resolved: Settings, jobs: set[str], timeout: float
) -> None:
    """Poll admin `workers` on every server until the child shows there with all its jobs;
    else stop it, remove its pidfile and raise WorkerStartError with its log tail."""
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
    children.forget(child.pid)
    remove_pidfile(path, child.pid)
    what = (
        f"exited with status {code}"
        if code is not None
        else f"did not register on {pending[0]} within {timeout} s{last_error}"
    )
    raise WorkerStartError(
        f"worker for pidfile {path} {what}; its log {log_path(path)} ends:\n"
        + tail(log_path(path), _LOG_LINES)
    )


def start_worker(pidfile: str, *, timeout: float = 30.0, settings: Settings | None = None) -> bool:
    """Start a detached worker for every registered job, its PID in pidfile (a bare name in
    the temp dir), its output in `worker_log_path(pidfile)`.

    The worker gets `settings` (the settings in force when None, resolved once). Returns
    True once the worker is registered on every server of the settings, False when the
    pidfile already names a live worker (a stale pidfile is removed). Two calls with one name
    at the same moment start one worker. Raises ValueError for a name that is not a bare
    file name (nothing created), PidfileError for a pidfile, log or lock that is a symbolic
    link, a FIFO, not a regular file or not ours, LockTimeout when its lock stays held past
    `timeout`, RegistryError when no job is registered, WorkerStartError (with the log
    tail) when the worker exits or does not register within `timeout` seconds.
    """
    resolved = config.settings() if settings is None else settings
    path = pidfile_path(pidfile, settings=resolved)
    jobs = {
        payload.gearman_function(job, resolved.site)
        for job in select_jobs(load_registry(resolved.modules), None)
    }
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    children.reap_exited()
    deadline = time.monotonic() + timeout
    with locked(path, timeout):
        if live_worker(path) is not None:
            return False
        child = _spawn(path, resolved)
    try:
        _wait_registered(child, path, resolved, jobs, max(0.0, deadline - time.monotonic()))
    finally:
        if isinstance(child, launcher.LaunchedWorker):
            child.close()
    return True
