"""GearmanClient.stream_background: jobs from an iterable queued with a bounded window, on a
real gearmand; a lost or silent server played by a scripted peer."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from islandora_job.gearman import (
    GearmanClient,
    GearmanTimeout,
    GearmanWorker,
    ServerUnavailable,
    WorkerJob,
)
from islandora_job.gearman.client import Job
from islandora_job.gearman.protocol import PacketDecoder, PacketType, response
from pytest_islandora_job.servers.process import ProcessGearmanServer as Gearmand
from tests.gearman.conftest import worker_thread
from tests.helpers import connections_to, fresh, queued, read_kinds, scripted_peer, wait_until

T = PacketType


def numbered(function: str, count: int, made: list[int] | None = None) -> Iterator[Job]:
    """``count`` jobs of ``function`` whose data is their position; ``made`` records each
    as the stream takes it."""
    for position in range(count):
        if made is not None:
            made.append(position)
        yield Job(function, b"%d" % position)


def number(handle: str) -> int:
    return int(handle.rsplit(":", 1)[1])


def test_a_generator_is_queued_in_order_and_read_no_further_than_the_window(
    gearmand: Gearmand,
) -> None:
    function, made, handles, window = fresh("stream"), [], [], 40
    with GearmanClient([gearmand.address]) as client:
        for handle in client.stream_background(numbered(function, 700, made), window=window):
            # Taken from the generator: the window in flight, and at most one read's worth
            # of acknowledged jobs whose handles are still to be yielded.
            assert len(made) - len(handles) <= 2 * window
            handles.append(handle)
    assert len(made) == len(handles) == len(set(handles)) == 700
    assert [number(h) for h in handles] == sorted(number(h) for h in handles)
    assert queued(gearmand.address, function) == 700
    # Handle and job match: gearmand hands its queue out first in, first out.
    seen: dict[str, bytes] = {}

    def record(job: WorkerJob) -> bytes:
        seen[job.handle] = job.data
        return b""

    worker = GearmanWorker([gearmand.address])
    worker.register(function, record)
    with worker_thread(worker):
        wait_until(lambda: len(seen) == 700, what="the worker to take every streamed job")
    assert [seen[h] for h in handles] == [b"%d" % i for i in range(700)]


def test_a_bad_job_stops_the_stream_after_every_job_before_it_is_queued(
    gearmand: Gearmand,
) -> None:
    function = fresh("stream-bad")

    def jobs() -> Iterator[tuple[str, bytes] | Job]:
        yield from numbered(function, 150)
        yield (function, "not bytes")  # type: ignore[misc]
        yield from numbered(function, 10)

    handles: list[str] = []
    bad_data = pytest.raises(TypeError, match="job data must be bytes, not str")
    with GearmanClient([gearmand.address]) as client, bad_data:
        for handle in client.stream_background(jobs(), window=64):
            handles.append(handle)
    assert len(handles) == 150
    assert queued(gearmand.address, function) == 150


def test_a_failing_iterable_stops_the_stream_after_the_jobs_it_gave(gearmand: Gearmand) -> None:
    function = fresh("stream-raise")

    def jobs() -> Iterator[Job]:
        yield from numbered(function, 77)
        raise LookupError("the source of jobs ran dry")

    handles: list[str] = []
    with GearmanClient([gearmand.address]) as client, pytest.raises(LookupError, match="ran dry"):
        handles.extend(client.stream_background(jobs(), window=50))
    assert len(handles) == 77
    assert queued(gearmand.address, function) == 77


def test_leaving_early_waits_for_what_was_sent_and_closes_its_connection(
    gearmand: Gearmand,
) -> None:
    function, made = fresh("stream-break"), []
    port = int(gearmand.address.rsplit(":", 1)[1])
    with GearmanClient([gearmand.address]) as client:
        client.submit_background(function, b"before")  # the client's own connection
        before = connections_to(port)
        stream = client.stream_background(numbered(function, 10_000, made), window=300)
        for count, _ in enumerate(stream, 1):
            if count == 5:
                break
        stream.close()
        # Every job sent was acknowledged before the stream's connection closed.
        assert 5 < len(made) <= 600
        assert queued(gearmand.address, function) == 1 + len(made)
        assert connections_to(port) <= before
        # The client's own connection still serves, between and after streams.
        assert client.submit_background(function, b"after").startswith("H:")


def test_other_calls_between_handles_do_not_take_the_streams_replies(
    gearmand: Gearmand,
) -> None:
    function = fresh("stream-mixed")
    with GearmanClient([gearmand.address]) as client:
        handles = []
        for handle in client.stream_background(numbered(function, 300), window=32):
            handles.append(handle)
            if len(handles) % 50 == 0:
                assert client.get_status(handle).known
                client.submit_background(function, b"interleaved")
    assert len(set(handles)) == 300
    assert queued(gearmand.address, function) == 306


@pytest.mark.parametrize(
    ("window", "message"),
    [(0, "not 0"), (-3, "not -3"), (2.5, "not 2.5"), (True, "not True"), ("9", "not '9'")],
)
def test_a_bad_window_is_refused_at_the_call(window: object, message: str) -> None:
    client = GearmanClient(["127.0.0.1:1"])
    with pytest.raises(ValueError, match=f"window must be a whole number of jobs.*{message}"):
        client.stream_background([], window=window)  # type: ignore[arg-type]


def test_bad_jobs_or_priority_are_refused_at_the_call() -> None:
    client = GearmanClient(["127.0.0.1:1"])
    with pytest.raises(TypeError, match="priority must be a Priority"):
        client.stream_background([], priority="high")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not iterable"):
        client.stream_background(42)  # type: ignore[arg-type]


def test_no_server_says_so_at_the_first_handle(free_port: int) -> None:
    client = GearmanClient([f"127.0.0.1:{free_port}"], connect_timeout=1.0)
    with pytest.raises(ServerUnavailable, match="no gearmand server reachable"):
        next(client.stream_background([("f", b"")]))


def test_a_stream_goes_to_the_next_server_and_status_asks_the_one_that_queued(
    gearmand: Gearmand, free_port: int
) -> None:
    function = fresh("stream-failover")
    with GearmanClient([f"127.0.0.1:{free_port}", gearmand.address]) as client:
        handles = list(client.stream_background(numbered(function, 20)))
        assert all(client.get_status(handle).known for handle in handles)
    assert queued(gearmand.address, function) == 20


def _handshake(conn: socket.socket, decoder: PacketDecoder) -> None:
    assert read_kinds(conn, decoder, 1) == [T.OPTION_REQ]
    conn.sendall(response(T.OPTION_RES, b"exceptions"))


def _acknowledge_some_then_close(conn: socket.socket, decoder: PacketDecoder) -> None:
    _handshake(conn, decoder)
    read_kinds(conn, decoder, 10)
    conn.sendall(b"".join(response(T.JOB_CREATED, b"H:x:%d" % i) for i in range(3)))


def test_a_server_lost_mid_stream_says_how_many_jobs_were_cut_off() -> None:
    handles: list[str] = []
    for address in scripted_peer(_acknowledge_some_then_close):
        with GearmanClient([address]) as client, pytest.raises(ServerUnavailable) as caught:
            handles.extend(client.stream_background(numbered("f", 10), window=10))
    assert handles == ["H:x:0", "H:x:1", "H:x:2"]
    assert "3 queued, 7 sent and not acknowledged" in str(caught.value)
    assert "is cut off" in str(caught.value)


def _acknowledge_nothing(conn: socket.socket, decoder: PacketDecoder) -> None:
    _handshake(conn, decoder)
    read_kinds(conn, decoder, 4)
    conn.recv(1)  # until the client gives up and closes


def test_a_server_that_never_acknowledges_times_out_within_ack_timeout() -> None:
    for address in scripted_peer(_acknowledge_nothing):
        silent = pytest.raises(GearmanTimeout, match="0 queued, 4 sent and not acknowledged")
        with GearmanClient([address], ack_timeout=0.3) as client, silent:
            list(client.stream_background(numbered("f", 4)))
