"""Child processes that cannot outlive the run.

Every process the plugin starts runs in its own process group and carries the run tag in its
environment (children it spawns inherit it). At exit, on Ctrl-C and at the start of the next
run, tagged processes whose owning run is gone are ended.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

TAG_VAR = "PYTEST_ISLANDORA_JOB_RUN"

_children: dict[int, subprocess.Popen[bytes]] = {}


def run_tag() -> str:
    """This run's tag, "<pid>:<start time>", set in os.environ so children inherit it."""
    tag = os.environ.get(TAG_VAR)
    own = f"{os.getpid()}:{psutil.Process().create_time():.3f}"
    if tag != own:
        os.environ[TAG_VAR] = own
    return own


def owner_alive(tag: str) -> bool:
    """True while the process that made run tag `tag` still runs."""
    pid_text, _, created = tag.partition(":")
    try:
        owner = psutil.Process(int(pid_text))
        return f"{owner.create_time():.3f}" == created
    except (ValueError, psutil.Error):
        return False


def spawn(
    argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start argv in a new process group with stdout and stderr appended to log_path.

    Raises FileNotFoundError (with the path looked for) when the program does not exist.
    """
    run_tag()
    child_env = dict(os.environ if env is None else env)
    child_env[TAG_VAR] = os.environ[TAG_VAR]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    # The child leads its own group: signalling the group also reaches what it spawned.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> int | None:
    """SIGTERM the process group, wait up to grace seconds, then SIGKILL; returns the exit code."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    # Whatever the leader left behind in its group goes too.
    _signal_group(proc, signal.SIGKILL)
    _children.pop(proc.pid, None)
    return proc.returncode


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group and wait for the leader to be gone."""
    _signal_group(proc, signal.SIGKILL)
    proc.wait()
    _children.pop(proc.pid, None)


def running() -> set[int]:
    """PIDs of the children this process started and has not stopped yet."""
    return set(_children)


def stop_all(keep: set[int] | frozenset[int] = frozenset(), grace: float = 2.0) -> None:
    """End every child this process started and has not stopped yet, but those in keep:
    all are sent SIGTERM at once and share one grace period before SIGKILL, so ending many
    takes `grace` seconds at most, not `grace` per child."""
    ending = [proc for pid, proc in list(_children.items()) if pid not in keep]
    for proc in ending:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in ending:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.0, deadline - time.monotonic()))
    for proc in ending:
        kill(proc)


def tagged_processes() -> list[psutil.Process]:
    """Processes carrying the tag of a run that is gone."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            tag = proc.environ().get(TAG_VAR)
        except (psutil.Error, OSError):
            continue
        if tag and not owner_alive(tag):
            found.append(proc)
    return found


def reap_leftovers(timeout: float = 3.0) -> list[str]:
    """End tagged processes of earlier runs that were killed outright; returns what was ended."""
    leftovers = [p for p in tagged_processes() if p.pid != os.getpid()]
    ended = []
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            ended.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
            proc.terminate()
    _, alive = psutil.wait_procs(leftovers, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return ended


atexit.register(stop_all)
