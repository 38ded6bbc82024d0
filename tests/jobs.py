"""Job functions the test suite registers (ini key `islandora_job_modules = tests.jobs`)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def register_jobs() -> dict[str, str | dict[str, str]]:
    """Jobs of the test suite, by name."""
    return {
        "hello": "tests.jobs:hello",
        "add": "tests.jobs:add",
        "echo": {"module": "tests.jobs"},
        "sleep": "tests.jobs:sleep",
        "fail": "tests.jobs:fail",
        "append": "tests.jobs:append",
        "describe": "tests.jobs:describe",
        "pid": "tests.jobs:pid",
    }


def hello() -> str:
    return "hello world"


def add(*numbers: float) -> float:
    return sum(numbers)


def echo(*args: object) -> list[object]:
    return list(args)


def sleep(seconds: float, value: object = None) -> object:
    time.sleep(seconds)
    return value


def fail(message: str = "boom") -> None:
    raise ValueError(message)


def append(path: str, line: str) -> str:
    """Append one line to a file: lets a test count how often each job ran."""
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(line + "\n")
    return line


def describe(obj: dict[str, object]) -> dict[str, object]:
    """Return what arrived, with the type names: proves a serialized object round-trips."""
    return {"received": obj, "types": {k: type(v).__name__ for k, v in obj.items()}}


def pid() -> int:
    return os.getpid()
