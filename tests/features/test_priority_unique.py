"""Priorities and unique ids, through a real gearmand, from our client and from the C tool."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import islandora_job
from pytest_islandora_job.servers.base import GearmanServer
from pytest_islandora_job.workerpool import WorkerPool
from tests.features.conftest import gearman_tool
from tests.helpers import lines_of


def _payload(*args: object) -> str:
    """The payload the original module sends for the append job (no JSON result asked)."""
    return json.dumps({"func": "append", "args": list(args)})


def test_waiting_jobs_run_high_then_normal_then_low(pool: WorkerPool, tmp_path: Path) -> None:
    out = tmp_path / "order.txt"
    for n in range(3):
        for priority in ("low", "normal", "high"):
            islandora_job.submit_background(
                "append", str(out), f"{priority}-{n}", priority=priority
            )
    pool.start(1)
    lines = lines_of(out, 9)
    assert [line.split("-")[0] for line in lines] == ["high"] * 3 + ["normal"] * 3 + ["low"] * 3
    # Within a priority, first in first out.
    assert lines[:3] == ["high-0", "high-1", "high-2"]


def test_the_c_tools_priorities_are_honoured_too(
    pool: WorkerPool, gearman_server: GearmanServer, tmp_path: Path
) -> None:
    out = tmp_path / "order.txt"
    gearman_tool(gearman_server, "-f", "append", "-b", "-L", _payload(str(out), "low-c"))
    islandora_job.submit_background("append", str(out), "low-py", priority="low")
    gearman_tool(gearman_server, "-f", "append", "-b", _payload(str(out), "normal-c"))
    gearman_tool(gearman_server, "-f", "append", "-b", "-I", _payload(str(out), "high-c"))
    islandora_job.submit_background("append", str(out), "high-py", priority="high")
    pool.start(1)
    assert lines_of(out, 5) == ["high-c", "high-py", "normal-c", "low-c", "low-py"]


def test_a_bad_priority_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="priority must be one of high, normal, low, not 'urgent'"):
        islandora_job.submit_background("append", "/x", "y", priority="urgent")
    with pytest.raises(ValueError, match=r"batch entry 1: priority must be one of"):
        islandora_job.run_batch(
            [{"job_name": "hello"}, {"job_name": "hello", "priority": "HIGH"}], timeout=5
        )


# -- unique ids --------------------------------------------------------------------------


def test_a_duplicate_waiting_background_job_gets_the_first_ones_handle(
    pool: WorkerPool, tmp_path: Path
) -> None:
    out = tmp_path / "ran.txt"
    first = islandora_job.submit_background("append", str(out), "one", unique="obj:1")
    again = islandora_job.submit_background("append", str(out), "one-again", unique="obj:1")
    # The longest unique id gearmand takes intact.
    other = islandora_job.submit_background("append", str(out), "two", unique="u" * 63)
    assert again == first
    assert other != first
    pool.start(1)
    # The coalesced job ran once, with the first submit's payload.
    assert sorted(lines_of(out, 2)) == ["one", "two"]
    time.sleep(0.3)
    assert sorted(out.read_text().splitlines()) == ["one", "two"]


def test_a_unique_id_set_by_the_c_tool_coalesces_with_ours(
    pool: WorkerPool, gearman_server: GearmanServer, tmp_path: Path
) -> None:
    out = tmp_path / "ran.txt"
    unique = f"obj:{tmp_path.name}"
    gearman_tool(gearman_server, "-f", "append", "-b", "-u", unique, _payload(str(out), "from-c"))
    islandora_job.submit_background("append", str(out), "from-python", unique=unique)
    islandora_job.submit_background("append", str(out), "python-first", unique=unique + "-b")
    gearman_tool(gearman_server, "-f", "append", "-b", "-u", unique + "-b", _payload(str(out), "c"))
    pool.start(1)
    assert sorted(lines_of(out, 2)) == ["from-c", "python-first"]
    time.sleep(0.3)
    assert len(out.read_text().splitlines()) == 2


def test_unique_id_derives_the_id_from_the_payload(pool: WorkerPool, tmp_path: Path) -> None:
    out = str(tmp_path / "ran.txt")
    key = islandora_job.unique_id("append", out, "x")
    assert key == islandora_job.unique_id("append", out, "x")
    assert len(key) == 40
    assert key != islandora_job.unique_id("append", out, "y")
    assert key != islandora_job.unique_id("echo", out, "x")
    first = islandora_job.submit_background("append", out, "x", unique=key)
    assert islandora_job.submit_background("append", out, "x", unique=key) == first
    different = islandora_job.unique_id("append", out, "y")
    assert islandora_job.submit_background("append", out, "y", unique=different) != first
    pool.start(1)
    assert sorted(lines_of(tmp_path / "ran.txt", 2)) == ["x", "y"]


def test_once_the_first_job_ran_the_same_unique_id_queues_a_new_job(
    pool: WorkerPool, tmp_path: Path
) -> None:
    out = tmp_path / "ran.txt"
    pool.start(1)
    islandora_job.submit("append", str(out), "first", unique="obj:again", timeout=20)
    islandora_job.submit("append", str(out), "second", unique="obj:again", timeout=20)
    assert lines_of(out, 2) == ["first", "second"]


def test_a_unique_id_with_a_nul_byte_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unique id .* contains a NUL byte"):
        islandora_job.submit_background("append", "/x", "y", unique="a\0b")
    with pytest.raises(TypeError, match="batch entry 0: unique must be a str, not int"):
        islandora_job.run_batch([{"job_name": "hello", "unique": 3}])
    with pytest.raises(ValueError, match="longer than gearmand's 63 bytes: shorten it"):
        islandora_job.submit_background("append", "/x", "y", unique="u" * 64)
