"""Jobs of the reliability tests (registered next to tests.jobs by their worker fixtures)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def register_jobs() -> dict[str, str]:
    """Jobs of the reliability tests, by name."""
    return {"mark": "tests.reliability.jobs:mark", "big": "tests.reliability.jobs:big"}


def mark(path: str, seconds: float = 0.0) -> int:
    """Append this worker's PID to a file, sleep, return the PID: shows which worker holds
    the job (so a test can kill it) and how many times the job ran."""
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return os.getpid()


def big(size: int, seconds: float = 0.0) -> str:
    """Sleep, then return a text of ``size`` characters: a result too large for a socket's
    buffer."""
    time.sleep(seconds)
    return "x" * size
