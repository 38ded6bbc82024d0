"""Crash recovery: background jobs in a persistent queue survive gearmand being SIGKILLed;
in the in-memory queue they do not."""

from __future__ import annotations

from pathlib import Path

import islandora_job
from islandora_job.queue import clear, jobs_left
from pytest_islandora_job.assertions import wait_until_idle
from pytest_islandora_job.servers import GearmanServer
from pytest_islandora_job.workerpool import WorkerPool
from tests.persistence.conftest import job_args

JOBS = 200


def submit_appends(server: GearmanServer, out: Path) -> list[str]:
    """Queue JOBS background `append` jobs, each writing its own number; returns the numbers."""
    numbers = [str(i) for i in range(JOBS)]
    with islandora_job.JobClient(servers=[server.address]) as client:
        for number in numbers:
            client.submit_background("append", str(out), number)
    return numbers


def test_background_jobs_survive_gearmand_sigkill(
    crash_server: GearmanServer, crash_worker: WorkerPool, tmp_path: Path
) -> None:
    """On each backend (a process, or a container killed with `docker kill`)."""
    server = crash_server
    crash_worker.stop()
    clear([server.address])
    out = tmp_path / "ran.txt"

    numbers = submit_appends(server, out)
    stored = server.persisted_jobs()
    assert server.persisted_counts() == {"append": JOBS}
    assert sorted(job_args(job)[1] for job in stored) == sorted(numbers)
    assert {job.function for job in stored} == {"append"}

    server.kill()
    assert server.pid is None
    assert len(server.persisted_jobs()) == JOBS, "the crash must leave the table as it was"
    server.restart()
    assert jobs_left([server.address]) == {"append": JOBS}, "gearmand replays the table"
    assert not out.exists()

    crash_worker.start(1)
    wait_until_idle(server, timeout=60)
    ran = out.read_text().splitlines()
    assert sorted(ran, key=int) == numbers, "every job runs, and runs once"
    assert server.persisted_jobs() == []


def test_in_memory_queue_loses_background_jobs_on_sigkill(
    memory_server: GearmanServer, tmp_path: Path
) -> None:
    server = memory_server
    clear([server.address])
    submit_appends(server, tmp_path / "ran.txt")
    assert jobs_left([server.address]) == {"append": JOBS}

    server.kill()
    server.restart()
    assert jobs_left([server.address]) == {}
