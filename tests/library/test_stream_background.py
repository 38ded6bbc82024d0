"""islandora_job.stream_background / JobClient.stream_background: a batch of any length
queued in the background as it is read, its handles in order."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

import islandora_job
from islandora_job import JobClient, UnknownJob
from pytest_islandora_job.servers.base import GearmanServer
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


def test_an_unknown_job_stops_the_stream_after_the_jobs_before_it(
    gearman_server: GearmanServer,
) -> None:
    def batch() -> Iterator[Mapping[str, object]]:
        for i in range(40):
            yield {"job_name": "sleep", "args": [0, i], "priority": "low"}
        yield {"job_name": "no_such_job", "args": []}
        yield {"job_name": "sleep", "args": [0]}

    handles: list[str] = []
    with JobClient([gearman_server.address], check_jobs=True) as client:
        with pytest.raises(UnknownJob, match="no_such_job"):
            for handle in client.stream_background(batch(), window=16):
                handles.append(handle)
        assert len(handles) == 40
        assert queued(gearman_server.address, "sleep") >= 40
        islandora_job.queue.clear([gearman_server.address])


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
    gearman_server: GearmanServer, entry: object, error: type[Exception], message: str
) -> None:
    batch = [{"job_name": "sleep", "args": [0, i]} for i in range(3)] + [entry]
    handles: list[str] = []
    with JobClient([gearman_server.address]) as client, pytest.raises(error, match=message):
        handles.extend(client.stream_background(batch))  # type: ignore[arg-type]
    assert len(handles) == 3
    islandora_job.queue.clear([gearman_server.address])


@pytest.mark.parametrize("batch", ["a string", b"bytes", {"job_name": "echo"}, 7])
def test_a_batch_that_is_not_an_iterable_of_entries_is_refused_at_the_call(
    batch: object,
) -> None:
    with JobClient(["127.0.0.1:1"]) as client, pytest.raises(TypeError, match="an iterable of"):
        client.stream_background(batch)  # type: ignore[arg-type]


def test_a_bad_window_is_refused_at_the_call() -> None:
    with JobClient(["127.0.0.1:1"]) as client, pytest.raises(ValueError, match="window"):
        client.stream_background([], window=0)
