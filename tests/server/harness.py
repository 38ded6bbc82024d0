"""Drive a ServerState without sockets: peers send request packets, read response packets."""

from __future__ import annotations

from islandora_job.gearman.protocol import (
    MAX_PACKET_SIZE,
    Magic,
    Packet,
    PacketDecoder,
    PacketType,
    request,
)
from islandora_job.server.state import ServerState
from islandora_job.server.store import JobStore


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Net:
    """A ServerState and the peers connected to it; output is collected per peer."""

    def __init__(
        self,
        job_retries: int = 0,
        store: JobStore | None = None,
        max_packet_size: int = MAX_PACKET_SIZE,
    ) -> None:
        self.clock = Clock()
        self.state = ServerState(
            "testhost",
            4242,
            job_retries=job_retries,
            store=store,
            clock=self.clock,
            max_packet_size=max_packet_size,
        )
        self._next = 10
        self.peers: dict[int, Peer] = {}

    def peer(self) -> Peer:
        peer = Peer(self, self._next)
        self.peers[self._next] = peer
        self.state.connect(self._next, "127.0.0.1")
        self._next += 1
        return peer

    def deliver(self) -> None:
        for conn_id, data in self.state.take_output().items():
            self.peers[conn_id].inbox += self.peers[conn_id].decode(bytes(data))

    def admin(self, line: str) -> bytes:
        peer = self.peer()
        peer.raw(line.encode() + b"\n")
        text = peer.text
        peer.close()
        return text


class Peer:
    """One connection: send packets or bytes, read what the server answered."""

    def __init__(self, net: Net, conn_id: int) -> None:
        self.net = net
        self.id = conn_id
        self.inbox: list[Packet] = []
        self.text = b""
        self._decoder = PacketDecoder(expect=Magic.RES)

    def decode(self, data: bytes) -> list[Packet]:
        """Packets from data; admin reply lines between them go to ``text``."""
        packets: list[Packet] = []
        while data:
            if data[:1] == b"\0":
                end = 12 + int.from_bytes(data[8:12], "big")
                packets += self._decoder.feed(data[:end])
            else:
                end = data.index(b"\n") + 1
                self.text += data[:end]
            data = data[end:]
        return packets

    def send(self, kind: PacketType, *args: bytes) -> None:
        self.raw(request(kind, *args))

    def raw(self, data: bytes) -> None:
        self.net.state.receive(self.id, data)
        self.net.deliver()

    def take(self) -> list[tuple[str, ...]]:
        """Packets received since the last take, as (type name, args as text...)."""
        found = [(p.type.name, *(a.decode("latin-1") for a in p.args)) for p in self.inbox]
        self.inbox.clear()
        return found

    def close(self) -> None:
        self.net.state.disconnect(self.id)
        self.net.deliver()

    @property
    def closed_by_server(self) -> bool:
        return self.id in self.net.state.closing
