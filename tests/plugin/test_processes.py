"""Children in their own process groups, tagged with their run; leftovers of dead runs reaped."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil

from pytest_islandora_job import processes


def _dead_tag() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return f"{proc.pid}:0.000"


def _sleeper(tag: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["sleep", "60"], env={**os.environ, processes.TAG_VAR: tag}, start_new_session=True
    )


def test_a_child_leads_its_own_session_and_carries_the_run_tag(tmp_path):
    child = processes.spawn(["sleep", "60"], tmp_path / "sleep.log")
    try:
        assert os.getsid(child.pid) == child.pid  # a SIGKILL of the run does not reach it
        assert psutil.Process(child.pid).environ()[processes.TAG_VAR] == processes.run_tag()
        assert child.pid in processes.running()
    finally:
        processes.stop(child, grace=1)
    assert child.pid not in processes.running()


def test_reaping_ends_processes_of_dead_runs_only():
    orphan = _sleeper(_dead_tag())
    ours = _sleeper(processes.run_tag())
    try:
        processes.reap_leftovers()
        # A concurrent run may have reaped the orphan first: either way it is gone.
        assert orphan.wait(timeout=5) is not None
        assert ours.poll() is None, "a process of a live run is never reaped"
    finally:
        for proc in (orphan, ours):
            proc.kill()
            proc.wait()
