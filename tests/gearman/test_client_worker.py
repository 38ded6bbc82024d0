"""Our client and worker against a real gearmand."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import psutil
import pytest

from islandora_job.gearman import (
    GearmanAdmin,
    GearmanClient,
    GearmanTimeout,
    GearmanWorker,
    Priority,
    ServerUnavailable,
    WorkerJob,
    WorkFailure,
)
from tests.helpers import connections_to, fresh, queued, wait_until

from .conftest import Gearmand, worker_thread


@pytest.fixture
def client(gearmand: Gearmand) -> Iterator[GearmanClient]:
    with GearmanClient([gearmand.address]) as client:
        yield client


# -- foreground -------------------------------------------------------------------------


def test_foreground_round_trip_of_awkward_bytes(gearmand: Gearmand, client: GearmanClient) -> None:
    name = fresh("név\nline\ttab")
    seen: list[WorkerJob] = []

    def reverse(job: WorkerJob) -> bytes:
        seen.append(job)
        return job.data[::-1]

    worker = GearmanWorker([gearmand.address])
    worker.register(name, reverse)
    payload = "NUL\0newline\nüñí€\r\n".encode() + bytes(range(256))
    with worker_thread(worker):
        result = client.submit(name, payload)
        big = client.submit(name, payload * 20_000)
    assert result.ok and result.status == "complete"
    assert result.data == payload[::-1]
    assert result.function == name
    assert result.handle.startswith("H:")
    assert big.data == (payload * 20_000)[::-1]
    assert seen[0].function == name
    assert seen[0].data == payload
    assert seen[0].handle == result.handle
    assert uuid.UUID(seen[0].unique).version == 4
    assert uuid.UUID(seen[0].unique).variant == uuid.RFC_4122
    assert seen[0].unique != seen[1].unique


def test_given_unique_reaches_the_worker(gearmand: Gearmand, client: GearmanClient) -> None:
    name = fresh()
    worker = GearmanWorker([gearmand.address])
    worker.register(name, lambda job: job.unique.encode())
    with worker_thread(worker):
        assert client.submit(name, b"", unique="my-ünique").data == "my-ünique".encode()


def test_partial_data_status_and_warnings(gearmand: Gearmand, client: GearmanClient) -> None:
    name = fresh()

    def chatty(job: WorkerJob) -> bytes:
        job.send_status(1, 3)
        job.send_data(b"part\0one")
        job.send_warning(b"careful\n")
        job.send_status(2, 3)
        job.send_data(b"part two")
        return b"done"

    worker = GearmanWorker([gearmand.address])
    worker.register(name, chatty)
    with worker_thread(worker):
        result = client.submit(name, b"x")
    assert result.data == b"done"
    assert result.partial == [b"part\0one", b"part two"]
    assert result.warnings == [b"careful\n"]
    assert result.progress == [(1, 3), (2, 3)]


def test_failures_and_exceptions(gearmand: Gearmand, client: GearmanClient) -> None:
    names = {kind: fresh(kind) for kind in ("exc", "fail", "crash", "str", "ok")}

    def raise_failure(job: WorkerJob) -> bytes:
        raise WorkFailure(b"bad \0 input")

    def plain_failure(job: WorkerJob) -> bytes:
        raise WorkFailure()

    def crash(job: WorkerJob) -> bytes:
        raise KeyError("missing")

    worker = GearmanWorker([gearmand.address])
    worker.register(names["exc"], raise_failure)
    worker.register(names["fail"], plain_failure)
    worker.register(names["crash"], crash)
    worker.register(names["str"], lambda job: "not bytes")  # type: ignore[arg-type,return-value]
    worker.register(names["ok"], lambda job: b"still serving")
    with worker_thread(worker):
        exc = client.submit(names["exc"], b"")
        fail = client.submit(names["fail"], b"")
        crashed = client.submit(names["crash"], b"")
        wrong_type = client.submit(names["str"], b"")
        after = client.submit(names["ok"], b"")
    assert (exc.status, exc.exception, exc.ok) == ("exception", b"bad \0 input", False)
    assert (fail.status, fail.exception) == ("fail", None)
    assert crashed.status == "exception"
    assert crashed.exception == b"KeyError('missing')"
    assert wrong_type.status == "exception"
    assert b"returned str, expected bytes" in (wrong_type.exception or b"")
    assert after.data == b"still serving"


def test_worker_without_exceptions_sends_a_warning_and_a_fail(
    gearmand: Gearmand, client: GearmanClient
) -> None:
    name = fresh()

    def failing(job: WorkerJob) -> bytes:
        raise WorkFailure(b"why \0 it failed")

    worker = GearmanWorker([gearmand.address], exceptions=False)
    worker.register(name, failing)
    with worker_thread(worker):
        result = client.submit(name, b"", timeout=5)
    assert (result.status, result.exception) == ("fail", None)
    assert result.warnings == [b"why \0 it failed"]


def test_a_failed_job_leaves_no_error_at_the_server(gearmand: Gearmand) -> None:
    """gearmand ends a job on WORK_EXCEPTION; a WORK_FAIL after it would be logged as an
    error (JOB_NOT_FOUND)."""
    name = fresh()

    def failing(job: WorkerJob) -> bytes:
        raise WorkFailure(b"x")

    before = gearmand.log_path.read_text(errors="replace").count("JOB_NOT_FOUND")
    worker = GearmanWorker([gearmand.address])
    worker.register(name, failing)
    with worker_thread(worker), GearmanClient([gearmand.address]) as client:
        assert client.submit(name, b"").status == "exception"
        assert client.submit(name, b"").status == "exception"
    assert gearmand.log_path.read_text(errors="replace").count("JOB_NOT_FOUND") == before


def test_bad_arguments_are_refused_before_sending(client: GearmanClient) -> None:
    with pytest.raises(ValueError, match="NUL"):
        client.submit("a\0b", b"")
    with pytest.raises(ValueError, match="empty"):
        client.submit_background("", b"")
    with pytest.raises(TypeError, match="bytes"):
        client.submit("f", "text")  # type: ignore[arg-type]


# -- background, priorities, status ---------------------------------------------------


def test_background_job_runs_later(gearmand: Gearmand, client: GearmanClient) -> None:
    name = fresh()
    handle = client.submit_background(name, b"payload")
    assert handle.startswith("H:")
    assert queued(gearmand.address, name) == 1
    got = threading.Event()
    received: list[bytes] = []

    def record(job: WorkerJob) -> bytes:
        received.append(job.data)
        got.set()
        return b""

    worker = GearmanWorker([gearmand.address])
    worker.register(name, record)
    with worker_thread(worker):
        assert got.wait(5)
    assert received == [b"payload"]
    wait_until(lambda: queued(gearmand.address, name) == 0)


def test_background_priorities_order_the_queue(gearmand: Gearmand, client: GearmanClient) -> None:
    name = fresh()
    for priority in (Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.LOW):
        client.submit_background(name, priority.value.encode(), priority=priority)
    order: list[bytes] = []
    worker = GearmanWorker([gearmand.address])
    worker.register(name, lambda job: order.append(job.data) or b"")
    with worker_thread(worker):
        wait_until(lambda: len(order) == 4)
    assert order == [b"high", b"normal", b"low", b"low"]


def test_foreground_priorities_order_the_queue(gearmand: Gearmand) -> None:
    name = fresh()
    results: dict[str, bytes] = {}

    def submit(priority: Priority) -> None:
        with GearmanClient([gearmand.address]) as own:
            results[priority.value] = own.submit(
                name, priority.value.encode(), priority=priority, timeout=20
            ).data

    threads = []
    for count, priority in enumerate((Priority.LOW, Priority.NORMAL, Priority.HIGH), 1):
        threads.append(threading.Thread(target=submit, args=(priority,)))
        threads[-1].start()
        wait_until(lambda count=count: queued(gearmand.address, name) == count)
    order: list[bytes] = []
    worker = GearmanWorker([gearmand.address])
    worker.register(name, lambda job: order.append(job.data) or job.data)
    with worker_thread(worker):
        for thread in threads:
            thread.join(20)
    assert order == [b"high", b"normal", b"low"]
    assert results == {"high": b"high", "normal": b"normal", "low": b"low"}


def test_get_status_of_queued_running_and_done_jobs(
    gearmand: Gearmand, client: GearmanClient
) -> None:
    name = fresh()
    handle = client.submit_background(name, b"")
    assert client.get_status(handle).known
    assert not client.get_status(handle).running
    started, release = threading.Event(), threading.Event()

    def slow(job: WorkerJob) -> bytes:
        job.send_status(3, 7)
        started.set()
        release.wait(10)
        return b""

    worker = GearmanWorker([gearmand.address])
    worker.register(name, slow)
    with worker_thread(worker):
        assert started.wait(5)
        wait_until(lambda: client.get_status(handle).numerator == 3)
        status = client.get_status(handle)
        assert (status.known, status.running, status.numerator, status.denominator) == (
            True,
            True,
            3,
            7,
        )
        release.set()
        wait_until(lambda: not client.get_status(handle).known)
    unknown = client.get_status("H:nowhere:424242")
    assert (unknown.known, unknown.running, unknown.numerator) == (False, False, 0)


# -- many in flight -------------------------------------------------------------------


def test_submit_many_puts_every_job_in_flight_at_once(gearmand: Gearmand) -> None:
    name, failing = fresh(), fresh("failing")
    jobs = [(name, b"%d" % i) for i in range(60)] + [(failing, b"no")]
    outcome: list = []

    def run() -> None:
        with GearmanClient([gearmand.address]) as own:
            outcome.extend(own.submit_many(jobs, timeout=30))

    thread = threading.Thread(target=run)
    thread.start()
    # Every job is queued before any worker exists: they were all sent at once.
    wait_until(lambda: queued(gearmand.address, name) == 60)

    def fail(job: WorkerJob) -> bytes:
        raise WorkFailure(b"nope")

    workers = [GearmanWorker([gearmand.address]) for _ in range(2)]
    for worker in workers:
        worker.register(name, lambda job: job.data + b"!")
        worker.register(failing, fail)
    with worker_thread(workers[0]), worker_thread(workers[1]):
        thread.join(30)
    assert [r.data for r in outcome[:60]] == [b"%d!" % i for i in range(60)]
    assert all(r.ok for r in outcome[:60])
    assert (outcome[60].status, outcome[60].exception) == ("exception", b"nope")
    assert len({r.handle for r in outcome}) == 61


def test_submit_many_of_nothing(client: GearmanClient) -> None:
    assert client.submit_many([]) == []
    assert client.submit_background_many([]) == []


def test_submit_background_many(gearmand: Gearmand, client: GearmanClient) -> None:
    name = fresh()
    handles = client.submit_background_many(
        [(name, b"%d" % i) for i in range(500)], priority=Priority.LOW
    )
    assert len(set(handles)) == 500
    assert queued(gearmand.address, name) == 500
    assert client.get_status(handles[-1]).known
    with GearmanAdmin(gearmand.address) as admin:
        assert admin.drop_function(name)


# -- timeouts -------------------------------------------------------------------------


def test_timeout_leaves_no_socket_and_no_job(gearmand: Gearmand) -> None:
    name = fresh()
    threads = threading.active_count()
    before = connections_to(gearmand.port)
    client = GearmanClient([gearmand.address])
    started = time.monotonic()
    with pytest.raises(GearmanTimeout, match=name) as caught:
        client.submit(name, b"", timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 2
    assert connections_to(gearmand.port) <= before
    assert threading.active_count() == threads
    # gearmand keeps a foreground job whose client went away, but marks it ignored.
    (handle,) = caught.value.handles
    with GearmanAdmin(gearmand.address) as admin:
        assert [j.ignore_job for j in admin.show_jobs() if j.handle == handle] == [True]
    with pytest.raises(GearmanTimeout, match="2 not ended") as caught:
        client.submit_many([(name, b"1"), (name, b"2")], timeout=0.3)
    assert len(caught.value.handles) == 2
    assert connections_to(gearmand.port) <= before
    client.close()


def test_client_is_usable_after_a_timeout(gearmand: Gearmand, client: GearmanClient) -> None:
    name = fresh()
    with pytest.raises(GearmanTimeout):
        client.submit(fresh("nobody"), b"", timeout=0.2)
    worker = GearmanWorker([gearmand.address])
    worker.register(name, lambda job: b"back")
    with worker_thread(worker):
        assert client.submit(name, b"", timeout=5).data == b"back"


# -- failover and lost servers --------------------------------------------------------


def test_failover_to_the_second_server(gearmand: Gearmand, free_port: int) -> None:
    name = fresh()
    down = f"127.0.0.1:{free_port}"
    worker = GearmanWorker([down, gearmand.address], backoff_start=0.05)
    worker.register(name, lambda job: job.data.upper())
    with worker_thread(worker), GearmanClient([down, gearmand.address]) as client:
        assert worker.registered_on() == [gearmand.address]
        assert client.submit(name, b"abc").data == b"ABC"
        handle = client.submit_background(fresh("bg"), b"")
        assert client.get_status(handle).known


@pytest.fixture
def unanswered_address() -> Iterator[str]:
    """An address whose connects hang: a listener whose accept queue is full drops SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    host, port = listener.getsockname()
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex((host, port))
        fillers.append(filler)

    def queue_full() -> bool:
        # backlog 0 holds one connection: once a filler is connected, later SYNs are dropped.
        for filler in fillers:
            with contextlib.suppress(OSError):  # ENOTCONN while its handshake is pending
                filler.getpeername()
                return True
        return False

    wait_until(queue_full, timeout=5, what="the listener's accept queue filled")
    yield f"{host}:{port}"
    for sock in [*fillers, listener]:
        sock.close()


def test_a_hanging_connect_does_not_hold_up_the_other_server(
    gearmand: Gearmand, unanswered_address: str
) -> None:
    name = fresh()
    worker = GearmanWorker([unanswered_address, gearmand.address], connect_timeout=10)
    worker.register(name, lambda job: b"served")
    started = time.monotonic()
    with worker_thread(worker), GearmanClient([gearmand.address]) as client:
        assert client.submit(name, b"", timeout=5).data == b"served"
        assert time.monotonic() - started < 2
        assert worker.registered_on() == [gearmand.address]


def test_connect_timeout_of_the_client(unanswered_address: str, gearmand: Gearmand) -> None:
    started = time.monotonic()
    with GearmanClient([unanswered_address, gearmand.address], connect_timeout=0.5) as client:
        handle = client.submit_background(fresh(), b"")
    assert handle.startswith("H:")
    assert 0.5 <= time.monotonic() - started < 3


def test_no_server_reachable(free_port: int) -> None:
    with (
        GearmanClient([f"127.0.0.1:{free_port}"], connect_timeout=1) as client,
        pytest.raises(ServerUnavailable, match=f"127.0.0.1:{free_port}"),
    ):
        client.submit_background("f", b"")


def test_client_moves_on_when_its_server_dies(gearmand_factory) -> None:
    first, second = gearmand_factory(), gearmand_factory()
    name = fresh()
    with GearmanClient([first.address, second.address]) as client:
        client.submit_background(name, b"1")
        on_first = client.submit_background(name, b"2")
        assert queued(first.address, name) == 2
        first.kill()
        on_second = client.submit_background(name, b"3")
        assert queued(second.address, name) == 1
        # Both servers number their handles from 1 on the same host.
        assert on_second != on_first
        # Each handle is asked of the server that created it.
        assert client.get_status(on_second).known
        with pytest.raises(ServerUnavailable):
            client.get_status(on_first)


def test_a_restarted_server_is_reconnected(gearmand_factory) -> None:
    server = gearmand_factory()
    name = fresh()
    worker = GearmanWorker([server.address], backoff_start=0.02, backoff_max=0.2)
    worker.register(name, lambda job: b"pong")
    with worker_thread(worker), GearmanClient([server.address]) as client:
        assert client.submit(name, b"", timeout=5).data == b"pong"
        server.restart()
        # The client's connection is stale: the next call opens a new one.
        assert client.submit(name, b"", timeout=10).data == b"pong"
        assert worker.registered_on() == [server.address]


def test_worker_waits_for_a_lost_server_without_spinning(gearmand_factory, worker_process) -> None:
    server = gearmand_factory()
    worker = worker_process([server.address])
    server.kill()
    process = psutil.Process(worker.process.pid)
    before = process.cpu_times()
    time.sleep(2.0)
    after = process.cpu_times()
    assert (after.user + after.system) - (before.user + before.system) < 0.2
    server.start()
    wait_until(lambda: worker.registered_on(server.address), timeout=10)
    with GearmanClient([server.address]) as client:
        assert client.submit(worker.prefix + "rev", b"abc", timeout=10).data == b"cba"
    assert worker.stop() == 0


def test_worker_serves_two_servers(gearmand: Gearmand, gearmand_factory) -> None:
    other = gearmand_factory()
    name = fresh()
    worker = GearmanWorker([gearmand.address, other.address], client_id=fresh("two"))
    worker.register(name, lambda job: job.data * 2)
    with worker_thread(worker, servers=2):
        for address in (gearmand.address, other.address):
            with GearmanClient([address]) as client:
                assert client.submit(name, b"ab", timeout=5).data == b"abab"
        other.kill()
        with GearmanClient([gearmand.address]) as client:
            assert client.submit(name, b"c", timeout=5).data == b"cc"
        assert worker.registered_on() == [gearmand.address]


# -- stopping -------------------------------------------------------------------------


def test_idle_worker_stops_at_once(gearmand: Gearmand) -> None:
    worker = GearmanWorker([gearmand.address])
    worker.register(fresh(), lambda job: b"")
    thread = threading.Thread(target=worker.work)
    thread.start()
    # Idle: it has told the server PRE_SLEEP and waits for a wake-up.
    wait_until(worker.sleeping_on)
    started = time.monotonic()
    worker.request_stop()
    thread.join(5)
    assert time.monotonic() - started < 0.5
    assert not thread.is_alive()
    worker.close()


def test_busy_worker_finishes_its_job_before_stopping(
    gearmand: Gearmand, client: GearmanClient
) -> None:
    name = fresh()
    running = threading.Event()
    stop_requested = threading.Event()

    def slow(job: WorkerJob) -> bytes:
        running.set()
        # The job is still running when the stop is requested: it ends only after.
        return b"finished" if stop_requested.wait(5) else b"stop never requested"

    def stop_while_running() -> None:
        if running.wait(5):
            worker.request_stop()
            stop_requested.set()

    worker = GearmanWorker([gearmand.address])
    worker.register(name, slow)
    thread = threading.Thread(target=worker.work)
    thread.start()
    wait_until(worker.registered_on)
    stopper = threading.Thread(target=stop_while_running)
    stopper.start()
    result = client.submit(name, b"", timeout=10)
    thread.join(5)
    stopper.join(5)
    worker.close()
    assert result.data == b"finished"
    assert not thread.is_alive()


def test_stop_before_work_returns_at_once(gearmand: Gearmand) -> None:
    worker = GearmanWorker([gearmand.address])
    worker.register(fresh(), lambda job: b"")
    worker.request_stop()
    worker.work()
    worker.close()
    with pytest.raises(RuntimeError, match="closed"):
        worker.work()


def test_work_needs_a_function(gearmand: Gearmand) -> None:
    with GearmanWorker([gearmand.address]) as worker, pytest.raises(RuntimeError, match="register"):
        worker.work()


def test_worker_process_serves_jobs(gearmand: Gearmand, worker_process, tmp_path) -> None:
    worker = worker_process([gearmand.address], record_file=tmp_path / "rec")
    with GearmanClient([gearmand.address]) as client:
        assert client.submit(worker.prefix + "rev", b"xyz", timeout=5).data == b"zyx"
        crash = client.submit(worker.prefix + "crash", b"", timeout=5)
        assert crash.exception == b"RuntimeError('crashed')"
        handle = client.submit_background(worker.prefix + "record", b"\0\n")
        rec = tmp_path / "rec"
        wait_until(lambda: rec.exists() and rec.read_text().endswith("\n"))
        assert rec.read_text() == "000a\n"
        # The record is written before the result is sent: wait for gearmand to forget it.
        wait_until(lambda: not client.get_status(handle).known)
    assert worker.stop() == 0


def test_sigterm_during_a_job_lets_its_result_reach_the_client(
    gearmand: Gearmand, worker_process
) -> None:
    worker = worker_process([gearmand.address])
    name = worker.prefix + "sleep"
    results = []

    def submit() -> None:
        with GearmanClient([gearmand.address]) as own:
            results.append(own.submit(name, b"0.7", timeout=10))

    thread = threading.Thread(target=submit)
    thread.start()

    def running() -> bool:
        with GearmanAdmin(gearmand.address) as admin:
            return any(s.function == name and s.running == 1 for s in admin.status())

    wait_until(running)
    started = time.monotonic()
    worker.process.terminate()
    thread.join(10)
    assert worker.process.wait(10) == 0
    assert time.monotonic() - started < 5
    assert [r.data for r in results] == [b"slept"]
