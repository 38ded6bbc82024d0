"""Waits and assertions for background handles, results, batches and queues.

Every wait polls the server and, on timeout, raises JobWaitTimeout (an AssertionError) that
shows the queue status at that moment.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import islandora_job
from islandora_job.queue import read_status, status_lines

HANDLE_PATTERN = re.compile(r"^H:[^:\s]+:\d+$")


class JobWaitTimeout(AssertionError):
    """A wait ran out of time; the message shows the queue status then."""


def queue_report(servers: Sequence[str] | None = None) -> str:
    """The admin `status` of every server (those of `settings()` when None), a line per
    function; never raises for an unreachable server (its line says so)."""
    return "\n".join(status_lines(servers or islandora_job.settings().servers))


def _wait(
    done: Callable[[], bool], timeout: float, what: str, servers: Sequence[str] | None
) -> None:
    # Every helper hides its frames: a failure points at the test, not at the helper.
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not done():
        if time.monotonic() > deadline:
            raise JobWaitTimeout(
                f"{what} not done after {timeout:g}s; queue status:\n{queue_report(servers)}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def wait_for_job(handle: str, timeout: float = 10.0, servers: Sequence[str] | None = None) -> None:
    """Poll GET_STATUS until the server no longer knows the job (it ended).

    Raises JobWaitTimeout, with the queue status, if it is still known after timeout seconds.
    """
    __tracebackhide__ = True
    assert_background_handle(handle)
    client = islandora_job.JobClient(servers=servers)
    try:
        _wait(lambda: not client.job_status(handle).known, timeout, f"job {handle}", servers)
    finally:
        client.close()


def wait_until_idle(server: Any, timeout: float = 10.0) -> None:
    """Wait until a server (or cluster) has nothing queued and nothing running.

    Raises JobWaitTimeout with the queue status when it is still busy after timeout seconds.
    """
    __tracebackhide__ = True
    addresses = getattr(server, "addresses", None) or [server.address]

    def idle() -> bool:
        return not any(
            row.queued or row.running for found in read_status(addresses) for row in found.checked()
        )

    _wait(idle, timeout, "the queue", addresses)


def assert_background_handle(handle: object) -> None:
    """Assert handle looks like a Gearman job handle, "H:host:N"."""
    __tracebackhide__ = True
    assert isinstance(handle, str) and HANDLE_PATTERN.match(handle), (
        f"{handle!r} is not a Gearman job handle (expected 'H:host:N')"
    )


def assert_batch_succeeds(batch: Sequence[dict[str, Any]], timeout: float | None = 30.0) -> None:
    """Run a batch in the foreground and assert no job in it failed."""
    __tracebackhide__ = True
    assert islandora_job.submit_batch(list(batch), timeout=timeout), (
        f"a job of the batch failed: {[entry.get('job_name') for entry in batch]}\n"
        f"queue status:\n{queue_report()}"
    )


def assert_job_result(
    job_name: str, args: Sequence[Any], expected: Any, timeout: float | None = 30.0
) -> None:
    """Submit a foreground job and assert its result equals expected."""
    __tracebackhide__ = True
    result = islandora_job.submit(job_name, *args, timeout=timeout)
    assert result == expected, (
        f"{job_name}{tuple(args)!r} returned {result!r}, expected {expected!r}"
    )
