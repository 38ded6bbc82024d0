"""When the worker launcher of a run starts: at configure when the run names job modules,
else at the end of collection when a test starts workers; else never."""

from __future__ import annotations

import pytest

USES_WORKERS = """
from islandora_job.workers import launcher

def test_before_any_worker():
    # Started before any worker was asked for.
    assert launcher.running() is not None

def test_with_a_worker(job_worker):
    assert len(job_worker) == 1
"""

NO_WORKERS = """
from islandora_job.workers import launcher

def test_no_worker(gearman_server):
    assert launcher.running() is None
"""

FACTORY_WORKERS = """
from islandora_job.workers import launcher
from pytest_islandora_job import factories

leak_worker = factories.job_worker(modules=["leakjobs"])

def test_before_any_worker():
    assert launcher.running() is not None

def test_with_a_worker(leak_worker):
    assert len(leak_worker) == 1
"""


OWN_POOL = """
from islandora_job.workers import launcher
from pytest_islandora_job.workerpool import WorkerPool, pool_settings

def test_before_any_worker():
    # No test uses job_worker: the job modules the run names started it, at configure.
    assert launcher.running() is not None

def test_with_a_pool_of_its_own(gearman_server, tmp_path):
    pool = WorkerPool(pool_settings([gearman_server.address], ["leakjobs"], tmp_path))
    pool.start(1)
    try:
        assert len(pool) == 1
    finally:
        pool.stop()
"""

# Under xdist: each worker says which launcher it has, the controller (which runs no
# test) whether it has one.
XDIST_CONFTEST = """
import os
from islandora_job.workers import launcher

def _say(who):
    running = launcher.running()
    with open(os.environ["LAUNCHERS"], "a") as out:
        out.write(f"{who} {running[0] if running else None}\\n")

def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):
        _say("controller")
"""

XDIST_TESTS = """
import os
from conftest import _say

def test_one(job_worker):
    _say(os.environ["PYTEST_XDIST_WORKER"])

def test_two(job_worker):
    _say(os.environ["PYTEST_XDIST_WORKER"])
"""


def test_a_run_naming_job_modules_has_its_launcher_before_the_first_worker(
    pytester: pytest.Pytester, project
) -> None:
    pytester.makepyfile(test_own_pool=OWN_POOL)
    pytester.runpytest_subprocess("-p", "no:xdist").assert_outcomes(passed=2)
    pytester.makepyfile(test_uses_workers=USES_WORKERS)
    pytester.runpytest_subprocess("-p", "no:xdist", "test_uses_workers.py").assert_outcomes(
        passed=2
    )


def test_under_xdist_each_worker_has_a_launcher_and_the_controller_none(
    pytester: pytest.Pytester, project, monkeypatch: pytest.MonkeyPatch
) -> None:
    said = pytester.path / "launchers.txt"
    monkeypatch.setenv("LAUNCHERS", str(said))
    pytester.makeconftest(XDIST_CONFTEST)
    pytester.makepyfile(test_xdist=XDIST_TESTS)
    pytester.runpytest_subprocess("-n", "2", "--dist", "each").assert_outcomes(passed=4)
    lines = dict.fromkeys(said.read_text().splitlines())
    by_who: dict[str, set[str]] = {}
    for line in lines:
        who, pid = line.split()
        by_who.setdefault(who, set()).add(pid)
    assert by_who.pop("controller") == {"None"}
    assert set(by_who) == {"gw0", "gw1"}
    # One launcher per xdist worker, each its own, for both its tests.
    pids = [next(iter(p)) for p in by_who.values()]
    assert all(len(p) == 1 for p in by_who.values()) and "None" not in pids
    assert len(set(pids)) == 2


@pytest.mark.parametrize(
    ("suite", "passed"),
    [(FACTORY_WORKERS, 2), (NO_WORKERS, 1)],
    ids=["collection-finds-workers", "no-worker-tests"],
)
def test_a_run_naming_no_job_modules_starts_it_only_when_collection_finds_workers(
    pytester: pytest.Pytester, project, suite: str, passed: int
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_suite=suite)
    pytester.runpytest_subprocess("-p", "no:xdist").assert_outcomes(passed=passed)
