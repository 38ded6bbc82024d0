"""The queue status in words: what timeouts and waits show."""

from __future__ import annotations

import pytest

import islandora_job
from islandora_job.gearman.connection import ServerUnavailable
from islandora_job.queue import clear, queue_status, read_status, status_lines
from pytest_islandora_job import ports


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
