"""The SQLite queue: a file in the server's work directory, removed at stop.

gearmand runs without --store-queue-on-shutdown: with it, nothing is written until SIGTERM and
a crash loses every job. The file is made in WAL journal mode before gearmand opens it (the
mode is stored in the file): every submit is still committed before gearmand answers, with
one fsync instead of several, which makes submits about ten times faster on a disk.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from islandora_job.dsn import DSN
from pytest_islandora_job.databases.base import QueueDatabase

_SIDE_FILES = ("", "-journal", "-wal", "-shm")


class SQLiteQueue(QueueDatabase):
    """gearmand's libsqlite3 queue in `workdir/gearman-queue.sqlite3`."""

    queue = "sqlite"
    placeholder = "?"

    @property
    def path(self) -> Path:
        """The database file (gearmand creates it and the table when it starts)."""
        return self.workdir / "gearman-queue.sqlite3"

    @property
    def dsn(self) -> DSN:
        return DSN("sqlite", database=str(self.path))

    def start(self) -> None:
        """Make the database file in WAL mode; gearmand makes the table."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")

    def stop(self) -> None:
        """Delete the database file and its journals."""
        for suffix in _SIDE_FILES:
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def gearmand_args(self) -> list[str]:
        return ["-q", "libsqlite3", "--libsqlite3-db", self.gearmand_dsn.database,
                "--libsqlite3-table", self.table]  # fmt: skip

    def describe(self) -> str:
        return f"SQLite file {self.path}, table {self.table}"
