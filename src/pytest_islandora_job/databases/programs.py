"""The database server programs: found on the machine, run as the database user, run to the end."""

from __future__ import annotations

import pwd
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from islandora_job.logs import tail
from pytest_islandora_job import processes
from pytest_islandora_job.readiness import ServerStartError


def find_program(name: str, where: Sequence[str], package: str, queue: str, dsn_hint: str) -> str:
    """The path of a database server program, searched in PATH and then in `where`.

    Raises ServerStartError, in one line, naming what was looked for and the three ways out.
    """
    found = shutil.which(name)
    for directory in where:
        if found is None:
            found = shutil.which(name, path=directory)
    if found is None:
        looked = ", ".join(["PATH", *where])
        raise ServerStartError(
            f"{name} not found (looked in {looked}): install it (apt-get install {package}), "
            f"give {dsn_hint} to use a running server, or use another --gearman-queue "
            f"(builtin or sqlite) instead of {queue}"
        )
    return found


def run_as_prefix(user: pwd.struct_passwd | None) -> list[str]:
    """Command prefix that runs a program as `user` (nothing when it is None).

    Raises ServerStartError when setpriv, needed for it, is not installed.
    """
    if user is None:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise ServerStartError(
            f"setpriv not found in PATH, needed to run the database as {user.pw_name!r} "
            "while running as root: install util-linux, or run the tests as another user"
        )
    # setpriv execs (no fork), so the process we track is the server itself.
    return [setpriv, "--reuid", user.pw_name, "--regid", str(user.pw_gid), "--init-groups", "--"]


def run_to_end(argv: Sequence[str], log_path: Path, what: str, timeout: float) -> None:
    """Run a one-shot program (initdb, mariadb-install-db) with its output in log_path.

    Raises ServerStartError with the log tail when it fails or outlasts `timeout`.
    """
    proc = processes.spawn(argv, log_path)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        processes.stop(proc, grace=1.0)
    if code != 0:
        outcome = f"exited with {code}" if code is not None else f"ran over {timeout:g}s"
        raise ServerStartError(f"{what} {outcome}; log tail:\n{tail(log_path)}")
