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


def test_a_run_with_worker_tests_has_its_launcher_before_the_first_worker(
    pytester: pytest.Pytester, project
) -> None:
    pytester.makepyfile(test_uses_workers=USES_WORKERS)
    pytester.runpytest_subprocess("-p", "no:xdist").assert_outcomes(passed=2)


def test_a_run_naming_no_job_modules_starts_it_when_collection_finds_workers(
    pytester: pytest.Pytester, project
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_factory_workers=FACTORY_WORKERS)
    pytester.runpytest_subprocess("-p", "no:xdist").assert_outcomes(passed=2)


def test_a_run_naming_no_job_modules_without_worker_tests_starts_no_launcher(
    pytester: pytest.Pytester, project
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_no_workers=NO_WORKERS)
    pytester.runpytest_subprocess("-p", "no:xdist").assert_outcomes(passed=1)
