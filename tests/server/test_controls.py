"""Test controls of the embedded backend's server object, over its admin protocol."""

from __future__ import annotations

import threading
import time

import pytest

from islandora_job.gearman import GearmanClient, GearmanWorker
from islandora_job.gearman.client import Priority
from pytest_islandora_job.servers.embedded import EmbeddedGearmanServer


def test_queued_jobs_show_handles_uniques_priorities_and_payloads(
    embedded: EmbeddedGearmanServer,
) -> None:
    embedded.hold("ctl_list")
    with GearmanClient([embedded.address]) as client:
        low = client.submit_background(
            "ctl_list", b"\x00\xffraw", unique="a b", priority=Priority.LOW
        )
        high = client.submit_background(
            "ctl_list", "é".encode(), unique="ü", priority=Priority.HIGH
        )
        other = client.submit_background("ctl_other", b"x", unique="o")
    jobs = embedded.queued_jobs("ctl_list")
    assert [(j.handle, j.function, j.unique, j.priority, j.data) for j in jobs] == [
        (high, "ctl_list", "ü", 0, "é".encode()),
        (low, "ctl_list", "a b", 2, b"\x00\xffraw"),
    ]
    assert other in [j.handle for j in embedded.queued_jobs()]
    embedded.release("ctl_list")
    embedded.clear_queue("ctl_list")
    embedded.clear_queue("ctl_other")
    assert embedded.queued_jobs() == []


def test_hold_keeps_a_foreground_job_from_a_live_worker_until_release(
    embedded: EmbeddedGearmanServer,
) -> None:
    worker = GearmanWorker([embedded.address])
    worker.register("ctl_hold", lambda job: b"ran")
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    results: list[bytes] = []
    try:
        while not worker.registered_on():
            time.sleep(0.01)
        embedded.hold("ctl_hold")
        with GearmanClient([embedded.address]) as client:
            waiting = threading.Thread(
                target=lambda: results.append(client.submit("ctl_hold", b"", timeout=10).data)
            )
            waiting.start()
            deadline = time.monotonic() + 5
            while not embedded.queued_jobs("ctl_hold"):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            time.sleep(0.2)  # a live, idle worker would have taken it by now
            assert results == [] and len(embedded.queued_jobs("ctl_hold")) == 1
            embedded.release("ctl_hold")
            waiting.join(10)
        assert results == [b"ran"]
    finally:
        worker.request_stop()
        thread.join(10)
        worker.close()


def test_drop_workers_only_drops_the_workers_holding_that_functions_jobs(
    embedded: EmbeddedGearmanServer,
) -> None:
    assert embedded.drop_workers("ctl_nobody") == 0
    with pytest.raises(ValueError, match="cannot name it"):
        embedded.hold("two words")
