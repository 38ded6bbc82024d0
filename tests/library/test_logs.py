"""The one log tail: the end of a file (long or short, missing, unreadable) or of a log's bytes."""

from __future__ import annotations

from pathlib import Path

from islandora_job.logs import last_lines, tail


def test_the_tail_of_a_log_longer_than_a_read_is_its_last_lines_whole(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    # Long lines: the last 40 span several reads from the end.
    log.write_text("".join(f"line {i} {'x' * 1000}\n" for i in range(500)))
    lines = tail(log).splitlines()
    assert len(lines) == 40
    assert lines[0].startswith("line 460 ") and lines[-1].startswith("line 499 ")
    assert tail(log, 3).splitlines() == [f"line {i} {'x' * 1000}" for i in (497, 498, 499)]


def test_the_tail_of_a_short_log_is_all_of_it(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_bytes(b"first\nsecond \xff\nthird")
    assert tail(log) == "first\nsecond \ufffd\nthird"


def test_a_missing_empty_or_unreadable_log_is_said_so_never_raised(tmp_path: Path) -> None:
    assert tail(tmp_path / "nope.log") == f"(no log at {tmp_path / 'nope.log'})"
    assert tail(None) == "(no log)"
    (tmp_path / "empty.log").touch()
    assert tail(tmp_path / "empty.log") == "(log is empty)"
    assert tail(tmp_path).startswith(f"(cannot read the log {tmp_path}: ")


def test_last_lines_of_a_logs_bytes() -> None:
    assert last_lines(b"a\nb\nc\n", 2) == "b\nc"
    assert last_lines(b"") == "(log is empty)"
