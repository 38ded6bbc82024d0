"""Port claims: exclusive-create sentinels, taken over only from runs that are gone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pytest_islandora_job import ports


@pytest.fixture
def sentinels(tmp_path, monkeypatch):
    monkeypatch.setattr(ports, "SENTINEL_DIR", tmp_path)
    return tmp_path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_claimed_port_is_refused_to_others_until_released(sentinels):
    port = ports.claim_port()
    assert (sentinels / str(port)).read_text() == str(os.getpid())
    assert not ports.claim(port)
    ports.release(port)
    assert ports.claim(port)


def test_a_sentinel_of_a_dead_run_is_taken_over(sentinels):
    (sentinels / "40001").write_text(str(_dead_pid()))
    assert ports.claim(40001)
    assert (sentinels / "40001").read_text() == str(os.getpid())


def test_sweep_removes_only_the_sentinels_of_runs_that_are_gone(sentinels):
    (sentinels / "40001").write_text(str(_dead_pid()))
    (sentinels / "40002").write_text(str(os.getpid()))
    (sentinels / "40003").write_text("")  # a claim whose PID is being written right now
    assert ports.sweep() == 1
    assert sorted(p.name for p in sentinels.iterdir()) == ["40002", "40003"]
