"""What a new user meets first: mistyped job names, hanging jobs, job modules that do not import."""

from __future__ import annotations

import time

import pytest

TWO_TESTS = """
def test_one(job_worker):
    pass

def test_two(job_worker):
    pass
"""


def test_a_mistyped_job_name_under_the_plugin_fails_at_once(pytester: pytest.Pytester, project):
    pytester.makepyfile(
        """
        import pytest
        import islandora_job

        def test_typo(job_worker, job_client):
            with pytest.raises(islandora_job.UnknownJob, match="did you mean 'ping'"):
                islandora_job.submit("pnig")
            with pytest.raises(islandora_job.UnknownJob, match="did you mean 'ping'"):
                job_client.submit_background("pnig")
        """
    )
    began = time.monotonic()
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    assert time.monotonic() - began < 30


def test_a_job_with_no_worker_fails_after_the_ini_job_timeout(pytester: pytest.Pytester, project):
    pytester.makeini("[pytest]\nislandora_job_modules = leakjobs\ngearman_job_timeout = 1\n")
    pytester.makepyfile(
        """
        import time
        import islandora_job

        def test_hangs(gearman_server):
            began = time.monotonic()
            try:
                islandora_job.submit("ping")
            finally:
                print("WAITED", round(time.monotonic() - began, 1))
        """
    )
    result = pytester.runpytest_subprocess("-s")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*JobTimeout: job 'ping' did not end within 1.0 s*"])
    out = result.stdout.str()
    assert "start one (islandora-job start-worker PIDFILE, or the job_worker fixture)" in out
    assert "gearman_job_timeout" in out
    waited = float(out.split("WAITED ")[1].split()[0])
    assert 1.0 <= waited < 3


def test_a_bad_job_timeout_is_a_usage_error(pytester: pytest.Pytester, project):
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_subprocess("--gearman-job-timeout=-1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--gearman-job-timeout / ini gearman_job_timeout: malformed*"])


@pytest.mark.parametrize(
    ("where", "named"),
    [
        ("ini", "ini islandora_job_modules in *tox.ini"),
        ("option", "option --islandora-job-modules"),
        ("override", "-o islandora_job_modules"),
        ("env", "environment variable ISLANDORA_JOB_MODULES"),
    ],
)
def test_a_job_module_that_does_not_import_is_one_paragraph_per_run(
    pytester: pytest.Pytester, project, monkeypatch, where, named
):
    pytester.makepyfile(TWO_TESTS)
    args = []
    if where == "ini":
        pytester.makefile(".ini", tox="[pytest]\nislandora_job_modules = nosuchjobs\n")
    else:
        pytester.makefile(".ini", tox="[pytest]\n")
        if where == "option":
            args = ["--islandora-job-modules=nosuchjobs"]
        elif where == "override":
            args = ["-o", "islandora_job_modules=nosuchjobs"]
        else:
            monkeypatch.setenv("ISLANDORA_JOB_MODULES", "nosuchjobs")
    (pytester.path / "pytest.ini").unlink(missing_ok=True)
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(errors=2)
    out = result.stdout.str()
    # The section after its header line; the short summary (not truncated under CI) names
    # the section too.
    section = out.split("- islandora-job: job modules -", 1)[-1].split("short test summary")[0]
    paragraph = " ".join(section.strip("- \n").split())
    assert f"cannot import job module 'nosuchjobs' (found by {named.split('*')[0]}" in paragraph
    assert "ModuleNotFoundError: No module named 'nosuchjobs'" in paragraph
    assert "pip install -e ." in paragraph and "pythonpath = ." in paragraph
    assert " ".join(out.split()).count("No module named 'nosuchjobs'") == 1, "one paragraph"
    assert "Traceback" not in out and "def load_registry" not in out
    assert len(out.splitlines()) < 40, out


def test_assertion_helpers_point_at_the_test_not_at_themselves(pytester: pytest.Pytester, project):
    pytester.makepyfile(
        """
        from pytest_islandora_job.assertions import assert_background_handle, assert_job_result

        def test_handle():
            assert_background_handle("not a handle")

        def test_result(job_worker):
            assert_job_result("ping", [], "pang")
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "is not a Gearman job handle" in out and "returned 'pong', expected 'pang'" in out
    assert "assertions.py" not in out


def test_the_leftovers_warning_points_at_the_test(pytester: pytest.Pytester, project):
    pytester.makepyfile(
        test_leaving="""
        import islandora_job

        def test_leaves_jobs(job_worker):
            job_worker.stop()
            islandora_job.submit_background("ping")
        """
    )
    result = pytester.runpytest_subprocess("-W", "default::pytest.PytestWarning")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*test_leaving.py:3: PytestWarning: the test left jobs queued*"])
    assert "leftovers.py" not in result.stdout.str()


def test_the_module_level_api_without_a_server_fixture_is_a_clear_error(
    pytester: pytest.Pytester, project
):
    pytester.makepyfile(
        """
        import pytest
        import islandora_job

        def test_no_server():
            with pytest.raises(islandora_job.NoServerChosen) as info:
                islandora_job.submit("ping")
            assert "test_no_server uses no Gearman server fixture" in str(info.value)
            assert "ask for a server fixture (gearman_server)" in str(info.value)

        def test_a_server_of_ones_own_is_used(monkeypatch):
            monkeypatch.setenv("ISLANDORA_JOB_SERVERS", "127.0.0.1:1")
            monkeypatch.setenv("ISLANDORA_JOB_MODULES", "leakjobs")
            with pytest.raises(OSError):
                islandora_job.submit("ping", timeout=2)
        """
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=2)
