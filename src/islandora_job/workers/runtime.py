"""The native worker: this process serves the registered jobs until SIGTERM or SIGINT."""

from __future__ import annotations

import functools
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Iterable

import psutil

from islandora_job import config, payload
from islandora_job.config import Settings
from islandora_job.gearman.worker import GearmanWorker
from islandora_job.registry import load_registry
from islandora_job.workers.heartbeat import ping_function, ping_handler
from islandora_job.workers.identity import client_id, holding_pidfile
from islandora_job.workers.jobs import handler, select_jobs
from islandora_job.workers.ready import notify_ready, take_ready_fds

log = logging.getLogger(__name__)

#: The PID of the process whose end ends this worker (set by the pytest plugin for the
#: workers of a run; unset, a worker is detached and runs until told to stop).
ENV_WATCH_PID = "ISLANDORA_JOB_WATCH_PID"
# Seconds the job in hand gets once the watched process is gone: nobody waits for its result.
_WATCH_GRACE = 2.0


def _watch(worker: GearmanWorker, pid: int) -> None:
    """Stop the worker when process `pid` ends; exit outright if its job then lingers."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        fd = -1  # gone already
    except OSError:
        fd = -2  # no pidfd here: poll
    if fd >= 0:
        select.select([fd], [], [])
        os.close(fd)
    while fd == -2 and psutil.pid_exists(pid):
        time.sleep(0.5)
    log.warning("worker %d stopping: process %d, which started it, is gone", os.getpid(), pid)
    worker.request_stop()
    time.sleep(_WATCH_GRACE)
    os._exit(1)


def _watch_starter(worker: GearmanWorker) -> None:
    """Watch the process ENV_WATCH_PID names, if any, in a daemon thread."""
    text = os.environ.get(ENV_WATCH_PID, "")
    if not text.isdigit():
        if text:
            log.warning("ignoring %s=%r: not a PID", ENV_WATCH_PID, text)
        return
    threading.Thread(target=_watch, args=(worker, int(text)), daemon=True, name="watch").start()


def run_worker(
    only: Iterable[str] | None = None,
    pidfile: str | os.PathLike[str] | None = None,
    *,
    settings: Settings | None = None,
) -> None:
    """Run a worker in this process until SIGTERM or SIGINT (the job in hand finishes and its
    result reaches the client first).

    Serves every registered job, or the `only` ones, on the servers of `settings` (the
    settings in force when None); pidfile is a bare name (in the temp dir) or an absolute
    path, written with this PID and removed at exit if it still names it. Raises UnknownJob
    for an `only` name nobody registered, RegistryError when there are no jobs,
    WorkerRunning when the pidfile names another live worker. When ISLANDORA_JOB_WATCH_PID
    names a process, the worker stops when that process ends; when ISLANDORA_JOB_READY_FD
    names descriptors (start_worker's, the launcher's), the worker says on each once it is
    registered.
    """
    ready_fds = take_ready_fds()
    resolved = config.settings() if settings is None else settings
    registry = load_registry(resolved.modules)
    names = select_jobs(registry, only)
    # exceptions=False: clients that did not ask for exceptions (the C tool, PHP's extension)
    # hang on a forwarded WORK_EXCEPTION in gearmand 1.1.20, so failures go as WORK_WARNING
    # (our failure JSON) then WORK_FAIL, which every client understands.
    with (
        holding_pidfile(pidfile, resolved),
        GearmanWorker(
            resolved.servers,
            client_id(os.getpid()),
            exceptions=False,
            on_registered=functools.partial(notify_ready, ready_fds) if ready_fds else None,
        ) as worker,
    ):
        handle = handler(registry, resolved.max_payload, resolved.site)
        for name in names:
            worker.register(payload.gearman_function(name, resolved.site), handle)
        # The heartbeat `islandora-job ping` asks: answered by this loop, not by a job.
        worker.register(ping_function(os.getpid(), resolved.site), ping_handler(names))
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: worker.request_stop())
        _watch_starter(worker)
        log.info(
            "worker %d serving %s on %s", os.getpid(), ", ".join(names), ", ".join(resolved.servers)
        )
        worker.work()
        log.info("worker %d stopped", os.getpid())
