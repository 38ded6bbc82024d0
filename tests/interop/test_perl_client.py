"""Perl's Gearman::Client against our worker: it gets the original router's echo text."""

from __future__ import annotations

import time

from pytest_islandora_job.servers.base import GearmanServer
from pytest_islandora_job.workerpool import WorkerPool

from .conftest import needs_perl, original_payload, perl, unbase64

pytestmark = needs_perl


def do_task(server: GearmanServer, job: str, *args: object) -> dict[str, object]:
    return perl(server.address, "normal", job, original_payload(job, list(args)).decode())


def test_do_task_gets_text(gearman_server: GearmanServer, interop_worker: WorkerPool) -> None:
    report = do_task(gearman_server, "hello_world", "Danny")
    assert report["failed"] == 0
    assert unbase64(report["result"]) == b"Hello Danny"


def test_do_task_per_return_type(gearman_server: GearmanServer, interop_worker: WorkerPool) -> None:
    got = {
        kind: unbase64(do_task(gearman_server, "interop_returns", kind)["result"])
        for kind in ("int", "none", "true", "dict")
    }
    assert got == {"int": b"42", "none": b"", "true": b"1", "dict": b'{"a":1,"b":[true]}'}


def test_a_failing_job_fails_do_task(
    gearman_server: GearmanServer, interop_worker: WorkerPool
) -> None:
    report = do_task(gearman_server, "interop_fail", "boom")
    assert report == {"result": None, "failed": 1}


def test_dispatch_background_then_get_status(
    gearman_server: GearmanServer, interop_worker: WorkerPool
) -> None:
    job = "interop_sleep"
    handle = perl(gearman_server.address, "background", job, original_payload(job, [1.0]).decode())[
        "handle"
    ]
    # Perl names the server in the handle: "host:port//H:host:N".
    assert isinstance(handle, str) and "//H:" in handle, handle
    status = perl(gearman_server.address, "status", handle)
    assert status["known"] == 1
    deadline = time.monotonic() + 15
    while status["known"]:
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
        status = perl(gearman_server.address, "status", handle)
