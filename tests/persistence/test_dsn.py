"""Reading DSNs: every field, the defaults, and a password that never shows."""

from __future__ import annotations

import pytest

from islandora_job.dsn import DSN, DSNError, parse_dsn


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mysql://u:pw@db.example:3307/q", DSN("mysql", "db.example", 3307, "u", "pw", "q")),
        ("mariadb://u@10.0.0.5/q", DSN("mysql", "10.0.0.5", 3306, "u", None, "q")),
        ("mysql://127.0.0.1", DSN("mysql", "127.0.0.1", 3306, "root", None, "")),
        ("postgresql://u@h:5433/q", DSN("postgres", "h", 5433, "u", None, "q")),
        ("postgres://u:a%40b%3Ac@[::1]/q", DSN("postgres", "::1", 5432, "u", "a@b:c", "q")),
        ("sqlite:///queue.db", DSN("sqlite", database="queue.db")),
        ("sqlite:////tmp/queue.db", DSN("sqlite", database="/tmp/queue.db")),
    ],
)
def test_parse(text: str, expected: DSN) -> None:
    dsn = parse_dsn(text)
    assert dsn == expected
    assert dsn.password == expected.password


def test_describe_leaves_the_password_out() -> None:
    dsn = parse_dsn("postgresql://gq:top%20secret@127.0.0.1:5432/q")
    assert dsn.describe() == "postgresql://gq@127.0.0.1:5432/q"
    assert "top secret" not in repr(dsn)
    assert dsn.scrub("auth failed for top secret") == "auth failed for ***"
    assert parse_dsn("postgres://u@[::1]:1/q").describe() == "postgresql://u@[::1]:1/q"


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("http://u:hunter2@h/db", None, "is not a database DSN"),
        ("hunter2", None, "is not a database DSN"),
        ("postgresql://u:hunter2@h/db", "mysql", "is a postgres DSN where a mysql DSN is needed"),
        ("mysql://u:hunter2@h:99999/db", None, "bad port"),
        ("mysql://u:hunter2@h/db?ssl=1", None, "query parameters are not supported"),
        ("mysql://u:hunter2@h/a/b", None, "may not contain '/'"),
        ("sqlite://", None, "names no file"),
    ],
)
def test_bad_dsns_are_named_without_the_password(text: str, kind: str | None, message: str) -> None:
    with pytest.raises(DSNError, match=message) as raised:
        parse_dsn(text, kind)
    if text != "hunter2":  # a bare word cannot be told from a password: it is quoted back
        assert "hunter2" not in str(raised.value)
