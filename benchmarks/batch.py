"""3. Batch: 20 jobs that each sleep 0.1 s, run with submit_batch on 1, 2, 4 and 8 native
workers; wall time and speedup over 1 worker (ideal: 2.0 s, 1.0 s, 0.5 s, 0.3 s)."""

from __future__ import annotations

import islandora_job
from benchmarks.common import Row, Stats, gearmand, job_settings, native_workers, timed, workdir

SECTION = "3 batch"
JOBS = 20
SECONDS = 0.1
WORKERS = (1, 2, 4, 8)
TARGET = 3.5


def batch_seconds() -> float:
    """Wall seconds of one submit_batch of JOBS sleep jobs; RuntimeError if one failed."""
    batch = [{"job_name": "sleep", "args": [SECONDS]} for _ in range(JOBS)]
    ok = True

    def submit() -> None:
        nonlocal ok
        ok = islandora_job.submit_batch(batch, timeout=60)

    elapsed = timed(submit)
    if not ok:
        raise RuntimeError("a sleep job of the batch failed")
    return elapsed


def run(runs: int) -> list[Row]:
    """Wall time per worker count (workers started before, untimed) and speedup over 1."""
    walls: dict[int, Stats] = {}
    with (
        workdir("batch") as where,
        gearmand(where / "gearmand") as server,
        job_settings(server, where),
    ):
        for count in WORKERS:
            with native_workers(count, f"batch{count}"):
                # Warm up: every worker imports the job module on its first job.
                islandora_job.submit_batch([{"job_name": "sleep", "args": [0]}] * JOBS)
                walls[count] = Stats.of([batch_seconds() for _ in range(runs)])
    one = walls[1]
    rows = [Row(SECTION, f"{JOBS} x sleep {SECONDS} s, 1 worker (reference)", "s", one)]
    for count in WORKERS[1:]:
        wall = walls[count]
        speedup = Stats(
            one.median / wall.median, one.median / wall.max, one.median / wall.min, wall.runs
        )
        rows.append(
            Row(SECTION, f"{JOBS} x sleep {SECONDS} s, {count} workers", "s", wall, "1 worker", one)
        )
        row = Row(SECTION, f"speedup with {count} workers over 1", "x", speedup)
        if count == 4:
            row.target = f">= {TARGET} x"
            row.met = speedup.median >= TARGET
        rows.append(row)
    return rows
