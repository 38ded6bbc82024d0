"""Jobs whose names Gearman must carry intact: non-ASCII, newlines, spaces, tabs."""

from __future__ import annotations

ODD_NAMES = ("naïve ☃ 漢字", "new\nline", "with space", "tab\there", "emoji🦀")


def register_jobs() -> dict[str, str]:
    """Every odd name runs `echo`, which returns its arguments."""
    return {name: "tests.reliability.oddjobs:echo" for name in ODD_NAMES}


def echo(*args: object) -> list[object]:
    return list(args)
