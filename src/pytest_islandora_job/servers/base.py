"""What every gearmand handle offers, whatever the backend that runs it."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from islandora_job.gearman.admin import AdminError, FunctionStatus, GearmanAdmin
from islandora_job.gearman.connection import Connection, ServerUnavailable
from islandora_job.gearman.protocol import ProtocolError
from islandora_job.logs import tail
from pytest_islandora_job import ports
from pytest_islandora_job.readiness import PortConflict, wait_ready

if TYPE_CHECKING:
    from pytest_islandora_job.config import ServerSettings
    from pytest_islandora_job.databases.base import PersistedJob, QueueDatabase

# tail: the backends and the plugin take the one log tail from here.
__all__ = ["GearmanServer", "tail"]


class GearmanServer(abc.ABC):
    """A gearmand the fixtures manage (or, for the external backend, only talk to)."""

    backend: str
    host: str
    port: int
    log_path: Path | None = None
    database: QueueDatabase | None = None

    def __init__(self, settings: ServerSettings, database: QueueDatabase | None = None) -> None:
        self.settings = settings
        self.database = database
        self.queue = settings.queue
        self._version: str | None = None
        self._database_started = False

    def _start_database(self) -> None:
        """Start the queue database, once, before gearmand first starts (a restart of
        gearmand keeps it running)."""
        if self.database is not None and not self._database_started:
            self.database.start()
            self._database_started = True

    def _stop_database(self) -> None:
        """Stop the queue database if this server started it."""
        if self.database is not None and self._database_started:
            self.database.stop()
            self._database_started = False

    @property
    def address(self) -> str:
        """ "host:port" ("[v6]:port" for an IPv6 host) as clients and workers take it."""
        return Connection.format_address(self.host, self.port)

    @property
    def version(self) -> str:
        """gearmand's version, from the admin `version` command."""
        if self._version is None:
            with GearmanAdmin(self.address) as admin:
                self._version = admin.version()
        return self._version

    @abc.abstractmethod
    def start(self) -> None:
        """Start gearmand; return when it answers admin `version`. Raises ServerStartError."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop gearmand (SIGTERM, then SIGKILL after a grace period); idempotent."""

    @abc.abstractmethod
    def kill(self) -> None:
        """SIGKILL gearmand, as a crash would, and wait until it is gone."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop gearmand and release all it holds (its queue database, its port); idempotent.
        The fixtures call it once the server is no longer used."""

    def restart(self) -> None:
        """Start gearmand again on the same port with the same flags and queue."""
        self.stop()
        self.start()

    def status(self) -> list[FunctionStatus]:
        """Per function: jobs queued, running, and workers (admin `status`)."""
        with GearmanAdmin(self.address) as admin:
            return admin.status()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of gearmand's log."""
        return tail(self.log_path, lines)

    def persisted_jobs(self) -> list[PersistedJob]:
        """Rows of the persistent queue table. Raises TypeError on an in-memory server."""
        return self._require_database().rows()

    def persisted_counts(self) -> dict[str, int]:
        """Jobs left per function in the persistent queue table."""
        return self._require_database().counts()

    def clear_queue(self, function: str | None = None) -> int:
        """Forget the queued jobs of one function (or all): in gearmand and in its table."""
        from islandora_job.queue import clear

        return clear([self.address], function)

    def _require_database(self) -> QueueDatabase:
        if self.database is None:
            raise TypeError(
                f"the {self.queue!r} queue keeps no table; use a persistent queue "
                "(--gearman-queue=mysql|postgres|sqlite or persistent_gearman_server)"
            )
        return self.database

    def wait_ready(self, timeout: float, alive: Callable[[], bool], pid: int | None = None) -> None:
        """Poll admin `version` (and `getpid`, when our child's `pid` is known) until it
        answers. Raises ServerStartError if the child dies or stays silent, PortConflict at
        once when the server that answers is not our child (someone else holds the port).
        """

        def answers() -> bool:
            answered: int | None = None
            try:
                with GearmanAdmin(self.address, timeout=1.0) as admin:
                    version = admin.version()
                    if pid is not None:
                        # Any server answers `version`; only ours answers with our child's PID
                        # (a server that cannot say its PID is not ours either).
                        with contextlib.suppress(ProtocolError, AdminError):
                            answered = admin.getpid()
            except (ServerUnavailable, OSError, ProtocolError):
                return False
            if answered != pid:
                found = ports.holder(self.port)
                raise PortConflict(
                    f"port {self.port} is taken by another server ({found or f'PID {answered}'})"
                    f", not our gearmand (PID {pid})",
                    self.port,
                    found,
                )
            self._version = version
            return True

        wait_ready(
            answers,
            alive,
            timeout,
            died=lambda: (
                f"gearmand ({self.backend}) exited during start-up on {self.address}; "
                f"log tail:\n{self.log_tail()}"
            ),
            late=lambda: (
                f"gearmand ({self.backend}) did not answer admin `version` on {self.address} "
                f"within {timeout:g}s; log tail:\n{self.log_tail()}"
            ),
        )
