"""Our client against the original module's worker: the C tool running a PHP router that
echoes the job's return value."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import pytest

import islandora_job
from islandora_job.payload import PayloadError
from pytest_islandora_job.servers.base import GearmanServer

from .conftest import SITE, OriginalWorker, needs_gearman_tool, needs_php

StartOriginal = Callable[..., OriginalWorker]

pytestmark = [needs_php, needs_gearman_tool]

JOBS = (
    "my_module_hello_world",
    "my_module_answer",
    "my_module_nothing",
    "my_module_true",
    "my_module_false",
    "my_module_float",
    "my_module_json",
    "my_module_fail",
)


@pytest.fixture
def php_jobs(original_worker: StartOriginal) -> None:
    original_worker(*JOBS)


@pytest.mark.parametrize(
    ("job", "args", "expected"),
    [
        ("my_module_hello_world", ["Danny"], "Hello Danny"),
        ("my_module_answer", [], "42"),
        ("my_module_nothing", [], ""),
        ("my_module_true", [], "1"),
        ("my_module_false", [], ""),
        ("my_module_float", [], "2.5"),
        ("my_module_json", [{"a": [1]}], '{"a":[1]}'),
    ],
)
def test_text_results_are_the_echoed_text_exactly(
    gearman_server: GearmanServer, php_jobs: None, job: str, args: list[object], expected: str
) -> None:
    with islandora_job.JobClient(
        [gearman_server.address], results="text", check_jobs=False
    ) as client:
        assert client.submit(job, *args, timeout=15) == expected


def test_configure_results_text(gearman_server: GearmanServer, php_jobs: None) -> None:
    with islandora_job.configured(servers=[gearman_server.address], results="text"):
        assert (
            islandora_job.JobClient(check_jobs=False).submit("my_module_answer", timeout=15) == "42"
        )


def test_env_results_text(
    gearman_server: GearmanServer, php_jobs: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISLANDORA_JOB_RESULTS", "text")
    with islandora_job.configured(servers=[gearman_server.address]):
        assert (
            islandora_job.JobClient(check_jobs=False).submit("my_module_nothing", timeout=15) == ""
        )


def test_json_results_from_the_original_worker_say_how_to_read_them(
    gearman_server: GearmanServer, php_jobs: None
) -> None:
    with (
        islandora_job.JobClient([gearman_server.address], check_jobs=False) as client,
        pytest.raises(PayloadError, match="results='text'"),
    ):
        client.submit("my_module_hello_world", "Danny", timeout=15)


def test_a_failing_php_job_raises_job_failed(gearman_server: GearmanServer, php_jobs: None) -> None:
    with (
        islandora_job.JobClient(
            [gearman_server.address], results="text", check_jobs=False
        ) as client,
        pytest.raises(islandora_job.JobFailed, match="my_module_fail"),
    ):
        client.submit("my_module_fail", "boom", timeout=15)


def test_a_batch_on_the_original_worker(gearman_server: GearmanServer, php_jobs: None) -> None:
    batch = [{"job_name": "my_module_hello_world", "args": [n]} for n in "ABC"]
    with islandora_job.JobClient(
        [gearman_server.address], results="text", check_jobs=False
    ) as client:
        assert client.submit_batch(batch, timeout=15) is True


def test_multisite_on_the_original_worker(
    gearman_server: GearmanServer, original_worker: StartOriginal
) -> None:
    original_worker(f"{SITE}_my_module_hello_world")
    with islandora_job.JobClient(
        [gearman_server.address], results="text", site=SITE, check_jobs=False
    ) as client:
        assert client.submit("my_module_hello_world", "Danny", timeout=15) == "Hello Danny"
    with islandora_job.configured(servers=[gearman_server.address], site=SITE, results="text"):
        assert (
            islandora_job.JobClient(check_jobs=False).submit(
                "my_module_hello_world", "Site", timeout=15
            )
            == "Hello Site"
        )


def test_cli_text_and_site(gearman_server: GearmanServer, original_worker: StartOriginal) -> None:
    original_worker(f"{SITE}_my_module_hello_world", "my_module_answer")
    base = [sys.executable, "-m", "islandora_job", "--servers", gearman_server.address]
    done = subprocess.run(
        [
            *base,
            "--site",
            SITE,
            "submit",
            "--unregistered",
            "--text",
            "--timeout",
            "15",
            "my_module_hello_world",
            '"Danny"',
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stdout) == (0, "Hello Danny\n"), done.stderr
    done = subprocess.run(
        [*base, "submit", "--unregistered", "--text", "--timeout", "15", "my_module_answer"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stdout) == (0, "42\n"), done.stderr


def test_the_original_worker_runs_a_stream_of_jobs(
    gearman_server: GearmanServer, php_jobs: None
) -> None:
    batch = ({"job_name": "my_module_hello_world", "args": [n]} for n in range(200))
    with islandora_job.JobClient(
        [gearman_server.address], results="text", check_jobs=False
    ) as client:
        handles = list(client.stream_background(batch, window=16))
        assert len(set(handles)) == 200
        # A PHP process per job: the last of 200 is still queued when the stream ends.
        assert client.job_status(handles[-1]).known
        deadline = time.monotonic() + 60
        while client.job_status(handles[-1]).known:
            assert time.monotonic() < deadline, "the original worker did not reach the last job"
            time.sleep(0.05)
        assert client.submit("my_module_hello_world", "after", timeout=15) == "Hello after"
