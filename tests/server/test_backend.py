"""The embedded backend in the plugin: chosen by option, or by default where gearmand is not
installed; persistent servers over SQLite; gearmand's database queues skipped with a reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import psutil
import pytest

JOBS = """
def register_jobs():
    return {"ping": "embjobs:ping"}

def ping():
    return "pong"
"""

USES_EVERY_FIXTURE = """
import islandora_job

def test_server(gearman_server, job_client, job_worker):
    assert gearman_server.backend == "embedded"
    assert job_client.submit("ping", timeout=10) == "pong"
    gearman_server.kill()
    assert gearman_server.pid is None
    gearman_server.restart()
    # The worker reconnects to the restarted server on the same port.
    assert job_client.submit("ping", timeout=10) == "pong"

def test_cluster(gearman_cluster, cluster_job_worker):
    assert [s.backend for s in gearman_cluster] == ["embedded", "embedded"]
    assert len(set(gearman_cluster.addresses)) == 2
    assert islandora_job.submit("ping", timeout=10) == "pong"

def test_persistent(persistent_gearman_server, persistent_job_worker):
    assert persistent_gearman_server.queue == "sqlite"
    assert islandora_job.submit("ping", timeout=10) == "pong"
"""


@pytest.fixture
def embedded_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makepyfile(embjobs=JOBS, test_it=USES_EVERY_FIXTURE)
    monkeypatch.setenv(
        "PYTHONPATH", str(pytester.path) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    for name in ("ISLANDORA_JOB_SERVERS", "ISLANDORA_JOB_TEMP_DIR", "ISLANDORA_JOB_MODULES"):
        monkeypatch.delenv(name, raising=False)
    return pytester


def test_the_embedded_backend_gives_every_fixture_and_skips_database_queues(
    embedded_project: pytest.Pytester,
) -> None:
    embedded_project.makeini("[pytest]\nislandora_job_modules = embjobs\n")
    result = embedded_project.runpytest("--gearman-backend=embedded", "-rs", "-p", "no:randomly")
    result.assert_outcomes(passed=3, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "islandora-job: backend embedded, gearmand embedded Python server 1.1.20*, queue *",
            "SKIPPED*the embedded Gearman server keeps its queue in SQLite only, not mysql*",
            "SKIPPED*the embedded Gearman server keeps its queue in SQLite only, not postgres*",
        ]
    )


def test_without_gearmand_and_without_a_backend_the_fixtures_use_the_embedded_server(
    embedded_project: pytest.Pytester,
) -> None:
    embedded_project.makeini(
        "[pytest]\nislandora_job_modules = embjobs\ngearmand_exec = /nonexistent/gearmand\n"
        "gearman_queues = sqlite\n"
    )
    result = embedded_project.runpytest()
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "islandora-job: backend embedded, gearmand embedded Python server * in place of "
            "/nonexistent/gearmand (not found), *"
        ]
    )


def test_an_explicit_process_backend_without_gearmand_still_fails_in_one_line(
    embedded_project: pytest.Pytester,
) -> None:
    embedded_project.makeini(
        "[pytest]\nislandora_job_modules = embjobs\ngearmand_exec = /nonexistent/gearmand\n"
    )
    result = embedded_project.runpytest("--gearman-backend=process", "-k", "test_server")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*gearmand not found at '/nonexistent/gearmand': install it*"])
    result.stdout.no_fnmatch_line("*Traceback*")


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="hiding gearmand in a mount namespace needs root and unshare",
)
def test_on_a_machine_without_gearmand_the_suite_runs_on_the_embedded_server(
    embedded_project: pytest.Pytester,
) -> None:
    # /usr/sbin (gearmand's home) replaced by an empty directory, for this process tree only.
    embedded_project.makeini("[pytest]\nislandora_job_modules = embjobs\ngearman_queues = sqlite\n")
    inner = f"{sys.executable} -m pytest -p pytester -p no:cacheprovider -rs"
    script = f"mount -t tmpfs tmpfs /usr/sbin && test ! -e /usr/sbin/gearmand && exec {inner}"
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        cwd=embedded_project.path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    assert "backend embedded" in done.stdout and "in place of /usr/sbin/gearmand" in done.stdout


LINGERS = """
import os, time

def test_lingers(gearman_server):
    with open(os.environ["SERVER_PID_FILE"], "w") as out:
        out.write(str(gearman_server.pid))
    time.sleep(60)
"""


def test_a_run_killed_outright_takes_its_embedded_servers_along(
    pytester: pytest.Pytester, tmp_path
) -> None:
    pytester.makepyfile(test_lingers=LINGERS)
    pid_file = tmp_path / "server.pid"
    env = {**os.environ, "SERVER_PID_FILE": str(pid_file)}
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--gearman-backend=embedded"],
        cwd=pytester.path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()):
            assert run.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        server = psutil.Process(int(pid_file.read_text()))
        assert server.is_running()
    finally:
        run.kill()
        run.wait()
    # The kernel tells the server its parent is gone (no sweep, no next run needed).
    server.wait(10)
    assert not psutil.pid_exists(server.pid) or server.status() == psutil.STATUS_ZOMBIE
