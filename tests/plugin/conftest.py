"""Helpers for the plugin's own pytester tests."""

from __future__ import annotations

import os
import uuid

import psutil
import pytest

from pytest_islandora_job import factories

JOBS_MODULE = """
import time

def register_jobs():
    return {"ping": "leakjobs:ping", "nap": "leakjobs:nap"}

def ping():
    return "pong"

def nap(seconds):
    time.sleep(seconds)
    return seconds
"""


class Marked:
    """An environment marker that every process a pytester run starts inherits."""

    def __init__(self) -> None:
        self.value = uuid.uuid4().hex

    def processes(self) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.environ().get("ISLANDORA_JOB_LEAK_MARK") == self.value:
                    found.append(proc)
            except (psutil.Error, OSError):
                continue
        return found


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Marked:
    """A pytester project with a job module `leakjobs` and a marker for its processes."""
    pytester.makepyfile(leakjobs=JOBS_MODULE)
    pytester.makeini("[pytest]\nislandora_job_modules = leakjobs\n")
    mark = Marked()
    monkeypatch.setenv("ISLANDORA_JOB_LEAK_MARK", mark.value)
    monkeypatch.setenv(
        "PYTHONPATH", str(pytester.path) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    # A run of our own must not point the inner run at our servers.
    for name in ("ISLANDORA_JOB_SERVERS", "ISLANDORA_JOB_TEMP_DIR", "ISLANDORA_JOB_MODULES"):
        monkeypatch.delenv(name, raising=False)
    return mark


# The fixture tests that make sense on every backend run on each (ids process, docker,
# embedded).
backend_gearman = factories.gearman_server(
    params=[{"backend": "process"}, {"backend": "docker"}, {"backend": "embedded"}]
)
backend_worker = factories.job_worker("backend_gearman")
backend_client = factories.job_client("backend_gearman")
