"""Jobs a test leaves queued on a shared server: drained so the next test starts clean."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import pytest

from islandora_job.queue import StatusReader, clear
from pytest_islandora_job import config

#: Per test, the leftover jobs it was reported for ("address function: n, ..." strings).
LEFTOVERS = pytest.StashKey[list[str]]()


def queued(reader: StatusReader, addresses: Sequence[str]) -> dict[str, int]:
    """Jobs queued per "address function" with nothing left to run them."""
    # A server the test killed (its status is out of reach) has nothing left to drain.
    return {
        f"{server.address} {row.function}": row.queued - row.running
        for server in reader.read(addresses)
        for row in server.rows
        if row.queued > row.running
    }


def settle(
    request: pytest.FixtureRequest,
    reader: StatusReader,
    addresses: Sequence[str],
    before: dict[str, int],
) -> None:
    """Drain jobs left queued; report (or, under gearman_strict_queue, fail on) those the test
    added to what was queued when its workers started (`before`, from `queued()`)."""
    found = queued(reader, addresses)
    if not found:
        return
    left = {
        where: n - before.get(where, 0) for where, n in found.items() if n > before.get(where, 0)
    }
    for address in addresses:
        try:
            clear([address])
        except OSError:
            continue
    if not left:
        return
    described = ", ".join(f"{where}: {n}" for where, n in sorted(left.items()))
    request.node.stash.setdefault(LEFTOVERS, []).append(described)
    message = f"the test left jobs queued (drained): {described}"
    if config.get(request.config, "gearman_strict_queue"):
        pytest.fail(message + " [ini gearman_strict_queue = true]", pytrace=False)
    # Said of the test that left them, not of this line.
    lineno = request.node.location[1]
    warnings.warn_explicit(
        pytest.PytestWarning(message),
        category=pytest.PytestWarning,
        filename=str(request.node.path),
        lineno=(lineno or 0) + 1,
        module=request.node.nodeid,
    )
