"""Small promises: SQLite DSNs create no file, clearing creates no function, pidfile rules agree."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from islandora_job import cli
from islandora_job.config import settings, settings_env
from islandora_job.dsn import DSN, DatabaseUnavailable, DSNError, parse_dsn
from islandora_job.gearman.admin import GearmanAdmin


def test_status_from_a_missing_sqlite_file_creates_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["status", "--from-table", "sqlite:///nonexistent.db"]) == 1
    err = capsys.readouterr().err
    assert f"no such file {tmp_path / 'nonexistent.db'}" in err
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "database"),
    [("sqlite:///queue.db", "queue.db"), ("sqlite:////var/q/queue.db", "/var/q/queue.db")],
)
def test_sqlite_dsns_follow_sqlalchemy(text: str, database: str) -> None:
    dsn = parse_dsn(text)
    assert dsn == DSN("sqlite", database=database)
    assert dsn.describe() == text


@pytest.mark.parametrize("text", ["sqlite://host/queue.db", "sqlite:///", "sqlite://"])
def test_a_sqlite_dsn_without_a_file_says_both_forms(text: str) -> None:
    with pytest.raises(DSNError, match=r"sqlite:///relative/file.db or sqlite:////absolute"):
        parse_dsn(text)


def test_an_existing_sqlite_file_opens(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    path.touch()
    parse_dsn(f"sqlite:///{path}").connect().close()
    with pytest.raises(DatabaseUnavailable, match="no such file"):
        parse_dsn(f"sqlite:///{tmp_path / 'other.db'}").connect()


def test_clearing_a_function_nobody_knows_leaves_no_phantom(gearman_server, capsys) -> None:
    assert cli.main(["--servers", gearman_server.address, "clear", "nosuch_function"]) == 0
    assert capsys.readouterr().out == "cleared 0 queued jobs of nosuch_function\n"
    with GearmanAdmin(gearman_server.address) as admin:
        assert "nosuch_function" not in {row.function for row in admin.status()}


def test_stop_worker_stops_a_worker_by_the_absolute_pidfile_it_was_given(
    gearman_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pidfile = tmp_path / "by-hand.pid"
    env = {**os.environ, **settings_env(settings()), "PYTHONPATH": os.getcwd()}
    command = [sys.executable, "-m", "islandora_job", "worker", "--pidfile", str(pidfile)]
    worker = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert cli.main(["stop-worker", str(pidfile)]) == 0
        assert capsys.readouterr().out == f"worker stopped: pidfile {pidfile}\n"
        assert worker.wait(timeout=10) == 0
        assert not pidfile.exists()
    finally:
        worker.kill()
        worker.wait()
    assert cli.main(["stop-worker", "relative/by-hand.pid"]) == 1
    assert "contains a path separator" in capsys.readouterr().err


DOCKER_UP = Path(__file__).parents[2] / "scripts" / "docker-up"


def _mirror(tmp_path: Path, one_line: str = "", sources: str = "", **env: str) -> str:
    parts = tmp_path / "sources.list.d"
    parts.mkdir(exist_ok=True)
    (tmp_path / "sources.list").write_text(one_line)
    (parts / "debian.sources").write_text(sources)
    (tmp_path / "apt.conf").write_text(
        f'Dir::Etc::sourcelist "{tmp_path}/sources.list";\nDir::Etc::sourceparts "{parts}";\n'
    )
    environ = {k: v for k, v in os.environ.items() if k != "ISLANDORA_JOB_DEBIAN_MIRROR"}
    done = subprocess.run(
        [str(DOCKER_UP), "--mirror"],
        env={**environ, "APT_CONFIG": str(tmp_path / "apt.conf"), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def test_docker_up_takes_the_mirror_from_the_machines_apt_sources(tmp_path: Path) -> None:
    deb822 = (
        "Types: deb\nURIs: http://off.example.test/debian\nSuites: bookworm\nEnabled: no\n\n"
        "Types: deb-src deb\nURIs: http://local.example.test/debian http://b.example.test/d\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert _mirror(tmp_path, sources=deb822) == "http://local.example.test/debian"
    one_line = (
        "# deb http://commented.example.test/debian bookworm main\n"
        "deb http://security.example.test/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://proxy.example.test:3142/debian bookworm main\n"
    )
    assert _mirror(tmp_path, one_line, deb822) == "http://proxy.example.test:3142/debian"
    assert _mirror(tmp_path) == "http://deb.debian.org/debian"
    override = {"ISLANDORA_JOB_DEBIAN_MIRROR": "http://mine.example.test/debian"}
    assert _mirror(tmp_path, one_line, **override) == "http://mine.example.test/debian"
