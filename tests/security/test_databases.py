"""Another local user cannot reach the throwaway MariaDB or PostgreSQL behind gearmand, nor
turn gearmand's own database account into file writes or commands.

The databases listen on a Unix socket in a 0700 directory of the account they run as (never
root), with no TCP listener; gearmand's account owns its database alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from islandora_job.gearman.client import GearmanClient
from pytest_islandora_job import factories
from pytest_islandora_job.databases.local_server import LocalServer
from pytest_islandora_job.servers import GearmanServer
from tests.security.conftest import OtherUser

guarded_server = factories.gearman_server(scope="module")

# As the other user: every way in it can see (ps, netstat, the socket's name) with the
# command-line clients of the machine. Prints what it got; exits 0 when nothing worked.
ATTACK = """
import json, subprocess, sys

attempts = json.loads(sys.argv[1])
got = []
for argv in attempts:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except Exception as exc:
        print("failed", argv, exc)
        continue
    print("ran", argv, done.returncode, done.stdout.strip()[:200], done.stderr.strip()[:200])
    if done.returncode == 0:
        got.append(done.stdout)
print("GOT", json.dumps(got))
"""

SECRET_FUNCTION = "secret_queue_probe"


def _shows_nothing(server: GearmanServer, database_pid: int, secret_word: str) -> None:
    """What `ps` shows of gearmand holds no ``secret_word``, the database listens on no TCP
    port, and it is not root."""
    assert secret_word not in " ".join(psutil.Process(server.pid).cmdline())
    assert _tcp_ports(database_pid) == []
    assert psutil.Process(database_pid).uids().real != 0


def _tcp_ports(pid: int) -> list[int]:
    return sorted(
        c.laddr.port for c in psutil.Process(pid).net_connections("inet") if c.status == "LISTEN"
    )


def _instance(server: GearmanServer) -> LocalServer:
    instance = getattr(server.database, "instance", None)
    assert isinstance(instance, LocalServer), "a throwaway database of the process backend"
    assert instance.pid is not None
    return instance


@pytest.fixture
def queued_secret(guarded_server: GearmanServer) -> Iterator[str]:
    """A background job nobody serves, stored in the queue table, with a secret payload."""
    secret = f"payload-{secrets.token_hex(8)}"
    with GearmanClient([guarded_server.address]) as client:
        client.submit_background(SECRET_FUNCTION, secret.encode(), unique=secret)
    assert any(secret.encode() in job.data for job in guarded_server.persisted_jobs())
    yield secret
    guarded_server.clear_queue(SECRET_FUNCTION)


def _attack(other_user: OtherUser, attempts: list[list[str]]) -> str:
    result = other_user.run(ATTACK, json.dumps(attempts))
    assert "GOT" in result.stdout, result.stderr
    return result.stdout


@pytest.mark.parametrize("guarded_server", ["mysql"], indirect=True)
def test_another_user_cannot_read_the_mariadb_queue_nor_write_files(
    guarded_server: GearmanServer, queued_secret: str, other_user: OtherUser, tmp_path: Path
) -> None:
    instance = _instance(guarded_server)
    database = guarded_server.database
    assert database is not None
    table = f"{database.dsn.database}.{database.table}"
    outfile = other_user.shared / f"outfile-{secrets.token_hex(4)}"
    query = f"SELECT data FROM {table}; SELECT 'x' INTO OUTFILE '{outfile}'"
    attempts = [
        ["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(port), "-u", user, "-e", query]
        for port in [*_tcp_ports(instance.pid), 3306]
        for user in ("root", "fixtures", database.gearmand_dsn.user)
    ]
    attempts += [
        ["mariadb", "--no-defaults", "-S", instance.admin_dsn.host, "-u", user, "-e", query]
        for user in ("root", "fixtures", database.gearmand_dsn.user, other_user.name)
    ]
    output = _attack(other_user, attempts)
    assert queued_secret not in output
    assert not outfile.exists()
    _shows_nothing(guarded_server, instance.pid, "--mysql-password")


@pytest.mark.parametrize("guarded_server", ["mysql"], indirect=True)
def test_gearmands_mariadb_account_has_no_file_rights(guarded_server: GearmanServer) -> None:
    import pymysql

    database = guarded_server.database
    assert database is not None
    outfile = Path("/tmp") / f"pij-outfile-{secrets.token_hex(4)}"
    # gearmand's account is proved by the socket's peer credentials: ours, as gearmand runs.
    with contextlib.closing(database.gearmand_dsn.connect()) as conn:
        cursor = conn.cursor()
        cursor.execute("SHOW GRANTS")
        grants = " ".join(row[0] for row in cursor.fetchall())
        assert "FILE" not in grants and "ALL PRIVILEGES ON *.*" not in grants
        with pytest.raises(pymysql.err.OperationalError):
            cursor.execute(f"SELECT 'x' INTO OUTFILE '{outfile}'")
        with pytest.raises(pymysql.err.OperationalError):
            cursor.execute("SELECT COUNT(*) FROM mysql.global_priv")
    # Even the fixtures' own account writes files only into an empty private directory.
    admin = _instance(guarded_server).admin_dsn
    with contextlib.closing(admin.connect()) as conn, pytest.raises(pymysql.err.MySQLError):
        conn.cursor().execute(f"SELECT 'x' INTO OUTFILE '{outfile}'")
    assert not outfile.exists()


@pytest.mark.parametrize("guarded_server", ["postgres"], indirect=True)
def test_another_user_cannot_read_the_postgres_queue_nor_run_commands(
    guarded_server: GearmanServer, queued_secret: str, other_user: OtherUser
) -> None:
    instance = _instance(guarded_server)
    database = guarded_server.database
    assert database is not None
    marker = other_user.shared / f"program-{secrets.token_hex(4)}"
    query = f"SELECT data FROM {database.table}; COPY (SELECT 1) TO PROGRAM 'id > {marker}'"
    hosts = [("127.0.0.1", port) for port in [*_tcp_ports(instance.pid), 5432]]
    hosts.append((instance.admin_dsn.host, instance.admin_dsn.port))
    attempts = [
        ["psql", "-w", "-h", host, "-p", str(port), "-U", user, "-d", database.dsn.database,
         "-c", query]
        for host, port in hosts
        for user in ("postgres", database.gearmand_dsn.user)
    ]  # fmt: skip
    output = _attack(other_user, attempts)
    assert queued_secret not in output
    assert not marker.exists()
    _shows_nothing(guarded_server, instance.pid, "password")


@pytest.mark.parametrize("guarded_server", ["postgres"], indirect=True)
def test_gearmands_postgres_role_is_no_superuser(guarded_server: GearmanServer) -> None:
    import psycopg

    database = guarded_server.database
    assert database is not None
    marker = Path("/tmp") / f"pij-program-{secrets.token_hex(4)}"
    with contextlib.closing(database.gearmand_dsn.connect()) as conn:
        row: Any = conn.execute("SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = "
                                "current_user").fetchone()  # fmt: skip
        assert tuple(row) == (False, False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"COPY (SELECT 1) TO PROGRAM 'id > {marker}'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT pg_read_file('/etc/passwd')")
    assert not marker.exists()
    # The role proves its password: without one, the socket refuses it.
    with pytest.raises(Exception, match="password"):
        database.gearmand_dsn.__class__(
            "postgres", database.gearmand_dsn.host, database.gearmand_dsn.port,
            database.gearmand_dsn.user, None, database.gearmand_dsn.database,
        ).connect()  # fmt: skip
    assert os.environ.get("PGPASSWORD") is None
