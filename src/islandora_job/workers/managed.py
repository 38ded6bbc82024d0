"""Managed workers: a numbered set of pidfile-managed workers, `managed-worker-<k>.pid` in
the temp dir, started, counted and stopped together (the `islandora-job workers` command)."""

from __future__ import annotations

import re

from islandora_job import config
from islandora_job.config import Settings
from islandora_job.workers.identity import live_worker
from islandora_job.workers.pidfiles import locked, pidfile_path
from islandora_job.workers.spawn import start_worker
from islandora_job.workers.stop import DEFAULT_GRACE, stop_worker

__all__ = ["count_workers", "managed_pidfiles", "start_workers", "stop_workers"]

_MANAGED = re.compile(r"managed-worker-(\d+)\.pid\Z")


def managed_pidfiles(*, settings: Settings | None = None) -> list[str]:
    """The managed pidfile names present in the temp dir (live or not), in number order."""
    resolved = config.settings() if settings is None else settings
    try:
        names = [entry.name for entry in resolved.temp_dir.iterdir()]
    except FileNotFoundError:
        return []
    found = [(int(m.group(1)), name) for name in names if (m := _MANAGED.match(name))]
    return [name for _, name in sorted(found)]


def start_workers(
    count: int, *, timeout: float = 30.0, settings: Settings | None = None
) -> list[str]:
    """Start ``count`` more managed workers, each on the lowest number whose pidfile names
    no live worker; returns their pidfile names once each is registered.

    ValueError for a negative count; otherwise raises as `start_worker` does (a worker that
    fails to start stops the rest from being started; those already started keep running).
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"the number of workers must be an integer 0 or more, not {count!r}")
    resolved = config.settings() if settings is None else settings
    started: list[str] = []
    number = 1
    while len(started) < count:
        name = f"managed-worker-{number}.pid"
        if start_worker(name, timeout=timeout, settings=resolved):
            started.append(name)
        number += 1
    return started


def count_workers(*, settings: Settings | None = None) -> int:
    """How many managed workers are alive (stale pidfiles are removed on the way)."""
    resolved = config.settings() if settings is None else settings
    alive = 0
    for name in managed_pidfiles(settings=resolved):
        path = pidfile_path(name, settings=resolved)
        # A worker starting or stopping holds the lock for moments, never this long.
        with locked(path, timeout=10.0):
            alive += live_worker(path) is not None
    return alive


def stop_workers(*, grace: float = DEFAULT_GRACE, settings: Settings | None = None) -> int:
    """Stop every managed worker as `stop_worker` does; returns how many were running."""
    resolved = config.settings() if settings is None else settings
    return sum(
        stop_worker(name, grace=grace, settings=resolved)
        for name in managed_pidfiles(settings=resolved)
    )
