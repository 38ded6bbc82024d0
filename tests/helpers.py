"""Small helpers the test modules share: polling waits, fresh names, queue counts, a
scripted Gearman peer."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from islandora_job.gearman.admin import FunctionStatus, GearmanAdmin
from islandora_job.gearman.protocol import Magic, PacketDecoder, PacketType


def wait_until(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll `condition` until it returns something true; AssertionError (naming `what`) after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what or 'condition'}"
        time.sleep(0.01)


def fresh(prefix: str = "f") -> str:
    """A name no other test uses (for a Gearman function): `prefix`, a dash, 10 hex digits."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def function_status(address: str, function: str) -> FunctionStatus:
    """The admin `status` row of `function` at `address` (all zero when the server has none)."""
    with GearmanAdmin(address) as admin:
        for row in admin.status():
            if row.function == function:
                return row
    return FunctionStatus(function, 0, 0, 0)


def queued(address: str, function: str) -> int:
    """Jobs of `function` at `address` not finished yet (running ones included)."""
    return function_status(address, function).queued


def connections_to(port: int) -> set[int]:
    """Local ports of this process's established connections to `port` (other tests'
    clients included: compare a set taken before with one taken after)."""
    return {
        c.laddr.port
        for c in psutil.Process().net_connections("tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    }


def lines_of(path: Path, count: int, timeout: float = 20.0) -> list[str]:
    """The file's lines once it has `count` of them; AssertionError after `timeout` s."""
    found: list[str] = []

    def enough() -> bool:
        nonlocal found
        found = path.read_text().splitlines() if path.exists() else []
        return len(found) >= count

    wait_until(enough, timeout, f"{path} having {count} lines")
    return found


def scripted_peer(script: Callable[[socket.socket, PacketDecoder], None]) -> Iterator[str]:
    """A one-connection peer running ``script`` (our codec on a loopback socket) in a
    thread; yields its address once, joins the thread after."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            script(conn, PacketDecoder(Magic.REQ))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        thread.join(10)
        listener.close()


def read_kinds(conn: socket.socket, decoder: PacketDecoder, count: int) -> list[PacketType]:
    """The types of the next ``count`` packets a scripted peer reads (more, when one read
    completes more)."""
    kinds: list[PacketType] = []
    while len(kinds) < count:
        kinds += [p.type for p in decoder.feed(conn.recv(65536))]
    return kinds
