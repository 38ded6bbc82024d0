"""A job's progress (WORK_STATUS) seen by its client and by job_status; per-job batch results."""

from __future__ import annotations

import io
import json
import time

import pytest

import islandora_job
from islandora_job import JobClient, JobFailed, NoJobRunning
from islandora_job.workers import route
from pytest_islandora_job.workerpool import WorkerPool
from tests.helpers import wait_until

# -- progress ----------------------------------------------------------------------------


def test_a_foreground_client_sees_each_progress_report(pool: WorkerPool) -> None:
    pool.start(1)
    seen: list[tuple[int, int]] = []
    assert islandora_job.submit("steps", 4, on_progress=lambda n, d: seen.append((n, d))) == 4
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_job_status_shows_the_progress_while_the_job_runs(pool: WorkerPool) -> None:
    pool.start(1)
    handle = islandora_job.submit_background("steps", 3, 0.4)
    wait_until(lambda: islandora_job.job_status(handle).numerator > 0, what="progress")
    status = islandora_job.job_status(handle)
    assert status.known and status.running
    assert (status.numerator, status.denominator) in ((1, 3), (2, 3))
    wait_until(lambda: not islandora_job.job_status(handle).known, what="the job ending")


def test_progress_outside_a_job_says_where_it_works() -> None:
    with pytest.raises(NoJobRunning, match=r"progress\(\) was called outside a job"):
        islandora_job.progress(1, 2)


def test_progress_from_a_thread_the_job_started_has_no_job_in_hand(pool: WorkerPool) -> None:
    pool.start(1)
    assert "outside a job" in str(islandora_job.submit("progress_in_thread", timeout=20))


def test_bad_progress_values_are_refused() -> None:
    with pytest.raises(TypeError, match="progress numerator must be an int, not str"):
        islandora_job.progress("1", 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="progress denominator must be 0 or more, not -2"):
        islandora_job.progress(1, -2)


def test_progress_is_not_possible_in_the_gearman_cli_router() -> None:
    stdout = io.BytesIO()
    data = json.dumps({"func": "steps", "args": [2], "result": "json"}).encode()
    with islandora_job.configured(modules=["tests.jobs", "tests.features.jobs"]):
        assert route(io.BytesIO(data), stdout) == 1
    failure = json.loads(stdout.getvalue())
    assert failure["type"] == "NoJobRunning"
    assert "--via-gearman-cli" in failure["message"]
    # The router leaves no job reason behind in this process.
    with pytest.raises(NoJobRunning, match="outside a job"):
        islandora_job.progress(1, 2)


# -- per-job batch results ----------------------------------------------------------------


def test_run_batch_returns_each_result_or_its_failure_in_order(pool: WorkerPool) -> None:
    pool.start(2)
    outcomes = islandora_job.run_batch(
        [
            {"job_name": "add", "args": [1, 2]},
            {"job_name": "fail", "args": ["nope"]},
            {"job_name": "echo", "args": ["a", {"b": 1}]},
            {"job_name": "hello", "priority": "high"},
        ],
        timeout=20,
    )
    assert outcomes[0] == 3
    failure = outcomes[1]
    assert isinstance(failure, JobFailed)
    assert (failure.job_name, failure.type, failure.message) == ("fail", "ValueError", "nope")
    assert outcomes[2:] == [["a", {"b": 1}], "hello world"]
    assert islandora_job.run_batch([]) == []


def test_on_complete_is_called_for_each_job_as_it_ends(pool: WorkerPool) -> None:
    pool.start(2)
    began = time.monotonic()
    calls: list[tuple[int, object, float]] = []

    def ended(index: int, outcome: object) -> None:
        calls.append((index, outcome, time.monotonic() - began))

    with JobClient() as client:
        ok = client.submit_batch(
            [
                {"job_name": "sleep", "args": [1.0, "slow"]},
                {"job_name": "sleep", "args": [0, "fast"]},
            ],
            timeout=20,
            on_complete=ended,
        )
    assert ok is True
    assert [(index, outcome) for index, outcome, _ in calls] == [(1, "fast"), (0, "slow")]
    # The fast job's callback came while the slow job still ran.
    assert calls[0][2] < 0.9 <= calls[1][2]


def test_submit_batch_still_answers_false_when_a_job_failed(pool: WorkerPool) -> None:
    pool.start(1)
    outcomes: list[object] = []
    batch = [{"job_name": "hello"}, {"job_name": "fail"}]
    assert islandora_job.submit_batch(batch, on_complete=lambda _, o: outcomes.append(o)) is False
    assert sorted(map(type, outcomes), key=str) == sorted([str, JobFailed], key=str)


def test_a_failing_callback_leaves_nothing_for_the_next_call(pool: WorkerPool) -> None:
    pool.start(1)

    def broken(numerator: int, denominator: int) -> None:
        raise RuntimeError("the caller's callback")

    with islandora_job.JobClient() as client:
        with pytest.raises(RuntimeError, match="the caller's callback"):
            client.submit("steps", 3, 0.05, on_progress=broken, timeout=20)
        # The first job's later replies must not reach this call.
        assert client.submit("steps", 2, timeout=20) == 2
        assert client.run_batch([{"job_name": "steps", "args": [1]}], timeout=20) == [1]
