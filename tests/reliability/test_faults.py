"""Faults against real processes: workers killed mid-job, gearmand restarted or killed under
connected workers and clients, a queue database that is down, a job nobody serves.

Every server here is function-scoped: these tests kill and restart it, and a fresh gearmand
costs about 15 ms. Every foreground submit carries a timeout, so a regression fails instead
of hanging.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from islandora_job import JobClient, JobFailed, JobTimeout
from islandora_job.gearman.connection import ServerUnavailable
from pytest_islandora_job import assert_background_handle, factories, ports
from pytest_islandora_job.cluster import GearmanCluster
from pytest_islandora_job.config import ServerSettings
from pytest_islandora_job.servers import GearmanServer, ServerStartError, make_servers
from pytest_islandora_job.workerpool import WorkerPool
from tests.helpers import queued, wait_until

MODULES = ["tests.jobs", "tests.reliability.jobs"]
SECRET = "s3cret-never-shown"
# CPU seconds a worker may use while its only server is away for OUTAGE seconds; a worker
# that polled without backoff would burn close to OUTAGE.
OUTAGE = 2.0
MAX_OUTAGE_CPU = 0.2

fault_gearman = factories.gearman_server(scope="function")
fault_worker = factories.job_worker("fault_gearman", modules=MODULES, count=2)
# --job-retries=1: gearmand gives a job up the first time a worker holding it dies.
no_retry_gearman = factories.gearman_server(job_retries=1, scope="function")
no_retry_worker = factories.job_worker("no_retry_gearman", modules=MODULES, count=2)
fault_cluster = factories.gearman_server(count=2, scope="function")
fault_cluster_worker = factories.job_worker("fault_cluster", modules=MODULES, count=2)


def _pids(pool: WorkerPool) -> list[int]:
    return [int((pool.temp_dir / name).read_text()) for name in pool.pidfiles]


def _marks(path: Path) -> list[int]:
    """PIDs the `mark` job wrote, one per run of it."""
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _workers_of(server: GearmanServer, function: str) -> int:
    try:
        return sum(row.workers for row in server.status() if row.function == function)
    except OSError:
        return 0


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _retry_delays(log: Path) -> list[float]:
    return [
        float(d) for d in re.findall(r"unavailable \(.*\); retry in ([\d.]+) s", log.read_text())
    ]


def _kill_while_marking(client: JobClient, marks: Path) -> tuple[int, Callable[[], object]]:
    """Start a 1 s `mark` job in the foreground, SIGKILL the worker that took it mid-job;
    return that worker's PID and a function giving the submit's outcome."""
    executor = ThreadPoolExecutor(1)
    future = executor.submit(client.submit, "mark", str(marks), 1.0, timeout=30)
    executor.shutdown(wait=False)
    wait_until(lambda: _marks(marks), what="a worker to take the job")
    (holder,) = _marks(marks)
    os.kill(holder, signal.SIGKILL)
    return holder, lambda: future.result(timeout=40)


# -- workers killed mid-job -----------------------------------------------------------------


def test_a_job_whose_worker_is_sigkilled_mid_job_is_handed_to_another_worker(
    fault_gearman, fault_worker, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    with JobClient([fault_gearman.address]) as client:
        killed, outcome = _kill_while_marking(client, marks)
        result = outcome()
    (survivor,) = set(_pids(fault_worker)) - {killed}
    assert result == survivor
    assert _marks(marks) == [killed, survivor]
    assert not psutil.pid_exists(killed) or psutil.Process(killed).status() == psutil.STATUS_ZOMBIE


def test_with_job_retries_limited_a_killed_workers_job_fails_clearly_and_at_once(
    no_retry_gearman, no_retry_worker, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    with JobClient([no_retry_gearman.address]) as client:
        killed, outcome = _kill_while_marking(client, marks)
        began = time.monotonic()
        with pytest.raises(JobFailed) as info:
            outcome()
        assert time.monotonic() - began < 2
        assert info.value.job_name == "mark"
        assert "--job-retries" in str(info.value)
        # The surviving worker serves the next job, and never ran the dropped one.
        assert client.submit("add", 2, 3, timeout=10) == 5
    assert _marks(marks) == [killed]
    assert "Dropped job due to max retry count" in no_retry_gearman.log_tail(20)


# -- gearmand restarted under connected workers and clients ---------------------------------


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_workers_and_clients_outlive_a_gearmand_restart_without_spinning(
    fault_gearman, fault_worker, how: str
) -> None:
    pids = _pids(fault_worker)
    logs = [fault_worker.temp_dir / f"{name}.log" for name in fault_worker.pidfiles]
    with JobClient([fault_gearman.address]) as client:
        assert client.submit("add", 1, 1, timeout=10) == 2  # the client is connected
        if how == "kill":
            fault_gearman.kill()
        else:
            fault_gearman.stop()  # SIGTERM: what restart() does first
        cpu_before = {pid: _cpu_seconds(pid) for pid in pids}
        time.sleep(OUTAGE)
        cpu_used = {pid: _cpu_seconds(pid) - cpu_before[pid] for pid in pids}
        alive = [psutil.Process(pid).status() for pid in pids]
        if how == "kill":
            fault_gearman.restart()
        else:
            fault_gearman.start()
        began = time.monotonic()
        # The client's next submit works, on its old connection's replacement; a worker
        # takes the job once its backoff (capped at 2 s) lets it reconnect.
        assert client.submit("pid", timeout=10) in pids
        assert time.monotonic() - began < 4
    assert not {psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD} & set(alive)
    assert all(used < MAX_OUTAGE_CPU for used in cpu_used.values()), cpu_used
    wait_until(lambda: _workers_of(fault_gearman, "pid") == len(pids), what="both workers back")
    assert _pids(fault_worker) == pids
    for log in logs:
        delays = _retry_delays(log)
        # Capped exponential backoff: a few attempts, each wait longer than the one before.
        assert 3 <= len(delays) <= 10, (log.name, delays)
        assert delays == sorted(delays) and delays[-1] >= 0.8, (log.name, delays)


def test_restart_under_connected_workers_and_clients(fault_gearman, fault_worker) -> None:
    pids = _pids(fault_worker)
    with JobClient([fault_gearman.address]) as client:
        assert client.submit("add", 1, 1, timeout=10) == 2
        fault_gearman.restart()
        assert client.submit("add", 2, 2, timeout=10) == 4
        wait_until(lambda: _workers_of(fault_gearman, "add") == 2, what="both workers back")
        assert {client.submit("pid", timeout=10) for _ in range(20)} <= set(pids)
    assert _pids(fault_worker) == pids and all(psutil.pid_exists(pid) for pid in pids)


def test_a_client_waiting_on_a_job_when_gearmand_dies_is_told_at_once(
    fault_gearman, fault_worker
) -> None:
    with JobClient([fault_gearman.address]) as client, ThreadPoolExecutor(1) as executor:
        future = executor.submit(client.submit, "sleep", 2, timeout=30)
        wait_until(
            lambda: any(r.running for r in fault_gearman.status() if r.function == "sleep"),
            what="the job to run",
        )
        fault_gearman.kill()
        began = time.monotonic()
        with pytest.raises(ServerUnavailable, match=r"job 'sleep' \(H:.*\) is lost"):
            future.result(timeout=10)
        assert time.monotonic() - began < 1


# -- two servers, one killed ----------------------------------------------------------------


def _two_at_once(addresses: list[str], marks: Path) -> set[object]:
    """Two foreground 0.5 s `mark` jobs at once, from two clients: one per idle worker."""

    def one() -> object:
        with JobClient(addresses) as client:
            return client.submit("mark", str(marks), 0.5, timeout=20)

    with ThreadPoolExecutor(2) as executor:
        return set(executor.map(lambda _: one(), range(2)))


def test_with_two_servers_one_killed_clients_and_workers_carry_on(
    fault_cluster: GearmanCluster, fault_cluster_worker, tmp_path: Path
) -> None:
    first, second = fault_cluster
    pids = set(_pids(fault_cluster_worker))
    with JobClient(fault_cluster.addresses) as client:
        assert client.submit("add", 1, 2, timeout=10) == 3  # connected to the first server
        first.kill()
        assert [client.submit("add", i, 1, timeout=10) for i in range(20)] == list(range(1, 21))
        for _ in range(5):
            assert_background_handle(client.submit_background("mark", str(tmp_path / "bg")))
    wait_until(lambda: len(_marks(tmp_path / "bg")) == 5, what="5 background jobs run")
    assert _two_at_once(fault_cluster.addresses, tmp_path / "one-down") == pids
    assert _workers_of(second, "mark") == 2
    # The first server back: the workers reconnect to it and serve jobs given to it alone.
    first.restart()
    wait_until(lambda: _workers_of(first, "mark") == 2, what="the workers back on the first")
    assert _two_at_once([first.address], tmp_path / "first-back") == pids
    assert set(_pids(fault_cluster_worker)) == pids


# -- the queue database down when gearmand starts ------------------------------------------

# gearmand's own words when its queue cannot start, and the reason each plugin gives.
QUEUE_DOWN = {
    # Throwaway servers listen on a Unix socket only: gone with the server.
    "mysql": (
        "MySQL",
        "Failed to connect to database: Can't connect to local server through socket",
    ),
    "postgres": ("Postgres", "No such file or directory"),
    "sqlite": ("libsqlite3", "sqlite3_open failed with: unable to open database file"),
}


@pytest.mark.parametrize("fault_gearman", sorted(QUEUE_DOWN), indirect=True)
def test_a_queue_database_down_when_gearmand_starts_is_a_clear_error_with_the_log_tail(
    fault_gearman,
) -> None:
    plugin, reason = QUEUE_DOWN[fault_gearman.queue]
    database = fault_gearman.database
    fault_gearman.kill()
    if fault_gearman.queue == "sqlite":
        shutil.rmtree(database.workdir)  # the database file's directory no longer exists
    else:
        database.instance.stop()
    began = time.monotonic()
    with pytest.raises(ServerStartError) as info:
        fault_gearman.start()
    assert time.monotonic() - began < 5  # gearmand's exit is seen at once, not after a timeout
    message = str(info.value)
    assert message.startswith(
        f"gearmand (process) exited during start-up on {fault_gearman.address}; log tail:\n"
    )
    assert reason in message
    assert f"gearmand: Error while initializing the queue : {plugin}\n" in message
    assert fault_gearman.pid is None


@pytest.mark.parametrize(
    ("queue", "scheme", "option"),
    [
        ("mysql", "mysql", "--gearman-mysql-dsn"),
        ("postgres", "postgresql", "--gearman-postgres-dsn"),
    ],
)
def test_a_queue_database_dsn_nobody_answers_is_a_clear_error_before_gearmand_starts(
    tmp_path: Path, queue: str, scheme: str, option: str
) -> None:
    port = ports.claim_port()  # claimed, so nothing listens there
    try:
        dsn = f"{scheme}://keeper:{SECRET}@127.0.0.1:{port}/jobs"
        settings = ServerSettings(queue=queue, **{f"{queue}_dsn": dsn})
        (server,) = make_servers(settings, tmp_path)
        try:
            with pytest.raises(ServerStartError) as info:
                server.start()
            assert server.pid is None
        finally:
            server.close()
    finally:
        ports.release(port)
    message = str(info.value)
    assert message.startswith(f"cannot connect to {scheme}://keeper@127.0.0.1:{port}/jobs: ")
    assert "refused" in message.lower()
    assert message.endswith(
        f"; start that server, fix {option}, or leave it unset for a throwaway server"
    )
    assert SECRET not in message


# -- a job nobody serves --------------------------------------------------------------------


def _sockets() -> set[tuple[object, object, str]]:
    return {(c.laddr, c.raddr, c.status) for c in psutil.Process().net_connections("inet")}


def test_a_job_nobody_serves_times_out_naming_it_and_leaves_no_thread_or_socket(
    fault_cluster: GearmanCluster,
) -> None:
    client = JobClient(fault_cluster.addresses, check_jobs=False)
    threads, sockets = threading.active_count(), _sockets()
    for attempt in range(5):
        began = time.monotonic()
        with pytest.raises(JobTimeout) as info:
            client.submit("nobody_serves_this", attempt, timeout=0.2)
        assert time.monotonic() - began < 2
        assert info.value.job_name == "nobody_serves_this"
        assert info.value.timeout == 0.2
        for address in fault_cluster.addresses:
            assert f"no worker registered for 'nobody_serves_this' on {address}" in str(info.value)
        assert threading.active_count() == threads
        assert _sockets() == sockets


def test_a_foreground_job_that_timed_out_never_runs_later(
    fault_gearman, fault_worker, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    fault_worker.stop()
    with JobClient([fault_gearman.address]) as client:
        with pytest.raises(JobTimeout, match=r"'mark' did not end within 0.2 s: no worker"):
            client.submit("mark", str(marks), timeout=0.2)
        fault_worker.start()
        assert client.submit("mark", str(tmp_path / "later"), timeout=10) in _pids(fault_worker)
    wait_until(lambda: queued(fault_gearman.address, "mark") == 0, what="the ignored job discarded")
    assert not marks.exists()
