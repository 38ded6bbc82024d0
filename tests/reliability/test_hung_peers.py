"""Peers that hang instead of dying: a gearmand stopped with SIGSTOP, a server that accepts
and reads nothing, one that floods a client with packets. Every call ends within its
timeout plus half a second, a hung server costs the calls after it nothing, and a flood
cannot grow the client past its maximum.

The misbehaving servers are small threads of our own speaking the real protocol; the
stopped one is a real gearmand.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from islandora_job import JobClient, JobTimeout
from islandora_job.gearman.client import GearmanClient, GearmanTimeout
from islandora_job.gearman.connection import ServerUnavailable
from islandora_job.gearman.protocol import Magic, PacketDecoder, PacketType, response
from islandora_job.gearman.tracker import ReplyTooLarge
from pytest_islandora_job import factories, wait_for_job
from pytest_islandora_job.servers import GearmanServer

SLACK = 0.5
hung_gearman = factories.gearman_server(scope="function")
good_gearman = factories.gearman_server(scope="function")
good_worker = factories.job_worker("good_gearman", modules=["tests.jobs"])


@pytest.fixture
def stopped(hung_gearman: GearmanServer) -> Iterator[GearmanServer]:
    """A real gearmand, stopped with SIGSTOP for the test and continued after it."""
    pid = hung_gearman.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield hung_gearman
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.fixture
def deaf_server() -> Iterator[str]:
    """A listening socket nobody accepts: the kernel completes connects, nothing is read."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture
def fake_server() -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    """fake_server(after_submit) serves one connection: it answers OPTION_REQ and the first
    SUBMIT_JOB (JOB_CREATED H:fake:1), then hands the socket to ``after_submit``."""
    stop = threading.Event()
    threads: list[threading.Thread] = []
    listeners: list[socket.socket] = []

    def start(after_submit: Callable[[socket.socket], None]) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listeners.append(listener)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                decoder = PacketDecoder(Magic.REQ)
                while not stop.is_set():
                    data = conn.recv(65536)
                    if not data:
                        return
                    for packet in decoder.feed(data):
                        if packet.type is PacketType.OPTION_REQ:
                            conn.sendall(response(PacketType.OPTION_RES, packet.args[0]))
                        elif packet.type is PacketType.SUBMIT_JOB:
                            conn.sendall(response(PacketType.JOB_CREATED, b"H:fake:1"))
                            try:
                                after_submit(conn)
                            except OSError:
                                return  # the client closed the connection
                            return

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return f"127.0.0.1:{listener.getsockname()[1]}"

    yield start
    stop.set()
    for listener in listeners:
        listener.close()
    for thread in threads:
        thread.join(timeout=5)


def _flood(kind: PacketType, *args: bytes) -> Callable[[socket.socket], None]:
    packet = response(kind, b"H:fake:1", *args) * 256

    def flood(conn: socket.socket) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            conn.sendall(packet)

    return flood


def _timed(call: Callable[[], object]) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        call()
    except Exception as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda c: c.submit("echo", 1, timeout=1.0), id="submit"),
        pytest.param(
            lambda c: c.submit_batch([{"job_name": "echo", "args": [1]}], timeout=1.0), id="batch"
        ),
    ],
)
def test_a_stopped_server_costs_a_foreground_call_its_timeout_and_no_more(
    stopped: GearmanServer, call: Callable[[JobClient], object]
) -> None:
    with JobClient(servers=[stopped.address]) as client:
        elapsed, error = _timed(lambda: call(client))
    assert isinstance(error, (JobTimeout, ServerUnavailable)), error
    assert elapsed < 1.0 + SLACK, f"took {elapsed:.2f} s"


def test_calls_without_a_timeout_are_bounded_by_the_connect_timeout(
    deaf_server: str,
) -> None:
    with JobClient(servers=[deaf_server], connect_timeout=1.0) as client:
        for call in (
            lambda: client.submit_background("echo", 1),
            lambda: client.job_status("H:nowhere:1"),
        ):
            elapsed, error = _timed(call)
            assert isinstance(error, ServerUnavailable), error
            assert "did not answer OPTION_REQ" in str(error)
            assert elapsed < 1.0 + SLACK, f"took {elapsed:.2f} s"


def test_a_large_payload_to_a_stopped_server_ends_at_the_timeout(
    stopped: GearmanServer,
) -> None:
    with GearmanClient([stopped.address], connect_timeout=5.0) as client:
        # The handshake needs gearmand: continue it for that, then stop it again.
        os.kill(stopped.pid or 0, signal.SIGCONT)
        client.get_status("H:nowhere:1")
        os.kill(stopped.pid or 0, signal.SIGSTOP)
        elapsed, error = _timed(lambda: client.submit("echo", b"x" * (8 << 20), timeout=1.0))
    assert isinstance(error, GearmanTimeout), error
    assert "could not send" in str(error)
    assert elapsed < 1.0 + SLACK, f"took {elapsed:.2f} s"


def test_a_hung_server_is_skipped_by_the_calls_after_it(
    stopped: GearmanServer, good_gearman: GearmanServer, good_worker: object
) -> None:
    with JobClient(servers=[stopped.address, good_gearman.address]) as client:
        elapsed, error = _timed(lambda: client.submit("echo", 1, timeout=1.0))
        assert error is not None and elapsed < 1.0 + SLACK, f"took {elapsed:.2f} s"
        started = time.monotonic()
        assert client.submit("echo", 2, timeout=5.0) == [2]
        handle = client.submit_background("echo", 3)
        assert handle.startswith("H:")
        assert time.monotonic() - started < 1.0
    # Done before the worker stops at teardown, which would find it queued otherwise.
    wait_for_job(handle, timeout=10, servers=[good_gearman.address])


def test_a_longer_call_moves_on_to_the_next_server_within_its_timeout(
    deaf_server: str, good_gearman: GearmanServer, good_worker: object
) -> None:
    with JobClient(servers=[deaf_server, good_gearman.address], connect_timeout=1.0) as client:
        started = time.monotonic()
        assert client.submit("echo", "moved on", timeout=5.0) == ["moved on"]
        assert time.monotonic() - started < 1.0 + SLACK


def test_a_flood_of_progress_packets_cannot_hold_off_the_timeout(
    fake_server: Callable[[Callable[[socket.socket], None]], str],
) -> None:
    address = fake_server(_flood(PacketType.WORK_STATUS, b"1", b"2"))
    with GearmanClient([address]) as client:
        elapsed, error = _timed(lambda: client.submit("echo", b"1", timeout=1.0))
    # Either the deadline or the reply cap ends it; never the flood's 15 s.
    assert isinstance(error, (GearmanTimeout, ReplyTooLarge)), error
    assert elapsed < 1.0 + SLACK, f"took {elapsed:.2f} s"


@pytest.mark.parametrize("kind", [PacketType.WORK_DATA, PacketType.WORK_WARNING])
def test_an_endless_stream_of_data_is_capped_by_the_payload_maximum(
    fake_server: Callable[[Callable[[socket.socket], None]], str], kind: PacketType
) -> None:
    address = fake_server(_flood(kind, b"x" * 65536))
    before = psutil.Process().memory_info().rss
    with JobClient(servers=[address], max_payload=4 << 20) as client:
        elapsed, error = _timed(lambda: client.submit("echo", 1, timeout=10.0))
    assert isinstance(error, ReplyTooLarge), error
    assert "sent more than" in str(error)
    assert elapsed < 5.0
    assert psutil.Process().memory_info().rss - before < 64 << 20


def test_a_job_timeout_explains_itself_within_the_slack_even_from_a_silent_server(
    fake_server: Callable[[Callable[[socket.socket], None]], str],
) -> None:
    # JOB_CREATED, then silence until the client hangs up; the admin connection the
    # JobTimeout uses to explain itself is never answered either.
    address = fake_server(lambda conn: conn.recv(1))
    with JobClient(servers=[address]) as client:
        elapsed, error = _timed(lambda: client.submit("echo", 1, timeout=1.0))
    assert isinstance(error, JobTimeout), error
    assert "status unavailable" in error.queue_status
    assert elapsed < 1.0 + SLACK, f"took {elapsed:.2f} s"
