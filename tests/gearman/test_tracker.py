"""The reply tracker alone: packets in, events out, no sockets."""

from __future__ import annotations

import pytest

from islandora_job.gearman.protocol import Magic, Packet, PacketType, ProtocolError
from islandora_job.gearman.tracker import (
    JobCreated,
    JobEnded,
    JobProgress,
    JobStatus,
    OptionAccepted,
    ReplyTooLarge,
    ReplyTracker,
    ServerErrored,
    StatusAnswered,
)

T = PacketType


def res(kind: PacketType, *args: bytes) -> Packet:
    return Packet(Magic.RES, kind, args)


def test_job_created_answers_submits_in_order_and_work_packets_by_handle() -> None:
    tracker = ReplyTracker()
    first = tracker.submitted("a", background=False)
    second = tracker.submitted("b", background=False)
    assert (first, second) == (0, 1)
    assert tracker.awaiting_ack
    assert tracker.receive(res(T.JOB_CREATED, b"H:x:1")) == JobCreated(0, "H:x:1")
    assert tracker.receive(res(T.JOB_CREATED, b"H:x:2\0")) == JobCreated(1, "H:x:2")
    assert not tracker.awaiting_ack
    assert tracker.running == ["H:x:1", "H:x:2"]
    # The second job ends first; its data and progress are its own.
    assert tracker.receive(res(T.WORK_DATA, b"H:x:2", b"part")) is None
    assert tracker.receive(res(T.WORK_STATUS, b"H:x:2", b"1", b"3")) == JobProgress(1, 1, 3)
    ended = tracker.receive(res(T.WORK_COMPLETE, b"H:x:2", b"done"))
    assert isinstance(ended, JobEnded) and ended.ticket == 1
    assert (ended.result.status, ended.result.data) == ("complete", b"done")
    assert (ended.result.partial, ended.result.progress) == ([b"part"], [(1, 3)])
    assert tracker.running == ["H:x:1"]
    failed = tracker.receive(res(T.WORK_FAIL, b"H:x:1\0"))
    assert isinstance(failed, JobEnded) and failed.ticket == 0
    assert failed.result.status == "fail" and not failed.result.ok
    assert tracker.running == []


def test_warnings_and_exceptions_are_kept() -> None:
    tracker = ReplyTracker()
    tracker.submitted("f", background=False)
    tracker.receive(res(T.JOB_CREATED, b"H:x:1"))
    assert tracker.receive(res(T.WORK_WARNING, b"H:x:1", b'{"type": "E"}')) is None
    ended = tracker.receive(res(T.WORK_EXCEPTION, b"H:x:1", b"boom"))
    assert isinstance(ended, JobEnded)
    assert ended.result.status == "exception"
    assert (ended.result.exception, ended.result.warnings) == (b"boom", [b'{"type": "E"}'])


def test_a_background_submit_ends_with_its_handle() -> None:
    tracker = ReplyTracker()
    tracker.submitted("f", background=True)
    assert tracker.receive(res(T.JOB_CREATED, b"H:x:9")) == JobCreated(0, "H:x:9")
    assert tracker.running == []
    # Work packets of jobs this connection does not wait for are ignored.
    assert tracker.receive(res(T.WORK_COMPLETE, b"H:x:9", b"")) is None


def test_status_and_option_replies() -> None:
    tracker = ReplyTracker()
    tracker.asked_option("exceptions")
    tracker.asked_status(b"H:x:1")
    assert tracker.receive(res(T.OPTION_RES, b"exceptions")) == OptionAccepted("exceptions")
    answered = tracker.receive(res(T.STATUS_RES, b"H:x:1", b"1", b"0", b"2", b"5"))
    assert answered == StatusAnswered(JobStatus("H:x:1", True, False, 2, 5))
    assert not tracker.awaiting_ack


def test_empty_status_numbers_read_as_zero() -> None:
    # Perl's Gearman::Server answers so for a job that never reported progress.
    tracker = ReplyTracker()
    tracker.asked_status(b"H:x:1")
    answered = tracker.receive(res(T.STATUS_RES, b"H:x:1", b"1", b"1", b"", b""))
    assert answered == StatusAnswered(JobStatus("H:x:1", True, True, 0, 0))


def test_error_packets_become_events() -> None:
    tracker = ReplyTracker()
    tracker.submitted("f", background=True)
    assert tracker.receive(res(T.ERROR, b"QUEUE_ERROR", b"full")) == ServerErrored(
        "QUEUE_ERROR", "full"
    )


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (res(T.JOB_CREATED, b"H:x:1"), "JOB_CREATED from the server for no submit"),
        (res(T.STATUS_RES, b"H:x:1", b"1", b"0", b"0", b"0"), "not asked"),
        (res(T.OPTION_RES, b"exceptions"), "for no OPTION_REQ"),
        (res(T.NOOP), "unexpected NOOP"),
    ],
)
def test_replies_to_nothing_asked_are_protocol_errors(packet: Packet, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        ReplyTracker().receive(packet)


def test_a_status_number_that_is_not_one_is_a_protocol_error() -> None:
    tracker = ReplyTracker()
    tracker.asked_status(b"H:x:1")
    with pytest.raises(ProtocolError, match="expected a number"):
        tracker.receive(res(T.STATUS_RES, b"H:x:1", b"1", b"0", b"x", b"1"))


def test_what_one_job_sends_is_capped() -> None:
    tracker = ReplyTracker(max_reply=1000)
    tracker.submitted("f", background=False)
    tracker.receive(res(T.JOB_CREATED, b"H:x:1"))
    tracker.receive(res(T.WORK_DATA, b"H:x:1", b"x" * 600))
    with pytest.raises(ReplyTooLarge, match=r"H:x:1 \('f'\) sent more than 1000 bytes"):
        tracker.receive(res(T.WORK_WARNING, b"H:x:1", b"x" * 600))


def test_a_flood_of_tiny_progress_packets_is_capped_too() -> None:
    tracker = ReplyTracker(max_reply=10_000)
    tracker.submitted("f", background=False)
    tracker.receive(res(T.JOB_CREATED, b"H:x:1"))
    with pytest.raises(ReplyTooLarge):
        for _ in range(10_000):
            tracker.receive(res(T.WORK_STATUS, b"H:x:1", b"1", b"2"))


def test_submits_gearmand_coalesced_into_one_job_each_get_every_reply() -> None:
    # One unique id twice on one connection: gearmand answers each packet once per submit.
    tracker = ReplyTracker()
    tracker.submitted("f", background=False)
    tracker.submitted("f", background=False)
    tracker.receive(res(T.JOB_CREATED, b"H:x:1"))
    tracker.receive(res(T.JOB_CREATED, b"H:x:1"))
    for _ in range(2):
        tracker.receive(res(T.WORK_DATA, b"H:x:1", b"d"))
    first = tracker.receive(res(T.WORK_COMPLETE, b"H:x:1", b"done"))
    second = tracker.receive(res(T.WORK_COMPLETE, b"H:x:1", b"done"))
    assert isinstance(first, JobEnded) and isinstance(second, JobEnded)
    assert (first.ticket, second.ticket) == (0, 1)
    assert first.result.partial == second.result.partial == [b"d"]
    assert tracker.running == []


def test_an_abandoned_submit_is_forgotten_whenever_its_replies_come() -> None:
    tracker = ReplyTracker()
    early = tracker.submitted("f", background=False)
    late = tracker.submitted("f", background=False)
    tracker.abandon(early)
    assert tracker.receive(res(T.JOB_CREATED, b"H:x:1")) is None
    assert tracker.receive(res(T.JOB_CREATED, b"H:x:2")) == JobCreated(late, "H:x:2")
    tracker.abandon(late)
    assert tracker.running == []
    assert tracker.receive(res(T.WORK_COMPLETE, b"H:x:1", b"")) is None
    assert tracker.receive(res(T.WORK_COMPLETE, b"H:x:2", b"")) is None


def test_abandoning_one_of_two_coalesced_submits_leaves_the_other_its_own_replies() -> None:
    tracker = ReplyTracker()
    gone = tracker.submitted("f", background=False)
    kept = tracker.submitted("f", background=False)
    tracker.receive(res(T.JOB_CREATED, b"H:x:1"))
    tracker.receive(res(T.JOB_CREATED, b"H:x:1"))
    tracker.abandon(gone)
    # gearmand still sends every packet once per submit, the abandoned one's included.
    assert tracker.receive(res(T.WORK_DATA, b"H:x:1", b"d")) is None
    assert tracker.receive(res(T.WORK_DATA, b"H:x:1", b"d")) is None
    assert tracker.receive(res(T.WORK_COMPLETE, b"H:x:1", b"done")) is None
    ended = tracker.receive(res(T.WORK_COMPLETE, b"H:x:1", b"done"))
    assert isinstance(ended, JobEnded) and ended.ticket == kept
    assert ended.result.partial == [b"d"]
    assert tracker.running == []
