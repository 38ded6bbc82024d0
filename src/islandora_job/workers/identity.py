"""Who a pidfile names: our worker (our user, started before the pidfile was written, its
command line), a stale PID, or this process."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil

from islandora_job.config import Settings
from islandora_job.workers import children
from islandora_job.workers.pidfiles import (
    GarbledPidfile,
    PidfileEntry,
    PidfileError,
    create_pidfile,
    locked,
    read_pidfile,
    read_pidfile_entry,
    remove_pidfile,
    resolve_pidfile,
    write_pid,
)

log = logging.getLogger(__name__)

CLIENT_ID_PREFIX = "islandora-job:"
#: Seconds a worker waits for its pidfile's lock (start_worker and stop_worker hold it briefly).
CLAIM_TIMEOUT = 30.0


class WorkerRunning(RuntimeError):
    """The pidfile already names a live worker."""


def client_id(pid: int) -> str:
    """The Gearman client id of our worker with this PID, as admin `workers` shows it."""
    return f"{CLIENT_ID_PREFIX}{pid}"


def is_worker_cmdline(cmdline: Sequence[str], path: Path) -> bool:
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


#: How much later than the pidfile's last write a worker's start time may read: the kernel
#: counts start times in clock ticks from a boot time psutil rounds.
START_SLACK = 1.0


def our_worker(entry: PidfileEntry, path: Path) -> psutil.Process | None:
    """The process when the pidfile entry names a live worker of this pidfile, else None
    (reaping a child of ours that already exited).

    A command line alone proves nothing (anyone can start a look-alike): the process must
    also run as our user and have started before the pidfile was written, which a process
    that took over a reused PID did not.
    """
    try:
        process = psutil.Process(entry.pid)
        # One read of /proc/PID/stat and of /proc/PID/status for all the questions below.
        with process.oneshot():
            if process.status() == psutil.STATUS_ZOMBIE:
                children.reap(entry.pid)
                return None
            uids = process.uids()
            if uids.real != os.getuid() or uids.effective != os.geteuid():
                return None
            if process.create_time() > entry.written + START_SLACK:
                return None
            cmdline = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return process if is_worker_cmdline(cmdline, path) else None


def live_worker(path: Path) -> int | None:
    """Under the pidfile's lock: the PID of the live worker the pidfile names (or of this
    process), else None after removing a stale or garbled pidfile. PidfileError for an
    unsafe one."""
    try:
        entry = read_pidfile_entry(path)
    except GarbledPidfile as exc:
        log.warning("%s; removing it", exc)
        path.unlink(missing_ok=True)
        return None
    if entry is None or entry.pid == os.getpid():
        return None if entry is None else entry.pid
    if our_worker(entry, path) is not None:
        return entry.pid
    log.info("removing stale pidfile %s (PID %d is not a live worker)", path, entry.pid)
    path.unlink(missing_ok=True)
    return None


def _claim(path: Path) -> None:
    """Make the pidfile name this process (start_worker already wrote it, or we create it);
    WorkerRunning when it names another live worker."""
    with contextlib.suppress(PidfileError):
        if read_pidfile(path) == os.getpid():
            return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with locked(path, CLAIM_TIMEOUT):
        pid = live_worker(path)
        if pid == os.getpid():
            return
        if pid is not None:
            raise WorkerRunning(f"a worker already runs with pidfile {path} (PID {pid})")
        write_pid(create_pidfile(path), os.getpid())


@contextlib.contextmanager
def holding_pidfile(pidfile: str | os.PathLike[str] | None, settings: Settings) -> Iterator[None]:
    """While inside, the pidfile (a bare name in the temp dir, or an absolute path; None for
    none) names this process; removed at exit if it still does.

    Raises WorkerRunning when it names another live worker, PidfileError for an unsafe one,
    ValueError for a relative path.
    """
    if pidfile is None:
        yield
        return
    path = resolve_pidfile(pidfile, settings)
    _claim(path)
    try:
        yield
    finally:
        # No lock here: stop_worker holds it while it waits for this exit.
        remove_pidfile(path, os.getpid())
