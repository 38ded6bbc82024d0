"""The embedded server over real sockets: our client and worker, JobClient with pidfile
workers, the C ``gearman`` tool and ``gearadmin``, and the command line."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import psutil
import pytest

from islandora_job.gearman import GearmanAdmin, GearmanClient, GearmanWorker, WorkFailure
from islandora_job.gearman.client import Priority
from islandora_job.gearman.protocol import PacketType, request
from islandora_job.server import VERSION
from pytest_islandora_job import ports
from pytest_islandora_job.servers.embedded import EmbeddedGearmanServer
from tests.helpers import wait_until

GEARMAN = shutil.which("gearman")
GEARADMIN = shutil.which("gearadmin")
needs_c_tools = pytest.mark.skipif(
    GEARMAN is None or GEARADMIN is None, reason="the C gearman tools are not installed"
)


@pytest.fixture
def worker(embedded: EmbeddedGearmanServer) -> Iterator[GearmanWorker]:
    """Our worker in a thread: rev reverses, boom fails with data, slow reports progress."""
    w = GearmanWorker([embedded.address], client_id="embedded-test")

    def slow(job):
        job.send_status(1, 2)
        job.send_data(b"half")
        return b"done"

    def boom(job):
        raise WorkFailure(b"it broke")

    w.register("rev", lambda job: job.data[::-1])
    w.register("boom", boom)
    w.register("slow", slow)
    thread = threading.Thread(target=w.work, daemon=True)
    thread.start()
    wait_until(lambda: w.registered_on())
    yield w
    w.request_stop()
    thread.join(10)
    w.close()


def test_the_server_is_a_ready_loopback_child_of_ours(embedded: EmbeddedGearmanServer) -> None:
    assert embedded.backend == "embedded"
    assert embedded.host == "127.0.0.1"
    with GearmanAdmin(embedded.address) as admin:
        assert admin.getpid() == embedded.pid
        assert admin.version() == VERSION.decode() == embedded.version
    connections = psutil.Process(embedded.pid).net_connections(kind="tcp")
    listening = [c.laddr for c in connections if c.status == psutil.CONN_LISTEN]
    assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", embedded.port)]


def test_our_client_and_worker_foreground_background_and_priorities(
    embedded: EmbeddedGearmanServer, worker: GearmanWorker
) -> None:
    with GearmanClient([embedded.address]) as client:
        assert client.submit("rev", b"abc\xff", timeout=10).data == b"\xffcba"
        for priority in Priority:
            assert client.submit("rev", b"xy", priority=priority, timeout=10).data == b"yx"
        slow = client.submit("slow", b"", timeout=10)
        assert (slow.data, slow.partial, slow.progress) == (b"done", [b"half"], [(1, 2)])
        failed = client.submit("boom", b"", timeout=10)
        assert (failed.status, failed.exception) == ("exception", b"it broke")
        results = client.submit_many([("rev", b"%d" % i) for i in range(50)], timeout=10)
        assert [r.data for r in results] == [(b"%d" % i)[::-1] for i in range(50)]
        handle = client.submit_background("rev", b"bg")
        assert handle.startswith(f"H:{socket.gethostname()}:")
        wait_until(lambda: not client.get_status(handle).known)
    with GearmanAdmin(embedded.address) as admin:
        (row,) = [w for w in admin.workers() if w.client_id == "embedded-test"]
        assert sorted(row.functions) == ["boom", "rev", "slow"]


def test_job_client_with_pidfile_workers(embedded_client, embedded_worker) -> None:
    assert embedded_client.submit("add", 1, 2, timeout=10) == 3
    assert embedded_client.submit("echo", "é", [1], timeout=10) == ["é", [1]]
    assert (
        embedded_client.submit_batch(
            [{"job_name": "add", "args": [1, 1]}, {"job_name": "hello", "args": []}], timeout=10
        )
        is True
    )


@needs_c_tools
def test_the_c_tool_as_client_and_worker(embedded: EmbeddedGearmanServer, tmp_path) -> None:
    base = [GEARMAN, "-h", embedded.host, "-p", str(embedded.port)]
    c_worker = subprocess.Popen([*base, "-w", "-f", "c_rev", "--", "rev"])
    try:
        wait_until(lambda: any(s.function == "c_rev" and s.workers for s in embedded.status()))
        done = subprocess.run(
            [*base, "-f", "c_rev"], input=b"hello\n", capture_output=True, timeout=10
        )
        assert done.stdout == b"olleh\n"
        with GearmanClient([embedded.address]) as client:
            assert client.submit("c_rev", b"abc", timeout=10).data == b"cba"
    finally:
        c_worker.terminate()
        c_worker.wait(10)
    # The C client against our worker, in the background and in the foreground.
    w = GearmanWorker([embedded.address])
    seen: list[bytes] = []
    w.register("py_up", lambda job: seen.append(job.data) or job.data.upper())
    thread = threading.Thread(target=w.work, daemon=True)
    thread.start()
    try:
        wait_until(lambda: w.registered_on())
        out = subprocess.run([*base, "-f", "py_up", "quiet"], capture_output=True, timeout=10)
        assert out.stdout == b"QUIET"  # as through gearmand: no line end added
        subprocess.run([*base, "-b", "-f", "py_up", "later"], capture_output=True, timeout=10)
        wait_until(lambda: b"later" in seen)
    finally:
        w.request_stop()
        thread.join(10)
        w.close()


@needs_c_tools
def test_gearadmin_reads_the_embedded_server(embedded: EmbeddedGearmanServer) -> None:
    def gearadmin(*args: str) -> str:
        command = [GEARADMIN, "-h", embedded.host, "-p", str(embedded.port), *args]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=10, check=True
        ).stdout

    assert gearadmin("--server-version").strip() == VERSION.decode()
    assert gearadmin("--getpid").strip() == str(embedded.pid)
    with GearmanClient([embedded.address]) as client:
        handle = client.submit_background("ga_only", b"x", priority=Priority.LOW)
    assert "ga_only\t1\t0\t0" in gearadmin("--status").splitlines()
    assert "ga_only\t0\t0\t1\t0" in gearadmin("--priority-status").splitlines()
    assert f"{handle}\t0\t0\t1" in gearadmin("--show-jobs").splitlines()
    assert "OK" in gearadmin("--cancel-job", handle)
    assert "OK" in gearadmin("--drop-function", "ga_only")
    assert "ga_only" not in gearadmin("--status")
    assert gearadmin("--workers").rstrip().endswith(".")


def test_sigterm_stops_the_command_cleanly_and_busy_ports_fail_in_one_line(tmp_path) -> None:
    port = ports.claim_port()
    try:
        command = [sys.executable, "-m", "islandora_job", "server", "--port", str(port)]
        proc = subprocess.Popen(command, stderr=subprocess.PIPE)
        try:
            wait_until(lambda: _answers(port))
            busy = subprocess.run(command, capture_output=True, text=True, timeout=30)
            assert busy.returncode == 1
            assert busy.stderr.strip().splitlines()[-1].startswith("islandora-job server: error:")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        assert b"stopped" in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        ports.release(port)


def test_bad_arguments_name_the_fix(tmp_path) -> None:
    command = [sys.executable, "-m", "islandora_job", "server", "--port", "0"]
    bad_queue = subprocess.run([*command, "--queue", "mysql:x"], capture_output=True, text=True)
    assert bad_queue.returncode == 1 and "use sqlite:PATH" in bad_queue.stderr
    retries = subprocess.run([*command, "--job-retries", "-1"], capture_output=True, text=True)
    assert retries.returncode == 1 and "give 0 (retry forever) or more" in retries.stderr


def _answers(port: int) -> bool:
    try:
        with GearmanAdmin(f"127.0.0.1:{port}", timeout=1) as admin:
            admin.version()
    except OSError:
        return False
    return True


def test_a_hostile_peer_cannot_make_the_server_buffer_without_bound(
    embedded: EmbeddedGearmanServer,
) -> None:
    with socket.create_connection((embedded.host, embedded.port)) as sock:
        # A header declaring a 1 GiB body is refused at once, before any body byte.
        sock.sendall(b"\0REQ" + (7).to_bytes(4, "big") + (1 << 30).to_bytes(4, "big"))
        sock.settimeout(5)
        assert sock.recv(100) == b""
    with GearmanAdmin(embedded.address) as admin:
        assert admin.getpid() == embedded.pid


def test_a_peer_that_never_reads_its_replies_is_closed(embedded: EmbeddedGearmanServer) -> None:
    echo = request(PacketType.ECHO_REQ, b"x" * (1 << 20))
    with socket.create_connection((embedded.host, embedded.port)) as sock:
        sock.settimeout(10)
        with pytest.raises(OSError):  # the server closed it: a broken pipe or a reset
            for _ in range(200):  # 200 MiB of echoes, far past what the server holds back
                sock.sendall(echo)
    with GearmanAdmin(embedded.address) as admin:
        assert admin.getpid() == embedded.pid
