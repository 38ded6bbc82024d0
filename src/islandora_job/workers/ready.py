"""A starting worker's word to its starter: "registered", then (forked workers) its exit status.

start_worker hands the worker a descriptor (ENV_READY_FD names it): the write end of a pipe
for a spawned worker, the launcher's connection for a forked one. The worker writes the
line READY on it once gearmand has answered after its CAN_DOs on every server (so every
server lists it with its jobs), and closes it; start_worker waits for that line, or for the
end of the stream (the worker exited first), instead of polling admin `workers`. A forked
worker gets a second descriptor (ENV_READY_FD holds "N,M"): the launcher's own pipe, on
which it waits for the same word before forking its next spare.

On the launcher's connection the lines are JSON objects: {"pid": N} first (read by the
launcher's client), READY, then {"exit": status} when the worker ends. `StatusLines` parses
READY and the exit status, without I/O.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence

__all__ = ["ENV_READY_FD", "READY", "StatusLines", "notify_ready", "take_ready_fds"]

#: The environment variable naming the descriptors (comma-separated) a worker says
#: "registered" on.
ENV_READY_FD = "ISLANDORA_JOB_READY_FD"
#: The line a worker writes once it is registered on every server.
READY = b'{"ready": true}\n'
# A status line is a small JSON object; anything longer is not one.
_MAX_LINE = 4096


class StatusLines:
    """Parse the status lines of a starting worker, fed as they come (no I/O).

    `ready` turns True on READY; `exit` holds the status of an {"exit": status} line. Raises
    ValueError for a line that is not one of these.
    """

    def __init__(self) -> None:
        self.ready = False
        self.exit: int | None = None
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the stream; ValueError for a malformed line."""
        self._buffer += data
        while b"\n" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\n")
            self._line(line)
        if len(self._buffer) > _MAX_LINE:
            raise ValueError(f"a worker status line longer than {_MAX_LINE} bytes")

    def _line(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict) or len(message) != 1:
            raise ValueError(f"not a worker status line: {line[:100]!r}")
        ((key, value),) = message.items()
        if key == "ready" and value is True:
            self.ready = True
        elif key == "exit" and type(value) is int:
            self.exit = value
        else:
            raise ValueError(f"not a worker status line: {line[:100]!r}")


def take_ready_fds() -> tuple[int, ...]:
    """The descriptors ENV_READY_FD names, removed from the environment and made
    non-inheritable (a job's own child processes must not see them nor hold them); none
    when unset or not a list of descriptor numbers."""
    parts = os.environ.pop(ENV_READY_FD, "").split(",")
    if not all(part.isdigit() for part in parts):
        return ()
    fds = tuple(int(part) for part in parts)
    # Nor inherit them: a process a job module starts could hold a stream open past this
    # worker's exit, and its starter would wait for the end of the stream in vain.
    for fd in fds:
        with contextlib.suppress(OSError):
            os.set_inheritable(fd, False)
    return fds


def notify_ready(fds: Sequence[int]) -> None:
    """Write READY on each descriptor and close it; a starter gone meanwhile is no error."""
    for fd in fds:
        try:
            with contextlib.suppress(OSError):
                os.write(fd, READY)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
