"""The default fixtures against a real gearmand, on each backend: server, client, workers, waits."""

from __future__ import annotations

import stat
import time

import psutil
import pytest

import islandora_job
from islandora_job.gearman.admin import GearmanAdmin
from pytest_islandora_job import (
    JobWaitTimeout,
    assert_background_handle,
    assert_batch_succeeds,
    assert_job_result,
    wait_for_job,
    wait_until_idle,
)
from tests.helpers import function_status


def test_the_server_is_a_ready_loopback_gearmand(backend_gearman):
    assert backend_gearman.host == "127.0.0.1"
    assert backend_gearman.address == f"127.0.0.1:{backend_gearman.port}"
    assert backend_gearman.queue == "builtin"
    assert backend_gearman.version.startswith("1.1.")
    assert backend_gearman.pid is not None
    with GearmanAdmin(backend_gearman.address) as admin:
        assert admin.version() == backend_gearman.version
    assert "Accepted connection" in backend_gearman.log_tail()  # its log reached log_path
    assert backend_gearman.log_path.is_file()


def test_a_local_gearmand_keeps_every_path_in_the_temp_dir(gearman_server):
    with GearmanAdmin(gearman_server.address) as admin:
        process = psutil.Process(admin.getpid())
    if gearman_server.backend == "embedded":
        # Forked from the test process, it has no command line of its own: its files tell.
        paths = [f.path for f in process.open_files()]
        assert str(gearman_server.log_path) in paths
        assert all(path.startswith(str(gearman_server.workdir)) for path in paths)
        return
    cmdline = process.cmdline()
    assert not any(arg.startswith(("/var", "/etc")) for arg in cmdline)
    assert str(gearman_server.log_path) in cmdline
    assert cmdline[cmdline.index("--listen") + 1] == "127.0.0.1"


def test_module_level_api_uses_the_fixture_server(backend_gearman):
    assert islandora_job.settings().servers == (backend_gearman.address,)


def test_job_client_is_bound_to_the_server(backend_client, backend_worker):
    assert backend_client.submit("add", 1, 2, timeout=10) == 3
    handle = backend_client.submit_background("hello")
    assert_background_handle(handle)
    wait_for_job(handle, timeout=10, servers=[backend_client.servers[0]])


def test_job_worker_starts_registered_pidfile_workers(backend_gearman, backend_worker):
    assert len(backend_worker) == 1
    backend_worker.start(count=2)
    assert len(backend_worker.pidfiles) == 3
    hello = function_status(backend_gearman.address, "hello")
    assert (hello.queued, hello.workers) == (0, 3)
    for name in backend_worker.pidfiles:
        assert (backend_worker.temp_dir / name).is_file()
    # A directory of its own, private, under the run's "workers" directory, named after the
    # test (as tmp_path is).
    where = backend_worker.temp_dir
    number, _, name = where.name.partition("-")
    assert where.parent.name.startswith("workers") and number.isdigit()
    assert name.startswith("test_job_worker_starts")
    assert stat.S_IMODE(where.stat().st_mode) == 0o700


def test_stopped_workers_hold_jobs_and_started_ones_release_them(backend_gearman, backend_worker):
    backend_worker.stop()
    handles = [islandora_job.submit_background("hello") for _ in range(3)]
    hello = function_status(backend_gearman.address, "hello")
    assert (hello.queued, hello.workers) == (3, 0)

    backend_worker.start()
    for handle in handles:
        wait_for_job(handle, timeout=10)
    wait_until_idle(backend_gearman, timeout=10)


def test_waits_time_out_with_the_queue_status(backend_gearman, backend_worker):
    backend_worker.stop()
    handle = islandora_job.submit_background("sleep", 0)
    with pytest.raises(
        JobWaitTimeout, match=r"no worker registered for 'sleep' on \S+ \(1 queued\)"
    ):
        wait_for_job(handle, timeout=0.2)
    backend_worker.start()
    wait_for_job(handle, timeout=10)


def test_assertions_on_results_and_batches(backend_worker):
    assert_job_result("add", [2, 3], 5)
    assert_batch_succeeds([{"job_name": "add", "args": [i, i]} for i in range(5)])
    with pytest.raises(AssertionError, match="returned 5, expected 6"):
        assert_job_result("add", [2, 3], 6)
    with pytest.raises(AssertionError, match="a job of the batch failed"):
        assert_batch_succeeds([{"job_name": "fail", "args": []}])


def test_server_kill_and_restart_keep_the_port(backend_gearman):
    port = backend_gearman.port
    backend_gearman.kill()
    assert backend_gearman.pid is None
    with pytest.raises(OSError):
        backend_gearman.status()
    started = time.monotonic()
    backend_gearman.restart()
    assert time.monotonic() - started < 10
    assert backend_gearman.port == port and backend_gearman.pid is not None
    assert backend_gearman.status() == []
