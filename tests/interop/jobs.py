"""Jobs the interoperability tests serve to PHP and Perl clients: one per return type."""

from __future__ import annotations

import time

# What the job `interop_returns` returns for each kind: the types a router may echo.
RETURNS: dict[str, object] = {
    "str": "Grüße, Danny",
    "empty_str": "",
    "none": None,
    "bytes": b"\x00\xffraw",
    "int": 42,
    "zero": 0,
    "true": True,
    "false": False,
    "float": 2.5,
    "big_float": 1e20,
    "list": [1, "a", None],
    "dict": {"a": 1, "b": [True]},
}


def register_jobs() -> dict[str, str | dict[str, str]]:
    """The interop jobs, by name."""
    jobs: dict[str, str | dict[str, str]] = {
        "hello_world": "tests.interop.jobs:hello_world",
        "interop_fail": "tests.interop.jobs:fail",
        "interop_sleep": "tests.interop.jobs:sleep",
        "interop_returns": "tests.interop.jobs:returns",
    }
    return jobs


def hello_world(name: str) -> str:
    """The original module's example job."""
    return f"Hello {name}"


def returns(kind: str) -> object:
    """The value of RETURNS[kind]."""
    return RETURNS[kind]


def fail(message: str) -> None:
    """Raise, so the job fails."""
    raise ValueError(message)


def sleep(seconds: float) -> str:
    """Sleep, so a background job can be seen running."""
    time.sleep(seconds)
    return "slept"
