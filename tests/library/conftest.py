"""Fixtures of the job library tests.

TEMPORARY: `gearman_server` below stands in for the plugin fixture of the same name until
`pytest_islandora_job.plugin` provides it; delete it then (the tests use only `host`,
`port` and `address`, and rely on it configuring the library's servers).
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import islandora_job
from islandora_job.gearman.admin import GearmanAdmin
from pytest_islandora_job.ports import claim_port, release


@dataclasses.dataclass
class _Gearmand:
    host: str
    port: int
    log_path: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@pytest.fixture(scope="session")
def gearman_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Gearmand]:
    """A gearmand on a free loopback port; the library's servers point at it meanwhile."""
    tmp = tmp_path_factory.mktemp("gearmand")
    port = claim_port()
    server = _Gearmand("127.0.0.1", port, tmp / "gearmand.log")
    process = subprocess.Popen(
        [
            *("/usr/sbin/gearmand", "-L", server.host, "-p", str(port)),
            *("-l", str(server.log_path), "--pid-file", str(tmp / "gearmand.pid")),
        ],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with GearmanAdmin(server.address, timeout=1.0) as admin:
                    admin.version()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"gearmand did not start:\n{server.log_path.read_text()[-2000:]}")
                time.sleep(0.005)
        previous = islandora_job.configure(servers=[server.address])
        yield server
        islandora_job.restore(previous)
    finally:
        process.terminate()
        process.wait(10)
        release(port)


@pytest.fixture(autouse=True)
def job_settings(tmp_path: Path) -> Iterator[Path]:
    """Every test: the suite's job module and a temp dir of its own (returned)."""
    temp_dir = tmp_path / "run"
    previous = islandora_job.configure(modules=["tests.jobs"], temp_dir=temp_dir)
    yield temp_dir
    islandora_job.restore(previous)


@pytest.fixture
def start(gearman_server: _Gearmand) -> Iterator[Callable[[str], str]]:
    """start(name) starts a pidfile-managed worker (asserting it started); all stopped after."""
    names: list[str] = []

    def start_one(name: str = "worker.pid") -> str:
        assert islandora_job.start_worker(name, timeout=20) is True
        names.append(name)
        return name

    yield start_one
    for name in names:
        islandora_job.stop_worker(name, grace=5)
