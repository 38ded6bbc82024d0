"""Fixtures of the persistent-queue tests.

Tests that kill or restart a database use servers of their own (not the plugin's shared ones),
so they disturb no other test.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from pytest_islandora_job import factories
from pytest_islandora_job.databases.base import PersistedJob
from pytest_islandora_job.workerpool import WorkerPool, pool_settings

JOB_MODULES = ["tests.jobs"]


memory_server = factories.gearman_server(queue="builtin")
postgres_server = factories.gearman_server(queue="postgres")
mysql_server = factories.gearman_server(queue="mysql")
sqlite_server = factories.gearman_server(queue="sqlite")

# The crash test runs on each backend and persistent queue (ids like docker-mysql).
crash_server = factories.gearman_server(
    params=[
        {"backend": backend, "queue": queue}
        for backend in ("process", "docker")
        for queue in ("mysql", "postgres", "sqlite")
    ]
)
crash_worker = factories.job_worker("crash_server")


@contextlib.contextmanager
def workers(addresses: Sequence[str], temp_dir: Path, count: int = 1) -> Iterator[WorkerPool]:
    """Pidfile-managed workers for tests.jobs on these servers, stopped at the end."""
    pool = WorkerPool(pool_settings(addresses, JOB_MODULES, temp_dir))
    pool.start(count)
    try:
        yield pool
    finally:
        pool.stop()


def job_args(job: PersistedJob) -> list[object]:
    """The arguments of a stored job, read from its JSON payload."""
    return json.loads(job.data)["args"]
