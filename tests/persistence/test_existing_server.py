"""The fixtures with --gearman-mysql-dsn / --gearman-postgres-dsn: a database server this session
started itself stands in for a running one. The fixtures make and drop a database of their own,
touch nothing else, and never show the password."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from pytest_islandora_job import ports
from pytest_islandora_job.databases.local_server import LocalServer
from pytest_islandora_job.databases.mysql import MariaDBServer
from pytest_islandora_job.databases.postgres import PostgresServer

SECRET = "s3cret p@ss:w/rd'\\"

INNER_TEST = """
import os

import psutil

from islandora_job import JobClient

SECRET = os.environ["PIJ_SECRET"]


def test_queue_on_an_existing_server(persistent_gearman_server):
    server = persistent_gearman_server
    database = server.database
    assert database.instance is None, "no throwaway server when a DSN is given"
    assert SECRET not in database.describe()
    assert SECRET not in " ".join(database.redacted_args())
    with JobClient(servers=[server.address], check_jobs=False) as client:
        for i in range(5):
            client.submit_background("count_a", i)
    assert server.persisted_counts() == {"count_a": 5}
    server.kill()
    server.restart()
    assert server.persisted_counts() == {"count_a": 5}
    assert server.clear_queue() == 5
    assert server.persisted_jobs() == []
    command_line = " ".join(psutil.Process(server.pid).cmdline())
    # gearmand takes the MySQL password from its command line only; Postgres gets a passfile.
    assert (SECRET in command_line) == (server.queue == "mysql")
    print("OUR DATABASE", database.dsn.database)
"""


@dataclass
class Existing:
    """A running database server, as a user of the fixtures would have one."""

    queue: str
    option: str
    dsn: str
    server: LocalServer
    databases: Callable[[], set[str]]
    sentinel: Callable[[], int]


def _rows(server: LocalServer, sql: str, database: str = "") -> list[tuple[object, ...]]:
    dsn = server.admin_dsn if not database else server.admin_dsn.with_database(database)
    with contextlib.closing(dsn.connect()) as conn:
        cursor = conn.cursor()
        cursor.execute(sql)
        return list(cursor.fetchall()) if cursor.description else []


def _mariadb(workdir: Path) -> Existing:
    server = MariaDBServer(workdir, 60.0, tcp=True)
    server.start()
    with contextlib.closing(server.admin_dsn.connect()) as conn:
        cursor = conn.cursor()
        cursor.execute("CREATE USER 'gq'@'127.0.0.1' IDENTIFIED BY %s", (SECRET,))
        # Rights on the fixtures' databases only: anything else would be refused.
        cursor.execute("GRANT ALL PRIVILEGES ON `gearman\\_queue\\_%`.* TO 'gq'@'127.0.0.1'")
        for sql in ("CREATE DATABASE keep_me", "CREATE TABLE keep_me.t (v INT)",
                    "INSERT INTO keep_me.t VALUES (42)"):  # fmt: skip
            cursor.execute(sql)
    return Existing(
        queue="mysql",
        option="--gearman-mysql-dsn",
        dsn=f"mysql://gq:{quote(SECRET, safe='')}@127.0.0.1:{server.port}/",
        server=server,
        databases=lambda: {row[0] for row in _rows(server, "SHOW DATABASES")},
        sentinel=lambda: _rows(server, "SELECT v FROM keep_me.t")[0][0],
    )


def _postgres(workdir: Path) -> Existing:
    import psycopg.sql

    server = PostgresServer(workdir, 60.0, tcp=True)
    server.start()
    assert server.scratch is not None
    with contextlib.closing(server.admin_dsn.connect()) as conn:
        password = psycopg.sql.Literal(SECRET).as_string(conn)
        conn.execute(f"CREATE ROLE gq LOGIN CREATEDB PASSWORD {password}")
        conn.execute("CREATE DATABASE keep_me")
    _rows(server, "CREATE TABLE t AS SELECT 42 AS v", "keep_me")
    # The template trusts every local connection: make this role prove its password.
    hba = server.scratch / "data" / "pg_hba.conf"
    hba.write_text("host all gq 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    _rows(server, "SELECT pg_reload_conf()")
    return Existing(
        queue="postgres",
        option="--gearman-postgres-dsn",
        dsn=f"postgresql://gq:{quote(SECRET, safe='')}@127.0.0.1:{server.port}/postgres",
        server=server,
        databases=lambda: {row[0] for row in _rows(server, "SELECT datname FROM pg_database")},
        sentinel=lambda: _rows(server, "SELECT v FROM t", "keep_me")[0][0],
    )


@pytest.fixture(scope="module", params=["mysql", "postgres"])
def existing(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Existing]:
    make = _mariadb if request.param == "mysql" else _postgres
    found = make(tmp_path_factory.mktemp(f"existing-{request.param}"))
    try:
        yield found
    finally:
        found.server.remove()


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PIJ_SECRET", SECRET)
    for name in ("ISLANDORA_JOB_SERVERS", "ISLANDORA_JOB_TEMP_DIR", "ISLANDORA_JOB_MODULES"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_inner=INNER_TEST)
    return pytester


def _files_holding(root: Path, text: str) -> list[Path]:
    needle = text.encode()
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_fixtures_use_an_existing_server_by_dsn(
    existing: Existing, inner: pytest.Pytester, tmp_path: Path
) -> None:
    before = existing.databases()
    basetemp = tmp_path / "inner"
    result = inner.runpytest_subprocess(
        existing.option, existing.dsn, "--gearman-queues", existing.queue,
        "-s", f"--basetemp={basetemp}", "-p", "no:cacheprovider",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    made = [line.split()[-1] for line in result.outlines if "OUR DATABASE" in line]
    assert len(made) == 1 and made[0].startswith("gearman_queue_")
    assert made[0] not in before
    assert existing.databases() == before, "the fixture drops its database and nothing else"
    assert existing.sentinel() == 42
    output = "\n".join(result.outlines + result.errlines)
    assert SECRET not in output
    assert _files_holding(basetemp, SECRET) == []


def test_an_unreachable_dsn_is_one_line_without_the_password(
    existing: Existing, inner: pytest.Pytester
) -> None:
    closed = ports.claim_port()  # claimed, never listened on
    try:
        dsn = existing.dsn.replace(f":{existing.server.port}/", f":{closed}/")
        result = inner.runpytest_subprocess(
            existing.option, dsn, "--gearman-queues", existing.queue, "-p", "no:cacheprovider"
        )
    finally:
        ports.release(closed)
    result.assert_outcomes(errors=1)
    output = "\n".join(result.outlines + result.errlines)
    assert SECRET not in output
    scheme = "mysql" if existing.queue == "mysql" else "postgresql"
    failures = [line for line in result.outlines if f"cannot connect to {scheme}://gq@" in line]
    assert failures, output
    assert f"127.0.0.1:{closed}/" in failures[0]
    assert "Traceback" not in output
