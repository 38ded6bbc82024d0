"""The pidfile-managed islandora_job workers one test runs."""

from __future__ import annotations

import dataclasses
import itertools
import re
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import islandora_job
from islandora_job.config import Settings
from islandora_job.workers import launcher


def pool_settings(
    servers: Sequence[str],
    modules: Sequence[str] | None,
    temp_dir: Path,
    base: Settings | None = None,
) -> Settings:
    """Worker settings: these servers, job modules (None: those of ``base``) and temp dir,
    the rest from ``base`` (default: the settings in force)."""
    resolved = islandora_job.settings() if base is None else base
    return dataclasses.replace(
        resolved,
        servers=tuple(servers),
        modules=resolved.modules if modules is None else tuple(modules),
        temp_dir=temp_dir,
    )


class WorkerPool:
    """Workers for the registered jobs, started with islandora_job.start_worker.

    Stopping every worker holds submitted jobs in the queue (so a test can assert on them);
    starting workers again releases them. Every worker gets `settings` (servers, job
    modules, temp dir for pidfiles and logs), handed to start_worker and stop_worker.
    Workers are forked by this process's launcher (see islandora_job.workers.launcher).
    """

    def __init__(self, settings: Settings) -> None:
        launcher.enable()
        self.settings = settings
        self.pidfiles: list[str] = []
        self._numbers = itertools.count()
        _pools.add(self)

    @property
    def addresses(self) -> list[str]:
        """The servers the workers register with."""
        return list(self.settings.servers)

    @property
    def modules(self) -> list[str]:
        """The job modules the workers serve (besides the entry points)."""
        return list(self.settings.modules)

    @property
    def temp_dir(self) -> Path:
        """Where the workers' pidfiles and logs are."""
        return self.settings.temp_dir

    def start(self, count: int = 1) -> list[str]:
        """Start count more workers; returns their pidfile names once each is registered.

        Raises whatever start_worker raises when a worker dies during start-up (with its log).
        """
        if count < 0:
            raise ValueError(f"count must be 0 or more, not {count}")
        started = []
        for _ in range(count):
            name = f"worker-{next(self._numbers)}.pid"
            if not islandora_job.start_worker(name, settings=self.settings):
                raise RuntimeError(
                    f"a live worker already holds the pidfile {name} in {self.temp_dir}"
                )
            self.pidfiles.append(name)
            started.append(name)
        return started

    def stop(self, grace: float = 10.0) -> int:
        """Stop every worker this pool started, all at once (each gets `grace` seconds to
        finish its job in hand before SIGKILL, in parallel); returns how many were running."""
        names, self.pidfiles = self.pidfiles, []
        if not names:
            return 0

        def stop_one(name: str) -> bool:
            return islandora_job.stop_worker(name, grace=grace, settings=self.settings)

        if len(names) == 1:
            return int(stop_one(names[0]))  # no thread to start for one
        with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="stop-worker") as ex:
            return sum(ex.map(stop_one, names))

    @property
    def log_paths(self) -> list[Path]:
        """Log files of every worker this pool has started, running or not."""
        return sorted(self.temp_dir.glob("worker-*.log"))

    def __len__(self) -> int:
        return len(self.pidfiles)


class PoolDirs:
    """Fresh directories for the worker pools of a run, under one base directory: a mkdir
    each (tmp_path_factory.mktemp lists its whole base directory every time)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._numbers = itertools.count()

    def make(self, name: str) -> Path:
        """A new directory (0700) named by a number and `name` (a test's, made safe)."""
        path = self.base / f"{next(self._numbers)}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)[:30]}"
        path.mkdir(mode=0o700)
        return path


# Every pool of this process, so that Ctrl-C can stop them all at once.
_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


def live_pools() -> list[WorkerPool]:
    """The pools of this process that still have workers."""
    return [pool for pool in list(_pools) if pool.pidfiles]


def stop_pools(pools: Sequence[WorkerPool], grace: float) -> None:
    """Stop the workers of every pool at once, each with `grace` seconds before SIGKILL."""
    if pools:
        with ThreadPoolExecutor(max_workers=len(pools), thread_name_prefix="stop-pool") as ex:
            list(ex.map(lambda pool: pool.stop(grace), pools))
