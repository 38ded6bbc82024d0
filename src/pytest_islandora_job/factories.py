"""Build more fixtures in a conftest, as the default ones are built.

from pytest_islandora_job import factories

sqlite_gearman = factories.gearman_server(queue="sqlite")
sqlite_worker = factories.job_worker("sqlite_gearman", count=2)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import islandora_job
from islandora_job.config import configured, layered
from pytest_islandora_job import config, leftovers
from pytest_islandora_job.cluster import GearmanCluster
from pytest_islandora_job.servers import GearmanServer, ServerStartError, make_servers
from pytest_islandora_job.workerpool import WorkerPool


@contextlib.contextmanager
def running(servers: Sequence[GearmanServer]) -> Iterator[list[GearmanServer]]:
    """Start the servers, yield them, close them all whatever happens.

    A server that cannot start fails the test with one line and its log tail, not a traceback.
    """
    started: list[GearmanServer] = []
    failure = None
    try:
        for server in servers:
            started.append(server)
            server.start()
    except ServerStartError as error:
        failure = str(error)
    if failure is not None:
        # Outside the except block, so the report shows one error, not "during handling...".
        for server in reversed(started):
            server.close()
        pytest.fail(failure, pytrace=False)
    try:
        yield started
    finally:
        for server in reversed(started):
            server.close()


def gearman_server(
    queue: str | None = None,
    backend: str | None = None,
    port: int | None = None,
    listen: str | None = None,
    threads: int | None = None,
    job_retries: int | None = None,
    extra_args: Sequence[str] | None = None,
    count: int | None = None,
    scope: str = "session",
) -> Any:
    """A fixture yielding a started gearmand (or a GearmanCluster of `count` of them).

    Arguments override the command-line options and ini keys; None means "not set". When the
    fixture is parametrized indirectly, request.param is the queue type. While the fixture is
    active, islandora_job's module-level API and the workers it starts use these servers.
    """
    if count is not None and count < 1:
        raise ValueError(f"count must be 1 or more, not {count}")

    @pytest.fixture(scope=scope)
    def server_fixture(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[GearmanServer | GearmanCluster]:
        settings = config.server_settings(
            request.config,
            queue=getattr(request, "param", None) or queue,
            backend=backend,
            port=port,
            listen=listen,
            threads=threads,
            job_retries=job_retries,
            extra_args=tuple(extra_args) if extra_args is not None else None,
        )
        workdir = tmp_path_factory.mktemp(f"gearmand-{settings.backend}-{settings.queue}")
        handles = make_servers(settings, workdir, count or 1)
        with running(handles) as servers:
            value = servers[0] if count is None else GearmanCluster(servers)
            with layered(servers=[s.address for s in servers], temp_dir=workdir):
                yield value

    return server_fixture


def addresses(server: GearmanServer | GearmanCluster) -> list[str]:
    """Every "host:port" a server fixture value stands for."""
    return server.addresses if isinstance(server, GearmanCluster) else [server.address]


def job_client(server_fixture_name: str = "gearman_server") -> Any:
    """A function-scoped fixture giving an islandora_job.JobClient bound to that server."""

    @pytest.fixture
    def client_fixture(request: pytest.FixtureRequest) -> Iterator[islandora_job.JobClient]:
        server = request.getfixturevalue(server_fixture_name)
        client = islandora_job.JobClient(servers=addresses(server))
        with configured(servers=addresses(server)):
            yield client
        client.close()

    return client_fixture


def job_worker(
    server_fixture_name: str = "gearman_server",
    modules: Sequence[str] | None = None,
    count: int | None = None,
) -> Any:
    """A function-scoped fixture giving a started WorkerPool on that server.

    Modules: this argument > --islandora-job-modules > ini islandora_job_modules >
    ISLANDORA_JOB_MODULES. At teardown the workers stop and jobs the test left queued are
    drained and reported (an error with ini gearman_strict_queue = true).
    """

    @pytest.fixture
    def worker_fixture(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[WorkerPool]:
        server = request.getfixturevalue(server_fixture_name)
        job_modules = config.get(request.config, "islandora_job_modules", modules)
        if job_modules is None:
            job_modules = islandora_job.settings().modules
        pool = WorkerPool(addresses(server), job_modules, tmp_path_factory.mktemp("workers"))
        request.node.stash.setdefault(leftovers.POOLS, []).append(pool)
        queued_before = leftovers.queued(addresses(server))
        with configured(**pool.settings()):
            pool.start(1 if count is None else count)
            try:
                yield pool
            finally:
                pool.stop()
                leftovers.settle(request, addresses(server), queued_before)

    return worker_fixture
