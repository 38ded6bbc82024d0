"""Another local user cannot capture our gearmand's port: not by planting port claims, not by
binding the port first and relaying to a server of its own."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_islandora_job import ports
from pytest_islandora_job.config import ServerSettings
from pytest_islandora_job.readiness import PortConflict
from pytest_islandora_job.servers.process import ProcessGearmanServer
from tests.security.conftest import OtherUser

# A Gearman admin look-alike on a port: answers `version` like gearmand, and `getpid` with its
# own PID, as a relay to a gearmand of the other user's would.
FAKE_GEARMAND = """
import os, socket, sys, threading

listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(16)
print(listener.getsockname()[1], flush=True)

def serve(conn):
    with conn, conn.makefile("rb") as lines:
        for line in lines:
            word = line.strip()
            if word == b"version":
                conn.sendall(b"OK 1.1.20\\n")
            elif word == b"getpid":
                conn.sendall(b"OK %d\\n" % os.getpid())
            else:
                conn.sendall(b"ERR UNKNOWN_COMMAND Unknown+server+command\\n")

while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

PLANT_SENTINELS = """
import os, sys
directory = sys.argv[1]
os.mkdir(directory)
os.chmod(directory, 0o777)
for port in range(1024, 65536):
    with open(os.path.join(directory, str(port)), "w") as f:
        f.write("1")
"""


@pytest.fixture
def taken_port(other_user: OtherUser) -> Iterator[int]:
    """A loopback port the other user listens on with a fake gearmand."""
    proc = other_user.start(FAKE_GEARMAND)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        other_user.stop(proc)


def test_planted_port_claims_are_refused_for_a_private_directory(
    other_user: OtherUser, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = shared_dir / "pytest-islandora-job-ports-0"
    done = other_user.run(PLANT_SENTINELS, str(base), timeout=120)
    assert done.returncode == 0, done.stderr
    monkeypatch.setattr(ports, "SENTINEL_DIR", base)

    port = ports.claim_port()
    try:
        directory = ports.sentinel_dir()
        assert directory != base
        found = directory.lstat()
        assert found.st_uid == os.geteuid() and stat.S_IMODE(found.st_mode) == 0o700
        assert (directory / str(port)).read_text() == str(os.getpid())
    finally:
        ports.release(port)


def test_a_fixed_port_held_by_another_user_is_one_line_at_once(
    taken_port: int, other_user: OtherUser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # a fixed port: one process
    server = ProcessGearmanServer(ServerSettings(port=taken_port), tmp_path)
    began = time.monotonic()
    try:
        with pytest.raises(PortConflict) as raised:
            server.start()
    finally:
        server.close()
    assert time.monotonic() - began < 1.0
    message = str(raised.value)
    assert "\n" not in message
    assert f"port {taken_port} is in use" in message
    assert other_user.name in message and "python3" in message


def test_a_relay_on_a_claimed_port_is_not_ready_and_another_port_is_used(
    taken_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The other user binds the port between our claim and gearmand's bind: our check of the
    # port sees it free, gearmand cannot bind, and the relay answers `version` for it.
    claims = iter([taken_port])
    real_claim = ports.claim_port
    monkeypatch.setattr(ports, "claim_port", lambda: next(claims, None) or real_claim())
    monkeypatch.setattr(ports, "in_use", lambda port, host="127.0.0.1": False)
    server = ProcessGearmanServer(ServerSettings(), tmp_path)
    assert server.port == taken_port
    began = time.monotonic()
    try:
        server.start()
        assert server.port != taken_port
        from islandora_job.gearman.admin import GearmanAdmin

        with GearmanAdmin(server.address) as admin:
            assert admin.getpid() == server.pid
    finally:
        server.close()
    assert time.monotonic() - began < 5.0, "the relay is found out at once, not at the timeout"


def test_a_fixed_port_under_xdist_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_islandora_job.readiness import ServerStartError

    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    with pytest.raises(ServerStartError, match="cannot share one port"):
        ProcessGearmanServer(ServerSettings(port=4730), tmp_path)
