"""Several gearmand servers that clients and workers use together."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

from pytest_islandora_job.servers import GearmanServer


class GearmanCluster(Sequence[GearmanServer]):
    """N started gearmand servers; clients and workers from the fixtures get every address."""

    def __init__(self, servers: Sequence[GearmanServer]) -> None:
        self.servers = list(servers)

    @property
    def addresses(self) -> list[str]:
        """ "host:port" of every server, in order."""
        return [server.address for server in self.servers]

    @overload
    def __getitem__(self, index: int) -> GearmanServer: ...

    @overload
    def __getitem__(self, index: slice) -> list[GearmanServer]: ...

    def __getitem__(self, index: int | slice) -> GearmanServer | list[GearmanServer]:
        return self.servers[index]

    def __len__(self) -> int:
        return len(self.servers)

    def __iter__(self) -> Iterator[GearmanServer]:
        return iter(self.servers)
