"""A gearmand someone else runs (a CI service container, a shared server): never started or stopped."""

from __future__ import annotations

from islandora_job.config import parse_server
from islandora_job.gearman.connection import parse_address
from pytest_islandora_job.config import ServerSettings
from pytest_islandora_job.servers.base import GearmanServer


class ExternalGearmanServer(GearmanServer):
    """A running gearmand reached at host:port ([v6]:port for IPv6); kill(), restart() and
    stop() are refused. Raises ValueError, naming the fix, on a malformed address."""

    backend = "external"

    def __init__(self, settings: ServerSettings, address: str) -> None:
        super().__init__(settings)
        try:
            # parse_server's message says how to write a server: host:port.
            self.host, self.port = parse_address(parse_server(address))
        except ValueError as exc:
            raise ValueError(f"--gearman-servers: {exc}") from None

    def start(self) -> None:
        """Check the server answers admin `version`; raises ServerStartError if it does not."""
        self.wait_ready(self.settings.start_timeout, lambda: True)

    def stop(self) -> None:
        """Nothing to do: the server is not ours."""

    def kill(self) -> None:
        """Refused: an external server is not ours to kill."""
        raise NotImplementedError(
            "an external gearmand cannot be killed by the fixtures; use --gearman-backend=process|docker"
        )

    def restart(self) -> None:
        """Refused: an external server is not ours to restart."""
        raise NotImplementedError(
            "an external gearmand cannot be restarted by the fixtures; use --gearman-backend=process|docker"
        )

    def close(self) -> None:
        """Nothing to release."""
