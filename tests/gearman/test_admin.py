"""The admin protocol against a real gearmand, plus malformed replies from a fake peer."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from islandora_job.gearman import (
    AdminError,
    GearmanAdmin,
    GearmanClient,
    GearmanWorker,
    ProtocolError,
    ServerError,
    ServerUnavailable,
)
from tests.helpers import fresh, wait_until

from .conftest import GEARMAND, Gearmand, worker_thread


@pytest.fixture
def admin(gearmand: Gearmand) -> Iterator[GearmanAdmin]:
    with GearmanAdmin(gearmand.address) as admin:
        yield admin


@pytest.fixture
def client(gearmand: Gearmand) -> Iterator[GearmanClient]:
    with GearmanClient([gearmand.address]) as client:
        yield client


def test_version_is_the_binary_version(admin: GearmanAdmin) -> None:
    banner = subprocess.run([GEARMAND, "--version"], capture_output=True, text=True).stdout
    assert admin.version()
    assert banner.split()[1] == admin.version()


def test_getpid_is_the_server_process(admin: GearmanAdmin, gearmand: Gearmand) -> None:
    assert gearmand.pid is not None
    assert admin.getpid() == gearmand.pid


def test_status_counts_queued_jobs(admin: GearmanAdmin, client: GearmanClient) -> None:
    name = fresh()
    for index in range(3):
        client.submit_background(name, b"%d" % index)
    (line,) = [s for s in admin.status() if s.function == name]
    assert (line.queued, line.running, line.workers) == (3, 0, 0)
    assert admin.drop_function(name) is True
    assert name not in {s.function for s in admin.status()}


def test_status_and_workers_with_odd_function_names(
    admin: GearmanAdmin, client: GearmanClient, gearmand: Gearmand
) -> None:
    odd = [fresh("né\nline"), fresh("tab\there"), fresh("ü")]
    for name in odd:
        client.submit_background(name, b"x")
    statuses = {s.function: s for s in admin.status()}
    for name in odd:
        assert statuses[name].queued == 1
    worker = GearmanWorker([gearmand.address], client_id=fresh("wid"))
    for name in odd:
        worker.register(name, lambda job: b"")
    with worker_thread(worker):
        (info,) = [w for w in admin.workers() if w.client_id == worker.client_id]
        assert set(info.functions) == set(odd)
        assert info.ip == "127.0.0.1"
        assert info.fd > 0


def test_workers_lists_a_connection_without_functions(
    admin: GearmanAdmin, gearmand: Gearmand
) -> None:
    with GearmanAdmin(gearmand.address) as other:
        other.version()
        rows = admin.workers()
    assert any(w.client_id == "-" and w.functions == () for w in rows)


def test_show_jobs_and_cancel(admin: GearmanAdmin, client: GearmanClient) -> None:
    name = fresh()
    handle = client.submit_background(name, b"x")
    (job,) = [j for j in admin.show_jobs() if j.handle == handle]
    assert (job.retries, job.ignore_job, job.job_queued) == (0, False, True)
    assert admin.cancel_job(handle) is True
    (job,) = [j for j in admin.show_jobs() if j.handle == handle]
    assert job.ignore_job is True
    assert admin.cancel_job("H:no-such-host:999999") is False
    admin.drop_function(name)


def test_drop_function_refused_while_a_worker_has_it(
    admin: GearmanAdmin, gearmand: Gearmand
) -> None:
    name = fresh()
    assert admin.drop_function(name) is False
    worker = GearmanWorker([gearmand.address])
    worker.register(name, lambda job: b"")
    with worker_thread(worker):
        assert admin.drop_function(name) is False
    wait_until(lambda: admin.drop_function(name))


def test_maxqueue_limits_a_known_function(admin: GearmanAdmin, client: GearmanClient) -> None:
    name = fresh()
    client.submit_background(name, b"1")
    admin.maxqueue(name, 2)
    client.submit_background(name, b"2")
    with pytest.raises(ServerError, match="QUEUE_ERROR"):
        client.submit_background(name, b"3")
    admin.maxqueue(name, 0)
    client.submit_background(name, b"3")
    assert [s.queued for s in admin.status() if s.function == name] == [3]
    admin.drop_function(name)


def test_names_that_would_break_a_command_line_are_refused(admin: GearmanAdmin) -> None:
    for bad in ("two words", "line\nbreak", ""):
        with pytest.raises(ValueError, match="whitespace"):
            admin.drop_function(bad)
        with pytest.raises(ValueError, match="whitespace"):
            admin.maxqueue(bad, 1)
    with pytest.raises(ValueError, match="whitespace"):
        admin.cancel_job("H:x:1 \nshutdown")


def test_unreachable_server(free_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(ServerUnavailable, match=f"127.0.0.1:{free_port}"):
        GearmanAdmin(f"127.0.0.1:{free_port}").version()
    assert time.monotonic() - started < 2


def test_reconnects_after_the_server_restarted(gearmand_factory) -> None:
    server = gearmand_factory()
    with GearmanAdmin(server.address) as admin:
        first = admin.getpid()
        server.restart()
        with pytest.raises(ServerUnavailable):
            admin.getpid()
        assert admin.getpid() != first


# -- a fake peer for replies gearmand never sends -------------------------------------


class CannedServer:
    """Accept one connection, read one line, answer with fixed bytes, then close or hang."""

    def __init__(self, reply: bytes, hang: bool = False) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.reply = reply
        self.hang = hang
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(self.reply)
            if self.hang:
                self.done.wait(10)

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def canned() -> Iterator[type[CannedServer]]:
    made: list[CannedServer] = []

    def make(reply: bytes, hang: bool = False) -> CannedServer:
        server = CannedServer(reply, hang)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


@pytest.mark.parametrize(
    "method, reply, error",
    [
        ("version", b"ERR UNKNOWN_COMMAND Unknown+server+command\r\n", AdminError),
        ("version", b"HELLO\n", ProtocolError),
        ("getpid", b"OK abc\n", ProtocolError),
        ("status", b"f\t1\t2\n.\n", ProtocolError),
        ("status", b"f\tx\t0\t0\n.\n", ProtocolError),
        ("workers", b"garbage\n.\n", ProtocolError),
        ("show_jobs", b"H:x:1\t0\n.\n", ProtocolError),
        ("version", b"OK 1.1", ServerUnavailable),
        ("status", b"f\t1\t0\t0\n", ServerUnavailable),
    ],
)
def test_malformed_or_cut_replies(canned, method: str, reply: bytes, error: type) -> None:
    server = canned(reply)
    with GearmanAdmin(server.address, timeout=2) as admin, pytest.raises(error):
        getattr(admin, method)()


def test_admin_error_carries_code_and_decoded_message(canned) -> None:
    server = canned(b"ERR INVALID_ARGUMENTS An+incomplete+set\r\n")
    with GearmanAdmin(server.address) as admin, pytest.raises(AdminError) as caught:
        admin.version()
    assert caught.value.code == "INVALID_ARGUMENTS"
    assert caught.value.message == "An incomplete set"


def test_a_silent_server_times_out(canned) -> None:
    server = canned(b"", hang=True)
    started = time.monotonic()
    with GearmanAdmin(server.address, timeout=0.3) as admin, pytest.raises(TimeoutError):
        admin.version()
    assert time.monotonic() - started < 2
