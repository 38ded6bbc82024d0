"""Job functions the benchmarks run on their workers (job module `benchmarks.jobs`)."""

from __future__ import annotations

import time


def register_jobs() -> dict[str, str]:
    """Jobs of the benchmarks, by name."""
    return {"echo": "benchmarks.jobs:echo", "sleep": "benchmarks.jobs:sleep"}


def echo(*args: object) -> list[object]:
    """Return the arguments: a round trip that costs the worker almost nothing."""
    return list(args)


def sleep(seconds: float) -> float:
    """Sleep, then return the seconds slept: a job whose duration is known."""
    time.sleep(seconds)
    return seconds
