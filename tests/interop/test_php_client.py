"""PHP's gearman extension, as the original module's client code calls it, against our worker.

What PHP receives is what the original router would have echoed: text, not JSON.
"""

from __future__ import annotations

import time

import pytest

from islandora_job.gearman import GearmanAdmin
from pytest_islandora_job.servers.base import GearmanServer
from pytest_islandora_job.workerpool import WorkerPool

from .conftest import SITE, needs_php, php, unbase64

pytestmark = needs_php

GEARMAN_SUCCESS = 0
GEARMAN_WORK_FAIL = 24

# What PHP's doNormal returns for each return type of a job (see tests/interop/jobs.py).
ECHOED = {
    "str": "Grüße, Danny".encode(),
    "empty_str": b"",
    "none": b"",
    "bytes": b"\x00\xffraw",
    "int": b"42",
    "zero": b"0",
    "true": b"1",
    "false": b"",
    "float": b"2.5",
    "big_float": b"1.0E+20",
    "list": b'[1,"a",null]',
    "dict": b'{"a":1,"b":[true]}',
}


def do_normal(server: GearmanServer, job: str, args: list[object], **extra: object) -> bytes:
    """doNormal through PHP; the result's bytes, after checking it succeeded."""
    report = php({"server": server.address, "action": "normal", "job": job, "args": args, **extra})
    assert report["return_code"] == GEARMAN_SUCCESS, report
    assert report["is_string"] is True, report
    return unbase64(report["result"])


def job_status(server: GearmanServer, handle: str) -> list[object]:
    """jobStatus through PHP: [known, running, numerator, denominator]."""
    status = php({"server": server.address, "action": "status", "handle": handle})["status"]
    assert isinstance(status, list), status
    return status


def results(report: dict[str, object]) -> list[bytes]:
    """The completed results of a batch report."""
    completed = report["completed"]
    assert isinstance(completed, list), report
    return [unbase64(r) for r in completed]


def test_do_normal_gets_the_text_the_original_router_echoes(
    gearman_server: GearmanServer, interop_worker: WorkerPool
) -> None:
    assert do_normal(gearman_server, "hello_world", ["Danny"]) == b"Hello Danny"


@pytest.mark.parametrize("kind", sorted(ECHOED))
def test_do_normal_result_per_return_type(
    gearman_server: GearmanServer, interop_worker: WorkerPool, kind: str
) -> None:
    assert do_normal(gearman_server, "interop_returns", [kind]) == ECHOED[kind]


def test_a_failing_job_ends_do_normal_with_work_fail(
    gearman_server: GearmanServer, interop_worker: WorkerPool
) -> None:
    started = time.monotonic()
    report = php(
        {
            "server": gearman_server.address,
            "action": "normal",
            "job": "interop_fail",
            "args": ["no such object"],
            # Longer than the test may take: a hang shows as GEARMAN_TIMEOUT, not as a pass.
            "timeout_ms": 15000,
        }
    )
    assert report["return_code"] == GEARMAN_WORK_FAIL, report
    assert unbase64(report["result"]) == b""
    assert time.monotonic() - started < 10


def test_do_background_then_job_status(
    gearman_server: GearmanServer, interop_worker: WorkerPool
) -> None:
    report = php(
        {
            "server": gearman_server.address,
            "action": "background",
            "job": "interop_sleep",
            "args": [1.5],
        }
    )
    handle = report["handle"]
    assert report["return_code"] == GEARMAN_SUCCESS
    assert isinstance(handle, str) and handle.startswith("H:"), report
    # [known, running, numerator, denominator]
    status = job_status(gearman_server, handle)
    assert status[:2] == [True, True], status
    deadline = time.monotonic() + 15
    while status[0]:
        assert time.monotonic() < deadline, f"{handle} still known: {status}"
        time.sleep(0.1)
        status = job_status(gearman_server, handle)
    assert status == [False, False, 0, 0]


def test_add_task_run_tasks(gearman_server: GearmanServer, interop_worker: WorkerPool) -> None:
    report = php(
        {
            "server": gearman_server.address,
            "action": "batch",
            "jobs": [["hello_world", ["A"]], ["interop_returns", ["int"]], ["hello_world", ["B"]]],
        }
    )
    assert report["ok"] is True, report
    assert report["failed"] == []
    assert sorted(results(report)) == [b"42", b"Hello A", b"Hello B"]


def test_run_tasks_with_a_failing_job_ends(
    gearman_server: GearmanServer, interop_worker: WorkerPool
) -> None:
    report = php(
        {
            "server": gearman_server.address,
            "action": "batch",
            "jobs": [["hello_world", ["A"]], ["interop_fail", ["boom"]]],
        }
    )
    assert report["failed"] == ["interop_fail"], report
    # runTasks() says the tasks ran, not that they succeeded: the original's batch submit
    # returns True here, where ours returns False.
    assert report["ok"] is True
    assert results(report) == [b"Hello A"]


def test_multisite_function_names(gearman_server: GearmanServer, site_worker: str) -> None:
    with GearmanAdmin(gearman_server.address) as admin:
        served = {row.function for row in admin.status() if row.workers}
    assert f"{SITE}_hello_world" in served
    assert "hello_world" not in served
    assert do_normal(gearman_server, "hello_world", ["Danny"], site=SITE) == b"Hello Danny"
