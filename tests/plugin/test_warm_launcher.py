"""The worker launcher of a run starts when collection finds a test that starts workers."""

from __future__ import annotations

import pytest

USES_WORKERS = """
from islandora_job.workers import launcher

def test_before_any_worker():
    # Started at the end of collection, before any worker was asked for.
    assert launcher.running() is not None

def test_with_a_worker(job_worker):
    assert len(job_worker) == 1
"""

NO_WORKERS = """
from islandora_job.workers import launcher

def test_no_worker(gearman_server):
    assert launcher.running() is None
"""


def test_a_run_with_worker_tests_starts_its_launcher_at_collection(
    pytester: pytest.Pytester, project
) -> None:
    pytester.makepyfile(test_uses_workers=USES_WORKERS)
    pytester.runpytest_subprocess("-p", "no:xdist").assert_outcomes(passed=2)


def test_a_run_without_worker_tests_starts_no_launcher(pytester: pytest.Pytester, project) -> None:
    pytester.makepyfile(test_no_workers=NO_WORKERS)
    pytester.runpytest_subprocess("-p", "no:xdist").assert_outcomes(passed=1)
