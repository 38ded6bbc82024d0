"""How the worker wakes up: a sleeping worker grabs on the server's bytes before it reads
them, so that a job costs it one read; the grabs that probe for a backlog thin out while
they find nothing. Against a real gearmand, and against a scripted peer (our codec on a
loopback socket) where the exact packets matter.
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from islandora_job.gearman import GearmanClient, GearmanWorker, WorkerJob
from islandora_job.gearman.protocol import Magic, Packet, PacketDecoder, PacketType, response
from islandora_job.gearman.worker import _PROBE_EVERY, _PROBE_MAX, _Server
from tests.helpers import fresh, wait_until

from .conftest import Gearmand, counting, worker_thread

T = PacketType


def test_a_sequential_job_costs_the_worker_one_read_and_two_writes(
    gearmand: Gearmand, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = fresh()
    worker = GearmanWorker([gearmand.address])
    worker.register(name, lambda job: job.data)
    jobs = 300
    with worker_thread(worker), GearmanClient([gearmand.address]) as client:
        assert client.submit(name, b"warm", timeout=5).data == b"warm"
        wait_until(worker.sleeping_on)
        reads = counting(monkeypatch, "receive")
        writes = counting(monkeypatch, "send_some")
        for i in range(jobs):
            assert client.submit(name, b"%d" % i, timeout=5).data == b"%d" % i
        wait_until(worker.sleeping_on)
    # One read (the NOOP and the job together) and two writes (the grab; the result with
    # PRE_SLEEP) a job; each probing grab (at most 6 in 300 jobs) costs a read and a write
    # more. Reading the NOOP before grabbing would take two reads a job.
    assert jobs <= reads[0] <= jobs + 8
    assert 2 * jobs <= writes[0] <= 2 * jobs + 8


# -- a scripted peer --------------------------------------------------------------------


class ScriptedServer:
    """A loopback peer that records the worker's packets and answers as a test tells it."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.listener.settimeout(10)
        self.conn: socket.socket | None = None
        self.old: list[socket.socket] = []
        self.decoder = PacketDecoder(expect=Magic.REQ)
        self.seen: list[Packet] = []

    def accept(self, timeout: float = 10.0) -> None:
        """Take the worker's next connection."""
        self.listener.settimeout(timeout)
        if self.conn is not None:
            self.old.append(self.conn)
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(10)
        self.decoder = PacketDecoder(expect=Magic.REQ)

    def expect(self, *types: PacketType) -> list[Packet]:
        """Read until the worker has sent these packets (in this order), and return them."""
        assert self.conn is not None
        got: list[Packet] = []
        while len(got) < len(types):
            data = self.conn.recv(65536)
            assert data, f"the worker closed the connection; got {got}"
            got += self.decoder.feed(data)
        assert [p.type for p in got] == list(types)
        self.seen += got
        return got

    def send(self, *packets: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(b"".join(packets))

    def bring_to_sleep(self, worker: GearmanWorker, timeout: float = 10.0) -> None:
        """Take the worker's next connection and answer its hello until it sleeps here."""
        self.accept(timeout)
        self.expect(T.GRAB_JOB_UNIQ)
        self.send(response(T.NO_JOB))
        self.expect(T.CAN_DO, T.GRAB_JOB_UNIQ)
        self.send(response(T.NO_JOB))
        self.expect(T.PRE_SLEEP)
        wait_until(worker.sleeping_on)

    def quiet(self, seconds: float) -> bool:
        """True when the worker sends nothing for ``seconds``."""
        assert self.conn is not None
        self.conn.settimeout(seconds)
        try:
            return not self.conn.recv(65536, socket.MSG_PEEK)
        except TimeoutError:
            return True
        finally:
            self.conn.settimeout(10)

    def close(self) -> None:
        for conn in [*self.old, self.conn]:
            if conn is not None:
                conn.close()
        self.listener.close()


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.close()


def _sleeping_worker(
    server: ScriptedServer, handler: Callable[[WorkerJob], bytes], backoff: float = 0.01
) -> tuple[GearmanWorker, threading.Thread]:
    """A worker of function "f" on the scripted server, brought to sleep there; it retries a
    lost connection after ``backoff`` seconds."""
    worker = GearmanWorker([server.address], backoff_start=backoff, backoff_max=backoff)
    worker.register("f", handler)
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    server.bring_to_sleep(worker)
    return worker, thread


def _stop(worker: GearmanWorker, thread: threading.Thread) -> None:
    worker.request_stop()
    thread.join(5)
    worker.close()
    assert not thread.is_alive()


def test_the_wake_up_is_read_with_the_job_it_fetched(scripted: ScriptedServer) -> None:
    worker, thread = _sleeping_worker(scripted, lambda job: job.data.upper())
    try:
        scripted.send(response(T.NOOP))
        scripted.expect(T.GRAB_JOB_UNIQ)
        # One grab for one wake-up, however the worker reads the NOOP.
        assert scripted.quiet(0.2)
        scripted.send(response(T.JOB_ASSIGN_UNIQ, b"H:x:1", b"f", b"u-1", b"abc"))
        # A worker that has just connected grabs straight after a job; finding nothing, it
        # sleeps after the next ones.
        complete, _ = scripted.expect(T.WORK_COMPLETE, T.GRAB_JOB_UNIQ)
        assert complete.args == (b"H:x:1", b"ABC")
        scripted.send(response(T.NO_JOB))
        scripted.expect(T.PRE_SLEEP)
        scripted.send(response(T.NOOP))
        scripted.expect(T.GRAB_JOB_UNIQ)
        scripted.send(response(T.JOB_ASSIGN_UNIQ, b"H:x:2", b"f", b"u-2", b"d"))
        complete, _ = scripted.expect(T.WORK_COMPLETE, T.PRE_SLEEP)
        assert complete.args == (b"H:x:2", b"D")
        # Two NOOPs for one sleep: one grab.
        scripted.send(response(T.NOOP), response(T.NOOP))
        scripted.expect(T.GRAB_JOB_UNIQ)
        scripted.send(response(T.NO_JOB))
        scripted.expect(T.PRE_SLEEP)
        assert scripted.quiet(0.2)
    finally:
        _stop(worker, thread)


@pytest.mark.parametrize("pause", [0.0, 0.2], ids=["with-the-noop", "after-the-noop"])
def test_a_server_closing_on_a_sleeping_worker_is_reconnected(
    scripted: ScriptedServer, pause: float
) -> None:
    worker, thread = _sleeping_worker(scripted, lambda job: b"")
    try:
        assert scripted.conn is not None
        scripted.send(response(T.NOOP))
        time.sleep(pause)
        # A close of the sending side alone (FIN, no reset): the worker sees it only by
        # reading to the end of what came, past the unread NOOP.
        scripted.conn.shutdown(socket.SHUT_WR)
        started = time.monotonic()
        scripted.accept(timeout=2)
        assert time.monotonic() - started < 1.0
        scripted.expect(T.GRAB_JOB_UNIQ)
    finally:
        _stop(worker, thread)


def test_a_reset_connection_leaves_the_poller_with_the_new_one_alone(
    scripted: ScriptedServer,
) -> None:
    worker, thread = _sleeping_worker(scripted, lambda job: b"", backoff=0.5)
    try:
        assert scripted.conn is not None
        # SO_LINGER 0: close with a reset, which the worker meets as an error on its read
        # (its connection closes the socket then).
        scripted.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        scripted.conn.close()
        scripted.conn = None
        wait_until(lambda: not worker.registered_on())
        # Take the socket number the worker's connection had: the new one gets another.
        with socket.socket() as _taken:
            scripted.bring_to_sleep(worker, timeout=3)
            # One socket watched, the new one: the old one left with its server.
            assert list(worker._by_fd.values()) == worker._servers
    finally:
        _stop(worker, thread)


def test_request_stop_ends_the_wait_after_a_deferred_wake_up(scripted: ScriptedServer) -> None:
    worker, thread = _sleeping_worker(scripted, lambda job: b"")
    scripted.send(response(T.NOOP))
    scripted.expect(T.GRAB_JOB_UNIQ)
    # The server never answers the grab: the worker waits, and a stop ends the wait.
    started = time.monotonic()
    _stop(worker, thread)
    assert time.monotonic() - started < 2.0


# -- the probing grabs, sans I/O --------------------------------------------------------


def test_probing_grabs_thin_out_while_they_find_nothing_and_eager_mode_returns() -> None:
    worker = GearmanWorker(["127.0.0.1:9"])
    server = _Server("127.0.0.1", 9, 0.1)
    # No connection: what the worker would send goes nowhere; the policy is what is tested.
    no_job = Packet(Magic.RES, T.NO_JOB, ())
    server.probed = True
    probes: list[int] = []
    for job in range(1, 700):
        if worker._after_job(server) is server.grab:
            probes.append(job)
            worker._handle(server, no_job)
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert probes[0] == 1  # eager at first: grabs after its first job
    assert gaps[:5] == [
        _PROBE_EVERY,
        2 * _PROBE_EVERY,
        4 * _PROBE_EVERY,
        8 * _PROBE_EVERY,
        16 * _PROBE_EVERY,
    ]
    assert max(gaps) == _PROBE_MAX and gaps[-1] == _PROBE_MAX
    # A probe that finds a job makes the worker eager again; the next empty grab goes back
    # to the shortest interval.
    while worker._after_job(server) is not server.grab:
        pass
    worker._handle(server, Packet(Magic.RES, T.JOB_ASSIGN_UNIQ, (b"H:x:1", b"f", b"u", b"")))
    assert server.eager
    assert worker._after_job(server) is server.grab
    worker._handle(server, no_job)
    assert not server.eager and server.probe_in == _PROBE_EVERY
