"""Where the server keeps background jobs across restarts: nowhere, or an SQLite file.

The table has gearmand's column names (``unique_key, function_name, priority, data,
when_to_run``), so the tools that read gearmand's SQLite queue read this one; rows are keyed
by SQLite's rowid instead of the unique id, so that jobs sent without one are all kept (in
gearmand's table two of them overwrite each other) and come back in the order they came.
A row is written before the submit is answered and deleted when the job ends; a process
killed outright loses nothing the operating system has accepted, so the file is opened
without fsync (``synchronous=OFF``): the guarantee is against a crash of the server, not of
the machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from islandora_job.queue import DEFAULT_TABLE, check_table_name

__all__ = ["JobStore", "SQLiteStore", "StoreError", "StoredJob", "open_store"]


class StoreError(Exception):
    """The store could not keep or forget a job (the disk is full, the file is gone)."""


@dataclass(frozen=True, slots=True)
class StoredJob:
    """A background job as it is kept: ``key`` is the store's own id for it."""

    key: int
    function: bytes
    unique: bytes
    priority: int
    data: bytes
    when: int


class JobStore(Protocol):
    """What the server state asks of a store. Every method raises StoreError when the
    storage fails."""

    def add(self, function: bytes, unique: bytes, priority: int, data: bytes, when: int) -> int:
        """Keep one job; return its key."""

    def remove(self, key: int) -> None:
        """Forget the job kept under ``key``."""

    def load(self) -> list[StoredJob]:
        """Every kept job, oldest first."""

    def close(self) -> None:
        """Release the storage."""


class SQLiteStore:
    """Background jobs in a table of an SQLite file (made, with the table, when missing)."""

    def __init__(self, path: Path, table: str = DEFAULT_TABLE) -> None:
        check_table_name(table)
        # Imported here: an in-memory server never needs it, and it costs start-up time.
        import sqlite3

        self.path = path
        self.table = table
        # Autocommit: each statement is its own transaction, as a submit must be kept
        # before it is answered.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (unique_key TEXT, function_name TEXT, "
            "priority INTEGER, data BLOB, when_to_run INTEGER)"
        )
        self._insert = (
            f"INSERT INTO {table} (unique_key, function_name, priority, data, when_to_run) "
            "VALUES (?, ?, ?, ?, ?)"
        )
        self._delete = f"DELETE FROM {table} WHERE rowid = ?"

    def add(self, function: bytes, unique: bytes, priority: int, data: bytes, when: int) -> int:
        """Insert one row; return its rowid."""
        import sqlite3

        try:
            cursor = self._db.execute(
                self._insert, (_text(unique), _text(function), priority, data, when)
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc
        key = cursor.lastrowid
        assert key is not None  # an INSERT always sets it
        return key

    def remove(self, key: int) -> None:
        """Delete the row ``key``."""
        import sqlite3

        try:
            self._db.execute(self._delete, (key,))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    def load(self) -> list[StoredJob]:
        """Every row, in rowid order."""
        rows = self._db.execute(
            f"SELECT rowid, function_name, unique_key, priority, data, when_to_run "
            f"FROM {self.table} ORDER BY rowid"
        ).fetchall()
        return [
            StoredJob(key, _bytes(function), _bytes(unique), int(priority), _bytes(data), when or 0)
            for key, function, unique, priority, data, when in rows
        ]

    def close(self) -> None:
        """Close the file."""
        self._db.close()


def _text(value: bytes) -> str | bytes:
    # Text when it is UTF-8 (as gearmand's table holds it); the bytes as they are when not,
    # since SQLite cannot store a str with surrogate escapes.
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def _bytes(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def open_store(spec: str | None) -> SQLiteStore | None:
    """The store a ``--queue`` value names: None (in memory) or ``sqlite:PATH``.

    Raises ValueError naming the accepted forms on anything else, and StoreError when the
    file cannot be opened.
    """
    if spec is None or spec in ("", "builtin"):
        return None
    kind, _, path = spec.partition(":")
    if kind != "sqlite" or not path:
        raise ValueError(
            f"--queue {spec!r}: use sqlite:PATH (a file, made when missing) or leave it out "
            "for an in-memory queue"
        )
    import sqlite3

    try:
        return SQLiteStore(Path(path))
    except sqlite3.Error as exc:
        raise StoreError(f"--queue {spec!r}: cannot open the SQLite file: {exc}") from exc
