"""A worker that cannot take jobs says so and exits non-zero; gearmand resolution never
picks Perl's Gearman::Server.

The refusing server is a scripted peer (our codec on a loopback socket) that answers every
grab with ERROR: no real Gearman server refuses both GRAB_JOB_UNIQ and GRAB_JOB.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import islandora_job
from islandora_job.gearman import GearmanWorker
from islandora_job.gearman.protocol import Magic, PacketDecoder, PacketType, response
from islandora_job.gearman.worker import GrabRefused
from pytest_islandora_job.readiness import ServerStartError
from pytest_islandora_job.servers.process import resolve_gearmand

from .conftest import PERL_GEARMAND, needs_perl_server


def _serve(conn: socket.socket, seen: list[PacketType]) -> None:
    decoder = PacketDecoder(expect=Magic.REQ)
    with conn:
        first = conn.recv(1, socket.MSG_PEEK)
        if first and first != b"\0":
            # The admin protocol: no worker is ever listed.
            while data := conn.recv(4096):
                conn.sendall(b".\n" * data.count(b"\n"))
            return
        while data := conn.recv(4096):
            for packet in decoder.feed(data):
                seen.append(packet.type)
                if packet.type in (PacketType.GRAB_JOB_UNIQ, PacketType.GRAB_JOB):
                    conn.sendall(response(PacketType.ERROR, b"server_error", b"no grabs here"))


@pytest.fixture
def refusing_server() -> Iterator[tuple[str, list[PacketType]]]:
    """A loopback server refusing every grab; yields its address and the packets it got."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[PacketType] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_serve, args=(conn, seen), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{listener.getsockname()[1]}", seen
    listener.close()


def test_worker_falls_back_to_grab_job_then_refuses_to_idle(
    refusing_server: tuple[str, list[PacketType]],
) -> None:
    address, seen = refusing_server
    with GearmanWorker([address], "refused") as worker:
        worker.register("f", lambda job: b"")
        with pytest.raises(GrabRefused, match="refused GRAB_JOB_UNIQ and GRAB_JOB"):
            worker.work()
    # The functions go out once a grab is answered: never, here.
    assert seen == [PacketType.SET_CLIENT_ID, PacketType.GRAB_JOB_UNIQ, PacketType.GRAB_JOB]


def test_cli_worker_exits_non_zero(
    refusing_server: tuple[str, list[PacketType]], tmp_path: Path
) -> None:
    address, _ = refusing_server
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "islandora_job",
            "--servers",
            address,
            "--modules",
            "tests.interop.jobs",
            "worker",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "cannot hand jobs to this worker" in done.stderr


def test_start_worker_fails(refusing_server: tuple[str, list[PacketType]], tmp_path: Path) -> None:
    address, _ = refusing_server
    with (
        islandora_job.configured(
            servers=[address], modules=["tests.interop.jobs"], temp_dir=tmp_path
        ),
        pytest.raises(islandora_job.WorkerStartError, match="exited with status 1"),
    ):
        islandora_job.start_worker("refused.pid", timeout=20)


@needs_perl_server
@pytest.mark.skipif(not Path("/usr/sbin/gearmand").exists(), reason="no C gearmand installed")
def test_gearmand_resolution_skips_perls_server(monkeypatch: pytest.MonkeyPatch) -> None:
    # A user's PATH often has /usr/bin and no sbin directory.
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert resolve_gearmand("gearmand") == "/usr/sbin/gearmand"
    assert resolve_gearmand("/usr/sbin/gearmand") == "/usr/sbin/gearmand"
    with pytest.raises(ServerStartError, match="Perl's Gearman::Server"):
        resolve_gearmand(PERL_GEARMAND)
    with pytest.raises(ServerStartError, match="not found at 'no-such-gearmand'"):
        resolve_gearmand("no-such-gearmand")
