"""Free loopback ports, claimed with an exclusive-create sentinel file.

The sentinel directory is shared by every run of one user, so xdist workers and concurrent
runs never pick the same port; a sentinel whose owner is gone is taken over.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import time
from pathlib import Path

import port_for
import psutil

SENTINEL_DIR = Path(tempfile.gettempdir()) / f"pytest-islandora-job-ports-{os.getuid()}"


@functools.cache
def _good_ports() -> frozenset[int]:
    # port_for builds this set from its tables on every call (tens of ms): build it once.
    return frozenset(port_for.available_good_ports())


def _owner_alive(sentinel: Path) -> bool:
    try:
        text = sentinel.read_text().strip()
        if not text:
            # Created, its PID not written yet: young means a claim in progress.
            return time.time() - sentinel.stat().st_mtime < 5.0
        return psutil.pid_exists(int(text))
    except FileNotFoundError:
        return True  # released meanwhile: nothing to take over
    except (OSError, ValueError):
        return False


def claim_port(attempts: int = 50) -> int:
    """Pick a free loopback port and claim it; raises RuntimeError if none could be claimed."""
    SENTINEL_DIR.mkdir(parents=True, exist_ok=True)
    for _ in range(attempts):
        port = port_for.select_random(set(_good_ports()))
        if claim(port):
            return port
    raise RuntimeError(f"no free port could be claimed after {attempts} attempts in {SENTINEL_DIR}")


def claim(port: int) -> bool:
    """Claim one given port for this process; False if another live process holds it."""
    SENTINEL_DIR.mkdir(parents=True, exist_ok=True)
    sentinel = SENTINEL_DIR / f"{port}"
    for _ in range(2):
        try:
            fd = os.open(sentinel, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _owner_alive(sentinel):
                return False
            with contextlib.suppress(FileNotFoundError):
                sentinel.unlink()
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def sweep() -> int:
    """Remove the sentinels of runs that are gone (killed outright); returns how many."""
    removed = 0
    for sentinel in SENTINEL_DIR.glob("*") if SENTINEL_DIR.is_dir() else ():
        if not _owner_alive(sentinel):
            with contextlib.suppress(FileNotFoundError):
                sentinel.unlink()
                removed += 1
    return removed


def release(port: int) -> None:
    """Give a claimed port back."""
    with contextlib.suppress(FileNotFoundError):
        (SENTINEL_DIR / f"{port}").unlink()
