"""The embedded server's SQLite queue across a real SIGKILL: every background job comes back
once, with its own priority, and a finished job never comes back."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter

from islandora_job.gearman import GearmanClient, GearmanWorker
from islandora_job.gearman.client import Priority
from pytest_islandora_job.servers.embedded import EmbeddedGearmanServer


def _run_worker(address: str, function: str, runs: list[bytes], until: int) -> None:
    worker = GearmanWorker([address])
    worker.register(function, lambda job: runs.append(job.data) or b"")
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while len(runs) < until:
        assert time.monotonic() < deadline, f"only {runs} ran"
        time.sleep(0.01)
    # Long enough for a duplicate to show up if there were one.
    time.sleep(0.3)
    worker.request_stop()
    thread.join(10)
    worker.close()


def test_background_jobs_survive_sigkill_and_run_once_with_their_priority(
    embedded_sqlite: EmbeddedGearmanServer,
) -> None:
    server = embedded_sqlite
    with GearmanClient([server.address]) as client:
        client.submit_background("persist", b"finished-before", unique="u0")
    done: list[bytes] = []
    _run_worker(server.address, "persist", done, until=1)
    assert done == [b"finished-before"]

    with GearmanClient([server.address]) as client:
        client.submit_background("persist", b"low", unique="u1", priority=Priority.LOW)
        client.submit_background("persist", b"normal", unique="u2")
        client.submit_background("persist", b"high", unique="u3", priority=Priority.HIGH)
        # Without a unique id (as the C tool sends them): both are kept.
        client.submit_background("persist", b"no-unique-1", unique="")
        client.submit_background("persist", b"no-unique-2", unique="")
    rows = {(row.unique_key, row.priority, row.data) for row in server.persisted_jobs()}
    assert rows == {
        ("u1", 2, b"low"),
        ("u2", 1, b"normal"),
        ("u3", 0, b"high"),
        ("", 1, b"no-unique-1"),
        ("", 1, b"no-unique-2"),
    }

    old_pid = server.pid
    server.kill()
    assert server.pid is None
    server.restart()
    assert server.pid not in (None, old_pid)

    queued = server.queued_jobs("persist")
    assert [(j.data, j.priority) for j in queued] == [
        (b"high", 0),
        (b"normal", 1),
        (b"no-unique-1", 1),
        (b"no-unique-2", 1),
        (b"low", 2),
    ]
    runs: list[bytes] = []
    _run_worker(server.address, "persist", runs, until=5)
    assert runs == [b"high", b"normal", b"no-unique-1", b"no-unique-2", b"low"]
    assert Counter(runs).most_common(1)[0][1] == 1
    assert server.persisted_jobs() == []

    # Nothing comes back after a second crash either.
    server.kill()
    server.restart()
    assert server.queued_jobs() == []


def test_foreground_jobs_are_never_kept(embedded_sqlite: EmbeddedGearmanServer) -> None:
    server = embedded_sqlite
    server.hold("fg_only")
    with GearmanClient([server.address]) as client:
        client.submit_background("fg_only", b"kept")
        # A foreground submit that is still waiting when the server dies.
        thread = threading.Thread(
            target=lambda: _ignore_errors(client.submit, "fg_only", b"lost", timeout=5),
            daemon=True,
        )
        thread.start()
        deadline = time.monotonic() + 5
        while len(server.queued_jobs("fg_only")) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        server.kill()
        thread.join(10)
    server.restart()
    assert [j.data for j in server.queued_jobs("fg_only")] == [b"kept"]


def _ignore_errors(function, *args, **kwargs) -> None:
    with contextlib.suppress(OSError):
        function(*args, **kwargs)
