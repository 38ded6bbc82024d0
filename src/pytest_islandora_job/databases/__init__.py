"""The persistent queue's database: MariaDB/MySQL, PostgreSQL or SQLite.

Imports stay lazy here: the process backend with the in-memory queue needs none of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from islandora_job.dsn import DSN
    from pytest_islandora_job.config import ServerSettings
    from pytest_islandora_job.databases.base import QueueDatabase

__all__ = ["make_database"]


def _server_dsn(text: str | None, kind: str, option: str) -> DSN | None:
    import pytest

    from islandora_job.dsn import DSNError, parse_dsn

    if text is None:
        return None
    try:
        return parse_dsn(text, kind)
    except DSNError as exc:
        raise pytest.UsageError(f"{option}: {exc}") from None


def make_database(settings: ServerSettings, workdir: Path) -> QueueDatabase | None:
    """The queue database the settings ask for (not started), or None for the in-memory queue.

    Raises pytest.UsageError on a DSN that cannot be read and ValueError on an unknown queue.
    """
    if settings.queue == "builtin":
        return None
    if settings.queue == "sqlite":
        from pytest_islandora_job.databases.sqlite import SQLiteQueue

        return SQLiteQueue(workdir)
    if settings.queue == "mysql":
        from pytest_islandora_job.databases.mysql import DSN_OPTION, MariaDBServer, MySQLQueue

        dsn = _server_dsn(settings.mysql_dsn, "mysql", DSN_OPTION)
        return MySQLQueue(
            workdir, MariaDBServer(workdir, settings.start_timeout) if dsn is None else dsn
        )
    if settings.queue == "postgres":
        from pytest_islandora_job.databases.postgres import (
            DSN_OPTION,
            PostgresQueue,
            PostgresServer,
        )

        dsn = _server_dsn(settings.postgres_dsn, "postgres", DSN_OPTION)
        return PostgresQueue(
            workdir, PostgresServer(workdir, settings.start_timeout) if dsn is None else dsn
        )
    raise ValueError(
        f"unknown queue type {settings.queue!r}; use builtin, mysql, postgres or sqlite"
    )
