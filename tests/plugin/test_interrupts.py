"""Ctrl-C ends a run with jobs running within seconds; no worker outlives its pytest process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.plugin.conftest import Marked

# Three workers, each holding a job that outlasts any grace: stopped in turn, they took
# their grace each; stopped at once, they take it once.
BUSY = """
import time

import islandora_job


def test_busy(gearman_server, job_worker):
    job_worker.start(count=2)
    islandora_job.submit_background("nap", 60)
    islandora_job.submit_background("nap", 60)
    time.sleep(0.5)
    open("ready", "w").write("1")
    islandora_job.submit("nap", 60, timeout=120)
"""


def _start(pytester: pytest.Pytester, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _workers(project: Marked) -> list[psutil.Process]:
    found = []
    for proc in project.processes():
        try:
            cmdline = proc.cmdline()
        except psutil.Error:
            continue
        if "islandora_job" in cmdline and "worker" in cmdline:
            found.append(proc)
    return found


def _wait_busy(pytester: pytest.Pytester, proc: subprocess.Popen[bytes], project: Marked, n: int):
    deadline = time.monotonic() + 60
    while len(list(pytester.path.glob("**/ready"))) < n or len(_workers(project)) < 2 * n:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        assert time.monotonic() < deadline, "the inner run never got busy"
        time.sleep(0.05)
    time.sleep(0.5)  # the foreground job reaches its worker


def _assert_no_worker_left(project: Marked, within: float) -> None:
    deadline = time.monotonic() + within
    while (left := _workers(project)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], f"workers outlived their pytest: {[p.pid for p in left]}"


def test_the_first_ctrl_c_ends_a_busy_run_within_seconds(pytester: pytest.Pytester, project):
    pytester.makepyfile(BUSY)
    proc = _start(pytester)
    _wait_busy(pytester, proc, project, 1)
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    took = time.monotonic() - began
    assert b"KeyboardInterrupt" in out
    # Stopped in turn, the three workers took over 30 s; a loaded machine adds a little.
    assert took < 10, f"the run took {took:.1f} s to end after Ctrl-C"
    assert [p for p in project.processes() if p.pid != proc.pid] == []


@pytest.mark.parametrize(
    "how", ["ctrl-c-again", "sigint-to-the-group", "sigkill"], ids=lambda how: how
)
def test_no_worker_outlives_its_pytest_however_it_ends(pytester: pytest.Pytester, project, how):
    pytester.makepyfile(BUSY)
    proc = _start(pytester)
    _wait_busy(pytester, proc, project, 1)
    if how == "sigkill":
        proc.kill()
    else:
        # An impatient user: Ctrl-C again and again, in the middle of stopping, until it ends.
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if how == "ctrl-c-again":
                proc.send_signal(signal.SIGINT)
            else:
                os.killpg(proc.pid, signal.SIGINT)
            time.sleep(0.3)
    proc.communicate(timeout=60)
    # A worker whose pytest is gone gets its job a short grace, then exits.
    _assert_no_worker_left(project, within=6)


def test_no_worker_outlives_an_interrupted_xdist_run(pytester: pytest.Pytester, project):
    pytester.makepyfile(test_one=BUSY, test_two=BUSY.replace("test_busy", "test_busy_too"))
    # Each test writes its ready file in its own directory.
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(autouse=True)
        def _own_dir(tmp_path, monkeypatch):
            monkeypatch.chdir(tmp_path)
        """
    )
    proc = _start(pytester, "-n", "2", "--basetemp", str(pytester.path / "base"))
    _wait_busy(pytester, proc, project, 2)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
    proc.communicate(timeout=60)
    _assert_no_worker_left(project, within=8)


def test_a_worker_started_outside_pytest_stays_detached(tmp_path, gearman_server) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ISLANDORA_JOB_WATCH_PID"}
    env["ISLANDORA_JOB_TEMP_DIR"] = str(tmp_path)
    env["PYTHONPATH"] = os.getcwd()
    cli = [sys.executable, "-m", "islandora_job", "--servers", gearman_server.address]
    subprocess.run([*cli, "start-worker", "detached.pid"], env=env, check=True, timeout=60)
    try:
        pid = int((tmp_path / "detached.pid").read_text())
        assert "ISLANDORA_JOB_WATCH_PID" not in psutil.Process(pid).environ()
        time.sleep(1)  # the CLI that started it is gone; it runs on
        assert psutil.Process(pid).is_running()
    finally:
        subprocess.run([*cli, "stop-worker", "detached.pid"], env=env, check=True, timeout=60)
