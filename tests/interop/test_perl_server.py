"""Our client and worker through Perl's Gearman::Server (Debian's gearman-server), and the
plugin's fixtures pointed at it with --gearman-backend=external."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import islandora_job
from islandora_job.gearman import GearmanAdmin
from tests.helpers import queued

from .conftest import PerlGearmand, needs_perl_server

pytestmark = needs_perl_server

ROOT = Path(__file__).parents[2]


@pytest.fixture
def perl_worker(perl_gearmand: PerlGearmand, tmp_path: Path) -> Iterator[str]:
    """A pidfile-managed worker of the interop jobs on Perl's server."""
    with islandora_job.configured(
        servers=[perl_gearmand.address], modules=["tests.interop.jobs"], temp_dir=tmp_path
    ):
        assert islandora_job.start_worker("perl.pid", timeout=20)
        try:
            yield "perl.pid"
        finally:
            islandora_job.stop_worker("perl.pid")


def test_admin_version_is_the_bare_line(perl_gearmand: PerlGearmand) -> None:
    with GearmanAdmin(perl_gearmand.address) as admin:
        assert admin.version() == "v1.130.1"


def test_foreground_background_status_batch(perl_gearmand: PerlGearmand, perl_worker: str) -> None:
    with islandora_job.JobClient([perl_gearmand.address]) as client:
        assert client.submit("hello_world", "Danny", timeout=15) == "Hello Danny"
        assert client.submit("interop_returns", "dict", timeout=15) == {"a": 1, "b": [True]}
        assert client.submit("interop_returns", "none", timeout=15) is None
        handle = client.submit_background("interop_sleep", 1.0)
        status = client.job_status(handle)
        assert (status.known, status.numerator, status.denominator) == (True, 0, 0)
        deadline = time.monotonic() + 15
        while status.known:
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
            status = client.job_status(handle)
        batch = [{"job_name": "hello_world", "args": [n]} for n in "ABC"]
        assert client.submit_batch(batch, timeout=15) is True
        with pytest.raises(islandora_job.JobFailed, match="boom"):
            client.submit("interop_fail", "boom", timeout=15)


def test_a_stream_into_perls_server_is_queued_then_run(
    perl_gearmand: PerlGearmand, tmp_path: Path
) -> None:
    batch = ({"job_name": "hello_world", "args": [n]} for n in range(300))
    with islandora_job.JobClient([perl_gearmand.address], check_jobs=False) as client:
        handles = list(client.stream_background(batch, window=32))
        assert len(set(handles)) == 300
        assert queued(perl_gearmand.address, "hello_world") == 300
        with islandora_job.configured(
            servers=[perl_gearmand.address], modules=["tests.interop.jobs"], temp_dir=tmp_path
        ):
            assert islandora_job.start_worker("perl-stream.pid", timeout=20)
            try:
                deadline = time.monotonic() + 30
                while queued(perl_gearmand.address, "hello_world"):
                    assert time.monotonic() < deadline, "Perl's server still holds jobs"
                    time.sleep(0.05)
            finally:
                islandora_job.stop_worker("perl-stream.pid")
        assert not client.job_status(handles[-1]).known


EXTERNAL_TESTS = """
import islandora_job

def test_foreground(gearman_server, job_worker):
    assert gearman_server.version == "v1.130.1"
    assert islandora_job.submit("hello_world", "Danny", timeout=15) == "Hello Danny"

def test_background(job_worker, job_client):
    from pytest_islandora_job import wait_for_job
    handle = job_client.submit_background("interop_sleep", 0.2)
    wait_for_job(handle, timeout=15)

def test_batch(job_worker):
    batch = [{"job_name": "hello_world", "args": [n]} for n in "AB"]
    assert islandora_job.submit_batch(batch, timeout=15)
"""


def test_external_backend_fixtures_on_perl_server(
    perl_gearmand: PerlGearmand, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_on_perl=EXTERNAL_TESTS)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--gearman-backend=external",
        "--gearman-servers",
        perl_gearmand.address,
        "--islandora-job-modules",
        "tests.interop.jobs",
        timeout=120,
    )
    result.assert_outcomes(passed=3)
