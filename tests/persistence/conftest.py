"""Fixtures of the persistent-queue tests.

Tests that kill or restart a database use private servers (not the plugin's shared ones), so
they disturb no other test; those servers leave the library's settings alone.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from islandora_job.config import configured
from pytest_islandora_job import config, factories
from pytest_islandora_job.databases.base import PersistedJob
from pytest_islandora_job.servers import GearmanServer, make_servers
from pytest_islandora_job.workerpool import WorkerPool

JOB_MODULES = ["tests.jobs"]


def private_server(queue: str) -> object:
    """A session fixture: a started gearmand with this queue, for this package's tests only."""

    @pytest.fixture(scope="session")
    def fixture(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[GearmanServer]:
        settings = config.server_settings(request.config, queue=queue)
        workdir = tmp_path_factory.mktemp(f"private-{queue}")
        with factories.running(make_servers(settings, workdir)) as (server,):
            yield server

    return fixture


memory_server = private_server("builtin")
postgres_server = private_server("postgres")
mysql_server = private_server("mysql")
sqlite_server = private_server("sqlite")


@contextlib.contextmanager
def workers(addresses: Sequence[str], temp_dir: Path, count: int = 1) -> Iterator[WorkerPool]:
    """Pidfile-managed workers for tests.jobs on these servers, stopped at the end."""
    pool = WorkerPool(addresses, JOB_MODULES, temp_dir)
    with configured(**pool.settings()):
        pool.start(count)
        try:
            yield pool
        finally:
            pool.stop()


def job_args(job: PersistedJob) -> list[object]:
    """The arguments of a stored job, read from its JSON payload."""
    return json.loads(job.data)["args"]
