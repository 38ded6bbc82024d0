"""How a gearmand comes to life: a local process, a Docker container, an external server, or
the embedded Python server in its place."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pytest_islandora_job.config import ServerSettings
from pytest_islandora_job.readiness import ServerStartError
from pytest_islandora_job.servers.base import GearmanServer

if TYPE_CHECKING:
    from pytest_islandora_job.databases.base import QueueDatabase

__all__ = ["GearmanServer", "ServerStartError", "client_host", "make_servers"]

#: Listen addresses meaning "every interface": clients reach such a server on loopback.
_WILDCARDS = ("0.0.0.0", "::", "")


def client_host(listen: str) -> str:
    """The host a client on this machine connects to for a gearmand listening on `listen`:
    the address itself, or 127.0.0.1 for a wildcard (0.0.0.0, ::, empty). Never raises."""
    return "127.0.0.1" if listen in _WILDCARDS else listen


def make_servers(settings: ServerSettings, workdir: Path, count: int = 1) -> list[GearmanServer]:
    """Build (not start) the gearmand handles the settings ask for.

    The external backend gives one handle per address in settings.servers; the others give
    `count` servers, each with its own queue database when the queue is persistent.
    """
    if settings.backend == "external":
        from pytest_islandora_job.servers.external import ExternalGearmanServer

        return [ExternalGearmanServer(settings, address) for address in settings.servers]
    if settings.backend == "docker":
        from pytest_islandora_job.servers.docker import DockerGearmanServer

        return [DockerGearmanServer(settings, workdir / f"gearmand-{i}") for i in range(count)]
    if settings.backend == "embedded":
        from pytest_islandora_job.servers.embedded import EmbeddedGearmanServer

        # Only SQLite: for gearmand's database queues the server skips the test.
        sqlite = settings.queue == "sqlite"
        return [
            EmbeddedGearmanServer(
                settings,
                workdir / f"server-{i}",
                _database(settings, workdir, i) if sqlite else None,
            )
            for i in range(count)
        ]
    from pytest_islandora_job.servers.process import ProcessGearmanServer

    return [
        ProcessGearmanServer(settings, workdir / f"gearmand-{i}", _database(settings, workdir, i))
        for i in range(count)
    ]


def _database(settings: ServerSettings, workdir: Path, index: int) -> QueueDatabase | None:
    if settings.queue == "builtin":
        return None
    from pytest_islandora_job.databases import make_database

    return make_database(settings, workdir / f"queue-{index}")
