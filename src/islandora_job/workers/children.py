"""The detached workers this process started, kept so they can be waited for (reaped)."""

from __future__ import annotations

import subprocess

_children: dict[int, subprocess.Popen[bytes]] = {}


def track(child: subprocess.Popen[bytes]) -> None:
    """Remember a worker this process started until it is reaped."""
    _children[child.pid] = child


def tracked(pid: int) -> subprocess.Popen[bytes] | None:
    """The worker with this PID when this process started it and has not reaped it yet."""
    return _children.get(pid)


def forget(pid: int) -> None:
    """Stop tracking the worker with this PID (it was waited for)."""
    _children.pop(pid, None)


def reap(pid: int) -> None:
    """Wait for the worker with this PID if it is ours and has exited; forget it."""
    child = _children.pop(pid, None)
    if child is not None:
        child.poll()


def reap_exited() -> None:
    """Wait for every worker of ours that has exited, so none stays a zombie."""
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            del _children[pid]
