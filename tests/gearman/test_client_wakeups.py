"""How the client waits for a foreground job: once gearmand's JOB_CREATED has been seen on a
connection, the read for the next job waits for more than a JOB_CREATED alone, so that the
job's acknowledgement and its result (which follows within a moment) cost one wake-up; a
job that takes longer, reports progress or outlasts its timeout is seen as before."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from islandora_job.gearman import GearmanAdmin, GearmanClient, GearmanTimeout, GearmanWorker
from islandora_job.gearman.protocol import Magic, Packet, PacketType
from islandora_job.gearman.tracker import ReplyTracker
from tests.helpers import fresh

from .conftest import Gearmand, counting, worker_thread

T = PacketType


def _sleeper(seconds: float) -> Callable[[object], bytes]:
    def run(job: object) -> bytes:
        time.sleep(seconds)
        return b"done"

    return run


def test_a_foreground_job_costs_the_client_one_read(
    gearmand: Gearmand, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = fresh()
    worker = GearmanWorker([gearmand.address])
    # Each job takes 5 ms: its JOB_CREATED surely comes alone, well before its result.
    worker.register(name, _sleeper(0.005))
    jobs = 50
    with worker_thread(worker), GearmanClient([gearmand.address]) as client:
        assert client.submit(name, b"warm", timeout=5).ok  # JOB_CREATED seen once
        reads = counting(monkeypatch, "_fill")
        for _ in range(jobs):
            assert client.submit(name, b"", timeout=5).data == b"done"
    # Waking for the JOB_CREATED alone would take two reads a job.
    assert jobs <= reads[0] <= jobs + 2


def test_progress_is_seen_as_it_comes_and_a_long_job_still_names_its_handle(
    gearmand: Gearmand,
) -> None:
    name, slow = fresh(), fresh()

    def chatty(job: object) -> bytes:
        job.send_status(1, 2)  # type: ignore[attr-defined]
        time.sleep(0.6)
        return b"done"

    worker = GearmanWorker([gearmand.address])
    worker.register(name, chatty)
    worker.register(slow, _sleeper(1.5))
    with worker_thread(worker), GearmanClient([gearmand.address]) as client:
        assert client.submit(name, b"", timeout=5).ok  # JOB_CREATED seen once
        began, seen = time.monotonic(), []
        result = client.submit(
            name, b"", timeout=5, on_progress=lambda n, d: seen.append(time.monotonic() - began)
        )
        assert result.progress == [(1, 2)]
        assert len(seen) == 1 and seen[0] < 0.4  # not held back until the result came
        # The acknowledgement held back by the wait still reaches the client in time to
        # name the job when its timeout runs out.
        began = time.monotonic()
        with pytest.raises(GearmanTimeout) as caught:
            client.submit(slow, b"", timeout=0.5)
        assert 0.5 <= time.monotonic() - began < 1.0
        (handle,) = caught.value.handles
        with GearmanAdmin(gearmand.address) as admin:
            assert handle in [j.handle for j in admin.show_jobs()]
            # The worker (one thread) runs that job on: the next starts once it ended.
            deadline = time.monotonic() + 10
            while handle in [j.handle for j in admin.show_jobs()]:
                assert time.monotonic() < deadline, "the timed-out job never ended"
                time.sleep(0.01)
        # Without a timeout the job's end is what ends the wait.
        began = time.monotonic()
        assert client.submit(slow, b"").data == b"done"
        assert 1.5 <= time.monotonic() - began < 2.5


def _res(kind: PacketType, *args: bytes) -> Packet:
    return Packet(Magic.RES, kind, args)


def test_only_a_lone_foreground_submit_awaiting_its_ack_waits_for_more() -> None:
    tracker = ReplyTracker()
    tracker.submitted("f", background=False)
    assert tracker.read_at_least() == 1  # no JOB_CREATED seen yet: its size is unknown
    tracker.receive(_res(T.JOB_CREATED, b"H:x:1"))
    assert tracker.read_at_least() == 1  # the job runs: anything it sends is news
    tracker.receive(_res(T.WORK_COMPLETE, b"H:x:1", b""))
    tracker.submitted("f", background=False)
    assert tracker.read_at_least() == 12 + len(b"H:x:1") + 1
    tracker.submitted("f", background=False)
    assert tracker.read_at_least() == 1  # two acknowledgements come together anyway
    tracker.receive(_res(T.JOB_CREATED, b"H:x:22\0"))
    tracker.receive(_res(T.JOB_CREATED, b"H:x:23\0"))
    tracker.submitted("g", background=True)
    assert tracker.read_at_least() == 1  # a background submit wants its handle at once
