"""Fixtures of the interoperability tests: real PHP and Perl Gearman peers, the C tool as
the original module's worker, and Perl's Gearman::Server.

Every peer runs as a subprocess with a timeout, so a peer that hangs fails its test.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import islandora_job
from islandora_job.gearman import GearmanAdmin
from islandora_job.gearman.connection import ServerUnavailable
from pytest_islandora_job import factories
from pytest_islandora_job.ports import claim_port, release
from pytest_islandora_job.servers.base import GearmanServer

PEERS = Path(__file__).with_name("peers")
PHP = shutil.which("php")
PERL = shutil.which("perl")
GEARMAN = shutil.which("gearman")
# Debian's gearman-server package: Perl's Gearman::Server, beside the C gearmand in /usr/sbin.
PERL_GEARMAND = "/usr/bin/gearmand"
# Seconds a peer process may take before its test fails as hung.
PEER_TIMEOUT = 20.0
SITE = "site1"


def _works(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=PEER_TIMEOUT).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


HAS_PHP_GEARMAN = PHP is not None and _works(
    [PHP, "-r", 'exit(class_exists("GearmanClient") ? 0 : 1);']
)
HAS_PERL_GEARMAN = PERL is not None and _works([PERL, "-MGearman::Client", "-e", "1"])
HAS_PERL_SERVER = PERL is not None and _works([PERL, "-MGearman::Server", "-e", "1"])

needs_php = pytest.mark.skipif(
    not HAS_PHP_GEARMAN, reason="php-cli with php-gearman is not installed (make system-deps)"
)
needs_perl = pytest.mark.skipif(
    not HAS_PERL_GEARMAN,
    reason="Perl's Gearman::Client is not installed (apt-get install libgearman-client-perl)",
)
needs_perl_server = pytest.mark.skipif(
    not HAS_PERL_SERVER or not Path(PERL_GEARMAND).exists(),
    reason="Perl's Gearman::Server is not installed (apt-get install gearman-server)",
)
needs_gearman_tool = pytest.mark.skipif(
    GEARMAN is None, reason="the C gearman tool is not installed (apt-get install gearman-tools)"
)


def run_peer(command: list[str]) -> dict[str, object]:
    """Run a peer script; return the JSON object it printed. Fails the test on a hang, a
    non-zero exit or output that is not one JSON object."""
    try:
        done = subprocess.run(command, capture_output=True, timeout=PEER_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{command[:3]} hung for {PEER_TIMEOUT} s; stderr: {exc.stderr!r}")
    assert done.returncode == 0, f"{command} exited {done.returncode}: {done.stderr!r}"
    report = json.loads(done.stdout)
    assert isinstance(report, dict), done.stdout
    return report


def php(request: dict[str, object]) -> dict[str, object]:
    """Run the PHP client (peers/client.php) with one request; its report."""
    assert PHP is not None
    return run_peer([PHP, str(PEERS / "client.php"), json.dumps(request)])


def perl(*args: str) -> dict[str, object]:
    """Run the Perl client (peers/client.pl) with these arguments; its report."""
    assert PERL is not None
    return run_peer([PERL, str(PEERS / "client.pl"), *args])


def unbase64(value: object) -> bytes:
    """The bytes of a base64 field of a peer's report."""
    assert isinstance(value, str), value
    return base64.b64decode(value)


def original_payload(job: str, args: list[object]) -> bytes:
    """A payload as the original module builds it (json_encode adds site and uid)."""
    return json.dumps({"func": job, "args": args, "site": "http://localhost", "uid": 1}).encode()


interop_worker = factories.job_worker("gearman_server", modules=["tests.interop.jobs"])


@pytest.fixture
def site_worker(
    gearman_server: GearmanServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A pidfile-managed worker of the interop jobs for site SITE; yields its pidfile name."""
    temp_dir = tmp_path_factory.mktemp("site-workers")
    with islandora_job.configured(
        servers=[gearman_server.address],
        modules=["tests.interop.jobs"],
        temp_dir=temp_dir,
        site=SITE,
    ):
        assert islandora_job.start_worker("site.pid")
        try:
            yield "site.pid"
        finally:
            islandora_job.stop_worker("site.pid")


@dataclass
class OriginalWorker:
    """The original module's worker: the C tool running the PHP router once per job."""

    process: subprocess.Popen[bytes]
    functions: list[str]


@pytest.fixture
def original_worker(gearman_server: GearmanServer) -> Iterator[Callable[..., OriginalWorker]]:
    """Start `gearman -w -f F ... -- php peers/router.php` for the given job functions."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*functions: str) -> OriginalWorker:
        assert GEARMAN is not None and PHP is not None
        options = [arg for function in functions for arg in ("-f", function)]
        command = [GEARMAN, "-h", gearman_server.host, "-p", str(gearman_server.port), "-w"]
        process = subprocess.Popen(
            [*command, *options, "--", PHP, str(PEERS / "router.php")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        started.append(process)
        wait_for_functions(gearman_server.address, functions, process)
        return OriginalWorker(process, list(functions))

    yield start
    for process in started:
        process.terminate()
        process.wait(10)


def wait_for_functions(
    address: str, functions: tuple[str, ...] | list[str], process: subprocess.Popen[bytes]
) -> None:
    """Wait until the server counts a worker for every function; fail if the process exits."""
    deadline = time.monotonic() + PEER_TIMEOUT
    while True:
        assert process.poll() is None, f"the worker exited with {process.returncode}"
        with GearmanAdmin(address) as admin:
            workers = {row.function for row in admin.status() if row.workers >= 1}
        if set(functions) <= workers:
            return
        assert time.monotonic() < deadline, f"{functions} not registered on {address}"
        time.sleep(0.01)


@dataclass
class PerlGearmand:
    """Perl's Gearman::Server on a loopback port."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def address(self) -> str:
        """ "host:port" as clients and workers take it."""
        return f"{self.host}:{self.port}"


@pytest.fixture(scope="session")
def perl_gearmand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PerlGearmand]:
    """Perl's Gearman::Server (/usr/bin/gearmand) on a free loopback port, for the session."""
    port = claim_port()
    log_path = tmp_path_factory.mktemp("perl-gearmand") / "gearmand.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [PERL_GEARMAND, "--listen", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = PerlGearmand("127.0.0.1", port, process, log_path)
    try:
        deadline = time.monotonic() + PEER_TIMEOUT
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")
            try:
                with GearmanAdmin(server.address, timeout=1.0) as admin:
                    admin.version()
                break
            except (ServerUnavailable, OSError):
                assert time.monotonic() < deadline, "Perl's gearmand did not answer"
                time.sleep(0.02)
        yield server
    finally:
        process.terminate()
        process.wait(10)
        release(port)
