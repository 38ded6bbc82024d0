"""The PostgreSQL queue: a throwaway PostgreSQL, or a database of our own on a running server.

gearmand's Postgres queue takes a libpq conninfo string. A password never goes into it: it is
written to a 0600 passfile the conninfo names, so `ps` does not show it.

Known gearmand 1.1.20 bugs of this queue (pinned by tests/persistence): jobs replayed after a
restart all come back HIGH priority, and gearmand never reconnects after the database
restarts (every background submit fails until gearmand restarts).
"""

from __future__ import annotations

import functools
import hashlib
import os
import signal
from pathlib import Path

from islandora_job.dsn import DSN
from pytest_islandora_job.databases.local_server import LocalServer
from pytest_islandora_job.databases.programs import find_program, run_as_prefix, run_to_end
from pytest_islandora_job.databases.server_queue import ServerQueue
from pytest_islandora_job.databases.templates import TEMPLATE_BUILD_TIMEOUT
from pytest_islandora_job.readiness import ServerStartError

DSN_OPTION = "--gearman-postgres-dsn"
DSN_HINT = f"{DSN_OPTION} postgresql://user:pw@host:port/db"
# Throwaway clusters: no durability beyond a gearmand crash, little memory, no background work.
SERVER_SETTINGS = (
    "listen_addresses=127.0.0.1",
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "wal_level=minimal",
    "max_wal_senders=0",
    "shared_buffers=32MB",
    "max_connections=40",
    "autovacuum=off",
    "jit=off",
    "logging_collector=off",
)


#: Names the socket file (.s.PGSQL.5432) of a server without TCP.
SOCKET_PORT = 5432
# The socket's directory is reachable by us alone; gearmand's role still proves its password.
LOCAL_HBA = "local all postgres trust\nlocal all all scram-sha-256\n"


def _bin_dirs() -> tuple[str, ...]:
    """Debian's versioned PostgreSQL bin directories, newest first."""
    root = Path("/usr/lib/postgresql")
    versions = [p for p in root.glob("*/bin") if p.parent.name.isdigit()] if root.is_dir() else []
    return tuple(str(p) for p in sorted(versions, key=lambda p: -int(p.parent.name)))


def _conninfo_value(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def _passfile_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


class PostgresServer(LocalServer):
    """A throwaway PostgreSQL cluster on a Unix socket in its private directory (no TCP).

    The superuser `postgres` is trusted on that socket alone; every other role proves its
    password (scram-sha-256). PostgreSQL refuses to run as root: as root, initdb and the
    server run as the dedicated database account."""

    name = "PostgreSQL"
    # SIGINT is the fast shutdown; SIGTERM would wait for gearmand to disconnect.
    stop_signal = signal.SIGINT

    @functools.cached_property
    def bindir(self) -> Path:
        """The directory of postgres and initdb; raises ServerStartError when missing."""
        postgres = find_program("postgres", _bin_dirs(), "postgresql", "postgres", DSN_HINT)
        # A symlink in PATH leads to the versioned directory, where initdb is too.
        return Path(postgres).resolve().parent

    @property
    def admin_dsn(self) -> DSN:
        if self.tcp:
            return DSN("postgres", "127.0.0.1", self.port or 0, "postgres", None, "postgres")
        if self.scratch is None:
            raise RuntimeError(f"throwaway {self.name} is not started; call start() first")
        return DSN("postgres", str(self.scratch), SOCKET_PORT, "postgres", None, "postgres")

    def template_key(self) -> str:
        postgres = self.bindir / "postgres"
        stat = postgres.stat()
        digest = hashlib.sha256(f"{postgres}:{stat.st_mtime_ns}:{stat.st_size}".encode())
        return f"postgres-{digest.hexdigest()[:12]}"

    def build_template(self, datadir: Path, log_path: Path) -> None:
        initdb = self.bindir / "initdb"
        if not initdb.exists():
            raise ServerStartError(
                f"initdb not found next to {self.bindir / 'postgres'}: install postgresql "
                f"(apt-get install postgresql), give {DSN_HINT}, or use another --gearman-queue"
            )
        argv = [
            *run_as_prefix(self.user),
            str(initdb),
            "-D", str(datadir),
            "-A", "trust",
            "-U", "postgres",
            "-E", "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
            # 1 MB WAL segments instead of 16: a smaller template, quicker to copy.
            "--wal-segsize=1",
        ]  # fmt: skip
        run_to_end(argv, log_path, "initdb", TEMPLATE_BUILD_TIMEOUT)

    def argv(self, datadir: Path, sockdir: Path) -> list[str]:
        port = self.port if self.tcp else SOCKET_PORT
        argv = [str(self.bindir / "postgres"), "-D", str(datadir), "-p", str(port)]
        argv += ["-k", str(sockdir)]
        settings = [*SERVER_SETTINGS]
        if not self.tcp:
            # The last -c wins: no TCP listener, and the socket rules below.
            hba = sockdir / "pg_hba.conf"
            hba.write_text(LOCAL_HBA)
            settings += ["listen_addresses=", f"hba_file={hba}"]
        for setting in settings:
            argv += ["-c", setting]
        return argv


class PostgresQueue(ServerQueue):
    """gearmand's Postgres queue in a database of our own: on a throwaway server (a
    PostgresServer, or a PostgreSQL container), or on the running server a DSN names."""

    queue = "postgres"
    dsn_option = DSN_OPTION
    server_kind = "PostgreSQL server"

    @property
    def passfile(self) -> Path:
        """Where the password for gearmand is written when the DSN has one."""
        return self.workdir / "gearmand.pgpass"

    def create_sql(self) -> str:
        return f'CREATE DATABASE "{self.database_name}"'

    def account_sql(self, user: str, password: str | None) -> list[str]:
        # Not a superuser (COPY ... PROGRAM, file access need one), owner of its database alone.
        return [
            f'CREATE ROLE "{user}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE '
            f"PASSWORD '{password}'",
            f'ALTER DATABASE "{self.database_name}" OWNER TO "{user}"',
            f'REVOKE ALL ON DATABASE "{self.database_name}" FROM PUBLIC',
        ]

    def drop_sql(self) -> str:
        # FORCE (PostgreSQL 13+) ends sessions a killed gearmand may have left behind.
        return f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)'

    def start(self) -> None:
        super().start()
        dsn = self.gearmand_dsn
        if dsn.password:
            self.workdir.mkdir(parents=True, exist_ok=True)
            fields = (dsn.host, str(dsn.port), dsn.database, dsn.user, dsn.password)
            fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(":".join(_passfile_field(v) for v in fields) + "\n")

    def stop(self) -> None:
        self.passfile.unlink(missing_ok=True)
        super().stop()

    def gearmand_args(self) -> list[str]:
        dsn = self.gearmand_dsn
        conninfo = {"host": dsn.host, "port": str(dsn.port), "user": dsn.user,
                    "dbname": dsn.database}  # fmt: skip
        if dsn.password:
            conninfo["passfile"] = str(self.passfile)
        text = " ".join(f"{key}={_conninfo_value(value)}" for key, value in conninfo.items())
        return ["-q", "Postgres", "--libpq-conninfo", text, "--libpq-table", self.table]
