"""The client against a scripted peer (our codec on a loopback socket),
where the exact bytes and their grouping into reads matter."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from islandora_job.gearman import GearmanClient, ServerError
from islandora_job.gearman.protocol import Magic, PacketDecoder, PacketType, response

T = PacketType


def _peer(script: Callable[[socket.socket, PacketDecoder], None]) -> Iterator[str]:
    """A one-connection peer running ``script`` in a thread; yields its address."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            script(conn, PacketDecoder(Magic.REQ))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        thread.join(10)
        listener.close()


def _read(conn: socket.socket, decoder: PacketDecoder, count: int) -> list[PacketType]:
    kinds: list[PacketType] = []
    while len(kinds) < count:
        kinds += [p.type for p in decoder.feed(conn.recv(65536))]
    return kinds


def _error_after_a_result(conn: socket.socket, decoder: PacketDecoder) -> None:
    assert _read(conn, decoder, 1) == [T.OPTION_REQ]
    conn.sendall(response(T.OPTION_RES, b"exceptions"))
    assert _read(conn, decoder, 2) == [T.SUBMIT_JOB, T.SUBMIT_JOB]
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
    for address in _peer(_error_after_a_result):
        with GearmanClient([address]) as client, pytest.raises(ServerError, match="full"):
            client.submit_many(
                [("f", b"1"), ("f", b"2")],
                timeout=5,
                on_end=lambda index, result: ended.append((index, result.data)),
            )
    assert ended == [(0, b"first")]
