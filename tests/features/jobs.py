"""Jobs of the feature tests: progress reports, and a job that reports outside its thread."""

from __future__ import annotations

import threading
import time

import islandora_job


def register_jobs() -> dict[str, str]:
    """Jobs of the feature tests, by name."""
    return {
        "steps": "tests.features.jobs:steps",
        "progress_in_thread": "tests.features.jobs:progress_in_thread",
    }


def steps(total: int, pause: float = 0.0) -> int:
    """Report progress i of ``total`` after each of ``total`` steps of ``pause`` seconds."""
    for done in range(1, total + 1):
        time.sleep(pause)
        islandora_job.progress(done, total)
    return total


def progress_in_thread() -> str:
    """progress() from a thread the job started: that thread has no job in hand."""
    errors: list[str] = []

    def report() -> None:
        try:
            islandora_job.progress(1, 2)
        except islandora_job.NoJobRunning as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=report)
    thread.start()
    thread.join()
    return errors[0] if errors else "reported"
