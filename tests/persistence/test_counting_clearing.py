"""Jobs left per function (admin protocol and queue table) and clearing, on every queue type."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import islandora_job
from islandora_job import cli
from islandora_job.gearman.client import GearmanClient, JobResult
from islandora_job.queue import clear, counts_from_table, jobs_left, status
from pytest_islandora_job.assertions import wait_for_job
from pytest_islandora_job.servers import GearmanServer
from pytest_islandora_job.workerpool import WorkerPool
from tests.helpers import wait_until

# No worker serves these functions: their jobs stay queued until cleared.
JOBS = {"count_a": 3, "count_b": 2}


def queue_jobs(address: str) -> None:
    clear([address])
    with islandora_job.JobClient(servers=[address], check_jobs=False) as client:
        for function, count in JOBS.items():
            for i in range(count):
                client.submit_background(function, i)


def running_jobs(address: str, function: str) -> int:
    found = status([address]).get(function)
    return found.running if found is not None else 0


def test_count_and_clear_persistent_queue(persistent_gearman_server: GearmanServer) -> None:
    server = persistent_gearman_server
    address = server.address
    dsn = server.database.dsn.describe()  # throwaway databases have no password
    queue_jobs(address)

    assert jobs_left([address]) == JOBS
    assert jobs_left([address], "count_b") == {"count_b": 2}
    assert server.persisted_counts() == JOBS
    assert counts_from_table(dsn) == JOBS

    assert server.clear_queue("count_a") == 3
    assert jobs_left([address]) == {"count_b": 2}
    assert server.persisted_counts() == {"count_b": 2}

    assert server.clear_queue() == 2
    assert jobs_left([address]) == {}
    assert server.persisted_jobs() == []
    assert clear([address]) == 0


def test_count_and_clear_in_memory_queue(memory_server: GearmanServer) -> None:
    address = memory_server.address
    queue_jobs(address)
    assert jobs_left([address]) == JOBS
    assert clear([address], "count_b") == 2
    assert jobs_left([address]) == {"count_a": 3}
    assert clear([address]) == 3
    assert jobs_left([address]) == {}


def test_clearing_leaves_running_jobs_alone(
    persistent_gearman_server: GearmanServer, persistent_job_worker: WorkerPool
) -> None:
    server = persistent_gearman_server
    address = server.address
    with islandora_job.JobClient(servers=[address]) as client:
        running = client.submit_background("sleep", 2.0)
        wait_until(lambda: running_jobs(address, "sleep") == 1)
        waiting = [client.submit_background("sleep", 0) for _ in range(3)]

        assert clear([address], "sleep") == 3
        assert not any(client.job_status(handle).known for handle in waiting)
        assert client.job_status(running).running
        assert server.persisted_counts() == {"sleep": 1}

    wait_for_job(running, timeout=10, servers=[address])
    assert server.persisted_counts() == {}


def test_a_waiting_foreground_client_is_told_its_cleared_job_failed(
    memory_server: GearmanServer,
) -> None:
    address = memory_server.address
    clear([address])
    results: list[JobResult] = []

    def submit() -> None:
        with GearmanClient([address]) as client:
            results.append(client.submit("nobody_serves_this", b"{}", timeout=10))

    thread = threading.Thread(target=submit)
    thread.start()
    wait_until(lambda: jobs_left([address]) == {"nobody_serves_this": 1})
    assert clear([address], "nobody_serves_this") == 1
    thread.join(10)
    assert [result.status for result in results] == ["fail"]


def test_cli_status_from_table_and_clear(
    persistent_gearman_server: GearmanServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server = persistent_gearman_server
    dsn = server.database.dsn.describe()
    queue_jobs(server.address)

    assert cli.main(["status", "--from-table", dsn]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[0].split() == ["FUNCTION", "JOBS"]
    assert [line.split() for line in lines[1:3]] == [["count_a", "3"], ["count_b", "2"]]

    assert cli.main(["--servers", server.address, "clear", "count_a"]) == 0
    assert capsys.readouterr().out == "cleared 3 queued jobs of count_a\n"
    assert cli.main(["--servers", server.address, "clear"]) == 0
    assert capsys.readouterr().out == "cleared 2 queued jobs\n"
    assert cli.main(["status", "--from-table", dsn]) == 0
    assert capsys.readouterr().out == "no jobs left in table gearman_queue\n"


def test_cli_status_from_table_reports_a_missing_table_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    assert cli.main(["status", "--from-table", f"sqlite:///{empty}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("islandora-job: error: cannot read table gearman_queue at sqlite://")
    assert err.count("\n") == 1
