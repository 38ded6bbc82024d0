"""GearmanClient.stream_background: jobs from an iterable queued with a bounded window, on a
real gearmand; a lost or silent server played by a scripted peer."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from islandora_job.gearman import (
    GearmanClient,
    GearmanTimeout,
    GearmanWorker,
    ServerError,
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
    function, handles, window = fresh("stream"), [], 40
    ahead: list[int] = []  # per job, when it is made: jobs made minus handles yielded

    def jobs() -> Iterator[Job]:
        for position, job in enumerate(numbered(function, 700)):
            ahead.append(position + 1 - len(handles))
            yield job

    with GearmanClient([gearmand.address]) as client:
        handles.extend(client.stream_background(jobs(), window=window))
    # The window is filled, never overrun: no job is taken before one in flight is answered.
    assert max(ahead) == window
    assert len(ahead) == len(handles) == len(set(handles)) == 700
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


def test_a_slow_iterables_jobs_are_queued_while_it_makes_more(gearmand: Gearmand) -> None:
    function, handles, seen = fresh("stream-slow"), [], []

    def slowly() -> Iterator[Job]:
        for job in numbered(function, 12):
            seen.append(len(handles))  # handles yielded when this job was made
            yield job
            time.sleep(0.02)

    with GearmanClient([gearmand.address]) as client:
        handles.extend(client.stream_background(slowly()))
    assert len(handles) == 12
    # Not held back until a chunk is full: most jobs were queued before the last was made.
    assert seen[-1] >= 6


class _RaisingName(str):
    """A function name whose encoding fails with an error submit_packets does not expect."""

    def encode(self, *args: object, **kwargs: object) -> bytes:  # type: ignore[override]
        raise RuntimeError("this name cannot be encoded")


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (("{function}", "not bytes"), TypeError, "job data must be bytes, not str"),
        ((_RaisingName("{function}"), b"never sent"), RuntimeError, "cannot be encoded"),
    ],
)
def test_a_bad_job_stops_the_stream_after_every_job_before_it_is_queued(
    gearmand: Gearmand, bad: tuple[str, object], error: type[Exception], message: str
) -> None:
    function = fresh("stream-bad")
    name = bad[0].format(function=function) if type(bad[0]) is str else bad[0]

    def jobs() -> Iterator[tuple[str, bytes] | Job]:
        yield from numbered(function, 150)
        yield (name, bad[1])  # type: ignore[misc]
        yield from numbered(function, 10)

    handles: list[str] = []
    with GearmanClient([gearmand.address]) as client, pytest.raises(error, match=message):
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
        assert 5 < len(made) <= 5 + 300
        assert queued(gearmand.address, function) == 1 + len(made)
        assert connections_to(port) <= before
        # The client's own connection still serves, between and after streams.
        assert client.submit_background(function, b"after").startswith("H:")


def test_closing_the_client_closes_a_stream_it_has_not_finished(gearmand: Gearmand) -> None:
    function = fresh("stream-close")
    port = int(gearmand.address.rsplit(":", 1)[1])
    before = connections_to(port)
    client = GearmanClient([gearmand.address])
    stream = client.stream_background(numbered(function, 5000), window=100)
    next(stream)
    assert len(connections_to(port) - before) == 1
    client.close()
    wait_until(lambda: connections_to(port) <= before, what="the stream's connection to close")
    told = r"stream of background jobs \(\d+ queued, \d+ sent and not acknowledged\) "
    with pytest.raises(ServerUnavailable, match=told + r"(stopped|is cut off): .* is closed"):
        list(stream)


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
    for jobs in ("fn", b"fn", {("fn", b"data"): 1}):
        with pytest.raises(TypeError, match=r"jobs must be an iterable of Jobs or .* not a"):
            client.stream_background(jobs)  # type: ignore[arg-type]


def test_no_server_says_so_at_the_first_handle(free_port: int) -> None:
    client = GearmanClient([f"127.0.0.1:{free_port}"], connect_timeout=1.0)
    with pytest.raises(ServerUnavailable, match="no gearmand server reachable"):
        next(client.stream_background([("f", b"")]))


def test_a_stream_goes_to_the_next_server(gearmand: Gearmand, free_port: int) -> None:
    function = fresh("stream-failover")
    with GearmanClient([f"127.0.0.1:{free_port}", gearmand.address]) as client:
        handles = list(client.stream_background(numbered(function, 20)))
        assert all(client.get_status(handle).known for handle in handles)
    assert queued(gearmand.address, function) == 20


def test_status_asks_the_server_that_queued_a_streamed_job(
    gearmand: Gearmand, gearmand_factory: Callable[[], Gearmand]
) -> None:
    first, function = gearmand_factory(), fresh("stream-remembered")
    with GearmanClient([first.address, gearmand.address]) as client:
        handles = list(client.stream_background(numbered(function, 20)))
        assert queued(first.address, function) == 20
        first.close()
        # Only the server that queued it is asked: the other would say "unknown".
        with pytest.raises(ServerUnavailable, match=f"cannot ask about job {handles[0]}"):
            client.get_status(handles[0])


@pytest.mark.parametrize(("window", "count"), [(1, 20), (3, 10), (4000, 0)])
def test_any_window_and_any_number_of_jobs(gearmand: Gearmand, window: int, count: int) -> None:
    function = fresh("stream-window")
    with GearmanClient([gearmand.address]) as client:
        handles = list(client.stream_background(numbered(function, count), window=window))
    assert len(set(handles)) == count
    assert queued(gearmand.address, function) == count


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


def _acknowledge_seven_then_error(conn: socket.socket, decoder: PacketDecoder) -> None:
    _handshake(conn, decoder)
    read_kinds(conn, decoder, 10)
    conn.sendall(
        b"".join(response(T.JOB_CREATED, b"H:x:%d" % i) for i in range(7))
        + response(T.ERROR, b"QUEUE_ERROR", b"the queue is full")
    )
    conn.recv(1)  # until the client closes


def test_a_server_error_mid_stream_is_raised_after_the_jobs_it_acknowledged() -> None:
    made: list[int] = []
    handles: list[str] = []
    for address in scripted_peer(_acknowledge_seven_then_error):
        told = r"QUEUE_ERROR: the queue is full \(stream of background jobs \(7 queued, 3 sent"
        full = pytest.raises(ServerError, match=told)
        with GearmanClient([address]) as client, full as caught:
            handles.extend(client.stream_background(numbered("f", 30, made), window=10))
    assert handles == [f"H:x:{i}" for i in range(7)]
    assert len(made) == 10  # nothing taken after the error
    assert (caught.value.code, caught.value.message) == ("QUEUE_ERROR", "the queue is full")


def _acknowledge_one_late(conn: socket.socket, decoder: PacketDecoder, events: list[str]) -> None:
    _handshake(conn, decoder)
    read_kinds(conn, decoder, 50)
    conn.sendall(response(T.JOB_CREATED, b"H:x:0"))
    conn.settimeout(0.3)
    try:
        events.append("closed before the acknowledgements" if not conn.recv(1) else "data")
    except TimeoutError:
        events.append("waited")
    conn.settimeout(10)
    conn.sendall(b"".join(response(T.JOB_CREATED, b"H:x:%d" % i) for i in range(1, 50)))
    events.append("closed" if not conn.recv(1) else "data")


def test_closing_a_stream_early_reads_the_acknowledgements_of_what_was_sent() -> None:
    events: list[str] = []
    for address in scripted_peer(lambda conn, dec: _acknowledge_one_late(conn, dec, events)):
        with GearmanClient([address]) as client:
            stream = client.stream_background(numbered("f", 1000), window=50)
            assert next(stream) == "H:x:0"
            stream.close()
    assert events == ["waited", "closed"]


def _acknowledge_one_then_hang(conn: socket.socket, decoder: PacketDecoder) -> None:
    _handshake(conn, decoder)
    read_kinds(conn, decoder, 4)
    conn.sendall(response(T.JOB_CREATED, b"H:x:0"))
    conn.recv(1)  # until the client gives up and closes


def test_closing_a_stream_on_a_silent_server_ends_within_ack_timeout_and_raises_nothing() -> None:
    for address in scripted_peer(_acknowledge_one_then_hang):
        with GearmanClient([address], ack_timeout=0.3) as client:
            stream = client.stream_background(numbered("f", 4))
            assert next(stream) == "H:x:0"
            began = time.monotonic()
            stream.close()
            assert time.monotonic() - began < 3


def _acknowledge_nothing(conn: socket.socket, decoder: PacketDecoder) -> None:
    _handshake(conn, decoder)
    read_kinds(conn, decoder, 4)
    conn.recv(1)  # until the client gives up and closes


def test_a_server_that_never_acknowledges_times_out_within_ack_timeout() -> None:
    for address in scripted_peer(_acknowledge_nothing):
        silent = pytest.raises(GearmanTimeout, match="0 queued, 4 sent and not acknowledged")
        with GearmanClient([address], ack_timeout=0.3) as client, silent:
            list(client.stream_background(numbered("f", 4)))
