"""`islandora-job workers start N | count | stop-all`, `islandora-job ping` and `--priority`,
against a real gearmand and real workers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import islandora_job
from islandora_job import workers
from islandora_job.cli import main
from islandora_job.gearman.admin import GearmanAdmin
from pytest_islandora_job.servers.base import GearmanServer
from tests.features.conftest import MODULES
from tests.helpers import lines_of, queued, wait_until


def gearman_or_skip() -> str:
    tool = shutil.which("gearman")
    if tool is None:
        pytest.skip("the C gearman tool is not installed (apt-get install gearman-tools)")
    return tool


@pytest.fixture
def managed(gearman_server: GearmanServer, tmp_path: Path) -> Iterator[Path]:
    """The settings the commands use: this server, the feature jobs, a temp dir of its own
    (returned); every managed worker left is stopped after."""
    temp_dir = tmp_path / "managed"
    with islandora_job.configured(
        servers=[gearman_server.address], modules=MODULES, temp_dir=temp_dir
    ):
        yield temp_dir
        workers.stop_workers(grace=5)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_workers_start_count_and_stop_all(managed: Path, capsys) -> None:
    code, out, _ = run(capsys, "workers", "start", "2")
    assert code == 0
    assert out.splitlines()[0] == "started 2 managed workers"
    assert sorted(p.name for p in managed.glob("*.pid")) == [
        "managed-worker-1.pid",
        "managed-worker-2.pid",
    ]
    assert run(capsys, "workers", "count") == (0, "2\n", "")
    # Started workers serve jobs.
    assert run(capsys, "submit", "add", "2", "2")[:2] == (0, "4\n")
    # One more takes the next free number; a dead worker's number is reused.
    pid = int((managed / "managed-worker-1.pid").read_text())
    # One Process object: the worker may be reaped the moment it dies.
    worker = psutil.Process(pid)
    worker.kill()
    worker.wait(5)
    assert run(capsys, "workers", "count") == (0, "1\n", "")
    assert run(capsys, "workers", "start", "2")[0] == 0
    assert sorted(p.name for p in managed.glob("*.pid")) == [
        "managed-worker-1.pid",
        "managed-worker-2.pid",
        "managed-worker-3.pid",
    ]
    assert run(capsys, "workers", "stop-all") == (0, "stopped 3 managed workers\n", "")
    assert run(capsys, "workers", "count") == (0, "0\n", "")
    assert list(managed.glob("*.pid")) == []


def test_workers_start_refuses_a_bad_count(managed: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["workers", "start", "two"])
    assert info.value.code == 2
    assert "'two' is not a number of workers (0 or more)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="an integer 0 or more, not -1"):
        workers.start_workers(-1)


def test_ping_reports_each_worker_and_its_jobs(managed: Path, capsys) -> None:
    started = workers.start_workers(2)
    pids = {int((managed / name).read_text()) for name in started}
    code, out, err = run(capsys, "ping", "--timeout", "10")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["SERVER", "WORKER", "ANSWER"]
    ours = [line for line in lines[1:] if "islandora-job:" in line]
    assert {int(line.split("islandora-job:")[1].split()[0]) for line in ours} >= pids
    for pid in pids:
        line = next(line for line in ours if f"islandora-job:{pid} " in line)
        assert f"ok: pid {pid} on " in line
        serving = line.split("serving ")[1].split(", ")
        assert {"hello", "add", "steps", "progress_in_thread"} <= set(serving)


def test_ping_answers_come_from_the_worker_loop(managed: Path) -> None:
    (name,) = workers.start_workers(1)
    pid = int((managed / name).read_text())
    answers = [a for a in workers.ping_workers(timeout=10) if a.client_id.endswith(f":{pid}")]
    assert len(answers) == 1 and answers[0].ok
    assert answers[0].answer is not None and answers[0].answer["pid"] == pid
    assert answers[0].function == workers.heartbeat.ping_function(pid)


def test_a_multisite_worker_answers_on_its_sites_ping_function(managed: Path) -> None:
    with islandora_job.configured(site="h8site"):
        (name,) = workers.start_workers(1)
        pid = int((managed / name).read_text())
        answers = [a for a in workers.ping_workers(timeout=10) if a.client_id.endswith(f":{pid}")]
    assert [a.function for a in answers] == [workers.heartbeat.ping_function(pid, "h8site")]
    assert answers[0].ok
    assert answers[0].function.startswith("h8site_islandora_job_ping:")


def test_ping_exits_1_when_a_worker_does_not_answer(
    managed: Path, gearman_server: GearmanServer, capsys
) -> None:
    (name,) = workers.start_workers(1)
    pid = int((managed / name).read_text())
    # The worker is busy with a job longer than the ping waits.
    handle = islandora_job.submit_background("sleep", 3)
    wait_until(lambda: islandora_job.job_status(handle).running, what="the long job running")
    code, out, _ = run(capsys, "ping", "--timeout", "0.5")
    assert code == 1
    line = next(line for line in out.splitlines() if f"islandora-job:{pid} " in line)
    assert "NO ANSWER: no answer within 0.5 s" in line


def test_a_worker_that_is_not_ours_is_listed_not_checked(
    managed: Path, gearman_server: GearmanServer, capsys
) -> None:
    (name,) = workers.start_workers(1)
    pid = int((managed / name).read_text())
    # A C `gearman -w` worker: registered, but with no heartbeat of ours.
    address = ["-h", gearman_server.host, "-p", str(gearman_server.port)]
    other = subprocess.Popen(
        [gearman_or_skip(), "-w", *address, "-f", "not_ours", "--", "cat"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def registered() -> bool:
            with GearmanAdmin(gearman_server.address) as admin:
                return any("not_ours" in w.functions for w in admin.workers())

        wait_until(registered, what="the C worker registering")
        code, out, _ = run(capsys, "ping", "--timeout", "10")
    finally:
        other.terminate()
        other.wait(5)
    assert code == 0
    lines = out.splitlines()
    assert any(f"islandora-job:{pid} " in line and "ok: pid" in line for line in lines)
    assert any(
        "NOT CHECKED: serves no ping function: not a native worker of ours" in line
        for line in lines
    )


def test_ping_of_an_unreachable_server_exits_1(capsys) -> None:
    code, out, _ = run(capsys, "--servers", "127.0.0.1:1", "ping", "--timeout", "0.5")
    assert code == 1
    assert "127.0.0.1:1  -       NO ANSWER: server unavailable" in out


# -- --priority ----------------------------------------------------------------------------


def test_cli_priority_for_submit(managed: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "order.txt"
    for priority in ("low", "normal", "high"):
        args = ["submit", "--background", "--priority", priority, "append"]
        assert run(capsys, *args, json.dumps(str(out)), json.dumps(priority))[0] == 0
    workers.start_workers(1)
    assert lines_of(out, 3) == ["high", "normal", "low"]
    with pytest.raises(SystemExit):
        main(["submit", "--priority", "urgent", "hello"])
    assert "invalid choice: 'urgent'" in capsys.readouterr().err


def test_cli_priority_is_the_default_of_batch_entries(
    managed: Path, gearman_server: GearmanServer, tmp_path: Path
) -> None:
    out = tmp_path / "order.txt"
    islandora_job.submit_background("append", str(out), "queued-normal")
    batch = tmp_path / "batch.json"
    entries = [
        {"job_name": "append", "args": [str(out), "batch-default"]},
        {"job_name": "append", "args": [str(out), "batch-low"], "priority": "low"},
    ]
    batch.write_text(json.dumps(entries))
    before = queued(gearman_server.address, "append")
    command = [sys.executable, "-m", "islandora_job", "--servers", gearman_server.address]
    command += ["--modules", ",".join(MODULES), "batch", "--priority", "high", str(batch)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as batch_run:
        wait_until(
            lambda: queued(gearman_server.address, "append") >= before + 2,
            20,
            "the batch queued",
        )
        workers.start_workers(1)
        said, _ = batch_run.communicate(timeout=20)
    assert (batch_run.returncode, said) == (0, "batch of 2 jobs: all succeeded\n")
    assert lines_of(out, 3) == ["batch-default", "queued-normal", "batch-low"]
