"""The queue status in words: what timeouts and waits show."""

from __future__ import annotations

import time

import pytest

import islandora_job
from islandora_job.gearman.admin import GearmanAdmin
from islandora_job.gearman.connection import ServerUnavailable
from islandora_job.queue import StatusReader, clear, queue_status, read_status, status_lines
from pytest_islandora_job import factories, ports
from pytest_islandora_job.servers.base import GearmanServer

restartable_gearman = factories.gearman_server(scope="function")


def test_each_function_is_said_with_its_counts_or_how_to_start_a_worker(
    start, gearman_server
) -> None:
    # A function no worker here serves: sent unchecked, as for a worker of another process.
    islandora_job.JobClient(check_jobs=False).submit_background("status_nobody", 1)
    start()
    assert islandora_job.submit("hello") == "hello world"
    line = queue_status([gearman_server.address], ["hello", "status_nobody", "hello"])
    assert line.split("; ") == [
        f"'hello' on {gearman_server.address}: 0 queued, 0 running, 1 workers",
        f"no worker registered for 'status_nobody' on {gearman_server.address} (1 queued): "
        "start one (islandora-job start-worker PIDFILE)",
    ]
    every = status_lines([gearman_server.address])
    assert f"'hello' on {gearman_server.address}: 0 queued, 0 running, 1 workers" in every
    assert clear([gearman_server.address], "status_nobody") == 1


def test_an_unreachable_server_is_said_so_and_never_raises(gearman_server) -> None:
    port = ports.claim_port()
    try:
        down = f"127.0.0.1:{port}"
        lines = status_lines([down, gearman_server.address], ["anything"])
        assert lines[0].startswith(f"{down}: status unavailable (")
        assert lines[1].startswith("no worker registered for 'anything'")
        (found,) = read_status([down])
        assert isinstance(found.error, ServerUnavailable) and found.rows == ()
        with pytest.raises(ServerUnavailable):
            found.checked()
    finally:
        ports.release(port)


def _admin_connections(address: str) -> int:
    """Connections registered for no function: admin ones, this query's own included."""
    with GearmanAdmin(address) as admin:
        return sum(1 for w in admin.workers() if not w.functions)


def test_a_status_reader_keeps_one_connection_and_connects_anew_after_a_restart(
    restartable_gearman: GearmanServer,
) -> None:
    address = restartable_gearman.address
    reader = StatusReader(timeout=5)
    try:
        islandora_job.JobClient(check_jobs=False).submit_background("status_kept", 1)
        for _ in range(3):
            (found,) = reader.read([address])
            assert found.error is None
            assert [(r.function, r.queued) for r in found.rows] == [("status_kept", 1)]
        assert _admin_connections(address) == 2  # the reader's, kept, and this query's
        restartable_gearman.restart()  # the kept connection is gone with the old gearmand
        (found,) = reader.read([address])
        assert found.error is None and found.rows == ()  # the in-memory queue went with it
        port = ports.claim_port()
        try:
            down, up = reader.read([f"127.0.0.1:{port}", address])
            assert isinstance(down.error, ServerUnavailable) and up.error is None
            # A read of other servers closes the connection to this one: a suite of
            # short-lived servers leaves none open.
            reader.read([f"127.0.0.1:{port}"])
            _wait_admin_connections(address, 1)
            assert reader.read([address])[0].error is None
        finally:
            ports.release(port)
    finally:
        reader.close()
    _wait_admin_connections(address, 1)  # closed: only this query's


def _wait_admin_connections(address: str, count: int) -> None:
    # gearmand drops a closed connection once it reads its end: soon, not at once.
    deadline = time.monotonic() + 5
    while _admin_connections(address) != count:
        assert time.monotonic() < deadline, "the reader's connection is still open"
        time.sleep(0.01)
