"""Temporary gearmand fixtures for the protocol tests.

``gearmand`` (session) and ``gearmand_factory`` (fresh servers that a test may kill and
restart) start /usr/sbin/gearmand on claimed loopback ports, ready once admin ``version``
answers. To be replaced by the plugin's ``gearman_server`` fixture.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from islandora_job.gearman import GearmanAdmin, ServerUnavailable
from pytest_islandora_job.ports import claim_port, release

GEARMAND = shutil.which("gearmand") or "/usr/sbin/gearmand"


class Gearmand:
    """A gearmand process on 127.0.0.1 with its log and pid file in ``directory``."""

    def __init__(self, directory: Path, port: int) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.address = f"{self.host}:{port}"
        self.directory = directory
        self.log_path = directory / "gearmand.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start gearmand; raise RuntimeError with the log tail if it does not answer."""
        self.process = subprocess.Popen(
            [
                GEARMAND,
                "-L",
                self.host,
                "-p",
                str(self.port),
                "-l",
                str(self.log_path),
                "--pid-file",
                str(self.directory / "gearmand.pid"),
                "-t",
                "2",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with GearmanAdmin(self.address, timeout=1.0) as admin:
                    admin.version()
                return
            except ServerUnavailable:
                time.sleep(0.01)
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        self.stop()
        raise RuntimeError(f"gearmand on {self.address} did not come up; log tail:\n{tail}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Kill and start again on the same port."""
        self.kill()
        self.start()


@pytest.fixture(scope="session")
def gearmand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gearmand]:
    """One gearmand for the whole session."""
    port = claim_port()
    server = Gearmand(tmp_path_factory.mktemp("gearmand"), port)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        release(port)


@pytest.fixture
def gearmand_factory(tmp_path: Path) -> Iterator[Callable[[], Gearmand]]:
    """Start fresh gearmand servers for one test; all are stopped at teardown."""
    servers: list[Gearmand] = []

    def start() -> Gearmand:
        port = claim_port()
        directory = tmp_path / f"gearmand-{port}"
        directory.mkdir()
        server = Gearmand(directory, port)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
        release(server.port)


@pytest.fixture
def free_port() -> Iterator[int]:
    """A claimed loopback port on which nothing listens."""
    port = claim_port()
    yield port
    release(port)
