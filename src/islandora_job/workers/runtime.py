"""The native worker: this process serves the registered jobs until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterable

from islandora_job import config, payload
from islandora_job.config import Settings
from islandora_job.gearman.worker import GearmanWorker
from islandora_job.registry import load_registry
from islandora_job.workers.heartbeat import ping_function, ping_handler
from islandora_job.workers.identity import client_id, holding_pidfile
from islandora_job.workers.jobs import handler, select_jobs

log = logging.getLogger(__name__)


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
    WorkerRunning when the pidfile names another live worker.
    """
    resolved = config.settings() if settings is None else settings
    registry = load_registry(resolved.modules)
    names = select_jobs(registry, only)
    # exceptions=False: clients that did not ask for exceptions (the C tool, PHP's extension)
    # hang on a forwarded WORK_EXCEPTION in gearmand 1.1.20, so failures go as WORK_WARNING
    # (our failure JSON) then WORK_FAIL, which every client understands.
    with (
        holding_pidfile(pidfile, resolved),
        GearmanWorker(resolved.servers, client_id(os.getpid()), exceptions=False) as worker,
    ):
        handle = handler(registry, resolved.max_payload, resolved.site)
        for name in names:
            worker.register(payload.gearman_function(name, resolved.site), handle)
        # The heartbeat `islandora-job ping` asks: answered by this loop, not by a job.
        worker.register(ping_function(os.getpid(), resolved.site), ping_handler(names))
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: worker.request_stop())
        log.info(
            "worker %d serving %s on %s", os.getpid(), ", ".join(names), ", ".join(resolved.servers)
        )
        worker.work()
        log.info("worker %d stopped", os.getpid())
