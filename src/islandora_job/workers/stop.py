"""Stopping a detached worker: only after checking the PID is that worker; SIGTERM, then SIGKILL."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess

import psutil

from islandora_job import config
from islandora_job.config import Settings
from islandora_job.workers import children
from islandora_job.workers.identity import our_worker
from islandora_job.workers.pidfiles import (
    PidfileError,
    locked,
    read_pidfile_entry,
    remove_pidfile,
    resolve_pidfile,
)

log = logging.getLogger(__name__)

#: Seconds between SIGTERM and SIGKILL when stopping a worker, unless told otherwise.
DEFAULT_GRACE = 10.0


def _wait_gone(process: psutil.Process, timeout: float) -> bool:
    """Wait up to timeout seconds for the process to exit; reap it if it is our child."""
    child = children.tracked(process.pid)
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
    children.forget(process.pid)
    return True


def _kill(process: psutil.Process) -> None:
    """SIGKILL the worker, and its process group when it leads one (a detached worker
    does): the C tool and its routers must not outlive it."""
    with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()


def stop_worker(
    pidfile: str, *, grace: float = DEFAULT_GRACE, settings: Settings | None = None
) -> bool:
    """Stop the worker a pidfile (a bare name in the temp dir of `settings`, the settings in
    force when None, or an absolute path, as `islandora-job worker --pidfile` takes) names:
    SIGTERM, wait up to `grace` seconds for the job in hand to finish, then SIGKILL; remove
    the pidfile; True.

    Returns False, signalling nothing, when there is no pidfile, when it names no live
    worker of this pidfile (a reused PID, an unrelated process) or holds no PID; the reason
    is logged; a process of another user is never signalled. Waits up to `grace` seconds
    for the pidfile's lock. Raises ValueError for a relative path that is not a bare file name,
    LockTimeout when the lock stays held longer, PidfileError when the lock file is a link,
    a FIFO or another user's file (such a pidfile is logged and left: False).
    """
    resolved = config.settings() if settings is None else settings
    path = resolve_pidfile(pidfile, resolved)
    if not os.path.lexists(path):
        log.info("no pidfile %s: no worker to stop", path)
        return False
    with locked(path, grace):
        try:
            entry = read_pidfile_entry(path)
        except PidfileError as exc:
            log.warning("%s", exc)
            return False
        if entry is None:
            return False
        pid = entry.pid
        process = our_worker(entry, path)
        if process is None:
            if psutil.pid_exists(pid):
                log.warning(
                    "pidfile %s names PID %d, which is not the islandora-job worker of this "
                    "pidfile (another command, another user, or started after the pidfile "
                    "was written): not signalled; remove the pidfile if it is stale",
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
        remove_pidfile(path, pid)
    return True
