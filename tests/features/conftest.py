"""Fixtures of the feature tests: workers on the plugin's `gearman_server`, started on demand."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_islandora_job.factories import addresses
from pytest_islandora_job.servers.base import GearmanServer
from pytest_islandora_job.workerpool import WorkerPool, pool_settings

MODULES = ["tests.jobs", "tests.features.jobs"]
GEARMAN = shutil.which("gearman")


@pytest.fixture
def pool(gearman_server: GearmanServer, tmp_path: Path) -> Iterator[WorkerPool]:
    """A WorkerPool with no worker yet (`pool.start(n)` starts them); the module-level API
    uses its settings during the test. Every worker is stopped at teardown."""
    temp_dir = tmp_path / "workers"
    temp_dir.mkdir()
    workers = WorkerPool(pool_settings(addresses(gearman_server), MODULES, temp_dir))
    yield workers
    workers.stop()


def gearman_tool(server: GearmanServer, *args: str) -> str:
    """Run the C `gearman` client against the server; its standard output."""
    if GEARMAN is None:
        pytest.skip("the C gearman tool is not installed (apt-get install gearman-tools)")
    done = subprocess.run(
        [GEARMAN, "-h", server.host, "-p", str(server.port), *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return done.stdout
