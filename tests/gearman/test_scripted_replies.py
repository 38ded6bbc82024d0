"""The client against a scripted peer (our codec on a loopback socket),
where the exact bytes and their grouping into reads matter."""

from __future__ import annotations

import socket

import pytest

from islandora_job.gearman import GearmanClient, ServerError
from islandora_job.gearman.protocol import PacketDecoder, PacketType, response
from tests.helpers import read_kinds, scripted_peer

T = PacketType


def _error_after_a_result(conn: socket.socket, decoder: PacketDecoder) -> None:
    assert read_kinds(conn, decoder, 1) == [T.OPTION_REQ]
    conn.sendall(response(T.OPTION_RES, b"exceptions"))
    assert read_kinds(conn, decoder, 2) == [T.SUBMIT_JOB, T.SUBMIT_JOB]
    # One write, so one read on the other side: a result, then an ERROR.
    conn.sendall(
        response(T.JOB_CREATED, b"H:x:1")
        + response(T.JOB_CREATED, b"H:x:2")
        + response(T.WORK_COMPLETE, b"H:x:1", b"first")
        + response(T.ERROR, b"QUEUE_ERROR", b"the queue is full")
    )
    conn.recv(1)  # until the client closes


def test_events_read_before_an_error_still_reach_the_caller() -> None:
    ended: list[tuple[int, bytes]] = []
    for address in scripted_peer(_error_after_a_result):
        with GearmanClient([address]) as client, pytest.raises(ServerError, match="full"):
            client.submit_many(
                [("f", b"1"), ("f", b"2")],
                timeout=5,
                on_end=lambda index, result: ended.append((index, result.data)),
            )
    assert ended == [(0, b"first")]
