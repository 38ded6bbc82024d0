"""The default fixtures against a real gearmand: server, client, workers, waits."""

from __future__ import annotations

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


def test_gearman_server_is_a_ready_loopback_gearmand(gearman_server):
    assert gearman_server.host == "127.0.0.1"
    assert gearman_server.address == f"127.0.0.1:{gearman_server.port}"
    assert gearman_server.queue == "builtin"
    assert gearman_server.version.startswith("1.1.")
    assert gearman_server.log_path.is_file()
    with GearmanAdmin(gearman_server.address) as admin:
        pid = admin.getpid()
    cmdline = psutil.Process(pid).cmdline()
    assert "/var" not in " ".join(cmdline) and "/etc" not in " ".join(cmdline)
    assert str(gearman_server.log_path) in cmdline


def test_module_level_api_uses_the_fixture_server(gearman_server):
    assert islandora_job.settings().servers == (gearman_server.address,)


def test_job_client_is_bound_to_the_server(job_client, job_worker):
    assert job_client.submit("add", 1, 2, timeout=10) == 3
    assert_background_handle(job_client.submit_background("hello"))


def test_job_worker_starts_registered_pidfile_workers(gearman_server, job_worker):
    assert len(job_worker) == 1
    job_worker.start(count=2)
    assert len(job_worker.pidfiles) == 3
    rows = {row.function: row for row in gearman_server.status()}
    assert rows["hello"].workers == 3
    for name in job_worker.pidfiles:
        assert (job_worker.temp_dir / name).is_file()


def test_stopped_workers_hold_jobs_and_started_ones_release_them(gearman_server, job_worker):
    job_worker.stop()
    handles = [islandora_job.submit_background("hello") for _ in range(3)]
    rows = {row.function: row for row in gearman_server.status()}
    assert rows["hello"].queued == 3 and rows["hello"].workers == 0

    job_worker.start()
    for handle in handles:
        wait_for_job(handle, timeout=10)
    wait_until_idle(gearman_server, timeout=10)


def test_waits_time_out_with_the_queue_status(gearman_server, job_worker):
    job_worker.stop()
    handle = islandora_job.submit_background("sleep", 0)
    with pytest.raises(JobWaitTimeout, match=r"sleep: 1 queued, 0 running, 0 workers"):
        wait_for_job(handle, timeout=0.2)
    job_worker.start()
    wait_for_job(handle, timeout=10)


def test_assertions_on_results_and_batches(job_worker):
    assert_job_result("add", [2, 3], 5)
    assert_batch_succeeds([{"job_name": "add", "args": [i, i]} for i in range(5)])
    with pytest.raises(AssertionError, match="returned 5, expected 6"):
        assert_job_result("add", [2, 3], 6)
    with pytest.raises(AssertionError, match="a job of the batch failed"):
        assert_batch_succeeds([{"job_name": "fail", "args": []}])


def test_server_kill_and_restart_keep_the_port(gearman_server):
    port, pid = gearman_server.port, gearman_server.pid
    gearman_server.kill()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    started = time.monotonic()
    gearman_server.restart()
    assert time.monotonic() - started < 5
    assert gearman_server.port == port and gearman_server.pid != pid
    assert gearman_server.status() == []
