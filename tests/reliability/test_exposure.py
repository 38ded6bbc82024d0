"""What a test run exposes: the addresses its processes listen on, and database passwords.

tests/persistence/test_listen.py shows the default gearmand is unreachable through another
address of the machine, and tests/persistence/test_existing_server.py that a DSN's password
stays out of a passing run and out of the error for an unreachable DSN. Here: every listening
socket of every server process, and a failing test's report, which prints much more.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import psutil
import pytest

from pytest_islandora_job import factories
from pytest_islandora_job.servers import GearmanServer
from pytest_islandora_job.workerpool import WorkerPool

SECRET = "pw-that-must-not-show:@/"

exposed_gearman = factories.gearman_server(scope="function")
exposed_worker = factories.job_worker("exposed_gearman", modules=["tests.jobs"])
open_gearman = factories.gearman_server(listen="0.0.0.0", scope="function")
open_worker = factories.job_worker("open_gearman", modules=["tests.jobs"])


def _listening(pid: int) -> set[str]:
    """The IP addresses a process accepts TCP connections on."""
    return {c.laddr.ip for c in psutil.Process(pid).net_connections("inet") if c.status == "LISTEN"}


def _worker_pids(pool: WorkerPool) -> list[int]:
    return [int((pool.temp_dir / name).read_text()) for name in pool.pidfiles]


@pytest.mark.parametrize(
    "exposed_gearman", ["builtin", "mysql", "postgres", "sqlite"], indirect=True
)
def test_servers_and_their_databases_listen_on_loopback_only(
    exposed_gearman: GearmanServer, exposed_worker: WorkerPool
) -> None:
    assert exposed_gearman.host == "127.0.0.1"
    assert _listening(exposed_gearman.pid) == {"127.0.0.1"}
    instance = getattr(exposed_gearman.database, "instance", None)
    if instance is not None:  # a throwaway MariaDB or PostgreSQL
        assert _listening(instance.pid) == set(), "a Unix socket only"
    for pid in _worker_pids(exposed_worker):
        assert _listening(pid) == set()


def test_a_server_told_to_listen_on_every_address_does_and_is_still_reached_on_loopback(
    open_gearman: GearmanServer, open_worker: WorkerPool
) -> None:
    assert _listening(open_gearman.pid) == {"0.0.0.0"}
    assert open_gearman.address == f"127.0.0.1:{open_gearman.port}"
    rows = {row.function: row for row in open_gearman.status()}
    assert rows["hello"].workers == 1


INNER_JOBS = """
def register_jobs():
    return {"ping": "innerjobs:ping"}

def ping():
    return "pong"
"""

# A failing assertion that goes through the server's settings: pytest prints the repr of
# every object on the way, which is where a password would leak.
INNER_TEST = """
from islandora_job import JobClient

def test_fails(gearman_server, job_worker):
    with JobClient([gearman_server.address]) as client:
        assert client.submit("ping", timeout=10) == "pong"
    assert gearman_server.settings.threads == -1
"""


def test_a_dsn_password_never_shows_in_a_failing_tests_report_or_logs(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("ISLANDORA_JOB_SERVERS", "ISLANDORA_JOB_TEMP_DIR", "ISLANDORA_JOB_MODULES"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(innerjobs=INNER_JOBS, test_inner=INNER_TEST)
    pytester.makeini("[pytest]\nislandora_job_modules = innerjobs\n")
    secret = quote(SECRET, safe="")
    basetemp = tmp_path / "inner"
    result = pytester.runpytest_subprocess(
        f"--gearman-mysql-dsn=mysql://gq:{secret}@127.0.0.1:1/q",
        f"--gearman-postgres-dsn=postgresql://gq:{secret}@127.0.0.1:1/q",
        "-rA", "-v", "-l", "--tb=long", "--setup-show",
        f"--basetemp={basetemp}", "-p", "no:cacheprovider",
    )  # fmt: skip
    result.assert_outcomes(failed=1)
    output = "\n".join(result.outlines + result.errlines)
    # The report did show the settings and the logs: the test sees what a user would.
    assert "ServerSettings(" in output
    assert "gearmand log (gearman_server[0]" in output and "worker log (job_worker" in output
    for form in (SECRET, secret):
        assert form not in output
        logs = [p for p in basetemp.rglob("*") if p.is_file() and form.encode() in p.read_bytes()]
        assert logs == []
