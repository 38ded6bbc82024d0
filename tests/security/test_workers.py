"""Another local user cannot hang, fool or read our pidfile-managed workers: not with a lock
held on NAME.lock, a FIFO at NAME.log, a look-alike process, a planted pidfile, a planted log,
nor by reading our logs; and the default temp dir is ours alone."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import islandora_job
from islandora_job import PidfileError, config
from islandora_job.config import Settings
from islandora_job.workers.pidfiles import LockTimeout
from pytest_islandora_job.servers import GearmanServer
from tests.security.conftest import OtherUser

HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""

FIFO_LOG = """
import os, sys, time
os.mkfifo(sys.argv[1], 0o666)
print("made", flush=True)
time.sleep(float(sys.argv[2]))
# Let a writer that blocked on the FIFO go on, and show what it wrote.
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
time.sleep(1)
print(os.read(fd, 65536))
"""

# `python3 -m islandora_job worker --pidfile PATH`, as our worker's command line reads, run
# from a directory holding a package of that name that only sleeps.
LOOK_ALIKE = """
import os, subprocess, sys
root = sys.argv[1]
os.makedirs(os.path.join(root, "islandora_job"), exist_ok=True)
with open(os.path.join(root, "islandora_job", "__main__.py"), "w") as f:
    f.write("import time\\ntime.sleep(60)\\n")
proc = subprocess.Popen([sys.executable, "-m", "islandora_job", "worker", "--pidfile",
                         sys.argv[2]], cwd=root)
print(proc.pid, flush=True)
proc.wait()
"""

PLANT = """
import os, sys
path, text, mode = sys.argv[1], sys.argv[2], int(sys.argv[3], 8)
fd = os.open(path, os.O_WRONLY | os.O_CREAT, mode)
os.write(fd, text.encode())
os.fchmod(fd, mode)
print("planted", flush=True)
"""

READ = """
import sys
try:
    print("READ", open(sys.argv[1], "rb").read()[:200])
except OSError as exc:
    print("refused", exc)
"""


@pytest.fixture
def shared_settings(gearman_server: GearmanServer, shared_dir: Path) -> Iterator[Settings]:
    """Our job settings with the temp dir in a directory anyone may create names in."""
    with config.configured(
        servers=[gearman_server.address], modules=["tests.jobs"], temp_dir=shared_dir
    ) as resolved:
        yield resolved


def test_the_default_temp_dir_is_private_even_when_its_name_is_taken(
    other_user: OtherUser, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = shared_dir / f"islandora-job-{os.getuid()}"
    done = other_user.run("import os, sys; os.mkdir(sys.argv[1], 0o777)", str(planted))
    assert done.returncode == 0, done.stderr
    monkeypatch.setattr(tempfile, "tempdir", str(shared_dir))
    monkeypatch.delenv(config.ENV_TEMP_DIR, raising=False)
    temp_dir = config.default_temp_dir()
    assert temp_dir.parent == shared_dir and temp_dir != planted
    found = temp_dir.lstat()
    assert found.st_uid == os.geteuid() and stat.S_IMODE(found.st_mode) == 0o700


def test_a_lock_held_by_another_user_does_not_hang_start_worker(
    other_user: OtherUser, shared_settings: Settings
) -> None:
    holder = other_user.start(HOLD_LOCK, str(shared_settings.temp_dir / "w.pid.lock"), "20")
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        began = time.monotonic()
        with pytest.raises(PidfileError, match="owned by uid"):
            islandora_job.start_worker("w.pid", timeout=5, settings=shared_settings)
        assert time.monotonic() - began < 5.5
    finally:
        other_user.stop(holder)


def test_every_wait_on_a_lock_honours_the_timeout(shared_settings: Settings) -> None:
    # Held by a process of our own (the lock file is ours): the timeout still holds.
    lock = shared_settings.temp_dir / "w.pid.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock), "20"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        os.chmod(lock, 0o600)
        for call in (
            lambda: islandora_job.start_worker("w.pid", timeout=2, settings=shared_settings),
            lambda: islandora_job.stop_worker("w.pid", grace=2, settings=shared_settings),
        ):
            (shared_settings.temp_dir / "w.pid").write_text("1\n")
            began = time.monotonic()
            with pytest.raises(LockTimeout, match="held by another process"):
                call()
            assert 1.9 < time.monotonic() - began < 2.5
    finally:
        holder.kill()
        holder.wait()


def test_a_fifo_at_the_log_name_is_refused_at_once(
    other_user: OtherUser, shared_settings: Settings
) -> None:
    log = shared_settings.temp_dir / "w.pid.log"
    fifo = other_user.start(FIFO_LOG, str(log), "8")
    try:
        assert fifo.stdout is not None and fifo.stdout.readline().strip() == "made"
        began = time.monotonic()
        with pytest.raises(PidfileError, match="FIFO"):
            islandora_job.start_worker("w.pid", timeout=5, settings=shared_settings)
        assert time.monotonic() - began < 2.0
    finally:
        other_user.stop(fifo)
    assert not (shared_settings.temp_dir / "w.pid").exists()


def test_a_planted_log_is_refused_and_our_logs_are_not_readable(
    other_user: OtherUser, shared_settings: Settings
) -> None:
    log = shared_settings.temp_dir / "planted.pid.log"
    other_user.run(PLANT, str(log), "", "666")
    with pytest.raises(PidfileError, match="owned by uid"):
        islandora_job.start_worker("planted.pid", timeout=10, settings=shared_settings)
    assert log.read_bytes() == b"", "nothing of ours is written to another user's file"

    assert islandora_job.start_worker("ours.pid", timeout=20, settings=shared_settings)
    try:
        ours = shared_settings.temp_dir / "ours.pid.log"
        for path in (ours, shared_settings.temp_dir / "ours.pid"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert "refused" in other_user.run(READ, str(ours)).stdout
    finally:
        assert islandora_job.stop_worker("ours.pid", grace=5, settings=shared_settings)
    assert sorted(p.name for p in shared_settings.temp_dir.glob("*.lock")) == []


def test_a_look_alike_process_is_never_ours_nor_signalled(
    other_user: OtherUser, shared_settings: Settings
) -> None:
    path = shared_settings.temp_dir / "w.pid"
    workdir = Path(tempfile.mkdtemp(dir=other_user.shared))
    workdir.chmod(0o777)
    fake = other_user.start(LOOK_ALIKE, str(workdir), str(path))
    try:
        assert fake.stdout is not None
        fake_pid = int(fake.stdout.readline())
        wanted = ["-m", "islandora_job", "worker", "--pidfile", str(path)]
        deadline = time.monotonic() + 10
        while psutil.Process(fake_pid).cmdline()[1:] != wanted:  # until it has exec'd
            assert time.monotonic() < deadline
            time.sleep(0.01)
        path.write_text(f"{fake_pid}\n")  # a pidfile of ours, its PID reused by the look-alike
        assert islandora_job.stop_worker("w.pid", grace=2, settings=shared_settings) is False
        assert psutil.Process(fake_pid).is_running()
        # Not a live worker of ours: the pidfile is stale, and ours starts.
        assert islandora_job.start_worker("w.pid", timeout=20, settings=shared_settings) is True
        assert islandora_job.stop_worker("w.pid", grace=5, settings=shared_settings) is True
        assert psutil.Process(fake_pid).is_running()
    finally:
        other_user.stop(fake)


def test_a_planted_pidfile_naming_our_own_worker_never_gets_it_killed(
    other_user: OtherUser, shared_settings: Settings, tmp_path: Path
) -> None:
    # Our worker, started by hand elsewhere with the same bare pidfile name.
    env = {**os.environ, **config.settings_env(shared_settings), config.ENV_TEMP_DIR: str(tmp_path)}
    ours = subprocess.Popen(
        [sys.executable, "-m", "islandora_job", "worker", "--pidfile", "w.pid"], env=env
    )
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "w.pid").exists():
            assert time.monotonic() < deadline and ours.poll() is None
            time.sleep(0.05)
        other_user.run(PLANT, str(shared_settings.temp_dir / "w.pid"), f"{ours.pid}\n", "644")
        assert islandora_job.stop_worker("w.pid", grace=2, settings=shared_settings) is False
        assert ours.poll() is None, "our own worker was not signalled"
    finally:
        ours.terminate()
        ours.wait(10)
