"""Bad input from every side, against real processes: job names Gearman must carry intact,
malformed bytes from something posing as gearmand (to a client and to a worker process).

The codec itself is fuzzed in tests/gearman/test_protocol.py and bad payloads to our worker
are in tests/library/test_workers.py; here the bytes travel over real sockets.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import islandora_job
from islandora_job import JobClient
from islandora_job.config import configured, settings_env
from islandora_job.gearman.admin import GearmanAdmin
from islandora_job.gearman.client import GearmanClient, GearmanTimeout, ServerError
from islandora_job.gearman.connection import ServerUnavailable
from islandora_job.gearman.protocol import PacketType, ProtocolError, response
from islandora_job.workers import client_id
from pytest_islandora_job import factories
from tests.helpers import wait_until
from tests.reliability.oddjobs import ODD_NAMES

README = Path(__file__).resolve().parents[2] / "README.md"

odd_worker = factories.job_worker("gearman_server", modules=["tests.reliability.oddjobs"])


class HostileServer:
    """A TCP listener on 127.0.0.1 posing as gearmand: it reads what a peer sends first,
    answers connection number n with `reply(n)`, closes its side and waits for the peer."""

    def __init__(self) -> None:
        self.reply: Callable[[int], bytes] = lambda n: b""
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn, contextlib.suppress(OSError):
                data = self.reply(self.connections)
                self.connections += 1
                conn.settimeout(0.5)
                conn.recv(65536)
                conn.sendall(data)
                # Half-close, then read until the peer closes: closing with unread bytes
                # would reset the connection and the peer might never read `data`.
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):
                    pass

    def close(self) -> None:
        """Stop accepting and wait for the serving thread."""
        self._closing.set()
        self._thread.join(5)
        self._listener.close()


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    """A fake gearmand on a loopback port, closed at the end."""
    server = HostileServer()
    yield server
    server.close()


def _header(magic: bytes, kind: int, size: int) -> bytes:
    return magic + struct.pack(">II", kind, size)


OPTION_RES = response(PacketType.OPTION_RES, b"exceptions")
JOB_CREATED = response(PacketType.JOB_CREATED, b"H:evil:1")
NO_JOB = response(PacketType.NO_JOB)


# -- job names Gearman must carry intact -----------------------------------------------------


def test_job_names_with_non_ascii_newlines_spaces_and_tabs_round_trip_through_a_worker(
    gearman_server, odd_worker
) -> None:
    args = ["nul\0byte", "new\nline", "naïve ☃ 漢字 🦀", {"k\0\n": ["\t"]}]
    with JobClient([gearman_server.address]) as client:
        for name in ODD_NAMES:
            assert client.submit(name, *args, name, timeout=10) == [*args, name]
    rows = {row.function: row for row in gearman_server.status()}
    assert all(rows[name].workers == 1 for name in ODD_NAMES)


def test_a_job_name_with_a_nul_byte_is_refused_before_anything_is_sent(gearman_server) -> None:
    with pytest.raises(ValueError, match="contains a NUL byte, which the Gearman protocol"):
        islandora_job.submit_background("nul\0name")
    with GearmanAdmin(gearman_server.address) as admin:
        assert not [row for row in admin.status() if row.function.startswith("nul")]


def test_the_payload_maximum_and_its_option_are_documented() -> None:
    assert islandora_job.settings().max_payload == 16 * 1024 * 1024
    text = README.read_text(encoding="utf-8")
    assert "`ISLANDORA_JOB_MAX_PAYLOAD` (default 16 MiB)" in text


# -- malformed bytes from a server, to a client ----------------------------------------------

CLIENT_OUTCOMES = (ProtocolError, ServerUnavailable, ServerError, GearmanTimeout)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prefix=st.sampled_from([b"", OPTION_RES, OPTION_RES + JOB_CREATED]),
    garbage=st.binary(max_size=96)
    | st.builds(
        lambda magic, kind, size, body: _header(magic, kind, size) + body,
        st.sampled_from([b"\0RES", b"\0REQ", b"\0XYZ"]),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
        st.binary(max_size=32),
    ),
)
def test_a_client_given_malformed_bytes_raises_a_protocol_or_connection_error_never_hangs(
    hostile: HostileServer, prefix: bytes, garbage: bytes
) -> None:
    hostile.reply = lambda n: prefix + garbage
    began = time.monotonic()
    with (
        GearmanClient([hostile.address], connect_timeout=2, ack_timeout=2) as client,
        contextlib.suppress(*CLIENT_OUTCOMES),
    ):
        client.submit("echo", b"{}", timeout=2)
    assert time.monotonic() - began < 5


def test_a_client_given_a_partial_packet_by_a_silent_server_times_out(
    hostile: HostileServer,
) -> None:
    # The server keeps the connection open, so only the timeout can end the wait.
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        address = f"127.0.0.1:{listener.getsockname()[1]}"

        def half_answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(OPTION_RES)
                conn.recv(65536)
                conn.sendall(JOB_CREATED + _header(b"\0RES", PacketType.WORK_COMPLETE, 100))
                conn.recv(65536)  # until the client gives up and closes

        thread = threading.Thread(target=half_answer, daemon=True)
        thread.start()
        began = time.monotonic()
        with pytest.raises(GearmanTimeout, match=r"job 'echo' \(H:evil:1\)"):
            GearmanClient([address]).submit("echo", b"{}", timeout=0.5)
        assert 0.5 <= time.monotonic() - began < 2
        thread.join(5)
        assert not thread.is_alive()


# -- malformed bytes from a server, to a worker process --------------------------------------

WORKER_SCRIPTS = {
    "bad magic": _header(b"\0XYZ", PacketType.NOOP, 0),
    "request magic": _header(b"\0REQ", PacketType.NOOP, 0),
    "unknown type": _header(b"\0RES", 999, 0),
    "huge length": _header(b"\0RES", PacketType.NOOP, 2**31),
    "wrong argument count": _header(b"\0RES", PacketType.JOB_ASSIGN_UNIQ, 3) + b"a\0b",
    "a packet no worker expects": JOB_CREATED,
    "a job of a function never registered": response(
        PacketType.JOB_ASSIGN_UNIQ, b"H:evil:2", b"never_registered", b"u", b"{}"
    ),
    "a job whose payload is not JSON": response(
        PacketType.JOB_ASSIGN_UNIQ, b"H:evil:3", b"echo", b"u", b"\xff not json"
    ),
    "a cut header": b"\0RES\0\0",
    "a NOOP flood": response(PacketType.NOOP) * 2000,
    "random bytes": random.Random(7).randbytes(300),
}


@pytest.fixture
def worker_process(gearman_server, hostile: HostileServer, tmp_path: Path) -> Iterator[int]:
    """A foreground worker process (the `islandora-job worker` command) serving tests.jobs
    on the real gearmand and on the hostile server; yields its PID."""
    with configured(
        servers=[gearman_server.address, hostile.address], modules=["tests.jobs"], temp_dir=tmp_path
    ) as resolved:
        log = (tmp_path / "worker.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "islandora_job", "worker"],
            env={**os.environ, **settings_env(resolved)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process.pid
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def test_a_worker_given_malformed_bytes_by_one_server_drops_it_and_serves_the_other(
    gearman_server, hostile: HostileServer, worker_process: int, tmp_path: Path
) -> None:
    scripts = list(WORKER_SCRIPTS.values())
    # Each answer starts with a valid NO_JOB, which resets the worker's reconnect backoff.
    hostile.reply = lambda n: NO_JOB + scripts[n % len(scripts)]
    wait_until(
        lambda: hostile.connections >= len(scripts) + 1,
        timeout=30,
        what=f"{len(scripts) + 1} connections to the hostile server",
    )
    with JobClient([gearman_server.address]) as client:
        assert client.submit("echo", "still", "here", timeout=10) == ["still", "here"]
    with GearmanAdmin(gearman_server.address) as admin:
        (worker,) = [w for w in admin.workers() if w.client_id == client_id(worker_process)]
    assert "echo" in worker.functions
    log = (tmp_path / "worker.log").read_text(encoding="utf-8")
    assert f"gearmand at {hostile.address} unavailable" in log
    assert "job H:evil:3 on 'echo' refused: the payload is not UTF-8" in log
    assert "Traceback" not in log
