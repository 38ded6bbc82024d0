"""A queue in a database of our own on a database server, throwaway or already running.

The queue takes its server from the caller: a throwaway `DatabaseServer` it boots and removes
(a `LocalServer`, or a container of the docker backend), or the DSN of a running server
(then only our database is made and dropped). Either way it makes its database with plain
connection values: the server's admin DSN. On a throwaway server of our own (a `LocalServer`)
gearmand gets an account made for the run, with a random password, that owns its database and
nothing else (no superuser, no file rights).
"""

from __future__ import annotations

import abc
import contextlib
import secrets
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from islandora_job.dsn import DSN, DatabaseUnavailable
from islandora_job.queue import DEFAULT_TABLE
from pytest_islandora_job.databases.base import QueueDatabase
from pytest_islandora_job.databases.local_server import LocalServer
from pytest_islandora_job.readiness import ServerStartError


class DatabaseServer(Protocol):
    """A throwaway database server: what a ServerQueue (and a test that stops its database)
    may do with it."""

    #: Shown in messages: "MariaDB", "PostgreSQL".
    name: str

    @property
    def admin_dsn(self) -> DSN:
        """A DSN with full rights on the server (valid once started)."""

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""

    def start(self) -> None:
        """Start the server (again, after stop(): same data, same port); ServerStartError."""

    def stop(self, grace: float = 10.0) -> None:
        """Shut the server down, keeping its data."""

    def restart(self) -> None:
        """Stop the server and start it again with the same data."""

    def remove(self) -> None:
        """Stop the server and delete it, data and all; idempotent."""

    def gearmand_dsn(self, dsn: DSN) -> DSN:
        """How gearmand reaches `dsn`, a database on this server."""


def unique_name(prefix: str = "gearman_queue") -> str:
    """A database name no other run picks: prefix_<8 hex digits>."""
    return f"{prefix}_{secrets.token_hex(4)}"


class ServerQueue(QueueDatabase):
    """A queue in a database of our own on `server`: a throwaway `DatabaseServer` (booted by
    start(), removed by stop()) or the DSN of a running server (only our database is made
    and dropped)."""

    #: The option that names an existing server, e.g. "--gearman-mysql-dsn".
    dsn_option: str
    #: What the server is called in messages: "MySQL server", "PostgreSQL server".
    server_kind: str

    def __init__(
        self, workdir: Path, server: DatabaseServer | DSN, table: str = DEFAULT_TABLE
    ) -> None:
        super().__init__(workdir, table)
        self.server_dsn = server if isinstance(server, DSN) else None
        self.instance = None if isinstance(server, DSN) else server
        self.database_name = unique_name()
        self._dsn: DSN | None = None
        self._account: DSN | None = None

    @abc.abstractmethod
    def create_sql(self) -> str:
        """The statement that creates our database."""

    def account(self) -> tuple[str, str | None]:
        """The name and password of gearmand's account on a throwaway server: random, made
        for this queue (plain ASCII letters and digits)."""
        return f"gearmand_{secrets.token_hex(4)}", secrets.token_hex(16)

    @abc.abstractmethod
    def account_sql(self, user: str, password: str | None) -> list[str]:
        """The statements that make gearmand's account, owning our database alone (run after
        create_sql())."""

    @abc.abstractmethod
    def drop_sql(self) -> str:
        """The statement that drops our database (and nothing else)."""

    @property
    def dsn(self) -> DSN:
        """Our database (RuntimeError before start())."""
        if self._dsn is None:
            raise RuntimeError(f"{self.describe()} is not started; call start() first")
        return self._dsn

    @property
    def gearmand_dsn(self) -> DSN:
        """Our database as gearmand reaches it: as its own account on a throwaway server of
        ours, through the throwaway container, or as the fixtures do."""
        if self._account is not None:
            return self._account
        return self.dsn if self.instance is None else self.instance.gearmand_dsn(self.dsn)

    def _server(self) -> DSN:
        if self.instance is not None:
            return self.instance.admin_dsn
        assert self.server_dsn is not None  # one of the two is set by __init__
        return self.server_dsn

    def start(self) -> None:
        """Boot the throwaway server (if ours) and create our database on the server."""
        if self._dsn is not None:
            return
        try:
            if self.instance is not None:
                self.instance.start()
            self._execute(self.create_sql(), "create database")
            dsn = self._server().with_database(self.database_name)
            if isinstance(self.instance, LocalServer):
                user, password = self.account()
                for sql in self.account_sql(user, password):
                    self._execute(sql, "make gearmand's account for")
                self._account = replace(dsn, user=user, password=password)
            self._dsn = dsn
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Drop our database on an existing server, or remove the throwaway server."""
        started, self._dsn, self._account = self._dsn, None, None
        if started is not None and self.instance is None:
            self._execute(self.drop_sql(), "drop database")
        if self.instance is not None:
            self.instance.remove()

    def _execute(self, sql: str, what: str) -> None:
        server = self._server()
        try:
            with contextlib.closing(server.connect()) as conn:
                conn.cursor().execute(sql)
        except DatabaseUnavailable as exc:
            raise ServerStartError(
                f"{exc}; start that server, fix {self.dsn_option}, or leave it unset for a "
                "throwaway server"
            ) from None
        except Exception as exc:  # the driver's own errors: privileges, server state
            reason = server.scrub(" ".join(str(exc).split()))
            raise ServerStartError(
                f"cannot {what} {self.database_name} on {server.describe()}: {reason}; "
                f"give the user of {self.dsn_option} the right to create and drop databases"
            ) from None

    def describe(self) -> str:
        where = self._dsn.describe() if self._dsn is not None else "(not started)"
        if self.instance is not None:
            return f"throwaway {self.instance.name} {where}, table {self.table}"
        return f"existing {self.server_kind} {where}, table {self.table}"
