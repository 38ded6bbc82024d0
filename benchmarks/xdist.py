"""5. The project's own test suite, wall time with `-n 0` and `-n 2` (pytest-xdist).

Slow (the whole suite, twice per run), so `python -m benchmarks` runs it only with --xdist.
"""

from __future__ import annotations

import re
import subprocess
import time

from benchmarks.common import REPO, Row, Stats, child_env, python

SECTION = "5 xdist"
TIMEOUT = 1800


def suite_seconds(workers: int) -> tuple[float, str]:
    """Wall seconds of the project's suite with `-n workers`, and pytest's summary line."""
    argv = [python(), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(workers)]
    start = time.perf_counter()
    done = subprocess.run(
        argv,
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    elapsed = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    summary = next(
        (line for line in reversed(lines) if re.search(r"\d+ (passed|failed)", line)), ""
    )
    if not summary:
        raise RuntimeError(f"pytest -n {workers} printed no summary: {(lines or [''])[-1][:160]}")
    return elapsed, summary.strip("= ")


def run(runs: int) -> list[Row]:
    """Both wall times (alternating) and the speedup of -n 2; notes carry pytest's summary."""
    serial, parallel = [], []
    summaries: dict[int, str] = {}
    for _ in range(runs):
        for workers, times in ((0, serial), (2, parallel)):
            elapsed, summaries[workers] = suite_seconds(workers)
            times.append(elapsed)
    one = Stats.of(serial)
    two = Stats.of(parallel)
    return [
        Row(SECTION, "project suite, -n 0", "s", one, note=summaries[0]),
        Row(SECTION, "project suite, -n 2", "s", two, "-n 0", one, note=summaries[2]),
        Row(
            SECTION,
            "speedup of -n 2",
            "x",
            Stats(one.median / two.median, one.median / two.max, one.median / two.min, two.runs),
        ),
    ]
