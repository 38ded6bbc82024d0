"""A worker on two servers, one of them stopped with SIGSTOP while the worker sends it a large
result: the other server's jobs keep running, SIGTERM still ends the worker within its
grace period, and the stopped server is dropped and reconnected once it takes nothing.

Both servers are real gearmand processes; the worker is a real detached worker process
(and, for the reconnect, GearmanWorker in a thread so its write deadline can be short).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import islandora_job
from islandora_job import JobClient
from islandora_job.gearman.admin import GearmanAdmin
from islandora_job.gearman.client import GearmanClient
from islandora_job.gearman.worker import GearmanWorker, WorkerJob
from pytest_islandora_job import factories
from pytest_islandora_job.servers import GearmanServer
from pytest_islandora_job.workerpool import WorkerPool, pool_settings
from tests.helpers import wait_until

# Larger than what a fresh loopback connection buffers between the two processes.
RESULT = 12 << 20
stalled_gearman = factories.gearman_server(scope="function")
other_gearman = factories.gearman_server(scope="function")


def _running(server: GearmanServer, function: str) -> int:
    with GearmanAdmin(server.address, timeout=2.0) as admin:
        return next((r.running for r in admin.status() if r.function == function), 0)


@pytest.fixture
def stop_later(stalled_gearman: GearmanServer) -> Iterator[Callable[[], None]]:
    """stop_later() stops the stalled gearmand with SIGSTOP; it is continued after the test."""
    pid = stalled_gearman.pid
    assert pid is not None
    stopped = []

    def stop() -> None:
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)

    try:
        yield stop
    finally:
        if stopped:
            os.kill(pid, signal.SIGCONT)


def _stall_on_a_large_result(server: GearmanServer, stop: Callable[[], None]) -> None:
    """Queue a job whose 12 MiB result comes 0.3 s after it starts; once a worker runs it,
    stop the server, so the result has nowhere to go."""
    # "big" is a job of tests.reliability.jobs, which the workers here serve.
    with JobClient(servers=[server.address], check_jobs=False) as client:
        client.submit_background("big", RESULT, 0.3)
    wait_until(lambda: _running(server, "big") == 1, what="the large job starting")
    stop()
    time.sleep(0.6)  # the handler returned: the worker now sends its result


def test_a_stopped_server_does_not_freeze_the_worker_for_the_other(
    stalled_gearman: GearmanServer,
    other_gearman: GearmanServer,
    stop_later: Callable[[], None],
    tmp_path: Path,
) -> None:
    pool = WorkerPool(
        pool_settings(
            [stalled_gearman.address, other_gearman.address],
            ["tests.jobs", "tests.reliability.jobs"],
            tmp_path,
        )
    )
    (name,) = pool.start(1)
    try:
        _stall_on_a_large_result(stalled_gearman, stop_later)
        with JobClient(servers=[other_gearman.address]) as client:
            started = time.monotonic()
            for i in range(20):
                assert client.submit("echo", i, timeout=3.0) == [i]
            assert time.monotonic() - started < 3.0
        started = time.monotonic()
        assert islandora_job.stop_worker(name, grace=5.0, settings=pool.settings)
        elapsed = time.monotonic() - started
    finally:
        pool.stop()
    # SIGKILL would come only after the whole grace period.
    assert elapsed < 4.0, f"SIGTERM took {elapsed:.2f} s to end the worker"


def test_a_server_that_takes_nothing_is_dropped_and_reconnected(
    stalled_gearman: GearmanServer,
    other_gearman: GearmanServer,
    stop_later: Callable[[], None],
) -> None:
    worker = GearmanWorker(
        [stalled_gearman.address, other_gearman.address],
        write_timeout=0.5,
        backoff_start=0.05,
        backoff_max=0.2,
    )
    worker.register("big", lambda job: (time.sleep(0.3), b"x" * RESULT)[1])
    worker.register("echo", lambda job: bytes(job.data))
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(worker.registered_on()) == 2, what="the worker registering on both")
        with GearmanClient([stalled_gearman.address]) as client:
            client.submit_background("big", b"")
        wait_until(lambda: _running(stalled_gearman, "big") == 1, what="the large job starting")
        stop_later()
        # Past the write deadline the stalled server is dropped: it is no longer "registered".
        wait_until(
            lambda: worker.registered_on() == [other_gearman.address],
            what="the stalled server dropped",
        )
        with GearmanClient([other_gearman.address]) as client:
            assert client.submit("echo", b"still served", timeout=3.0).data == b"still served"
        os.kill(stalled_gearman.pid or 0, signal.SIGCONT)
        with GearmanClient([stalled_gearman.address]) as client:
            assert client.submit("echo", b"back", timeout=5.0).data == b"back"
        os.kill(stalled_gearman.pid or 0, signal.SIGSTOP)  # stop_later continues it
    finally:
        worker.request_stop()
        thread.join(5.0)
        worker.close()
    assert not thread.is_alive(), "the worker did not stop within 5 s"


def test_progress_packets_to_a_stopped_server_stay_bounded(
    stalled_gearman: GearmanServer, stop_later: Callable[[], None]
) -> None:
    """A handler that streams WORK_DATA to a stopped server waits (bounded by the write
    deadline) once a few MiB pile up, then learns the server is gone."""
    outcome: list[BaseException] = []

    def stream(job: WorkerJob) -> bytes:
        stop_later()
        try:
            for _ in range(1000):
                job.send_data(b"x" * (1 << 20))
        except ConnectionError as exc:
            outcome.append(exc)
        return b""

    worker = GearmanWorker([stalled_gearman.address], write_timeout=0.5)
    worker.register("stream", stream)
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    try:
        wait_until(lambda: worker.registered_on() != [], what="the worker registering")
        with GearmanClient([stalled_gearman.address]) as client:
            client.submit_background("stream", b"")
        wait_until(lambda: bool(outcome), what="the handler learning the server is gone")
    finally:
        worker.request_stop()
        thread.join(5.0)
        worker.close()
    assert "took none of a job's progress packets" in str(outcome[0])
