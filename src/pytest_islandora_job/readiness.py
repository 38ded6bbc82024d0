"""Waiting for a server to answer: one loop for gearmand and its queue databases."""

from __future__ import annotations

import time
from collections.abc import Callable


class ServerStartError(RuntimeError):
    """gearmand (or its queue database) did not become ready; the message has the log tail.

    backend_missing is True when what runs servers is itself absent (no Docker engine).
    """

    backend_missing = False


class PortConflict(ServerStartError):
    """Another process answers on the port our server was to listen on: not ours, not ready.

    port: the port; holder: who holds it, when that could be found.
    """

    def __init__(self, message: str, port: int, holder: str | None) -> None:
        super().__init__(message)
        self.port = port
        self.holder = holder


def wait_ready(
    answers: Callable[[], bool],
    alive: Callable[[], bool],
    timeout: float,
    died: Callable[[], str],
    late: Callable[[], str],
    max_delay: float = 0.05,
) -> None:
    """Poll answers() (True once the server speaks its protocol) with a growing delay.

    Raises ServerStartError(died()) as soon as alive() is False, and ServerStartError(late())
    when timeout seconds pass first; the callables build the messages only when needed.
    """
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        if not alive():
            raise ServerStartError(died())
        if answers():
            return
        if time.monotonic() > deadline:
            raise ServerStartError(late())
        time.sleep(delay)
        delay = min(delay * 1.5, max_delay)
