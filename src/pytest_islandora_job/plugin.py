"""The pytest plugin: options, ini keys, report header, log sections and the default fixtures."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import textwrap
import weakref
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from islandora_job.api import checking_jobs, refusing_default_servers
from islandora_job.config import ENV_MODULES, layered, settings
from islandora_job.gearman.client import ServerError
from islandora_job.queue import StatusReader
from islandora_job.registry import RegistryError, load_registry
from islandora_job.workers import launcher
from islandora_job.workers.runtime import ENV_WATCH_PID
from pytest_islandora_job import config as options
from pytest_islandora_job import factories, ports, processes
from pytest_islandora_job.cluster import GearmanCluster
from pytest_islandora_job.databases import scratch
from pytest_islandora_job.leftovers import LEFTOVERS
from pytest_islandora_job.readiness import ServerStartError
from pytest_islandora_job.servers.base import GearmanServer, tail
from pytest_islandora_job.workerpool import PoolDirs, WorkerPool, live_pools, stop_pools

LOG_LINES = 40
# Where a test whose job modules cannot be loaded carries why (user_properties, which xdist
# sends to the controller), and where the run keeps what its job modules setting gave.
REGISTRY_PROBLEM = "islandora_job_registry_problem"
_REGISTRY_CHECK = pytest.StashKey[str]()
# Seconds a worker or server gets to end after Ctrl-C before SIGKILL.
CTRL_C_GRACE = 1.0


def pytest_addoption(parser: pytest.Parser) -> None:
    """Every option has an ini twin; all sit in one --help group."""
    group = parser.getgroup("islandora-job", "islandora-job: gearmand, queues and job workers")
    for option in options.OPTIONS:
        default = "" if option.default is None else str(option.default)
        group.addoption(
            options.flag(option),
            dest=option.name,
            default=None,
            help=option.help,
            **options.flag_arguments(option),
        )
        parser.addini(option.name, f"{option.help} (default: {default or 'none'})", default=None)


def pytest_configure(config: pytest.Config) -> None:
    """Check the settings, tag this run's children, end leftovers of runs killed outright."""
    options.validate(config)
    config.pluginmanager.register(ModuleProblems(), "islandora-job-module-problems")
    run_settings = contextlib.ExitStack()
    config.add_cleanup(run_settings.close)
    # In a test, a job name nobody registered is a typo, even with no job module at all.
    run_settings.enter_context(checking_jobs())
    # No foreground call of a test waits forever: the library's default timeout, for the run.
    job_timeout = options.get(config, "gearman_job_timeout")
    if job_timeout:
        try:
            run_settings.enter_context(layered(default_timeout=job_timeout))
        except ValueError as exc:
            raise pytest.UsageError(
                f"--gearman-job-timeout / ini gearman_job_timeout: {exc}"
            ) from None
    # The run's job modules are in force for every test, with or without a server fixture.
    named = _run_modules(config)
    if named is not None:
        run_settings.enter_context(layered(modules=named[0]))
    processes.run_tag()
    # Workers this process starts end when it does, however it ends (see run_worker).
    os.environ[ENV_WATCH_PID] = str(os.getpid())
    processes.reap_leftovers()
    ports.sweep()
    scratch.sweep_leftovers()
    sweeper = Sweeper(processes.running(), live_pools())
    config.pluginmanager.register(sweeper, "islandora-job-sweeper")
    # A run that names job modules most likely starts workers (through job_worker, or a
    # WorkerPool of its own): the worker launcher starts now and imports the library while
    # pytest collects. Not in an xdist controller, which runs no test.
    controller = bool(getattr(config.option, "numprocesses", None)) and not hasattr(
        config, "workerinput"
    )
    # (The run's modules are in force by now: settings() has them, or the environment's.)
    if not controller and settings().modules:
        launcher.enable()
        launcher.prestart()


class Sweeper:
    """Ends what this run started and teardown missed, at Ctrl-C and at the end of the run.

    Children and worker pools that were running before the run configured belong to an
    outer run (a pytester run inside a test session) and are left alone.
    """

    def __init__(self, outer: set[int], outer_pools: list[WorkerPool]) -> None:
        self.outer = outer
        self.outer_pools = weakref.WeakSet(outer_pools)

    def pytest_keyboard_interrupt(self) -> None:
        """Ctrl-C: end this run's workers and children now, all at once and with a short
        grace (a job in hand is not waited for), rather than in turn at teardown."""
        stop_pools([p for p in live_pools() if p not in self.outer_pools], grace=CTRL_C_GRACE)
        processes.stop_all(keep=self.outer, grace=CTRL_C_GRACE)

    def pytest_unconfigure(self) -> None:
        """Nothing the run started outlives it, whatever teardown missed."""
        processes.stop_all(keep=self.outer)


def pytest_collection_finish(session: pytest.Session) -> None:
    """When a collected test starts workers, start the worker launcher now (if configure did
    not): it imports the library while the first tests set up, rather than in the first
    worker's start."""
    if any(factories.starts_workers(item) for item in session.items):
        launcher.enable()
        launcher.prestart()


def _gearmand_version(exe: str) -> str:
    from pytest_islandora_job.servers.process import resolve_gearmand

    try:
        found = resolve_gearmand(exe)
    except ServerStartError:
        return f"{exe} (not found)"
    try:
        out = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError) as error:
        return f"{found} ({error})"
    words = out.stdout.split()  # "gearmand 1.1.20+ds - https://..."
    return f"{found} {words[1] if len(words) > 1 else '(version unknown)'}"


def pytest_report_header(config: pytest.Config) -> str:
    """Backend, gearmand binary and version, queue types."""
    backend = options.get(config, "gearman_backend")
    chosen = backend is not None
    if backend is None:
        backend = options.default_backend(options.get(config, "gearmand_exec"))
    queue = options.get(config, "gearman_queue")
    queues = " ".join(options.get(config, "gearman_queues"))
    if backend == "external":
        where = ",".join(options.get(config, "gearman_servers") or []) or "(no --gearman-servers)"
    elif backend == "docker":
        from pytest_islandora_job.docker.image import image_tag

        where = f"image {options.get(config, 'gearman_image') or image_tag('gearmand')}"
    elif backend == "embedded":
        from islandora_job.server import VERSION

        gearmand = _gearmand_version(options.get(config, "gearmand_exec"))
        why = "" if chosen else f" in place of {gearmand}"
        where = f"embedded Python server {VERSION.decode()}{why}"
    else:
        where = _gearmand_version(options.get(config, "gearmand_exec"))
    return f"islandora-job: backend {backend}, gearmand {where}, queue {queue}, persistent queues {queues}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run tests using persistent_gearman_server once per queue type of ini gearman_queues."""
    if "persistent_gearman_server" in metafunc.fixturenames:
        queues = options.get(metafunc.config, "gearman_queues")
        metafunc.parametrize(
            "persistent_gearman_server", queues, indirect=True, ids=queues, scope="session"
        )


def _logs_of(item: pytest.Item) -> list[tuple[str, Path]]:
    logs: list[tuple[str, Path]] = []
    for name, value in getattr(item, "funcargs", {}).items():
        servers = value if isinstance(value, GearmanCluster) else [value]
        for i, server in enumerate(servers):
            if isinstance(server, GearmanServer) and server.log_path is not None:
                logs.append((f"gearmand log ({name}[{i}] {server.address})", server.log_path))
        if isinstance(value, WorkerPool):
            logs += [(f"worker log ({name}: {path.name})", path) for path in value.log_paths]
    return logs


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """During the test, the module-level API uses the first server fixture among the test's
    arguments (several session servers may be active, and the newest need not be this
    test's) and, when the test has a worker pool, that pool's job modules and temp dir: the
    one settings push of a test."""
    funcargs = getattr(item, "funcargs", {})
    values = [funcargs.get(name) for name in getattr(item, "fixturenames", ())]
    servers = [v for v in values if isinstance(v, GearmanServer | GearmanCluster)]
    pools = [v for v in values if isinstance(v, WorkerPool)]
    if not servers:
        # No server of the test's own: the library must not fall back on 127.0.0.1:4730.
        with refusing_default_servers(f"{item.nodeid} uses no Gearman server fixture"):
            return (yield)
    pool = pools[0].settings if pools else None
    with layered(
        servers=factories.addresses(servers[0]),
        modules=None if pool is None else pool.modules,
        temp_dir=None if pool is None else pool.temp_dir,
    ):
        return (yield)


def _run_modules(config: pytest.Config) -> tuple[list[str], str] | None:
    """The job modules the run's option or ini key names and which of them does; None when
    neither does (the environment variable decides)."""
    option = config.getoption("islandora_job_modules")
    if option is not None:
        return options.get(config, "islandora_job_modules"), "option --islandora-job-modules"
    overridden = any(
        o.split("=", 1)[0].strip() == "islandora_job_modules"
        for o in (config.getoption("override_ini") or ())
    )
    if overridden:
        return options.get(config, "islandora_job_modules"), "-o islandora_job_modules"
    if config.getini("islandora_job_modules"):
        where = f" in {config.inipath}" if config.inipath else ""
        return options.get(config, "islandora_job_modules"), f"ini islandora_job_modules{where}"
    return None


def _modules_source(config: pytest.Config) -> tuple[list[str], str]:
    """The run's job modules and where they came from, as a reader would look for them."""
    return _run_modules(config) or (list(settings().modules), f"environment variable {ENV_MODULES}")


def _registry_problem(config: pytest.Config, error: RegistryError) -> str:
    """Why the run's job modules cannot be loaded, checked once per run (at the first
    failure, when the test's sys.path is in place), naming where the setting came from;
    the error itself when the run's modules load (a factory gave its own)."""
    if _REGISTRY_CHECK not in config.stash:
        modules, source = _modules_source(config)
        try:
            load_registry(modules, found_by=source)
            config.stash[_REGISTRY_CHECK] = ""
        except RegistryError as exc:
            config.stash[_REGISTRY_CHECK] = str(exc)
    return config.stash[_REGISTRY_CHECK] or str(error)


class ModuleProblems:
    """Says once per run, at its end, why tests could not load their job modules."""

    def __init__(self) -> None:
        self.problems: dict[str, None] = {}  # in the order first seen

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect the reasons tests carry (those of xdist workers too)."""
        for key, value in report.user_properties:
            if key == REGISTRY_PROBLEM and isinstance(value, str):
                self.problems[value] = None

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """One paragraph per reason: the module, where the setting came from, the fix."""
        if self.problems:
            terminalreporter.section("islandora-job: job modules", sep="-", yellow=True)
            for problem in self.problems:
                terminalreporter.write_line(textwrap.fill(problem, width=100))


QUEUE_ERROR_HINT = (
    "gearmand answered QUEUE_ERROR: its persistent queue could not store the job. The "
    "queue's disk may be full, or its database down (gearmand's PostgreSQL queue never "
    "reconnects: restart gearmand after its database). A refused job may have been stored "
    "anyway, and jobs finished meanwhile may run again: see the README's reliability section."
)


def _persistent_queue_error(item: pytest.Item, error: BaseException) -> bool:
    """True for gearmand's QUEUE_ERROR in a test that uses a server with a persistent queue."""
    if not (isinstance(error, ServerError) and error.code == "QUEUE_ERROR"):
        return False
    for value in getattr(item, "funcargs", {}).values():
        servers = value if isinstance(value, GearmanCluster) else [value]
        if any(isinstance(s, GearmanServer) and s.database is not None for s in servers):
            return True
    return False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test carries the tail of every gearmand and worker log it used."""
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(RegistryError):
        assert isinstance(call.excinfo.value, RegistryError)
        problem = _registry_problem(item.config, call.excinfo.value)
        report.user_properties.append((REGISTRY_PROBLEM, problem))
        # One line per test; the paragraph, once, ends the run.
        report.longrepr = (
            f"{problem.split(': ', 1)[0]}: see 'islandora-job: job modules' at the end of the run"
        )
    elif report.failed:
        for title, path in _logs_of(item):
            report.sections.append((title, tail(path, LOG_LINES)))
        if call.excinfo is not None and _persistent_queue_error(item, call.excinfo.value):
            report.sections.append(("islandora-job: QUEUE_ERROR", QUEUE_ERROR_HINT))
    if call.when == "teardown":
        for described in item.stash.get(LEFTOVERS, []):
            report.sections.append(("islandora-job leftovers", described))
    return report


@pytest.fixture(scope="session")
def _islandora_job_pool_dirs(tmp_path_factory: pytest.TempPathFactory) -> PoolDirs:
    """Where job_worker fixtures put their workers' pidfiles and logs: a directory per
    test under the run's "workers" directory."""
    return PoolDirs(tmp_path_factory.mktemp("workers"))


@pytest.fixture(scope="session")
def _islandora_job_queues() -> Iterator[StatusReader]:
    """Reads the queues job_worker fixtures check for leftover jobs, over admin connections
    kept open for the run."""
    reader = StatusReader()
    yield reader
    reader.close()


gearman_server = factories.gearman_server(
    doc="""A started gearmand for the session (a GearmanServer: host, port, address, queue,
    log_path, version, pid; status(), kill(), restart()), with the queue type of
    --gearman-queue. While it is active, islandora_job's module-level API and the workers the
    fixtures start use it."""
)
persistent_gearman_server = factories.gearman_server(
    doc="""gearman_server with a persistent queue, once per queue type of ini gearman_queues
    (ids [mysql], [postgres], [sqlite]); adds persisted_jobs(), persisted_counts() and
    clear_queue(function=None)."""
)
gearman_cluster = factories.gearman_server(
    count=2,
    doc="""Two started gearmands for the session (a GearmanCluster: .addresses, indexable);
    clients and workers bound to it get every address.""",
)
job_client = factories.job_client(
    "gearman_server",
    doc="""An islandora_job.JobClient bound to gearman_server, closed after the test.""",
)
job_worker = factories.job_worker(
    "gearman_server",
    doc="""One started pidfile-managed worker on gearman_server running the job modules
    (--islandora-job-modules, ini islandora_job_modules, ISLANDORA_JOB_MODULES or entry
    points): a WorkerPool with start(count=1), stop(), pidfiles, log_paths. Stopped at
    teardown, where jobs the test left queued are drained and reported.""",
)
persistent_job_worker = factories.job_worker(
    "persistent_gearman_server",
    doc="""job_worker on persistent_gearman_server, once per queue type.""",
)
cluster_job_worker = factories.job_worker(
    "gearman_cluster",
    doc="""job_worker on gearman_cluster: the worker registers with both servers.""",
)
# Defined only where pytest-asyncio is installed: the plugin itself does not need it.
if importlib.util.find_spec("pytest_asyncio") is not None:
    async_job_client = factories.async_job_client("gearman_server")
