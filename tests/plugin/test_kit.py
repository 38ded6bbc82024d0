"""The fixture kit in a user's suite, run as a separate pytest process (pytester)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

pytestmark = pytest.mark.usefixtures("project")


def test_factories_build_servers_and_workers_in_a_conftest(pytester: pytest.Pytester):
    pytester.makeconftest(
        """
        from pytest_islandora_job import factories

        small_gearman = factories.gearman_server(threads=1, extra_args=["--worker-wakeup=1"])
        two_workers = factories.job_worker("small_gearman", count=2)
        """
    )
    pytester.makepyfile(
        """
        import psutil
        import islandora_job
        from islandora_job.gearman.admin import GearmanAdmin

        def test_it(small_gearman, two_workers):
            with GearmanAdmin(small_gearman.address) as admin:
                cmdline = psutil.Process(admin.getpid()).cmdline()
            assert cmdline[cmdline.index("--threads") + 1] == "1"
            assert "--worker-wakeup=1" in cmdline
            assert len(two_workers.pidfiles) == 2
            assert islandora_job.submit("ping", timeout=10) == "pong"
        """
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_a_failing_test_carries_gearmand_and_worker_logs(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        def test_fails(gearman_server, job_worker):
            assert False, "on purpose"
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- gearmand log (gearman_server[[]0[]] 127.0.0.1:*) -*",
            "*Accepted connection from 127.0.0.1:*",
            "*- worker log (job_worker: worker-0.pid.log) -*",
        ]
    )


def test_a_server_that_cannot_start_fails_with_one_line_and_the_log(pytester: pytest.Pytester):
    pytester.makepyfile("def test_it(gearman_server): pass")
    result = pytester.runpytest_subprocess("--gearman-extra-args=--no-such-flag")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*gearmand (process) exited during start-up on 127.0.0.1:*; log tail:*"]
    )
    assert "Traceback" not in result.stdout.str()
    assert "During handling" not in result.stdout.str()


def test_missing_gearmand_says_what_was_looked_for_and_the_ways_out(pytester: pytest.Pytester):
    pytester.makepyfile("def test_it(gearman_server): pass")
    # Chosen explicitly: with no backend chosen, a missing gearmand means the embedded server.
    result = pytester.runpytest_subprocess(
        "--gearmand-exec=/nowhere/gearmand", "--gearman-backend=process"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*gearmand not found at '/nowhere/gearmand': install it (apt-get install gearman-job-server), "
            "give --gearmand-exec PATH, or use --gearman-backend=docker|external*"
        ]
    )


LEFTOVER_TESTS = """
import islandora_job

def test_leaves_jobs(job_worker):
    job_worker.stop()
    islandora_job.submit_background("ping")
    islandora_job.submit_background("ping")

def test_starts_clean(gearman_server, job_worker):
    rows = {row.function: row for row in gearman_server.status()}
    assert rows["ping"].queued == 0
"""


def test_jobs_left_queued_are_drained_and_reported(pytester: pytest.Pytester):
    pytester.makepyfile(LEFTOVER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(["*the test left jobs queued (drained): 127.0.0.1:* ping: 2*"])


def test_strict_queue_turns_leftovers_into_an_error(pytester: pytest.Pytester):
    pytester.makepyfile(LEFTOVER_TESTS)
    result = pytester.runpytest_subprocess("--gearman-strict-queue")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*gearman_strict_queue = true*"])


def test_each_xdist_worker_gets_its_own_gearmand(pytester: pytest.Pytester):
    out = pytester.path / "seen"
    out.mkdir()
    pytester.makepyfile(
        f"""
        import os, pytest

        @pytest.mark.parametrize("n", range(6))
        def test_it(gearman_server, job_worker, n):
            import islandora_job
            assert islandora_job.submit("ping", timeout=10) == "pong"
            worker = os.environ["PYTEST_XDIST_WORKER"]
            with open(r"{out}/" + worker, "a") as f:
                f.write(gearman_server.address + "\\n")
        """
    )
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=6)
    seen = {path.name: set(path.read_text().split()) for path in out.iterdir()}
    assert sorted(seen) == ["gw0", "gw1"]
    assert all(len(addresses) == 1 for addresses in seen.values())
    assert seen["gw0"] != seen["gw1"]


@pytest.mark.parametrize("outcome", ["passed", "failed"])
def test_no_process_outlives_a_run(pytester: pytest.Pytester, project, outcome):
    pytester.makepyfile(
        f"""
        def test_it(gearman_server, gearman_cluster, job_worker):
            job_worker.start(count=2)
            assert {outcome == "passed"}
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(**{outcome: 1})
    assert project.processes() == []


def _start_pytest(pytester: pytest.Pytester, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", *args],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


SLEEPER = """
import time

def test_sleeps(gearman_server, job_worker):
    job_worker.start()
    open("ready", "w").write(str(gearman_server.pid))
    time.sleep(60)
"""


def _wait_ready(pytester: pytest.Pytester, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 30
    ready = pytester.path / "ready"
    while not (ready.exists() and ready.read_text()):
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, "the inner run never got ready"
        time.sleep(0.05)
    return int(ready.read_text())


def test_no_process_outlives_an_interrupted_run(pytester: pytest.Pytester, project):
    pytester.makepyfile(SLEEPER)
    proc = _start_pytest(pytester)
    _wait_ready(pytester, proc)
    assert len(project.processes()) >= 3  # pytest, gearmand, two workers
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert b"KeyboardInterrupt" in out
    assert [p for p in project.processes() if p.pid != proc.pid] == []


def test_leftovers_of_a_killed_run_are_reaped_by_the_next_run(pytester: pytest.Pytester, project):
    pytester.makepyfile(SLEEPER)
    proc = _start_pytest(pytester)
    gearmand_pid = _wait_ready(pytester, proc)
    children = [p for p in project.processes() if p.pid != proc.pid]
    assert gearmand_pid in [p.pid for p in children]
    # The run dies; its children, in their own process groups, do not. (Any run that starts
    # now may reap them, a concurrent one included: that is the behaviour under test.)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)

    for test_file in pytester.path.glob("test_*.py"):
        test_file.unlink()
    pytester.makepyfile(test_nothing="def test_nothing(): pass")
    pytester.runpytest_subprocess().assert_outcomes(passed=1)

    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []


def test_the_api_follows_the_servers_across_scopes(pytester: pytest.Pytester):
    pytester.makeconftest(
        """
        from pytest_islandora_job import factories

        module_gearman = factories.gearman_server(scope="module")
        """
    )
    pytester.makepyfile(
        test_a="""
        import islandora_job

        def test_module_server_first(module_gearman):
            assert islandora_job.settings().servers == (module_gearman.address,)

        def test_then_the_session_server(module_gearman, gearman_server):
            assert islandora_job.settings().servers == (gearman_server.address,)
        """,
        test_b="""
        import islandora_job

        def test_session_after_the_module_server_stopped(gearman_server):
            assert islandora_job.settings().servers == (gearman_server.address,)
        """,
    )
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=3)


def test_the_api_uses_the_server_the_test_asks_for(pytester: pytest.Pytester):
    pytester.makeconftest(
        """
        from pytest_islandora_job import factories

        other_gearman = factories.gearman_server()
        """
    )
    pytester.makepyfile(
        """
        import islandora_job

        def test_other_started_last(gearman_server, other_gearman):
            pass

        def test_asks_for_gearman_server(gearman_server):
            assert islandora_job.settings().servers == (gearman_server.address,)

        def test_asks_for_the_other(other_gearman):
            assert islandora_job.settings().servers == (other_gearman.address,)
        """
    )
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=3)
