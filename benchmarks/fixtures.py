"""4. What the fixtures cost.

- gearman_server start-to-ready per backend and queue type (make_servers + start, as the
  fixture runs them), next to a bare gearmand exec-to-ready: the same command line (and the
  same queue database, already up) started with Popen, or with `docker run` for the docker
  backend, and polled with admin `version` every millisecond. The docker backend is measured
  when a Docker daemon answers (DOCKER_HOST, as `eval "$(scripts/docker-up)"` sets it).
- job_worker start-to-registered and stop (WorkerPool, as the fixture runs it), next to the C
  worker `gearman -w` exec-to-registered and SIGTERM-to-gone, and to the interpreter start
  with the worker's imports.
- Per-test overhead: a generated 50-test suite using job_worker against the same suite using
  only gearman_server, each run by pytest in a subprocess.
- A generated 40-test suite whose tests each run a foreground job on one session-scoped
  worker pool, against the same tests each with a job_worker of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import (
    JOB_MODULE,
    REPO,
    Row,
    Stats,
    child_env,
    describe_error,
    function_workers,
    gearmand,
    python,
    stop_process,
    timed,
    unavailable,
    wait_until,
    workdir,
)
from benchmarks.roundtrip import C_FUNCTION, c_argv, spawn
from islandora_job.gearman.admin import GearmanAdmin
from islandora_job.gearman.connection import ServerUnavailable
from islandora_job.workers import launcher
from pytest_islandora_job.config import ServerSettings
from pytest_islandora_job.servers import GearmanServer, make_servers
from pytest_islandora_job.servers.process import ProcessGearmanServer
from pytest_islandora_job.workerpool import WorkerPool, pool_settings

SECTION = "4 fixtures"
QUEUES = ("builtin", "mysql", "postgres", "sqlite")
SERVER_TARGET_MS = 30.0
WORKER_START_TARGET_MS = 15.0
WORKER_STOP_TARGET_MS = 100.0
PER_TEST_TARGET_MS = 20.0
SUITE_TESTS = 50
# Runs of each suite pair: the per-test cost is a difference of two wall times over 50
# tests, whose median settles with more runs than the slow figures get.
SUITE_RUNS = 5
SHARED_TESTS = 40


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def _poll_version(address: str, start: float, exited: Callable[[], int | None], log: Path) -> None:
    """Poll admin `version` every millisecond until it answers; RuntimeError when exited()
    gives an exit status first, TimeoutError after 30 s."""
    while True:
        try:
            with GearmanAdmin(address, timeout=1.0) as admin:
                admin.version()
            return
        except (ServerUnavailable, OSError):
            code = exited()
            if code is not None:
                raise RuntimeError(f"bare gearmand exited {code}: see {log}") from None
            if time.perf_counter() - start > 30:
                raise TimeoutError(f"bare gearmand not ready on {address} within 30 s") from None
            time.sleep(0.001)


def exec_to_ready(
    argv: list[str], address: str, log: Path, env: dict[str, str] | None = None
) -> float:
    """Seconds from exec to gearmand answering admin `version`; the child is stopped after."""
    with log.open("ab") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, env=env
        )
    try:
        _poll_version(address, start, proc.poll, log)
        return time.perf_counter() - start
    finally:
        stop_process(proc)


def _docker_answers() -> str | None:
    """None when a Docker daemon answers, else why not."""
    if shutil.which("docker") is None:
        return "no docker command"
    try:
        done = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            timeout=5,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "the Docker daemon did not answer within 5 s"
    if done.returncode:
        return 'no Docker daemon answers (start one: eval "$(scripts/docker-up)")'
    return None


def docker_run_to_ready(server: GearmanServer, log: Path) -> float:
    """Seconds from `docker run` of the fixture's image and gearmand command line to gearmand
    answering admin `version` on the fixture's published port; the container is removed
    after. The fixture's own container must be stopped (its port free)."""
    from pytest_islandora_job.servers.docker import GEARMAN_PORT

    image = subprocess.run(
        ["docker", "inspect", "--format", "{{.Config.Image}}", str(server.container_id)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    name = f"bench-bare-gearmand-{os.getpid()}-{server.port}"
    argv = [
        "docker", "run", "--detach", "--rm", "--name", name, "--entrypoint", "gearmand",
        "--user", f"{os.getuid()}:{os.getgid()}",
        "--publish", f"127.0.0.1:{server.port}:{GEARMAN_PORT}",
        image, *server.command(),
    ]  # fmt: skip
    start = time.perf_counter()
    try:
        subprocess.run(argv, capture_output=True, check=True, timeout=60)
        _poll_version(server.address, start, lambda: None, log)
        return time.perf_counter() - start
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, timeout=60)


def server_start(backend: str, queue: str, runs: int) -> list[Row]:
    """Fixture start-to-ready next to the bare gearmand (process: exec; docker: `docker run`,
    in-memory queue only) of the same command line, per run in the same order."""
    name = f"gearman_server {backend}/{queue} start-to-ready"
    fixture: list[float] = []
    made: list[float] = []
    bare: list[float] = []
    with workdir(f"server-{backend}-{queue}") as where:
        for i in range(runs + 1):  # run 0 warms caches (and builds templates and images)
            start = time.perf_counter()
            server = make_servers(ServerSettings(backend=backend, queue=queue), where / f"run{i}")[
                0
            ]
            made_at = time.perf_counter()
            try:
                server.start()
                elapsed = time.perf_counter() - start
                log = where / f"bare{i}.log"
                if backend == "process":
                    assert isinstance(server, ProcessGearmanServer)
                    argv, env = server.command(), server.environment()
                    server.stop()  # gearmand only: the queue database stays up for the bare run
                    bare_elapsed: float | None = exec_to_ready(argv, server.address, log, env)
                elif queue == "builtin":
                    server.stop()
                    bare_elapsed = docker_run_to_ready(server, log)
                else:
                    bare_elapsed = None
            finally:
                server.close()
            if i:
                fixture.append(elapsed)
                made.append(made_at - start)
                if bare_elapsed is not None:
                    bare.append(bare_elapsed)
    value = Stats.of([_ms(s) for s in fixture])
    made_row = Row(
        SECTION,
        f"  {backend}/{queue}: of which make_servers (port claim)",
        "ms",
        Stats.of([_ms(s) for s in made]),
    )
    if not bare:
        return [Row(SECTION, name, "ms", value, note="includes the queue database"), made_row]
    what = "exec" if backend == "process" else "docker run"
    ref = Stats.of([_ms(s) for s in bare])
    over = Stats.of([_ms(f - b) for f, b in zip(fixture, bare, strict=True)])
    extra = Row(SECTION, f"  {backend}/{queue}: fixture minus bare gearmand", "ms", over)
    if queue == "builtin":
        extra.target = f"<= {SERVER_TARGET_MS:.0f} ms"
        extra.met = over.median <= SERVER_TARGET_MS
    else:
        extra.note = "includes booting the queue database"
    return [Row(SECTION, name, "ms", value, f"bare gearmand {what}-to-ready", ref), extra, made_row]


def _c_worker_start_stop(address: str) -> tuple[float, float]:
    start = time.perf_counter()
    proc = spawn(c_argv(address, "-w", "-f", C_FUNCTION))
    try:
        wait_until(lambda: function_workers(address, C_FUNCTION) >= 1, 10, "C worker registering")
        started = time.perf_counter() - start
    finally:
        stop_start = time.perf_counter()
        stop_process(proc)
        stopped = time.perf_counter() - stop_start
    wait_until(lambda: function_workers(address, C_FUNCTION) == 0, 10, "C worker leaving")
    return started, stopped


def _import_worker_modules() -> None:
    subprocess.run([python(), "-c", "import islandora_job.cli"], env=child_env(), check=True)


def worker_start_stop(runs: int) -> list[Row]:
    """job_worker's WorkerPool start(1) and stop() next to the C worker's, alternating."""
    starts, stops, c_starts, c_stops, imports = [], [], [], [], []
    with workdir("worker") as where, gearmand(where / "gearmand") as server:
        pool = WorkerPool(pool_settings([server.address], [JOB_MODULE], where / "pool"))
        (where / "pool").mkdir()
        pool.start(1)  # warm up
        pool.stop()
        _c_worker_start_stop(server.address)
        for _ in range(runs):
            starts.append(timed(lambda: pool.start(1)))
            stops.append(timed(pool.stop))
            c_start, c_stop = _c_worker_start_stop(server.address)
            c_starts.append(c_start)
            c_stops.append(c_stop)
            imports.append(timed(_import_worker_modules))
        # The same start without the launcher: a new interpreter per worker.
        launcher.disable()
        try:
            spawned = [timed(lambda: (pool.start(1), pool.stop())) for _ in range(runs)]
        finally:
            launcher.enable()
    start_stats = Stats.of([_ms(s) for s in starts])
    stop_stats = Stats.of([_ms(s) for s in stops])
    return [
        Row(
            SECTION,
            "job_worker start-to-registered",
            "ms",
            start_stats,
            "C gearman -w exec-to-registered",
            Stats.of([_ms(s) for s in c_starts]),
            f"<= {WORKER_START_TARGET_MS:.0f} ms",
            start_stats.median <= WORKER_START_TARGET_MS,
        ),
        Row(
            SECTION,
            "  the same, spawned (launcher disabled), start + stop",
            "ms",
            Stats.of([_ms(s) for s in spawned]),
        ),
        Row(
            SECTION,
            "  interpreter start + worker imports (python -c 'import islandora_job.cli')",
            "ms",
            Stats.of([_ms(s) for s in imports]),
        ),
        Row(
            SECTION,
            "job_worker stop",
            "ms",
            stop_stats,
            "C gearman -w SIGTERM-to-gone",
            Stats.of([_ms(s) for s in c_stops]),
            f"<= {WORKER_STOP_TARGET_MS:.0f} ms",
            stop_stats.median <= WORKER_STOP_TARGET_MS,
        ),
    ]


_INI = f"""[pytest]
islandora_job_modules = {JOB_MODULE}
"""


def _suite(fixture: str, check: str) -> str:
    tests = "\n\n".join(f"def test_{i}({fixture}):\n    assert {check}" for i in range(SUITE_TESTS))
    return f'"""Generated by benchmarks/fixtures.py."""\n\n\n{tests}\n'


def write_suites(where: Path) -> tuple[Path, Path]:
    """Two 50-test suites with the same bodies: one asks for job_worker, one does not."""
    with_worker = where / "with_worker"
    without = where / "without_worker"
    for folder, fixture, check in (
        (with_worker, "job_worker", "len(job_worker) == 1"),
        (without, "gearman_server", "gearman_server.address"),
    ):
        folder.mkdir()
        (folder / "pytest.ini").write_text(_INI)
        (folder / "test_generated.py").write_text(_suite(fixture, check))
    return with_worker, without


def run_suite(folder: Path, env: dict[str, str] | None = None, tests: int = SUITE_TESTS) -> float:
    """Wall seconds of pytest over a generated suite of ``tests`` tests (in ``env``, default
    child_env()); RuntimeError unless all tests pass."""
    argv = [python(), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(folder)]
    start = time.perf_counter()
    done = subprocess.run(
        argv,
        cwd=folder,
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode or f"{tests} passed" not in done.stdout:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise RuntimeError(f"generated suite {folder.name} did not pass: {' | '.join(tail)}")
    return elapsed


# The project's own packages and the bench's job module, as an editable install has them.
_OWN_CODE = (
    "src/islandora_job",
    "src/pytest_islandora_job",
    "benchmarks/__init__.py",
    "benchmarks/jobs.py",
)


# A way a suite runs: its label, its environment (None: child_env()), held to the target.
Way = tuple[str, dict[str, str] | None, bool]


def _compilations(where: Path) -> list[Way]:
    """The ways a suite runs, as (label, environment, held to the target):

    - byte-compiled: as `make test` leaves the tree;
    - an editable install without byte code of its own: the project's source (a copy with
      no __pycache__, first on the import path) compiled in every process and nothing
      written, while the standard library and the installed packages are byte-compiled,
      as an installer leaves them;
    - nothing byte-compiled at all (the standard library and pytest too), for reference.
    """
    source = where / "editable"
    for part in _OWN_CODE:
        origin, copy = REPO / part, source / part.removeprefix("src/")
        if origin.is_dir():
            shutil.copytree(origin, copy, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(origin, copy)
    base = child_env()
    editable = {
        **base,
        "PYTHONPATH": os.pathsep.join([str(source), base["PYTHONPATH"]]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    (where / "no-pycache").mkdir()
    nothing = {**editable, "PYTHONPYCACHEPREFIX": str(where / "no-pycache")}
    return [
        ("byte-compiled", None, True),
        ("editable install, no byte code of its own", editable, True),
        ("nothing byte-compiled, the standard library too", nothing, False),
    ]


def _rounds(
    ways: list[Way],
    runs: int,
    reference: Callable[[dict[str, str] | None], float],
    figure: Callable[[dict[str, str] | None], float],
) -> dict[str, tuple[list[float], list[float]]]:
    """Per way (label), the `runs` reference and figure measurements, in rounds that each
    measure every way once (reference, then figure), so that a drift of the machine over
    the section weighs on every way alike."""
    times: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label, *_ in ways}
    for _ in range(runs):
        for label, env, _target in ways:
            times[label][0].append(reference(env))
            times[label][1].append(figure(env))
    return times


def suite_overhead(runs: int) -> list[Row]:
    """Wall time of both suites (alternating) and the per-test overhead of job_worker, in
    each way of _compilations; each round runs every way once, so that a drift of the
    machine over the section weighs on all of them alike."""
    rows: list[Row] = []
    with workdir("suite") as where:
        with_worker, without = write_suites(where)
        ways = _compilations(where)
        times = _rounds(
            ways, runs, lambda env: run_suite(without, env), lambda env: run_suite(with_worker, env)
        )
        for label, _env, target in ways:
            without_times, with_times = times[label]
            per_test = Stats.of(
                [_ms(w - wo) / SUITE_TESTS for w, wo in zip(with_times, without_times, strict=True)]
            )
            rows += [
                Row(
                    SECTION,
                    f"{SUITE_TESTS}-test suite with job_worker, wall, {label}",
                    "s",
                    Stats.of(with_times),
                    "same suite without job_worker",
                    Stats.of(without_times),
                ),
                Row(
                    SECTION,
                    f"  job_worker overhead per test, {label}",
                    "ms",
                    per_test,
                    target=f"<= {PER_TEST_TARGET_MS:.0f} ms" if target else "",
                    met=per_test.median <= PER_TEST_TARGET_MS if target else None,
                ),
            ]
    return rows


_SHARED_CONFTEST = f'''"""Generated by benchmarks/fixtures.py: one worker pool for the whole session."""

from collections.abc import Iterator

import pytest

from pytest_islandora_job.workerpool import WorkerPool, pool_settings


@pytest.fixture(scope="session")
def shared_worker(gearman_server, tmp_path_factory) -> Iterator[WorkerPool]:
    pool = WorkerPool(
        pool_settings([gearman_server.address], [{JOB_MODULE!r}], tmp_path_factory.mktemp("pool"))
    )
    pool.start(1)
    yield pool
    pool.stop()
'''


def _round_trips(fixture: str) -> str:
    tests = "\n\n".join(
        f"def test_{i}({fixture}):\n    assert islandora_job.submit('echo', {i}, timeout=30) == [{i}]"
        for i in range(SHARED_TESTS)
    )
    return f'"""Generated by benchmarks/fixtures.py."""\n\nimport islandora_job\n\n\n{tests}\n'


def shared_worker_suite(runs: int) -> list[Row]:
    """Wall time of a 40-test suite on one session-scoped worker (each test a foreground
    job), against the same tests each with a job_worker of its own, in each way of
    _compilations, every way once a round."""
    rows: list[Row] = []
    with workdir("shared") as where:
        shared, own = where / "shared_worker", where / "own_workers"
        for folder, fixture in ((shared, "shared_worker"), (own, "job_worker")):
            folder.mkdir()
            (folder / "pytest.ini").write_text(_INI)
            (folder / "test_generated.py").write_text(_round_trips(fixture))
        (shared / "conftest.py").write_text(_SHARED_CONFTEST)
        ways = _compilations(where)
        times = _rounds(
            ways,
            runs,
            lambda env: run_suite(own, env, SHARED_TESTS),
            lambda env: run_suite(shared, env, SHARED_TESTS),
        )
        for label, _env, _target in ways:
            own_times, shared_times = times[label]
            rows.append(
                Row(
                    SECTION,
                    f"{SHARED_TESTS}-test suite, one shared worker, wall, {label}",
                    "s",
                    Stats.of(shared_times),
                    "the same tests, a job_worker each",
                    Stats.of(own_times),
                )
            )
    return rows


def run(runs: int, slow_runs: int) -> list[Row]:
    """Every fixture figure; runs repetitions for the quick ones, slow_runs for the rest."""
    rows: list[Row] = []
    docker = _docker_answers()
    for backend in ("process", "docker"):
        if backend == "docker" and docker is not None:
            label = "gearman_server docker/* start-to-ready"
            rows.append(unavailable(SECTION, label, "ms", docker))
            continue
        for queue in QUEUES:
            label = f"gearman_server {backend}/{queue} start-to-ready"
            quick = queue == "builtin" and backend == "process"
            try:
                rows += server_start(backend, queue, runs if quick else slow_runs)
            except Exception as exc:
                rows.append(unavailable(SECTION, label, "ms", describe_error(exc)))
    for measure in (
        lambda: worker_start_stop(runs),
        lambda: suite_overhead(min(runs, SUITE_RUNS)),
        lambda: shared_worker_suite(slow_runs),
    ):
        try:
            rows += measure()
        except Exception as exc:
            rows.append(unavailable(SECTION, "job_worker", "ms", describe_error(exc)))
    return rows
