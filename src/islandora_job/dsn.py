"""Database addresses for the queue table: mysql://, postgresql:// and sqlite:// DSNs.

    mysql://user:password@host:port/database        (mariadb:// too; port defaults to 3306)
    mysql://user@%2Frun%2Fmysqld%2Fmysqld.sock/db   (a Unix socket: its path, %-encoded)
    postgresql://user:password@host:port/database   (postgres:// too; port defaults to 5432)
    sqlite:///relative/queue.db, sqlite:////absolute/queue.db
                                                    (SQLAlchemy's form: the path after sqlite:///)

A DSN never shows its password: `describe()` leaves it out and error messages scrub it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, unquote, urlsplit

__all__ = ["DSN", "DSNError", "DatabaseUnavailable", "parse_dsn"]

_KINDS = {
    "mysql": "mysql",
    "mariadb": "mysql",
    "postgresql": "postgres",
    "postgres": "postgres",
    "sqlite": "sqlite",
}
_SCHEMES = {"mysql": "mysql", "postgres": "postgresql", "sqlite": "sqlite"}
_DEFAULT_PORTS = {"mysql": 3306, "postgres": 5432}
_DEFAULT_USERS = {"mysql": "root", "postgres": "postgres"}
_DRIVERS = {
    "mysql": ("PyMySQL", "mysql"),
    "postgres": ("psycopg", "postgres"),
}


class DSNError(ValueError):
    """A DSN that cannot be read; the message names the problem and never the password."""


class DatabaseUnavailable(ConnectionError):
    """The database of a DSN cannot be reached or refused us; the message has no password."""


@dataclass(frozen=True)
class DSN:
    """Where a queue table lives. `kind` is "mysql", "postgres" or "sqlite"; for SQLite,
    `database` is the file path and the other fields are empty."""

    kind: str
    host: str = ""
    port: int = 0
    user: str = ""
    password: str | None = field(default=None, repr=False)
    database: str = ""

    def describe(self) -> str:
        """The DSN without its password, for headers, logs and error messages."""
        scheme = _SCHEMES[self.kind]
        if self.kind == "sqlite":
            return f"{scheme}:///{self.database}"
        if self.host.startswith("/"):
            host = quote(self.host, safe="")  # a Unix socket, written as libpq URIs do
        else:
            host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{self.user}@{host}:{self.port}/{self.database}"

    def with_database(self, database: str) -> DSN:
        """The same server and credentials, another database."""
        return replace(self, database=database)

    def scrub(self, text: str) -> str:
        """`text` with this DSN's password replaced by ***."""
        return text.replace(self.password, "***") if self.password else text

    def answers(self) -> bool:
        """True when the server accepts a connection now (a readiness probe)."""
        try:
            self.connect(timeout=1.0).close()
        except DatabaseUnavailable:
            return False
        return True

    def connect(self, timeout: float = 5.0) -> Any:
        """An autocommit DB-API connection (PyMySQL, psycopg or sqlite3).

        Raises DatabaseUnavailable, in one line without the password, when the driver is not
        installed or the server cannot be reached or refuses the credentials, or when an
        SQLite file does not exist (it is never created: gearmand creates its queue file).
        """
        if self.kind == "sqlite":
            import sqlite3

            if not os.path.isfile(self.database):
                raise DatabaseUnavailable(
                    f"cannot open {self.describe()}: no such file {os.path.abspath(self.database)}"
                    " (sqlite:///relative/path or sqlite:////absolute/path; gearmand creates "
                    "the file when its SQLite queue starts)"
                )
            uri = f"file:{quote(os.path.abspath(self.database))}?mode=rw"
            try:
                return sqlite3.connect(uri, timeout=timeout, isolation_level=None, uri=True)
            except sqlite3.Error as exc:
                raise DatabaseUnavailable(f"cannot open {self.describe()}: {exc}") from None
        try:
            if self.kind == "mysql":
                import pymysql

                errors: tuple[type[BaseException], ...] = (pymysql.Error, OSError)
                connect = self._connect_mysql
            else:
                import psycopg

                errors = (psycopg.Error, OSError)
                connect = self._connect_postgres
        except ImportError:
            package, extra = _DRIVERS[self.kind]
            raise DatabaseUnavailable(
                f"{package} is not installed, so {self.describe()} cannot be reached: "
                f"pip install 'pytest-islandora-job[{extra}]'"
            ) from None
        try:
            return connect(timeout)
        except errors as exc:
            reason = " ".join(str(exc).split())
            raise DatabaseUnavailable(
                self.scrub(f"cannot connect to {self.describe()}: {reason}")
            ) from None

    def _connect_mysql(self, timeout: float) -> Any:
        import pymysql

        socket = self.host if self.host.startswith("/") else None
        return pymysql.connect(
            host="localhost" if socket else self.host,
            unix_socket=socket,
            port=self.port,
            user=self.user,
            password=self.password or "",
            database=self.database or None,
            connect_timeout=timeout,
            autocommit=True,
        )

    def _connect_postgres(self, timeout: float) -> Any:
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.database or "postgres",
            connect_timeout=max(1, round(timeout)),
            autocommit=True,
        )


def parse_dsn(text: str, kind: str | None = None) -> DSN:
    """Read a mysql://, postgresql:// or sqlite:// DSN; `kind` demands one kind.

    Raises DSNError naming what is wrong (never the password) and the form to use.
    """
    shown = _without_password(text)
    scheme, sep, _ = text.partition("://")
    found = _KINDS.get(scheme.lower()) if sep else None
    if found is None:
        raise DSNError(
            f"{shown!r} is not a database DSN; write mysql://user:pw@host:port/db, "
            "postgresql://user@host:port/db or sqlite:///path/to/file.db"
        )
    if kind is not None and found != kind:
        raise DSNError(f"{shown!r} is a {found} DSN where a {kind} DSN is needed")
    if found == "sqlite":
        # SQLAlchemy's form: sqlite:///relative.db, sqlite:////absolute.db.
        head, slash, path = text[len(scheme) + 3 :].partition("/")
        if head or not slash or not path:
            raise DSNError(
                f"{shown!r} names no file; write sqlite:///relative/file.db or "
                "sqlite:////absolute/file.db"
            )
        return DSN("sqlite", database=path)
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        raise DSNError(f"{shown!r}: query parameters are not supported; remove what follows ?")
    try:
        port = parts.port
    except ValueError:
        raise DSNError(f"{shown!r} has a bad port; use a number from 1 to 65535") from None
    database = unquote(parts.path.lstrip("/"))
    # A Unix socket (a path: "%2F..." as libpq URIs write it); urlsplit would lowercase it.
    host_port = parts.netloc.rpartition("@")[2]
    raw_host = host_port.rpartition(":")[0] if ":" in host_port else host_port
    socket = unquote(raw_host) if raw_host[:3].lower() == "%2f" else None
    if "/" in database:
        raise DSNError(f"{shown!r}: the database name may not contain '/'")
    return DSN(
        kind=found,
        host=socket or parts.hostname or "127.0.0.1",
        port=port or _DEFAULT_PORTS[found],
        user=unquote(parts.username) if parts.username else _DEFAULT_USERS[found],
        password=unquote(parts.password) if parts.password is not None else None,
        database=database,
    )


def _without_password(text: str) -> str:
    """The DSN text with any password replaced by ***."""
    head, sep, rest = text.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return text
    return f"{head}://{userinfo.split(':', 1)[0]}:***@{hostpart}"
