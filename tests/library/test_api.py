"""Submitting jobs through a real gearmand to real workers: the original module's tests and more."""

from __future__ import annotations

import os
import time

import pytest

import islandora_job
from islandora_job import JobClient, JobFailed, JobTimeout
from islandora_job.gearman.connection import ServerUnavailable
from tests.helpers import connections_to, queued

# -- the original module's tests ---------------------------------------------------------


def test_a_job_with_no_args_returns_its_value(start) -> None:
    start()
    assert islandora_job.submit("hello") == "hello world"


def test_multiple_args(start) -> None:
    start()
    assert islandora_job.submit("add", 1, 2, 3.5) == 6.5


def test_a_serialized_object_argument(start) -> None:
    start()
    obj = {"title": "A ☃ book", "pages": 3, "tags": ["x"], "draft": False, "parent": None}
    assert islandora_job.submit("describe", obj) == {
        "received": obj,
        "types": {
            "title": "str",
            "pages": "int",
            "tags": "list",
            "draft": "bool",
            "parent": "NoneType",
        },
    }


def test_a_background_job_returns_in_well_under_its_run_time(start) -> None:
    start()
    began = time.monotonic()
    handle = islandora_job.submit_background("sleep", 0.5)
    assert time.monotonic() - began < 0.2
    assert handle.startswith("H:")
    status = islandora_job.job_status(handle)
    assert status.known


def test_a_batch_of_5_sleeping_jobs_is_faster_with_5_workers_than_with_1(start) -> None:
    seconds = 0.3  # each job's run time: the overhead of a batch is a few milliseconds
    batch = [{"job_name": "sleep", "args": [seconds, i]} for i in range(5)]
    start("one.pid")
    began = time.monotonic()
    assert islandora_job.submit_batch(batch) is True
    with_one = time.monotonic() - began
    for i in range(4):
        start(f"more-{i}.pid")
    began = time.monotonic()
    assert islandora_job.submit_batch(batch) is True
    with_five = time.monotonic() - began
    assert with_one >= 5 * seconds
    assert with_five < 2.5 * seconds < with_one


# -- results, failures, timeouts --------------------------------------------------------


def test_arguments_with_nul_newlines_and_non_ascii_round_trip_through_a_worker(start) -> None:
    start()
    args = ["nul\0byte", "new\nline", "naïve ☃ 漢字 🦀", {"k\0": ["\n"]}]
    assert islandora_job.submit("echo", *args) == args


def test_a_job_that_raised_gives_job_failed_with_the_remote_type_and_message(start) -> None:
    start()
    with pytest.raises(JobFailed, match=r"job 'fail' failed: ValueError: no ☃") as info:
        islandora_job.submit("fail", "no ☃")
    assert (info.value.job_name, info.value.type, info.value.message) == (
        "fail",
        "ValueError",
        "no ☃",
    )


def test_a_job_with_no_worker_times_out_naming_the_job_and_queue_status(gearman_server) -> None:
    client = JobClient(check_jobs=False)
    before = connections_to(gearman_server.port)
    began = time.monotonic()
    with pytest.raises(JobTimeout) as info:
        client.submit("nobody_serves_this", 1, timeout=0.3)
    assert 0.3 <= time.monotonic() - began < 2
    message = str(info.value)
    assert "job 'nobody_serves_this' did not end within 0.3 s" in message
    assert f"no worker registered for 'nobody_serves_this' on {gearman_server.address}" in message
    assert info.value.job_name == "nobody_serves_this"
    assert connections_to(gearman_server.port) <= before


def test_submitting_a_job_not_registered_here_is_allowed_when_asked(gearman_server) -> None:
    handle = JobClient(check_jobs=False).submit_background("registered_elsewhere", "x")
    assert handle.startswith("H:")
    assert queued(gearman_server.address, "registered_elsewhere") == 1


def test_arguments_json_cannot_encode_are_refused_before_sending(gearman_server) -> None:
    with pytest.raises(TypeError, match="serialize them"):
        JobClient(check_jobs=False).submit_background("never_sent", object())
    assert queued(gearman_server.address, "never_sent") == 0


def test_a_payload_over_the_maximum_is_refused_before_sending(gearman_server) -> None:
    client = JobClient(max_payload=100, check_jobs=False)
    with pytest.raises(islandora_job.PayloadError, match="maximum of 100"):
        client.submit_background("too_big", "x" * 200)
    assert queued(gearman_server.address, "too_big") == 0


# -- batches --------------------------------------------------------------------------------


def test_a_batch_with_a_failing_job_returns_false(start) -> None:
    start()
    assert (
        islandora_job.submit_batch([{"job_name": "add", "args": [1]}, {"job_name": "fail"}])
        is False
    )
    assert (
        islandora_job.submit_batch([{"job_name": "hello"}, {"job_name": "add", "args": [1, 2]}])
        is True
    )
    assert islandora_job.submit_batch([]) is True


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ("not a dict", TypeError, "batch entry 1 is a str"),
        ({"args": []}, ValueError, "batch entry 1 has no job_name"),
        ({"job_name": "x", "arg": []}, ValueError, r"unknown keys \['arg'\]"),
        ({"job_name": "x", "args": "abc"}, TypeError, "args must be a list"),
        ({"job_name": "", "args": []}, ValueError, "batch entry 1: the job name is empty"),
        ({"job_name": "x", "args": [object()]}, TypeError, "serialize them"),
    ],
)
def test_a_bad_batch_entry_is_refused_before_anything_is_sent(
    gearman_server, bad: object, error: type[Exception], message: str
) -> None:
    batch = [{"job_name": "batch_first", "args": []}, bad]
    with pytest.raises(error, match=message):
        JobClient(check_jobs=False).submit_batch(batch)  # type: ignore[arg-type]
    assert queued(gearman_server.address, "batch_first") == 0


def test_a_batch_times_out_naming_its_jobs(gearman_server) -> None:
    with pytest.raises(
        JobTimeout, match=r"'batch_nobody_a, batch_nobody_b' did not end within 0\.2 s"
    ):
        JobClient(check_jobs=False).submit_batch(
            [{"job_name": "batch_nobody_a"}, {"job_name": "batch_nobody_b"}], timeout=0.2
        )


# -- clients and settings -------------------------------------------------------------------


def test_module_functions_follow_configure(start) -> None:
    start()
    assert islandora_job.submit("hello") == "hello world"
    previous = islandora_job.configure(servers=["127.0.0.1:1"])
    try:
        with pytest.raises(ServerUnavailable):
            islandora_job.submit("hello")
    finally:
        islandora_job.restore(previous)
    assert islandora_job.submit("hello") == "hello world"


def test_a_forked_child_submits_on_a_connection_of_its_own(start, gearman_server) -> None:
    start()
    assert islandora_job.submit("add", 1, 1) == 2  # this process's client is connected now
    before = connections_to(gearman_server.port)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            # Both the child and the parent submit at once: a shared socket would mix up
            # their replies.
            ok = all(islandora_job.submit("add", i, 1) == i + 1 for i in range(50))
            os.write(write, str(os.getpid()).encode() if ok else b"wrong")
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    assert all(islandora_job.submit("add", i, 2) == i + 2 for i in range(50))
    with os.fdopen(read) as pipe:
        said = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and said == str(pid)
    # The parent's connection is still its own and still serves it.
    assert islandora_job.submit("add", 2, 2) == 4
    assert before <= connections_to(gearman_server.port)


def test_a_job_client_is_bound_to_its_servers(start, gearman_server) -> None:
    start()
    previous = islandora_job.configure(servers=["127.0.0.1:1"])
    try:
        with JobClient([gearman_server.address]) as client:
            assert client.servers == (gearman_server.address,)
            assert client.submit("add", 2, 2) == 4
            handle = client.submit_background("hello")
            assert client.job_status(handle).handle == handle
            assert client.submit_batch([{"job_name": "hello"}]) is True
    finally:
        islandora_job.restore(previous)


def test_job_client_refuses_malformed_servers() -> None:
    with pytest.raises(ValueError, match="host:port"):
        JobClient(["gm:port"])
