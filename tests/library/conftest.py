"""Fixtures of the job library tests (gearmand comes from the plugin's `gearman_server`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import islandora_job
from pytest_islandora_job.servers.base import GearmanServer


@pytest.fixture(autouse=True)
def job_settings(tmp_path: Path) -> Iterator[Path]:
    """Every test: the suite's job module and a temp dir of its own (returned)."""
    temp_dir = tmp_path / "run"
    previous = islandora_job.configure(modules=["tests.jobs"], temp_dir=temp_dir)
    yield temp_dir
    islandora_job.restore(previous)


@pytest.fixture
def start(gearman_server: GearmanServer) -> Iterator[Callable[[str], str]]:
    """start(name) starts a pidfile-managed worker (asserting it started); all stopped after."""
    names: list[str] = []

    def start_one(name: str = "worker.pid") -> str:
        assert islandora_job.start_worker(name, timeout=20) is True
        names.append(name)
        return name

    yield start_one
    for name in names:
        islandora_job.stop_worker(name, grace=5)
