"""Workers against a real gearmand: pidfiles, identity checks, signals, bad input, the C tool."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

import islandora_job
from islandora_job import PidfileError, WorkerStartError, config, payload
from islandora_job.config import settings, settings_env
from islandora_job.gearman.admin import GearmanAdmin, WorkerInfo
from islandora_job.gearman.client import GearmanClient
from islandora_job.workers import client_id
from islandora_job.workers.heartbeat import ping_function
from tests.helpers import function_status, wait_until


def _workers(address: str) -> list[WorkerInfo]:
    with GearmanAdmin(address) as admin:
        return [w for w in admin.workers() if w.functions]


def _pid(temp_dir: Path, name: str) -> int:
    return int((temp_dir / name).read_text())


def _child_env() -> dict[str, str]:
    return {**os.environ, **settings_env(settings())}


@pytest.fixture
def cli_process() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """cli_process(*args) runs `python -m islandora_job ARGS` with the test's settings;
    whatever still runs at the end is killed."""
    started: list[subprocess.Popen[bytes]] = []

    def run(*args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "islandora_job", *args],
            env=_child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield run
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


@pytest.fixture
def settings_calls(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """One entry per call of islandora_job.config.settings() from now on."""
    calls: list[None] = []
    real = config.settings

    def counted() -> config.Settings:
        calls.append(None)
        return real()

    monkeypatch.setattr(config, "settings", counted)
    return calls


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated live process (`sleep`)."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


# -- start and stop ---------------------------------------------------------------------


def test_start_worker_registers_it_and_stop_worker_stops_it(gearman_server, job_settings) -> None:
    assert islandora_job.start_worker("w.pid") is True
    try:
        pid = _pid(job_settings, "w.pid")
        process = psutil.Process(pid)
        assert process.cmdline()[1:] == [
            "-m", "islandora_job", "worker", "--pidfile", str(job_settings / "w.pid")
        ]  # fmt: skip
        assert os.getsid(pid) == pid  # detached: a session of its own
        (worker,) = _workers(gearman_server.address)
        assert worker.client_id == client_id(pid)
        # Every registered job, and the heartbeat `islandora-job ping` asks.
        assert sorted(worker.functions) == sorted(
            [*islandora_job.load_registry().jobs, ping_function(pid)]
        )
        assert islandora_job.worker_log_path("w.pid") == job_settings / "w.pid.log"
        assert "serving add, append" in islandora_job.worker_log_path("w.pid").read_text()
        assert islandora_job.start_worker("w.pid") is False
        assert _pid(job_settings, "w.pid") == pid
    finally:
        assert islandora_job.stop_worker("w.pid") is True
    assert not process.is_running()
    assert not (job_settings / "w.pid").exists()
    assert _workers(gearman_server.address) == []
    assert islandora_job.stop_worker("w.pid") is False


def test_start_and_stop_take_their_settings_from_the_caller(
    gearman_server, job_settings, tmp_path: Path, settings_calls: list[None]
) -> None:
    given = dataclasses.replace(settings(), temp_dir=tmp_path / "given")
    settings_calls.clear()
    assert islandora_job.start_worker("w.pid", settings=given) is True
    try:
        process = psutil.Process(_pid(given.temp_dir, "w.pid"))
        assert not (job_settings / "w.pid").exists()
        (worker,) = _workers(gearman_server.address)
        assert worker.client_id == client_id(process.pid)
        assert settings_calls == [], "given settings: none resolved"
        # Without settings= the call resolves the settings in force, once: no pidfile there.
        assert islandora_job.stop_worker("w.pid") is False
        assert settings_calls == [None]
    finally:
        assert islandora_job.stop_worker("w.pid", settings=given) is True
    assert not process.is_running()
    assert settings_calls == [None]


def test_start_and_stop_resolve_the_settings_once_per_call(
    gearman_server, job_settings, settings_calls: list[None]
) -> None:
    assert islandora_job.start_worker("w.pid") is True
    assert len(settings_calls) == 1
    assert islandora_job.stop_worker("w.pid") is True
    assert len(settings_calls) == 2


@pytest.mark.parametrize("name", ["", "a/b", "..", ".", "/tmp/abs.pid", "a\0b"])
def test_pidfile_names_that_are_not_bare_file_names_are_refused(
    gearman_server, job_settings, name: str
) -> None:
    calls = [islandora_job.start_worker, islandora_job.worker_log_path]
    if os.path.isabs(name):
        # stop_worker takes what `islandora-job worker --pidfile` takes: there is none here.
        assert islandora_job.stop_worker(name) is False
    else:
        calls.append(islandora_job.stop_worker)
    for call in calls:
        with pytest.raises(ValueError, match="give a bare file name"):
            call(name)
    assert not job_settings.exists()
    assert not Path("/tmp/abs.pid").exists()


def test_a_stale_pidfile_is_removed(start, job_settings) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    job_settings.mkdir()
    (job_settings / "w.pid").write_text(f"{gone.pid}\n")
    start("w.pid")
    assert _pid(job_settings, "w.pid") != gone.pid
    assert psutil.Process(_pid(job_settings, "w.pid")).is_running()


def test_a_garbled_pidfile_is_refused_by_stop_and_replaced_by_start(
    start, job_settings, caplog: pytest.LogCaptureFixture
) -> None:
    job_settings.mkdir()
    (job_settings / "w.pid").write_text("not a pid\n")
    with caplog.at_level(logging.WARNING):
        assert islandora_job.stop_worker("w.pid") is False
    assert "holds b'not a pid\\n', not a PID: remove it if no worker runs" in caplog.text
    assert (job_settings / "w.pid").read_text() == "not a pid\n"
    start("w.pid")
    assert psutil.Process(_pid(job_settings, "w.pid")).is_running()


def test_concurrent_start_worker_calls_with_one_name_start_exactly_one(
    gearman_server, job_settings
) -> None:
    code = "import islandora_job; print(islandora_job.start_worker('race.pid'))"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=_child_env(), stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    try:
        outputs = sorted(racer.communicate(timeout=60)[0].strip() for racer in racers)
        assert outputs == ["False", "False", "False", "True"]
        (worker,) = _workers(gearman_server.address)
        assert worker.client_id == client_id(_pid(job_settings, "race.pid"))
    finally:
        assert islandora_job.stop_worker("race.pid") is True


def test_concurrent_start_worker_calls_in_threads_start_exactly_one(
    gearman_server, job_settings
) -> None:
    barrier = threading.Barrier(3)
    results: list[bool] = []

    def race() -> None:
        barrier.wait()
        results.append(islandora_job.start_worker("threads.pid"))

    threads = [threading.Thread(target=race) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert sorted(results) == [False, False, True]
        assert len(_workers(gearman_server.address)) == 1
    finally:
        assert islandora_job.stop_worker("threads.pid") is True


# -- hostile pidfiles -------------------------------------------------------------------


@pytest.mark.parametrize("target_exists", [True, False])
def test_a_symlink_pidfile_is_never_followed(
    gearman_server, job_settings, tmp_path: Path, target_exists: bool
) -> None:
    target = tmp_path / "precious.txt"
    if target_exists:
        target.write_text("keep me\n")
    job_settings.mkdir()
    (job_settings / "link.pid").symlink_to(target)
    with pytest.raises(PidfileError, match="is a symbolic link; it is never followed"):
        islandora_job.start_worker("link.pid")
    assert islandora_job.stop_worker("link.pid") is False
    if target_exists:
        assert target.read_text() == "keep me\n"
    else:
        assert not target.exists()
    assert _workers(gearman_server.address) == []


def test_a_symlink_worker_log_is_never_followed(gearman_server, job_settings, tmp_path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    job_settings.mkdir()
    (job_settings / "w.pid.log").symlink_to(target)
    with pytest.raises(PidfileError, match="is a symbolic link"):
        islandora_job.start_worker("w.pid")
    assert target.read_text() == "keep me\n"
    assert not (job_settings / "w.pid").exists()


def test_an_unrelated_process_is_never_signalled(
    start, job_settings, sleeper, caplog: pytest.LogCaptureFixture
) -> None:
    job_settings.mkdir()
    (job_settings / "w.pid").write_text(f"{sleeper.pid}\n")
    with caplog.at_level(logging.WARNING):
        assert islandora_job.stop_worker("w.pid") is False
    assert f"names PID {sleeper.pid}, which is not the islandora-job worker" in caplog.text
    assert sleeper.poll() is None
    # start_worker sees no worker of ours there: the pidfile is stale, the sleep lives on
    start("w.pid")
    assert _pid(job_settings, "w.pid") != sleeper.pid
    assert sleeper.poll() is None


def test_a_worker_of_another_pidfile_is_never_signalled(
    start, job_settings, gearman_server
) -> None:
    start("a.pid")
    (job_settings / "b.pid").write_text((job_settings / "a.pid").read_text())
    assert islandora_job.stop_worker("b.pid") is False
    assert psutil.Process(_pid(job_settings, "a.pid")).is_running()
    assert len(_workers(gearman_server.address)) == 1


# -- signals ------------------------------------------------------------------------------


def test_sigterm_during_a_job_lets_its_result_reach_the_client(start, gearman_server) -> None:
    start("w.pid")
    results: list[object] = []
    client = threading.Thread(
        target=lambda: results.append(islandora_job.submit("sleep", 1.0, "done"))
    )
    client.start()
    wait_until(lambda: function_status(gearman_server.address, "sleep").running == 1)
    began = time.monotonic()
    assert islandora_job.stop_worker("w.pid") is True
    stopped_after = time.monotonic() - began
    client.join(10)
    assert results == ["done"]
    assert 0.3 < stopped_after < 5
    assert _workers(gearman_server.address) == []


def test_a_worker_that_ignores_sigterm_past_the_grace_period_is_killed(
    start, job_settings, gearman_server
) -> None:
    start("w.pid")
    pid = _pid(job_settings, "w.pid")
    handle = islandora_job.submit_background("sleep", 60)
    wait_until(lambda: function_status(gearman_server.address, "sleep").running == 1)
    began = time.monotonic()
    assert islandora_job.stop_worker("w.pid", grace=0.3) is True
    assert time.monotonic() - began < 3
    assert not psutil.pid_exists(pid)
    assert not (job_settings / "w.pid").exists()
    # gearmand re-queued the killed job: take it out so no later worker runs it
    with GearmanAdmin(gearman_server.address) as admin:
        assert admin.cancel_job(handle) is True


# -- bad input to our worker --------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"func": "add", "args": [1]}', "names job 'add' but was sent on function 'hello'"),
        (b'{"func": "nope", "args": []}', "names job 'nope' but was sent on function 'hello'"),
        (b"not json", "the payload is not JSON"),
        (b"\xff\xfe", "the payload is not UTF-8"),
        (b"", "the payload is empty"),
        (b'{"func": "hello", "args": ["' + b"x" * 2000 + b'"]}', "more than the maximum of 1000"),
    ],
)
def test_bad_payloads_fail_that_job_with_a_clear_message_and_the_worker_carries_on(
    start, gearman_server, job_settings, data: bytes, message: str
) -> None:
    islandora_job.configure(max_payload=1000)  # the job_settings fixture restores it
    start("w.pid")
    pid = _pid(job_settings, "w.pid")
    with GearmanClient([gearman_server.address]) as client:
        result = client.submit("hello", data, timeout=10)
    # Failures travel as WORK_WARNING then WORK_FAIL, which every client understands.
    assert result.status == "fail"
    failure = payload.decode_failure(b"".join(result.warnings))
    assert failure.type == "PayloadError"
    assert message in failure.message
    assert islandora_job.submit("hello") == "hello world"
    assert _pid(job_settings, "w.pid") == pid
    assert "refused" in islandora_job.worker_log_path("w.pid").read_text()


# -- the foreground worker process --------------------------------------------------------


def test_the_foreground_worker_writes_and_removes_its_pidfile(
    cli_process, gearman_server, job_settings
) -> None:
    worker = cli_process("worker", "--only", "hello", "add", "--pidfile", "fg.pid")
    wait_until(lambda: _workers(gearman_server.address))
    (info,) = _workers(gearman_server.address)
    assert info.client_id == client_id(worker.pid)
    assert sorted(info.functions) == sorted(["add", "hello", ping_function(worker.pid)])
    assert _pid(job_settings, "fg.pid") == worker.pid
    assert islandora_job.submit("add", 40, 2) == 42
    # a second worker with that pidfile refuses to run
    second = cli_process("worker", "--pidfile", "fg.pid")
    assert second.wait(30) == 1
    assert (
        f"a worker already runs with pidfile {job_settings / 'fg.pid'}"
        in second.stderr.read().decode()
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    assert not (job_settings / "fg.pid").exists()


def test_the_worker_leaves_a_pidfile_that_no_longer_names_it(
    cli_process, gearman_server, job_settings
) -> None:
    worker = cli_process("worker", "--pidfile", "fg.pid")
    wait_until(lambda: _workers(gearman_server.address))
    (job_settings / "fg.pid").write_text("999999\n")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    assert (job_settings / "fg.pid").read_text() == "999999\n"


def test_worker_only_an_unregistered_job_fails_naming_the_registered_ones(cli_process) -> None:
    worker = cli_process("worker", "--only", "nope")
    assert worker.wait(30) == 1
    stderr = worker.stderr.read().decode()
    assert (
        "islandora-job: error: no job named 'nope' is registered (registered jobs: 'add'" in stderr
    )
    assert "Traceback" not in stderr


def test_a_worker_that_dies_while_starting_raises_with_its_log_tail(
    gearman_server, job_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The module is importable here but not in the child, whose import path lacks tmp_path.
    (tmp_path / "here_only_jobs.py").write_text(
        "def register_jobs():\n    return {'here_only': 'here_only_jobs:f'}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    islandora_job.configure(modules=["here_only_jobs"])
    with pytest.raises(
        WorkerStartError,
        match=r"(?s)exited with status 1.*cannot import job module 'here_only_jobs'",
    ):
        islandora_job.start_worker("dies.pid")
    assert not (job_settings / "dies.pid").exists()
    sys.modules.pop("here_only_jobs", None)


# -- the original architecture: the C tool and the router -----------------------------------


@pytest.mark.skipif(shutil.which("gearman") is None, reason="the C gearman tool is not installed")
def test_the_worker_via_the_gearman_cli(cli_process, gearman_server, job_settings) -> None:
    worker = cli_process("worker", "--via-gearman-cli", "--pidfile", "cli.pid")
    wait_until(lambda: _workers(gearman_server.address))
    (info,) = _workers(gearman_server.address)
    assert sorted(info.functions) == list(islandora_job.load_registry().jobs)
    assert _pid(job_settings, "cli.pid") == worker.pid
    (tool,) = psutil.Process(worker.pid).children()
    assert tool.cmdline()[:3] == [shutil.which("gearman"), "-w", "-f"]
    assert islandora_job.submit("hello") == "hello world"
    assert islandora_job.submit("echo", "nul\0", "☃\n") == ["nul\0", "☃\n"]
    with pytest.raises(islandora_job.JobFailed, match="ValueError: boom"):
        islandora_job.submit("fail")
    with GearmanClient([gearman_server.address]) as client:
        result = client.submit("hello", b"not json", timeout=10)
    assert result.status == "fail"
    assert "the payload is not JSON" in payload.decode_failure(b"".join(result.partial)).message
    worker.send_signal(signal.SIGTERM)
    worker.wait(10)
    wait_until(lambda: not tool.is_running())
    assert not (job_settings / "cli.pid").exists()


def test_route_runs_the_job_on_stdin_and_prints_its_json_result(cli_process) -> None:
    router = cli_process("route")
    out, _ = router.communicate(payload.encode("add", [1, 2]), timeout=30)
    assert (router.returncode, out) == (0, b"3")


def test_route_takes_its_settings_from_the_caller(settings_calls: list[None]) -> None:
    # The limit of the settings in force is far larger: only the given one refuses this.
    small = dataclasses.replace(settings(), max_payload=16)
    settings_calls.clear()
    out = io.BytesIO()
    assert (
        islandora_job.workers.route(
            io.BytesIO(payload.encode("add", [1, 2, 3, 4, 5, 6, 7])), out, settings=small
        )
        == 1
    )
    assert json.loads(out.getvalue())["type"] == "PayloadError"
    assert "more than the maximum of 16" in json.loads(out.getvalue())["message"]
    assert settings_calls == []


@pytest.mark.parametrize(
    ("data", "type_", "message"),
    [
        (b'{"func": "nope", "args": []}', "UnknownJob", "no job named 'nope' is registered"),
        (b"garbage", "PayloadError", "the payload is not JSON"),
        (b'{"func": "fail", "args": ["why"]}', "ValueError", "why"),
    ],
)
def test_route_exits_non_zero_with_the_failure_on_stdout(
    cli_process, data: bytes, type_: str, message: str
) -> None:
    router = cli_process("route")
    out, _ = router.communicate(data, timeout=30)
    assert router.returncode == 1
    failure = json.loads(out)
    assert failure["type"] == type_
    assert message in failure["message"]


def test_a_c_client_sees_our_workers_results_and_failures(job_settings, gearman_server) -> None:
    """Clients that do not ask for exceptions (the C tool, PHP's extension) must see a failed
    job end as failed, never wait forever."""
    assert islandora_job.start_worker("for-c.pid")
    try:
        gearman = [
            shutil.which("gearman"),
            "-h",
            gearman_server.host,
            "-p",
            str(gearman_server.port),
        ]
        ok = subprocess.run(
            [*gearman, "-f", "add", "--", '{"func": "add", "args": [2, 3]}'],
            capture_output=True,
            timeout=20,
        )
        assert ok.stdout == b"5"
        failed = subprocess.run(
            [*gearman, "-f", "fail", "--", '{"func": "fail", "args": ["from C"]}'],
            capture_output=True,
            timeout=20,
        )
        assert b"Job failed" in failed.stderr
        assert failed.returncode == 1
        with pytest.raises(islandora_job.JobFailed, match="ValueError: from C"):
            islandora_job.submit("fail", "from C", timeout=20)
    finally:
        assert islandora_job.stop_worker("for-c.pid")
