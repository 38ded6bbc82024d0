"""Build more fixtures in a conftest, as the default ones are built.

from pytest_islandora_job import factories

sqlite_gearman = factories.gearman_server(queue="sqlite")
sqlite_worker = factories.job_worker("sqlite_gearman", count=2)
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal

import pytest

import islandora_job
from islandora_job.config import layered
from islandora_job.queue import StatusReader
from pytest_islandora_job import config, leftovers
from pytest_islandora_job.cluster import GearmanCluster
from pytest_islandora_job.servers import GearmanServer, ServerStartError, make_servers
from pytest_islandora_job.workerpool import PoolDirs, WorkerPool, pool_settings

Scope = Literal["session", "package", "module", "class", "function"]


@contextlib.contextmanager
def running(servers: Sequence[GearmanServer]) -> Iterator[list[GearmanServer]]:
    """Start the servers, yield them, close them all whatever happens.

    A server that cannot start fails the test with one line and its log tail, not a traceback.
    When the backend itself is missing (no Docker engine) the test is skipped with that line
    instead, except under CI (environment CI=true), where a missing backend is a failure.
    """
    started: list[GearmanServer] = []
    failure: ServerStartError | None = None
    try:
        for server in servers:
            started.append(server)
            server.start()
    except ServerStartError as error:
        failure = error
    if failure is not None:
        # Outside the except block, so the report shows one error, not "during handling...".
        for server in reversed(started):
            server.close()
        if failure.backend_missing and not _under_ci():
            pytest.skip(str(failure))
        pytest.fail(str(failure), pytrace=False)
    try:
        yield started
    finally:
        for server in reversed(started):
            server.close()


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def gearman_server(
    queue: str | None = None,
    backend: str | None = None,
    port: int | None = None,
    listen: str | None = None,
    threads: int | None = None,
    job_retries: int | None = None,
    extra_args: Sequence[str] | None = None,
    count: int | None = None,
    scope: Scope = "session",
    params: Sequence[dict[str, Any]] | None = None,
    doc: str | None = None,
) -> Any:
    """A fixture yielding a started gearmand (or a GearmanCluster of `count` of them).

    Arguments override the command-line options and ini keys; None means "not set".
    `params`, a list of {"queue": ..., "backend": ...} dicts, runs each test once per entry
    (ids like "docker-sqlite"); a fixture parametrized indirectly may also get the queue type
    as a bare string. While the fixture is active, islandora_job's module-level API and the
    workers it starts use these servers. `doc` is the fixture's docstring, which
    `pytest --fixtures` shows. Raises ValueError when count is below 1.
    """
    if count is not None and count < 1:
        raise ValueError(f"count must be 1 or more, not {count}")
    ids = None if params is None else ["-".join(str(v) for v in p.values()) for p in params]

    def server_fixture(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[GearmanServer | GearmanCluster]:
        """A started gearmand (a GearmanServer, or a GearmanCluster when built with count=N),
        made by factories.gearman_server(); islandora_job's module-level API uses it while
        it is active."""
        param = getattr(request, "param", None)
        chosen = param if isinstance(param, dict) else {"queue": param}
        settings = config.server_settings(
            request.config,
            queue=chosen.get("queue") or queue,
            backend=chosen.get("backend") or backend,
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
            # While the fixture lives, the module-level API uses its servers and its workdir
            # (the run's job modules are in force from pytest_configure; a test's own
            # settings come in pytest_runtest_call).
            with layered(servers=[s.address for s in servers], temp_dir=workdir):
                yield value

    server_fixture.__doc__ = doc or server_fixture.__doc__
    return pytest.fixture(scope=scope, params=params, ids=ids)(server_fixture)


def addresses(server: GearmanServer | GearmanCluster) -> list[str]:
    """Every "host:port" a server fixture value stands for."""
    return server.addresses if isinstance(server, GearmanCluster) else [server.address]


def _taking(fixture_name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Let pytest see `fixture_name` as an argument of the decorated function (it arrives in
    its **kwargs), so that a parametrized server fixture parametrizes the tests using it."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(function)
        kept = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        named = inspect.Parameter(fixture_name, inspect.Parameter.KEYWORD_ONLY)
        function.__signature__ = signature.replace(parameters=[*kept, named])  # type: ignore[attr-defined]
        return function

    return decorate


def job_client(server_fixture_name: str = "gearman_server", doc: str | None = None) -> Any:
    """A function-scoped fixture giving an islandora_job.JobClient bound to that server;
    `doc` is its docstring, which `pytest --fixtures` shows."""

    @_taking(server_fixture_name)
    def client_fixture(**server_fixture: Any) -> Iterator[islandora_job.JobClient]:
        """An islandora_job.JobClient bound to a server fixture, made by
        factories.job_client(); closed after the test."""
        server = server_fixture[server_fixture_name]
        with islandora_job.JobClient(servers=addresses(server)) as client:
            yield client

    client_fixture.__doc__ = doc or client_fixture.__doc__
    return pytest.fixture(client_fixture)


def async_job_client(server_fixture_name: str = "gearman_server") -> Any:
    """A function-scoped async fixture giving an islandora_job.aio.AsyncJobClient bound to
    that server, closed after the test; needs pytest-asyncio (imported here, not by the
    plugin: without it the default `async_job_client` fixture is simply not defined)."""
    try:
        import pytest_asyncio
    except ImportError:
        raise RuntimeError(
            "the async_job_client fixture needs pytest-asyncio: pip install pytest-asyncio"
        ) from None
    from islandora_job.aio import AsyncJobClient

    @pytest_asyncio.fixture
    @_taking(server_fixture_name)
    async def async_client_fixture(**server_fixture: Any) -> AsyncIterator[AsyncJobClient]:
        server = server_fixture[server_fixture_name]
        async with AsyncJobClient(servers=addresses(server)) as client:
            yield client

    return async_client_fixture


def job_worker(
    server_fixture_name: str = "gearman_server",
    modules: Sequence[str] | None = None,
    count: int | None = None,
    doc: str | None = None,
) -> Any:
    """A function-scoped fixture giving a started WorkerPool on that server.

    Modules: this argument > --islandora-job-modules > ini islandora_job_modules >
    ISLANDORA_JOB_MODULES. At teardown the workers stop and jobs the test left queued are
    drained and reported (an error with ini gearman_strict_queue = true). `doc` is the
    fixture's docstring, which `pytest --fixtures` shows.
    """

    @_taking(server_fixture_name)
    def worker_fixture(
        request: pytest.FixtureRequest,
        _islandora_job_pool_dirs: PoolDirs,
        _islandora_job_queues: StatusReader,
        **server_fixture: Any,
    ) -> Iterator[WorkerPool]:
        """Started pidfile-managed workers (a WorkerPool) on a server fixture, made by
        factories.job_worker(); stopped at teardown, which reports jobs left queued."""
        server = addresses(server_fixture[server_fixture_name])
        job_modules = config.get(request.config, "islandora_job_modules", modules)
        workdir = _islandora_job_pool_dirs.make(request.node.name)
        pool = WorkerPool(pool_settings(server, job_modules, workdir))
        queued_before = leftovers.queued(_islandora_job_queues, server)
        pool.start(1 if count is None else count)
        try:
            yield pool
        finally:
            pool.stop()
            leftovers.settle(request, _islandora_job_queues, server, queued_before)

    worker_fixture.__doc__ = doc or worker_fixture.__doc__
    setattr(worker_fixture, _STARTS_WORKERS, True)
    return pytest.fixture(worker_fixture)


# The attribute that marks the fixture functions job_worker() makes (see starts_workers).
_STARTS_WORKERS = "_islandora_job_starts_workers"


def starts_workers(item: pytest.Item) -> bool:
    """True when the test uses a fixture made by job_worker() (directly or through
    another fixture)."""
    info = getattr(item, "_fixtureinfo", None)
    definitions = getattr(info, "name2fixturedefs", {})
    return any(
        getattr(getattr(definition, "func", None), _STARTS_WORKERS, False)
        for chain in definitions.values()
        for definition in chain
    )
