"""Fixtures of the protocol tests: the plugin's gearmand, plus fresh servers a test may kill.

``gearmand`` is the plugin's session ``gearman_server``; ``gearmand_factory`` starts fresh
servers with the plugin's launcher, for tests that kill or restart them.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from islandora_job.gearman import GearmanAdmin, GearmanWorker, ServerUnavailable
from islandora_job.gearman.connection import Connection
from pytest_islandora_job.config import ServerSettings
from pytest_islandora_job.ports import claim_port, release
from pytest_islandora_job.servers import make_servers
from pytest_islandora_job.servers.process import ProcessGearmanServer as Gearmand
from tests.helpers import wait_until

# The plugin's default: which("gearmand") may find Perl's Gearman::Server in /usr/bin.
GEARMAND = "/usr/sbin/gearmand"


@pytest.fixture(scope="session")
def gearmand(gearman_server: Gearmand) -> Gearmand:
    """One gearmand for the whole session: the plugin's gearman_server."""
    return gearman_server


@pytest.fixture
def gearmand_factory(tmp_path: Path) -> Iterator[Callable[[], Gearmand]]:
    """Start fresh gearmand servers for one test; all are closed at teardown."""
    servers: list[Gearmand] = []

    def start() -> Gearmand:
        (server,) = make_servers(ServerSettings(), tmp_path / f"server-{len(servers)}")
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def free_port() -> Iterator[int]:
    """A claimed loopback port on which nothing listens."""
    port = claim_port()
    yield port
    release(port)


@contextmanager
def worker_thread(worker: GearmanWorker, servers: int = 1) -> Iterator[GearmanWorker]:
    """Run ``worker.work()`` in a thread until the block ends; wait until ``servers`` servers
    registered it; stop, join and close it afterwards."""
    thread = threading.Thread(target=worker.work, name="gearman-worker", daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(worker.registered_on()) >= servers)
        yield worker
    finally:
        worker.request_stop()
        thread.join(10)
        worker.close()
    assert not thread.is_alive(), "worker thread did not stop"


WORKER_MAIN = Path(__file__).with_name("worker_main.py")


class WorkerProcess:
    """A worker_main.py process; its functions are ``prefix + name``."""

    def __init__(
        self, servers: list[str], record_file: Path | None = None, exceptions: bool = True
    ) -> None:
        self.servers = servers
        self.client_id = f"w-{uuid.uuid4().hex[:12]}"
        self.prefix = f"{self.client_id}-"
        command = [sys.executable, str(WORKER_MAIN), ",".join(servers), self.client_id, self.prefix]
        if record_file is not None:
            command += ["--record", str(record_file)]
        if not exceptions:
            command.append("--no-exceptions")
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)

    def registered_on(self, address: str) -> bool:
        """True once the server at ``address`` lists this worker with its functions."""
        assert self.process.poll() is None, f"worker exited with {self.process.returncode}"
        try:
            with GearmanAdmin(address) as admin:
                rows = admin.workers()
        except ServerUnavailable:
            return False
        return any(w.client_id == self.client_id and len(w.functions) == 6 for w in rows)

    def stop(self) -> int:
        """SIGTERM and wait; return the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def worker_process() -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker_main.py processes, ready once registered on their first live server."""
    started: list[WorkerProcess] = []

    def start(
        servers: list[str],
        record_file: Path | None = None,
        exceptions: bool = True,
        wait: bool = True,
    ) -> WorkerProcess:
        worker = WorkerProcess(servers, record_file, exceptions)
        started.append(worker)
        if wait:
            wait_until(lambda: any(worker.registered_on(a) for a in servers), timeout=15)
        return worker

    yield start
    for worker in started:
        worker.stop()


def counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Count the calls of a Connection method from now on (in this process; the worker
    alone calls receive and send_some, the client alone _fill): the count is element 0."""
    calls = [0]
    original: Callable[..., object] = getattr(Connection, name)

    def counted(self: Connection, *args: object) -> object:
        calls[0] += 1
        return original(self, *args)

    monkeypatch.setattr(Connection, name, counted)
    return calls
