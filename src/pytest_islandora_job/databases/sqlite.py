"""The SQLite queue: a file in the server's work directory, removed at stop.

gearmand runs without --store-queue-on-shutdown: with it, nothing is written until SIGTERM and
a crash loses every job.
"""

from __future__ import annotations

from pathlib import Path

from pytest_islandora_job.databases.base import QueueDatabase
from pytest_islandora_job.databases.dsn import DSN

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
        """Make the work directory; gearmand makes the file."""
        self.workdir.mkdir(parents=True, exist_ok=True)

    def stop(self) -> None:
        """Delete the database file and its journals."""
        for suffix in _SIDE_FILES:
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def gearmand_args(self) -> list[str]:
        return ["-q", "libsqlite3", "--libsqlite3-db", self.gearmand_dsn.database,
                "--libsqlite3-table", self.table]  # fmt: skip

    def describe(self) -> str:
        return f"SQLite file {self.path}, table {self.table}"
