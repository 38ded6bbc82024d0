"""Jobs a test leaves queued on a shared server: drained so the next test starts clean."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import pytest

from islandora_job.gearman.admin import GearmanAdmin
from pytest_islandora_job import config

POOLS = pytest.StashKey[list]()
LEFTOVERS = pytest.StashKey[list]()


def queued(addresses: Sequence[str]) -> dict[str, int]:
    """Jobs queued per "address function" with nothing left to run them."""
    found = {}
    for address in addresses:
        try:
            with GearmanAdmin(address) as admin:
                rows = admin.status()
        except OSError:
            continue  # a server the test killed has nothing left to drain
        for row in rows:
            if row.queued > row.running:
                found[f"{address} {row.function}"] = row.queued - row.running
    return found


def settle(request: pytest.FixtureRequest, addresses: Sequence[str]) -> None:
    """Drain and report jobs the test left queued; fail the test under gearman_strict_queue."""
    left = queued(addresses)
    if not left:
        return
    described = ", ".join(f"{where}: {n}" for where, n in sorted(left.items()))
    request.node.stash.setdefault(LEFTOVERS, []).append(described)
    from islandora_job.queue import clear  # the queue layer pulls in the worker loop

    for address in addresses:
        try:
            clear([address])
        except OSError:
            continue
    message = f"the test left jobs queued (drained): {described}"
    if config.get(request.config, "gearman_strict_queue"):
        pytest.fail(message + " [ini gearman_strict_queue = true]", pytrace=False)
    warnings.warn(pytest.PytestWarning(message), stacklevel=1)
