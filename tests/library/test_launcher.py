"""Warm workers: the launcher forks each worker, and a forked worker is what a spawned one is
(pidfile, log, session, command line, identity, SIGKILL, stop_worker); job modules are
imported after the fork; the launcher serves its owner alone, runs nothing but workers and
ends with the process that started it."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import islandora_job
from islandora_job.workers import launcher
from islandora_job.workers.identity import client_id
from pytest_islandora_job.servers.base import GearmanServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def warm() -> Iterator[None]:
    """The launcher enabled for the test (as the plugin's worker pools enable it)."""
    launcher.enable()
    yield


def _pid(temp_dir: Path, name: str) -> int:
    return int((temp_dir / name).read_text())


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while psutil.pid_exists(pid):
        assert time.monotonic() < deadline, f"process {pid} still exists after {timeout} s"
        time.sleep(0.01)


def test_a_forked_worker_is_a_worker_like_a_spawned_one(
    gearman_server: GearmanServer, job_settings: Path
) -> None:
    assert islandora_job.start_worker("w.pid") is True
    try:
        pid = _pid(job_settings, "w.pid")
        running = launcher.running()
        assert running is not None
        process = psutil.Process(pid)
        assert process.ppid() == running[0]  # forked by the launcher, not spawned by us
        assert process.cmdline() == [
            sys.executable, "-m", "islandora_job", "worker", "--pidfile", str(job_settings / "w.pid")
        ]  # fmt: skip
        assert os.getsid(pid) == pid and os.getpgid(pid) == pid
        assert "serving add, append" in islandora_job.worker_log_path("w.pid").read_text()
        assert islandora_job.submit("add", 2, 3, timeout=10) == 5
        assert islandora_job.start_worker("w.pid") is False  # the identity check knows it
    finally:
        assert islandora_job.stop_worker("w.pid") is True
    _wait_gone(pid)
    assert not (job_settings / "w.pid").exists()
    assert "stopped" in islandora_job.worker_log_path("w.pid").read_text()


def test_a_forked_worker_dies_by_sigkill_and_its_name_is_free_again(
    gearman_server: GearmanServer, job_settings: Path
) -> None:
    assert islandora_job.start_worker("k.pid") is True
    pid = _pid(job_settings, "k.pid")
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    assert islandora_job.start_worker("k.pid") is True  # the stale pidfile is removed
    assert _pid(job_settings, "k.pid") != pid
    assert islandora_job.stop_worker("k.pid") is True


def test_a_job_added_to_a_module_is_served_by_the_next_worker(
    gearman_server: GearmanServer,
    job_settings: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = tmp_path / "growing_jobs.py"
    module.write_text(
        "def register_jobs():\n    return {'one': 'growing_jobs:one'}\n\ndef one():\n    return 1\n"
    )
    paths = [str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    monkeypatch.syspath_prepend(str(tmp_path))
    islandora_job.configure(modules=["tests.jobs", "growing_jobs"])
    try:
        assert islandora_job.start_worker("g.pid") is True
        first = psutil.Process(_pid(job_settings, "g.pid")).ppid()
        assert islandora_job.submit("one", timeout=10) == 1
        assert islandora_job.stop_worker("g.pid") is True
        module.write_text(
            "def register_jobs():\n    return {'one': 'growing_jobs:one', 'two': 'growing_jobs:two'}"
            "\n\ndef one():\n    return 'one, changed'\n\ndef two():\n    return 2\n"
        )
        assert islandora_job.start_worker("g.pid") is True
        # The same warm launcher forked both: it never imported the job module itself.
        assert psutil.Process(_pid(job_settings, "g.pid")).ppid() == first
        # This process imported the module before the change; the new worker did after it.
        with islandora_job.JobClient(check_jobs=False) as client:
            assert client.submit("two", timeout=10) == 2
            assert client.submit("one", timeout=10) == "one, changed"
        assert islandora_job.stop_worker("g.pid") is True
    finally:
        sys.modules.pop("growing_jobs", None)


def _request(path: Path, request: dict[str, object]) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX) as conn, open(os.devnull, "wb") as log:
        conn.settimeout(5)
        conn.connect(str(path))
        socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [log.fileno()])
        answer: dict[str, object] = json.loads(conn.makefile("rb").readline())
    return answer


def test_the_launcher_runs_nothing_but_a_worker(
    gearman_server: GearmanServer, job_settings: Path, tmp_path: Path
) -> None:
    assert islandora_job.start_worker("s.pid") is True  # the launcher is up
    islandora_job.stop_worker("s.pid")
    running = launcher.running()
    assert running is not None
    _, path = running
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.parent.stat().st_uid == os.getuid()
    marker = tmp_path / "ran"
    for argv in (
        [sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
        [sys.executable, "-m", "islandora_job", "submit", "add", "1", "2"],
        ["/bin/touch", str(marker)],
    ):
        answer = _request(path, {"argv": argv, "env": {}, "cwd": str(tmp_path)})
        assert "only `python -m islandora_job worker --pidfile PATH` is launched" in str(
            answer["error"]
        )
    assert not marker.exists()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to connect as another user")
def test_the_launcher_serves_its_owner_alone(
    gearman_server: GearmanServer, job_settings: Path, tmp_path: Path
) -> None:
    assert islandora_job.start_worker("o.pid") is True
    islandora_job.stop_worker("o.pid")
    running = launcher.running()
    assert running is not None
    _, path = running
    # Even with the directory opened up, the peer's credentials are checked.
    path.parent.chmod(0o755)
    path.chmod(0o777)
    marker = tmp_path / "ran"
    tmp_path.chmod(0o777)
    script = textwrap.dedent(
        f"""
        import json, os, socket, sys
        conn = socket.socket(socket.AF_UNIX)
        conn.connect({str(path)!r})
        argv = [{sys.executable!r}, "-m", "islandora_job", "worker", "--pidfile", {str(marker)!r}]
        request = json.dumps({{"argv": argv, "env": {{}}, "cwd": "/"}}).encode() + b"\\n"
        try:
            socket.send_fds(conn, [request], [1])
        except BrokenPipeError:
            pass  # refused at once, before the request was read
        print(conn.makefile().readline())
        """
    )
    try:
        done = subprocess.run(
            ["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", script],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        path.parent.chmod(0o700)
    assert "is not this launcher's owner" in done.stdout, done.stdout + done.stderr
    assert not marker.exists()


def test_the_launcher_ends_with_its_parent_and_its_workers_live_on(
    gearman_server: GearmanServer, job_settings: Path
) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        import islandora_job
        from islandora_job.workers import launcher
        launcher.enable()
        assert islandora_job.start_worker("orphan.pid")
        print(launcher.running()[0], flush=True)
        time.sleep(60)
        """
    )
    env = {
        **os.environ,
        **islandora_job.config.settings_env(islandora_job.settings()),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, start_new_session=True
    )
    try:
        assert parent.stdout is not None
        launcher_pid = int(parent.stdout.readline())
        socket_path = Path(psutil.Process(launcher_pid).cmdline()[-1])
        worker_pid = _pid(job_settings, "orphan.pid")
        parent.kill()
        parent.wait()
        _wait_gone(launcher_pid)
        assert not socket_path.parent.exists()  # nothing left behind
        assert psutil.Process(worker_pid).is_running()
        workers = [w.client_id for w in _admin_workers(gearman_server.address)]
        assert client_id(worker_pid) in workers
    finally:
        parent.kill()
        parent.wait()
        assert islandora_job.stop_worker("orphan.pid") is True


def _admin_workers(address: str) -> list[islandora_job.gearman.admin.WorkerInfo]:
    from islandora_job.gearman.admin import GearmanAdmin

    with GearmanAdmin(address, timeout=5) as admin:
        return admin.workers()
