"""Free loopback ports, claimed with an exclusive-create sentinel file.

The sentinel directory is shared by every run of one user, so xdist workers and concurrent
runs never pick the same port; a sentinel whose owner is gone is taken over. It is private
(0700, ours, not a link: see `islandora_job.private`), so no other user can see a claim
before the server binds its port, nor fill the directory with sentinels of their own.
A claim is only a hint among our own runs: whoever else binds the port first is found out
by the readiness check (admin `getpid`), and the fixture moves to another port.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import tempfile
import time
from pathlib import Path

import port_for
import psutil

from islandora_job.private import private_dir

#: Where the sentinels go: this directory, or the first private one after it (`private_dir`).
SENTINEL_DIR = Path(tempfile.gettempdir()) / f"pytest-islandora-job-ports-{os.getuid()}"


def sentinel_dir() -> Path:
    """The private directory of the sentinels, made when missing; UnsafeDirectory when none
    can be had."""
    return private_dir(SENTINEL_DIR)


def holder(port: int) -> str | None:
    """Who listens on TCP `port` of this machine, as "PID NAME (user USER)", "PID ..." or
    None when no listener is found (or the system hides the sockets of others)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return "a process of another user"
            try:
                process = psutil.Process(conn.pid)
                return f"PID {conn.pid} {process.name()} (user {process.username()})"
            except (psutil.Error, KeyError):
                return f"PID {conn.pid}"
    return None


def in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when host:port cannot be bound as gearmand binds it (SO_REUSEADDR, so that the
    TIME_WAIT connections of a server we killed do not count): someone listens there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


@functools.cache
def _good_ports() -> frozenset[int]:
    # port_for builds this set from its tables on every call (tens of ms): build it once.
    return frozenset(port_for.available_good_ports())


def _owner_alive(sentinel: Path) -> bool:
    try:
        text = sentinel.read_text().strip()
        if not text:
            # Created, its PID not written yet: young means a claim in progress.
            return time.time() - sentinel.stat().st_mtime < 5.0
        return psutil.pid_exists(int(text))
    except FileNotFoundError:
        return True  # released meanwhile: nothing to take over
    except (OSError, ValueError):
        return False


def claim_port(attempts: int = 50) -> int:
    """Pick a free loopback port and claim it; raises RuntimeError if none could be claimed."""
    directory = sentinel_dir()
    for _ in range(attempts):
        port = port_for.select_random(set(_good_ports()))
        if claim(port):
            return port
    raise RuntimeError(f"no free port could be claimed after {attempts} attempts in {directory}")


def claim(port: int) -> bool:
    """Claim one given port for this process; False if another live process holds it."""
    sentinel = sentinel_dir() / f"{port}"
    for _ in range(2):
        try:
            fd = os.open(sentinel, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            if _owner_alive(sentinel):
                return False
            with contextlib.suppress(FileNotFoundError):
                sentinel.unlink()
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def sweep() -> int:
    """Remove the sentinels of runs that are gone (killed outright); returns how many."""
    removed = 0
    for sentinel in sentinel_dir().glob("*"):
        if not _owner_alive(sentinel):
            with contextlib.suppress(FileNotFoundError):
                sentinel.unlink()
                removed += 1
    return removed


def release(port: int) -> None:
    """Give a claimed port back."""
    with contextlib.suppress(FileNotFoundError):
        (sentinel_dir() / f"{port}").unlink()
