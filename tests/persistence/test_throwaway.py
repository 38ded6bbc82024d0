"""Throwaway database servers: the template is built once per run and shared, a missing program
is one line, and nothing is left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_islandora_job.databases import templates
from pytest_islandora_job.databases.programs import find_program
from pytest_islandora_job.databases.templates import copy_template
from pytest_islandora_job.servers import ServerStartError

BUILD_ONCE = """
import sys
from pathlib import Path
from pytest_islandora_job.databases.templates import copy_template

def build(datadir, log_path):
    datadir.mkdir()
    (datadir / "made-by").write_text(sys.argv[2])

copy_template(sys.argv[1], build, Path(sys.argv[3]), None)
"""


def test_the_template_is_built_once_per_run_and_shared_between_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "selftest"
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", f"run{os.getpid()}")
    # Only this test's template is removed below, not the session's real ones.
    monkeypatch.setattr(templates, "_made_templates", [])
    builds = []

    def build(datadir: Path, log_path: Path) -> None:
        builds.append(datadir)
        datadir.mkdir()
        (datadir / "made-by").write_text("this process")

    copy_template(key, build, tmp_path / "first", None)
    copy_template(key, build, tmp_path / "second", None)
    # Another process of the same run (as an xdist worker is) copies; it builds nothing.
    subprocess.run(
        [sys.executable, "-c", BUILD_ONCE, key, "the other process", str(tmp_path / "third")],
        check=True,
    )
    assert len(builds) == 1
    for copy in ("first", "second", "third"):
        assert (tmp_path / copy / "made-by").read_text() == "this process"
    templates.remove_made_templates()
    assert not (templates.templates_dir() / f"{key}-run{os.getpid()}").exists()


def test_a_missing_server_program_is_one_line_naming_the_ways_out() -> None:
    with pytest.raises(ServerStartError) as raised:
        find_program("no-such-mariadbd", ("/nonexistent/sbin",), "mariadb-server", "mysql",
                     "--gearman-mysql-dsn mysql://user:pw@host:port/db")  # fmt: skip
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("no-such-mariadbd not found (looked in PATH, /nonexistent/sbin)")
    for way_out in ("apt-get install mariadb-server", "--gearman-mysql-dsn", "--gearman-queue"):
        assert way_out in message


def test_a_removed_server_leaves_no_data_and_no_process(tmp_path: Path) -> None:
    from pytest_islandora_job.databases.postgres import PostgresServer

    server = PostgresServer(tmp_path, 60.0)
    server.start()
    pid, scratch = server.pid, server.scratch
    assert pid is not None and scratch is not None and (scratch / "data").is_dir()
    server.restart()
    assert server.pid != pid, "restart runs a new server process"
    server.remove()
    assert server.pid is None and not scratch.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_server_that_dies_during_start_up_fails_with_its_log_tail(tmp_path: Path) -> None:
    from pytest_islandora_job.databases.mysql import MariaDBServer

    class Misconfigured(MariaDBServer):
        def argv(self, datadir: Path, sockdir: Path) -> list[str]:
            return [*super().argv(datadir, sockdir), "--no-such-option-anywhere"]

    server = Misconfigured(tmp_path, 60.0)
    try:
        with pytest.raises(ServerStartError) as raised:
            server.start()
    finally:
        server.remove()
    message = str(raised.value)
    assert message.startswith("throwaway MariaDB exited with")
    assert "log tail:" in message
    assert "no-such-option-anywhere" in message.split("log tail:", 1)[1]
    assert server.pid is None


def test_data_directories_of_a_killed_run_go_at_the_start_of_any_run(
    pytester: pytest.Pytester,
) -> None:
    from pytest_islandora_job.databases import scratch

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = scratch.server_dir(scratch.area("run"), "mariadb-", None)
    (leftover / scratch.OWNER_FILE).write_text(f"{dead.pid}:0.000")
    (leftover / "data").mkdir()
    (leftover / "data" / "ibdata1").write_bytes(b"\0" * 4096)
    # A run that uses no database at all.
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not leftover.exists()
