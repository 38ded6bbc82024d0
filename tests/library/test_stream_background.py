"""islandora_job.stream_background / JobClient.stream_background: a batch of any length
queued in the background as it is read, its handles in order."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

import islandora_job
from islandora_job import JobClient, UnknownJob
from islandora_job.gearman import GearmanWorker, WorkerJob
from pytest_islandora_job.servers.base import GearmanServer
from tests.gearman.conftest import worker_thread
from tests.helpers import queued, wait_until


def lines(path: Path, count: int) -> Iterator[dict[str, object]]:
    for i in range(count):
        yield {"job_name": "append", "args": [str(path), f"line {i}"]}


def test_a_generated_batch_is_queued_in_order_and_runs(
    gearman_server: GearmanServer, tmp_path: Path, start: Callable[[str], str]
) -> None:
    out = tmp_path / "out.txt"
    handles = list(islandora_job.stream_background(lines(out, 300), window=64))
    assert len(set(handles)) == 300 and all(h.startswith("H:") for h in handles)
    start("one.pid")  # one worker: the jobs run in the order they were queued
    wait_until(lambda: out.exists() and len(out.read_text().splitlines()) == 300)
    assert out.read_text().splitlines() == [f"line {i}" for i in range(300)]


@pytest.fixture
def drained(gearman_server: GearmanServer) -> Iterator[str]:
    """The plugin's gearmand, with nothing queued before and after the test."""
    islandora_job.queue.clear([gearman_server.address])
    yield gearman_server.address
    islandora_job.queue.clear([gearman_server.address])


def test_an_unknown_job_stops_the_stream_after_the_jobs_before_it(drained: str) -> None:
    def batch() -> Iterator[Mapping[str, object]]:
        for i in range(40):
            yield {"job_name": "sleep", "args": [0, i], "priority": "low"}
        yield {"job_name": "no_such_job", "args": []}
        yield {"job_name": "sleep", "args": [0]}

    handles: list[str] = []
    with JobClient([drained], check_jobs=True) as client:
        with pytest.raises(UnknownJob, match="no_such_job"):
            for handle in client.stream_background(batch(), window=16):
                handles.append(handle)
        assert len(handles) == 40
    assert queued(drained, "sleep") == 40


def test_a_streamed_entrys_priority_and_unique_id_are_kept(drained: str) -> None:
    batch = [
        {"job_name": "sleep", "args": [0, "low"], "priority": "low"},
        {"job_name": "sleep", "args": [0, "high"], "priority": "high", "unique": "u-1"},
        {"job_name": "sleep", "args": [0, "again"], "unique": "u-1"},  # coalesced
    ]
    with JobClient([drained]) as client:
        low, high, again = client.stream_background(batch)
    assert again == high != low
    # The high one runs first, though queued after the low one.
    taken: list[str] = []

    def record(job: WorkerJob) -> bytes:
        taken.append(job.handle)
        return b"null"

    worker = GearmanWorker([drained])
    worker.register("sleep", record)
    with worker_thread(worker):
        wait_until(lambda: len(taken) == 2, what="the worker to take both jobs")
    assert taken == [high, low]


@pytest.mark.parametrize(
    ("entry", "error", "message"),
    [
        ("not a mapping", TypeError, "batch entry 3 is a str"),
        ({"job_name": "echo", "args": "x"}, TypeError, "batch entry 3: args must be a list"),
        ({"job_name": "echo", "priority": "urgent"}, ValueError, "batch entry 3: .*priority"),
        ({"args": []}, ValueError, "batch entry 3 has no job_name"),
        ({"job_name": "echo", "args": [object()]}, TypeError, "serialize them"),
    ],
)
def test_a_bad_entry_is_named_after_the_jobs_before_it_are_queued(
    drained: str, entry: object, error: type[Exception], message: str
) -> None:
    batch = [{"job_name": "sleep", "args": [0, i]} for i in range(3)] + [entry]
    handles: list[str] = []
    with JobClient([drained]) as client, pytest.raises(error, match=message):
        handles.extend(client.stream_background(batch))  # type: ignore[arg-type]
    assert len(handles) == 3
    assert queued(drained, "sleep") == 3


@pytest.mark.parametrize("batch", ["a string", b"bytes", {"job_name": "echo"}, 7])
def test_a_batch_that_is_not_an_iterable_of_entries_is_refused_at_the_call(
    batch: object,
) -> None:
    with JobClient(["127.0.0.1:1"]) as client, pytest.raises(TypeError, match="an iterable of"):
        client.stream_background(batch)  # type: ignore[arg-type]


def test_a_bad_window_is_refused_at_the_call() -> None:
    with JobClient(["127.0.0.1:1"]) as client, pytest.raises(ValueError, match="window"):
        client.stream_background([], window=0)
