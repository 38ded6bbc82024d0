"""What every queue database offers to a gearmand fixture: the queue table's interface.

A `QueueDatabase` is the database gearmand keeps its persistent queue in: `start()` makes it
(a throwaway server, a database of our own on an existing server, or a file), `gearmand_args()`
points gearmand at it, `rows()`/`counts()`/`delete()` read and change the queue table, and
`stop()` removes what `start()` made and nothing else.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from islandora_job.dsn import DSN
from islandora_job.queue import DEFAULT_TABLE, check_table_name, table_counts

__all__ = ["PersistedJob", "QueueDatabase"]


@dataclass(frozen=True)
class PersistedJob:
    """One row of the queue table: a background job gearmand has stored and not finished."""

    function: str
    unique_key: str
    priority: int
    data: bytes


def _text(value: Any) -> str:
    return bytes(value).decode("utf-8", "replace") if not isinstance(value, str) else value


def _bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


class QueueDatabase(abc.ABC):
    """The database of one gearmand's persistent queue."""

    queue: str
    #: Parameter marker of the DB-API driver.
    placeholder = "%s"
    #: gearmand flags whose value is a secret; `redacted_args()` hides their values.
    secret_flags: tuple[str, ...] = ()

    def __init__(self, workdir: Path, table: str = DEFAULT_TABLE) -> None:
        self.workdir = workdir
        self.table = check_table_name(table)

    @abc.abstractmethod
    def start(self) -> None:
        """Make the database (boot a throwaway server, or create our own database on an existing
        one, or prepare the file). Raises ServerStartError in one line (plus a log tail when a
        server failed) when that is impossible."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Remove what start() made and stop what it booted; idempotent."""

    @abc.abstractmethod
    def gearmand_args(self) -> list[str]:
        """The gearmand flags that select this queue (valid after start())."""

    def gearmand_env(self) -> dict[str, str]:
        """Environment variables gearmand needs for this queue (valid after start()): where
        a client option file with the socket and the password is; none by default."""
        return {}

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the queue lives, for headers and errors; never holds a password."""

    @property
    @abc.abstractmethod
    def dsn(self) -> DSN:
        """The DSN of the queue's database (valid after start())."""

    @property
    def gearmand_dsn(self) -> DSN:
        """Where gearmand reaches the database: `dsn`, unless gearmand runs elsewhere (in a
        container, reaching the database by a network alias or a mounted path)."""
        return self.dsn

    def redacted_args(self) -> list[str]:
        """gearmand_args() with secret values replaced by ***, safe to log or print."""
        args = self.gearmand_args()
        return [
            "***" if i and args[i - 1] in self.secret_flags else arg for i, arg in enumerate(args)
        ]

    def _query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[tuple[Any, ...]], int]:
        with contextlib.closing(self.dsn.connect()) as conn:
            cursor = conn.cursor()
            cursor.execute(sql, tuple(params))
            rows = cursor.fetchall() if cursor.description else []
            return list(rows), cursor.rowcount

    def rows(self) -> list[PersistedJob]:
        """Every row of the queue table, ordered by function and unique key.

        Raises DatabaseUnavailable when the database cannot be reached, and the driver's error
        when the table does not exist yet (gearmand creates it when it starts).
        """
        found, _ = self._query(
            "SELECT function_name, unique_key, priority, data "
            f"FROM {self.table} ORDER BY function_name, unique_key"
        )
        return [
            PersistedJob(_text(function), _text(unique), int(priority), _bytes(data))
            for function, unique, priority, data in found
        ]

    def counts(self) -> dict[str, int]:
        """Jobs left per function: the module README's GROUP BY query on the queue table."""
        with contextlib.closing(self.dsn.connect()) as conn:
            return table_counts(conn, self.table)

    def delete(self, function: str | None = None) -> int:
        """Delete the rows of one function (or all) and return how many went.

        gearmand still holds those jobs in memory: use clear_queue() on the server to make
        it forget them; this is for tables no gearmand runs on.
        """
        if function is None:
            _, count = self._query(f"DELETE FROM {self.table}")
        else:
            _, count = self._query(
                f"DELETE FROM {self.table} WHERE function_name = {self.placeholder}", (function,)
            )
        return count
