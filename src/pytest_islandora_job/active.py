"""Which server fixture the module-level islandora_job API points at.

Server fixtures of different scopes start and stop out of order (a module-scoped server may
start before the session one and stop long before it), so each active server holds an entry
and the most recently started one still active wins; stopping one never undoes another's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from islandora_job.config import Overrides, configure, restore

_active: list[tuple[object, dict[str, object]]] = []
_before: Overrides | None = None


def _apply() -> None:
    if _before is not None:
        restore(_before)
    if _active:
        configure(**_active[-1][1])


@contextlib.contextmanager
def serving(servers: list[str], temp_dir: Path) -> Iterator[None]:
    """Point islandora_job's settings at these servers while the with block runs."""
    global _before
    if not _active:
        _before = configure()
    token = object()
    _active.append((token, {"servers": servers, "temp_dir": temp_dir}))
    _apply()
    try:
        yield
    finally:
        _active[:] = [entry for entry in _active if entry[0] is not token]
        _apply()
