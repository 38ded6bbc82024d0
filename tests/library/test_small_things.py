"""Small promises: SQLite DSNs create no file, clearing creates no function."""

from __future__ import annotations

from pathlib import Path

import pytest

from islandora_job import cli
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
