"""The `islandora-job` command against a real gearmand and real workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import islandora_job
from islandora_job.cli import main
from islandora_job.config import settings, settings_env


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_submit_prints_the_json_result(start, capsys) -> None:
    start()
    assert run(capsys, "submit", "hello") == (0, '"hello world"\n', "")
    assert run(capsys, "submit", "add", "1", "2.5") == (0, "3.5\n", "")
    code, out, _ = run(capsys, "submit", "echo", '"text"', '{"a": [1, null]}', "☃".join('""'))
    assert (code, json.loads(out)) == (0, ["text", {"a": [1, None]}, "☃"])


def test_an_argument_that_is_not_json_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["submit", "echo", "plain"])
    assert info.value.code == 2
    assert "'plain' is not a JSON value: quote text as JSON" in capsys.readouterr().err


def test_submit_background_prints_the_handle(gearman_server, capsys) -> None:
    code, out, _ = run(capsys, "submit", "--background", "--unregistered", "cli_nobody_serves")
    assert code == 0
    assert out.startswith("H:")


def test_a_failed_job_is_one_line_and_exit_status_1(start, capsys) -> None:
    start()
    code, out, err = run(capsys, "submit", "fail", '"bad"')
    assert (code, out) == (1, "")
    assert err == "islandora-job: error: job 'fail' failed: ValueError: bad\n"


def test_a_timeout_is_one_line_naming_the_queue_status(gearman_server, capsys) -> None:
    code, _, err = run(capsys, "submit", "--timeout", "0.2", "--unregistered", "cli_nobody")
    assert code == 1
    assert err.startswith("islandora-job: error: job 'cli_nobody' did not end within 0.2 s")
    assert "no worker registered for 'cli_nobody'" in err
    assert "Traceback" not in err


def test_batch(start, capsys, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    start()
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"job_name": "hello"}, {"job_name": "add", "args": [1, 2]}]))
    assert run(capsys, "batch", str(good)) == (0, "batch of 2 jobs: all succeeded\n", "")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"job_name": "hello"}, {"job_name": "fail"}]))
    code, out, _ = run(capsys, "batch", str(bad))
    assert (code, out) == (1, "batch of 2 jobs: some failed\n")
    assert "job 'fail' failed: ValueError: boom" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file or directory"),
        ("[{", "is not JSON"),
        ('{"job_name": "hello"}', "a batch must be a list"),
        ('[{"job": "hello"}]', "batch entry 0 has unknown keys ['job']"),
    ],
)
def test_a_bad_batch_file_is_one_line(
    capsys, tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "batch.json"
    if content is not None:
        path.write_text(content)
    code, _, err = run(capsys, "batch", str(path))
    assert code == 1
    assert err.startswith("islandora-job: error: ")
    assert message in err
    assert err.count("\n") == 1


def test_jobs_lists_the_registered_jobs_and_where_they_come_from(capsys) -> None:
    code, out, _ = run(capsys, "jobs")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["JOB", "FUNCTION", "REGISTERED", "BY", "FOUND", "BY"]
    hello = next(line for line in lines if line.startswith("hello "))
    assert hello.split()[:3] == ["hello", "tests.jobs:hello", "tests.jobs"]
    assert "ISLANDORA_JOB_MODULES" in hello


def test_status_shows_queued_running_and_workers_per_function(
    start, gearman_server, capsys
) -> None:
    start()
    islandora_job.JobClient(check_jobs=False).submit_background("cli_status_queue", 1)
    code, out, _ = run(capsys, "status")
    rows = {tuple(line.split()[1:]) for line in out.splitlines()[1:]}
    assert code == 0
    assert out.splitlines()[0].split() == ["SERVER", "FUNCTION", "QUEUED", "RUNNING", "WORKERS"]
    assert ("cli_status_queue", "1", "0", "0") in rows
    assert ("hello", "0", "0", "1") in rows


def test_start_worker_and_stop_worker(gearman_server, job_settings, capsys) -> None:
    pidfile = job_settings / "cli.pid"
    code, out, _ = run(capsys, "start-worker", "cli.pid")
    try:
        assert (code, out) == (0, f"worker started: pidfile {pidfile}, log {pidfile}.log\n")
        assert run(capsys, "start-worker", "cli.pid") == (
            1,
            "",
            f"islandora-job: a worker already runs with pidfile {pidfile}\n",
        )
    finally:
        assert run(capsys, "stop-worker", "cli.pid") == (
            0,
            f"worker stopped: pidfile {pidfile}\n",
            "",
        )
    assert run(capsys, "stop-worker", "cli.pid") == (
        1,
        "",
        f"islandora-job: no live worker with pidfile {pidfile}\n",
    )


def test_a_bad_pidfile_name_is_one_line(capsys) -> None:
    code, _, err = run(capsys, "start-worker", "../escape.pid")
    assert code == 1
    assert err.startswith(
        "islandora-job: error: pidfile name '../escape.pid' contains a path separator"
    )


def test_servers_option_applies_to_the_command_only(start, gearman_server, capsys) -> None:
    start()
    code, _, err = run(capsys, "--servers", "127.0.0.1:1", "submit", "hello")
    assert code == 1
    assert "127.0.0.1:1" in err
    assert settings().servers == (gearman_server.address,)
    assert run(capsys, "--servers", gearman_server.address, "submit", "hello")[0] == 0


def test_a_malformed_servers_option_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--servers", "host:port", "jobs"])
    assert info.value.code == 2
    assert "host:port" in capsys.readouterr().err


def test_no_command_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_the_console_script(start) -> None:
    # The script pip installed beside this interpreter, whether or not its venv is on PATH.
    script = Path(sys.executable).with_name("islandora-job")
    assert script.is_file(), f"{script} is missing: pip install -e . installs it"
    start()
    result = subprocess.run(
        [str(script), "submit", "add", "20", "22"],
        # The script checks the job name, so it imports the job modules: tests.jobs from here.
        env={**os.environ, **settings_env(settings()), "PYTHONPATH": os.getcwd()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, "42\n"), result.stderr
