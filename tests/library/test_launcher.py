"""Warm workers: the launcher forks each worker, and a forked worker is what a spawned one is
(pidfile, log, session, command line, identity, SIGKILL, stop_worker); job modules are
imported after the fork; the launcher serves its owner alone, runs nothing but workers and
ends with the process that started it."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

import islandora_job
from islandora_job.workers import launcher
from islandora_job.workers.identity import client_id
from islandora_job.workers.ready import ENV_READY_FD
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
        # One is forked ahead for the next request (once the worker took the last one).
        deadline = time.monotonic() + 5
        while not (spares := _spares(launcher_pid, worker_pid)):
            assert time.monotonic() < deadline, "the launcher forked no spare"
            time.sleep(0.01)
        parent.kill()
        parent.wait()
        _wait_gone(launcher_pid)
        for spare in spares:
            _wait_gone(spare)  # it ends with the launcher
        assert not socket_path.parent.exists()  # nothing left behind
        assert psutil.Process(worker_pid).is_running()
        workers = [w.client_id for w in _admin_workers(gearman_server.address)]
        assert client_id(worker_pid) in workers
    finally:
        parent.kill()
        parent.wait()
        assert islandora_job.stop_worker("orphan.pid") is True


def _spares(launcher_pid: int, worker_pid: int) -> list[int]:
    return [p.pid for p in psutil.Process(launcher_pid).children() if p.pid != worker_pid]


def _admin_workers(address: str) -> list[islandora_job.gearman.admin.WorkerInfo]:
    from islandora_job.gearman.admin import GearmanAdmin

    with GearmanAdmin(address, timeout=5) as admin:
        return admin.workers()


@pytest.fixture(params=["forked", "spawned"])
def way(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test twice: workers forked by the launcher, then spawned (launcher disabled)."""
    if request.param == "spawned":
        launcher.disable()
    yield request.param
    launcher.enable()


def _job_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str
) -> Iterator[None]:
    """A job module in tmp_path, importable by this process and its workers, configured."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    paths = [str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    monkeypatch.syspath_prepend(str(tmp_path))
    previous = islandora_job.configure(modules=[name])
    try:
        yield
    finally:
        islandora_job.restore(previous)
        sys.modules.pop(name, None)


@pytest.fixture
def environ_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Job module `environ_jobs`: job `variable` returns an environment variable."""
    source = """
        import os

        def register_jobs():
            return {"variable": "environ_jobs:variable", "other": "environ_jobs:variable"}

        def variable(name):
            return os.environ.get(name)
        """
    yield from _job_module(tmp_path, monkeypatch, "environ_jobs", source)


def test_start_worker_returns_once_the_worker_is_registered(
    way: str, gearman_server: GearmanServer, job_settings: Path, environ_jobs: None
) -> None:
    assert islandora_job.start_worker("r.pid") is True
    try:
        pid = _pid(job_settings, "r.pid")
        # No wait: the worker's word came after gearmand had registered both jobs.
        (ours,) = [
            w for w in _admin_workers(gearman_server.address) if w.client_id == client_id(pid)
        ]
        assert {"variable", "other"} <= set(ours.functions)
        running = launcher.running()
        assert (running is not None and psutil.Process(pid).ppid() == running[0]) is (
            way == "forked"
        )
        # The descriptor of that word is the worker's business: its jobs never see it.
        assert islandora_job.submit("variable", ENV_READY_FD, timeout=10) is None
    finally:
        assert islandora_job.stop_worker("r.pid") is True


def test_a_worker_that_hangs_while_registering_does_not_hold_up_the_next_fork(
    gearman_server: GearmanServer, job_settings: Path, environ_jobs: None
) -> None:
    # The launcher forks the next spare once a worker is registered: one that never is (its
    # second server accepts and never answers) must not keep the next request waiting until
    # the caller gives up on the launcher and spawns its worker instead.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        servers = [gearman_server.address, f"127.0.0.1:{silent.getsockname()[1]}"]
        failed: list[BaseException] = []

        hung_settings = dataclasses.replace(islandora_job.settings(), servers=tuple(servers))

        def hang() -> None:
            try:
                islandora_job.start_worker("hung.pid", timeout=20, settings=hung_settings)
            except BaseException as exc:
                failed.append(exc)

        hanging = threading.Thread(target=hang)
        hanging.start()
        try:
            pidfile = job_settings / "hung.pid"
            deadline = time.monotonic() + 10
            while not (pidfile.exists() and pidfile.read_text().strip().isdigit()):
                assert time.monotonic() < deadline, "the hanging worker was never forked"
                time.sleep(0.01)
            hung = _pid(job_settings, "hung.pid")
            assert islandora_job.start_worker("next.pid", timeout=20) is True
            # Forked by the launcher, while the hung one still waits to register.
            running = launcher.running()
            assert running is not None
            assert psutil.Process(_pid(job_settings, "next.pid")).ppid() == running[0]
            assert hanging.is_alive() and psutil.Process(hung).is_running()
        finally:
            islandora_job.stop_worker("next.pid")
            islandora_job.stop_worker("hung.pid", settings=hung_settings)  # its start fails
            hanging.join(30)
    assert not hanging.is_alive()
    assert [type(exc) for exc in failed] == [islandora_job.WorkerStartError]


def test_workers_started_at_once_live_on_when_their_job_module_restores_sigpipe(
    gearman_server: GearmanServer,
    job_settings: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A request that comes while a worker starts has the next spare forked at once; that
    # worker's word "registered" to the launcher must then not meet a closed pipe, which
    # kills a process whose job module gave SIGPIPE back its default action.
    source = f"""
        import os, signal

        if os.getpid() != {os.getpid()}:
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)

        def register_jobs():
            return {{"pid": "sigpipe_jobs:pid"}}

        def pid():
            return os.getpid()
        """
    for _ in _job_module(tmp_path, monkeypatch, "sigpipe_jobs", source):
        names = [f"sp{i}.pid" for i in range(4)]
        with ThreadPoolExecutor(len(names)) as pool:
            assert list(pool.map(islandora_job.start_worker, names)) == [True] * len(names)
        try:
            pids = [_pid(job_settings, name) for name in names]
            time.sleep(0.2)  # a worker killed by SIGPIPE dies right after its word
            assert all(psutil.Process(pid).is_running() for pid in pids)
            served = {islandora_job.submit("pid", timeout=10) for _ in range(40)}
            assert served <= set(pids) and served
        finally:
            for name in names:
                islandora_job.stop_worker(name)


@pytest.fixture
def dying_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Job module `dying_jobs`: imported by a worker (not by this process), it starts a
    helper process that outlives it, says so in the worker's log and exits with status 3
    before the worker registers."""
    helper = tmp_path / "helper.pid"
    source = f"""
        import os, subprocess, sys

        def register_jobs():
            if os.getpid() != {os.getpid()}:
                # Inheriting what it may (close_fds=False), as os.system's children do.
                sleeper = subprocess.Popen(["sleep", "30"], close_fds=False)
                open({str(helper)!r}, "w").write(str(sleeper.pid))
                print("dying_jobs: exiting before the worker registers", flush=True)
                sys.exit(3)
            return {{"never": "dying_jobs:never"}}

        def never():
            pass
        """
    try:
        yield from _job_module(tmp_path, monkeypatch, "dying_jobs", source)
    finally:
        if helper.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(helper.read_text()), signal.SIGKILL)


def test_a_worker_that_exits_before_registering_is_reported_at_once_with_its_log(
    way: str, gearman_server: GearmanServer, job_settings: Path, dying_jobs: None
) -> None:
    started = time.monotonic()
    with pytest.raises(islandora_job.WorkerStartError) as raised:
        islandora_job.start_worker("d.pid", timeout=60)
    # Its exit, not the 60 s timeout, though the helper it started lives on.
    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert "exited with status 3" in message
    assert "dying_jobs: exiting before the worker registers" in message  # its log's tail
    assert not (job_settings / "d.pid").exists()


def test_a_worker_registered_on_some_servers_only_is_not_started(
    way: str, gearman_server: GearmanServer, job_settings: Path
) -> None:
    # A server that accepts connections and never answers: the worker never registers there.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        silent_address = f"127.0.0.1:{silent.getsockname()[1]}"
        servers = [gearman_server.address, silent_address]
        with (
            islandora_job.configured(servers=servers),
            pytest.raises(islandora_job.WorkerStartError) as raised,
        ):
            islandora_job.start_worker("half.pid", timeout=1.5)
    # Only the server that does not list it is named, with why it could not be asked.
    missing = str(raised.value).partition("did not register on ")[2].partition(" within")[0]
    assert missing.startswith(f"{silent_address} (which did not answer admin `workers`")
    assert gearman_server.address not in missing
    assert not (job_settings / "half.pid").exists()
    # It was stopped: it no longer shows on the server where it had registered.
    for _ in range(200):
        if not [
            w for w in _admin_workers(gearman_server.address) if "islandora-job:" in w.client_id
        ]:
            break
        time.sleep(0.01)
    else:
        pytest.fail("the worker that did not register everywhere still runs")


def test_a_module_added_to_a_listed_directory_in_the_same_clock_tick_is_found(
    gearman_server: GearmanServer,
    job_settings: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The directory is on the import path before the launcher starts: the launcher lists it.
    where = tmp_path / "listed"
    where.mkdir()
    (where / "first_jobs.py").write_text(
        "def register_jobs():\n    return {'first': 'first_jobs:f'}\n\ndef f():\n    return 1\n"
    )
    paths = [str(where), str(REPO), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    monkeypatch.syspath_prepend(str(where))
    listed = where.stat()
    try:
        with islandora_job.configured(modules=["first_jobs"]):
            assert islandora_job.start_worker("t.pid") is True
            assert islandora_job.stop_worker("t.pid") is True
        (where / "second_jobs.py").write_text(
            "def register_jobs():\n    return {'second': 'second_jobs:f'}\n\ndef f():\n    return 2\n"
        )
        # The directory's time as when it was listed: a change within the same clock tick.
        os.utime(where, ns=(listed.st_atime_ns, listed.st_mtime_ns))
        importlib.invalidate_caches()  # for this process, which lists the directory as well
        with islandora_job.configured(modules=["second_jobs"]):
            assert islandora_job.start_worker("t.pid") is True
            try:
                assert islandora_job.submit("second", timeout=10) == 2
            finally:
                assert islandora_job.stop_worker("t.pid") is True
    finally:
        sys.modules.pop("first_jobs", None)
        sys.modules.pop("second_jobs", None)


def test_a_registry_this_process_cannot_load_fails_the_start_and_leaves_no_worker(
    way: str, gearman_server: GearmanServer, job_settings: Path
) -> None:
    with (
        islandora_job.configured(modules=["no_such_job_module"]),
        pytest.raises(islandora_job.RegistryError, match="cannot import job module") as raised,
    ):
        islandora_job.start_worker("bad.pid", timeout=20)
    # The worker's exit on it is the cause, with the worker's log saying the same.
    cause = raised.value.__cause__
    assert isinstance(cause, islandora_job.WorkerStartError)
    assert "exited with status 1" in str(cause) and "no_such_job_module" in str(cause)
    assert not (job_settings / "bad.pid").exists()
    pidfile = str(job_settings / "bad.pid")
    left = []
    for process in psutil.process_iter(["cmdline"]):
        if pidfile in (process.info["cmdline"] or []):
            left.append(process.pid)
    for pid in left:
        _wait_gone(pid)  # killed: gone, or going
