"""What a client writes for a batch of submits, decoded again: no sockets."""

from __future__ import annotations

import os
import uuid

import pytest

from islandora_job.gearman.client import Job, Priority, submit_packets
from islandora_job.gearman.protocol import (
    Magic,
    PacketDecoder,
    PacketType,
    request,
    trusted_request,
)
from islandora_job.gearman.tracker import ReplyTracker

T = PacketType


def decoded(data: bytes) -> list[tuple[PacketType, tuple[bytes, ...]]]:
    return [(p.type, p.args) for p in PacketDecoder(Magic.REQ).feed(data)]


def test_pairs_and_jobs_frame_as_the_protocol_says() -> None:
    data = submit_packets(
        [
            ("név", b"one\0with NUL"),
            Job("other", b"two", "given-ünique", Priority.HIGH),
            Job("név", b"three", None, Priority.LOW),
        ],
        background=True,
    )
    (k1, (f1, u1, d1)), (k2, a2), (k3, (f3, u3, d3)) = decoded(data)
    assert (k1, f1, d1) == (T.SUBMIT_JOB_BG, "név".encode(), b"one\0with NUL")
    assert (k2, a2) == (T.SUBMIT_JOB_HIGH_BG, (b"other", "given-ünique".encode(), b"two"))
    assert (k3, f3, d3) == (T.SUBMIT_JOB_LOW_BG, "név".encode(), b"three")
    assert u1 != u3
    foreground = decoded(submit_packets([("f", b"x")], background=False, priority=Priority.LOW))
    assert foreground[0][0] is T.SUBMIT_JOB_LOW


def test_fresh_unique_ids_are_distinct_version_4_uuids() -> None:
    data = submit_packets([("f", b"")] * 2000, background=True)
    uniques = [args[1].decode() for _, args in decoded(data)]
    assert len(set(uniques)) == 2000
    for unique in uniques[::97]:
        parsed = uuid.UUID(unique)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == unique


def test_a_forked_child_makes_unique_ids_of_its_own() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, submit_packets([("f", b"")], background=True))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        theirs = decoded(pipe.read())[0][1][1]
    os.waitpid(pid, 0)
    ours = decoded(submit_packets([("f", b"")], background=True))[0][1][1]
    # Not only another id: another random half, so the two processes cannot meet.
    assert theirs[:18] != ours[:18]


@pytest.mark.parametrize(
    ("job", "error", "message"),
    [
        (Job("f", b"", None, "high"), TypeError, "priority must be a Priority"),  # type: ignore[arg-type]
        (Job("f", b"", None, ["high"]), TypeError, "priority must be a Priority"),  # type: ignore[arg-type]
        (("f", "text"), TypeError, "job data must be bytes"),
        ((3, b""), TypeError, "must be a str"),
        (("", b""), ValueError, "empty"),
        (("a\0b", b""), ValueError, "NUL"),
        (Job("f", b"", "u\0v"), ValueError, "NUL"),
        (("f", b"", "unique"), TypeError, r"a Job or a \(function, data\) pair"),
        ((["f"], b""), TypeError, "must be a str"),
    ],
)
def test_bad_jobs_are_refused_naming_the_problem(
    job: tuple[str, bytes] | Job, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        submit_packets([("fine", b""), job], background=False)


def test_a_batch_takes_consecutive_tickets() -> None:
    tracker = ReplyTracker()
    assert tracker.submitted("a", background=True) == 0
    assert tracker.submitted_many(["b", "c", "d"], background=True) == 1
    assert tracker.submitted("e", background=False) == 4


def test_the_unchecked_framing_of_a_result_is_the_checked_one() -> None:
    args = (b"H:host:12", b"result \0 with NUL")
    assert trusted_request(T.WORK_COMPLETE, *args) == request(T.WORK_COMPLETE, *args)
