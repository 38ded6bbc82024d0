"""`python -m benchmarks` (`make bench`): run the benchmarks, print one table, write JSON.

Every figure is the median, min and max of repeated runs, next to its reference measured in
the same run. The xdist benchmark (the whole project suite, twice) runs only with --xdist.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import background, batch, calls, common, embedded, fixtures, roundtrip, xdist
from benchmarks.common import Row

SECTIONS = ("foreground", "calls", "background", "batch", "fixtures", "embedded", "xdist")


def _gearmand_version() -> str:
    try:
        done = subprocess.run(
            ["/usr/sbin/gearmand", "--version"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    text = done.stdout.strip()
    return text.splitlines()[0].split(" - ")[0].removeprefix("gearmand ") if text else "unknown"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; exits with a usage message on bad arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks of islandora_job and its fixtures against the C gearman tools.",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=5,
        help="repetitions of the quick measurements (slow ones run 3 times, or fewer if --runs is lower)",
    )
    parser.add_argument(
        "--xdist",
        action="store_true",
        help="also time the project's own suite with -n 0 and -n 2 (slow: minutes)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"run only these benchmarks ({', '.join(SECTIONS)})",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path("bench-results.json"),
        help="where to write the results (default: bench-results.json)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; 0 when the table was printed, whatever the figures."""
    args = parse_args(argv)
    # Workers and routers started by the benchmarks import the job module from this tree.
    os.environ.update(PYTHONPATH=common.child_env()["PYTHONPATH"])
    runs, slow = args.runs, min(3, args.runs)
    plan: dict[str, Callable[[], list[Row]]] = {
        "foreground": lambda: roundtrip.run(runs),
        "calls": lambda: calls.run(runs),
        "background": lambda: background.run(runs, slow),
        "batch": lambda: batch.run(slow),
        "fixtures": lambda: fixtures.run(runs * 2, slow),
        "embedded": lambda: embedded.run(runs),
        "xdist": lambda: xdist.run(1),
    }
    chosen = args.only or [s for s in SECTIONS if s != "xdist" or args.xdist]
    meta: dict[str, object] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "gearmand": _gearmand_version(),
        "cores": os.cpu_count(),
        "machine": common.machine(),
        "runs": runs,
        "load_before": common.load(),
        "sections": {},
    }
    rows: list[Row] = []
    began = time.perf_counter()
    for name in chosen:
        print(f"benchmarks: {name} (load {common.load()}) ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            section_rows = plan[name]()
        except Exception as exc:
            section_rows = [common.unavailable(name, name, "", common.describe_error(exc))]
        elapsed = time.perf_counter() - start
        after = common.load()
        meta["sections"][name] = {"seconds": round(elapsed, 1), "load_after": after}
        for row in section_rows:
            row.load = after
        print(f"benchmarks: {name} took {elapsed:.0f} s", file=sys.stderr, flush=True)
        rows += section_rows
    meta["load_after"] = common.load()
    meta["seconds"] = round(time.perf_counter() - began, 1)
    print(f"machine: {meta['machine']}")
    print(common.table(rows))
    print(
        f"\nload average {meta['load_before']} before, {meta['load_after']} after; "
        f"{meta['seconds']} s in all; gearmand {meta['gearmand']}; Python {meta['python']}"
    )
    if not args.xdist and "xdist" not in chosen:
        print("xdist benchmark skipped: run `make bench BENCH_ARGS=--xdist` to include it")
    common.write_json(args.json, rows, meta)
    print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
