"""A mistyped job name is refused at once; a foreground call given no timeout has a default."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import timeit
from collections.abc import Iterator

import pytest

import islandora_job
from islandora_job import api, registry
from islandora_job.api import JobClient, JobTimeout
from islandora_job.cli import main
from islandora_job.config import configure, configured, restore
from islandora_job.gearman.admin import GearmanAdmin
from islandora_job.registry import UnknownJob


def _functions(address: str) -> set[str]:
    with GearmanAdmin(address) as admin:
        return {row.function for row in admin.status()}


@pytest.mark.parametrize(
    "call",
    [
        lambda: islandora_job.submit("helo"),
        lambda: islandora_job.submit_background("helo"),
        lambda: islandora_job.submit_batch([{"job_name": "add"}, {"job_name": "helo"}]),
        lambda: api.run_batch([{"job_name": "helo"}]),
    ],
    ids=["submit", "submit_background", "submit_batch", "run_batch"],
)
def test_a_mistyped_name_raises_unknown_job_at_once_naming_the_closest(
    gearman_server, call
) -> None:
    began = time.monotonic()
    with pytest.raises(
        UnknownJob, match=r"no job named 'helo' is registered \(did you mean 'hello'"
    ):
        call()
    assert time.monotonic() - began < 1
    assert "helo" not in _functions(gearman_server.address), "nothing is sent"


def test_unknown_job_says_how_to_submit_to_a_worker_of_another_process(gearman_server) -> None:
    with pytest.raises(UnknownJob) as info:
        islandora_job.submit("make_thumbnial")
    assert info.value.job_name == "make_thumbnial"
    assert "hello" in info.value.registered
    assert "JobClient(check_jobs=False)" in str(info.value)
    assert "islandora-job submit --unregistered" in str(info.value)


def test_check_jobs_false_sends_a_name_this_process_does_not_know(gearman_server) -> None:
    with JobClient(check_jobs=False) as client:
        assert client.submit_background("served_elsewhere").startswith("H:")
    assert "served_elsewhere" in _functions(gearman_server.address)


@pytest.fixture
def no_job_modules(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No job module configured, none installed as an entry point."""
    monkeypatch.setattr(registry, "installed_job_modules", lambda: ())
    with configured(modules=[]):
        yield


def test_with_no_job_modules_names_are_not_checked(
    gearman_server, no_job_modules, monkeypatch
) -> None:
    monkeypatch.setattr(api, "_always_check", [])  # as outside a pytest run
    handle = islandora_job.submit_background("no_registry_here")
    assert handle.startswith("H:")


def test_under_the_plugin_names_are_checked_even_with_no_job_modules(
    gearman_server, no_job_modules
) -> None:
    with pytest.raises(UnknownJob, match="registered jobs: none"):
        islandora_job.submit_background("no_registry_here")
    with JobClient() as client, pytest.raises(UnknownJob):
        client.submit("no_registry_here")


def test_check_jobs_true_refuses_every_name_of_an_empty_registry(
    gearman_server, no_job_modules
) -> None:
    with pytest.raises(UnknownJob, match="registered jobs: none"):
        JobClient(check_jobs=True).submit_background("anything")


def test_the_cli_refuses_a_mistyped_name_in_one_line(gearman_server, capsys) -> None:
    began = time.monotonic()
    assert main(["submit", "helo"]) == 1
    assert time.monotonic() - began < 5
    err = capsys.readouterr().err
    assert err.startswith("islandora-job: error: no job named 'helo' is registered")
    assert "did you mean 'hello'" in err
    assert err.count("\n") == 1


def test_the_cli_refuses_a_name_even_with_no_job_modules_set(
    gearman_server, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(api, "_always_check", [])  # as outside a pytest run
    with configured(modules=[]):
        began = time.monotonic()
        assert main(["submit", "nosuchjob"]) == 1
    assert time.monotonic() - began < 5  # refused, not left waiting for a worker
    assert "no job named 'nosuchjob' is registered" in capsys.readouterr().err


def test_the_cli_sends_an_unregistered_name_when_told(gearman_server, capsys) -> None:
    assert main(["submit", "--background", "--unregistered", "cli_elsewhere"]) == 0
    assert capsys.readouterr().out.startswith("H:")


def test_the_registry_is_loaded_once_per_client(gearman_server, monkeypatch) -> None:
    loads = []
    real = api.load_registry

    def counting(*args: object, **kwargs: object) -> islandora_job.Registry:
        loads.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(api, "load_registry", counting)
    with JobClient() as client:
        for _ in range(5):
            client.submit_background("hello")
        with pytest.raises(UnknownJob):
            client.submit_background("helo")
    assert len(loads) == 1


def test_the_check_costs_under_a_microsecond_per_submit_after_the_first(gearman_server) -> None:
    client = JobClient()
    client._codec.check("hello")  # the first loads the registry
    number = 100_000
    best = min(timeit.repeat(lambda: client._codec.check("hello"), number=number, repeat=5))
    assert best / number < 1e-6


def test_a_foreground_call_without_timeout_waits_the_default_timeout(gearman_server) -> None:
    previous = configure(default_timeout=0.3)
    try:
        client = JobClient(check_jobs=False)
    finally:
        restore(previous)
    began = time.monotonic()
    with pytest.raises(JobTimeout, match=r"did not end within 0\.3 s") as info:
        client.submit("nobody_serves_default")
    assert time.monotonic() - began < 2
    assert "the default timeout" in str(info.value)
    with pytest.raises(JobTimeout, match=r"did not end within 0\.3 s"):
        client.run_batch([{"job_name": "nobody_serves_default"}])


@pytest.mark.parametrize(
    ("value", "shown"),
    [("0.25", "0.25"), ("", "None"), ("soon", "ISLANDORA_JOB_TIMEOUT: malformed timeout 'soon'")],
)
def test_the_environment_sets_the_default_timeout(value: str, shown: str) -> None:
    # A process of its own: under the plugin, the run's gearman_job_timeout layer is above it.
    code = (
        "import islandora_job\n"
        "try:\n    print(islandora_job.settings().default_timeout)\n"
        "except ValueError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "ISLANDORA_JOB_TIMEOUT": value},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith(shown)


def test_a_timeout_tells_which_functions_have_no_worker_and_which_are_registered(
    gearman_server,
) -> None:
    with pytest.raises(JobTimeout) as info:
        islandora_job.submit("hello", timeout=0.2)  # registered here, no worker started
    message = str(info.value)
    assert f"no worker registered for 'hello' on {gearman_server.address}" in message
    assert "start one (islandora-job start-worker PIDFILE, or the job_worker fixture)" in message
    with pytest.raises(JobTimeout) as info:
        JobClient(check_jobs=False).submit("foreign_job", timeout=0.2)
    message = str(info.value)
    assert "no worker registered for 'foreign_job'" in message
    assert "'foreign_job' is not a job registered here (registered jobs: 'add'" in message
    assert "start-worker" not in message
