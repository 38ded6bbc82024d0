"""The database server programs: found on the machine, run as the database user, run to the end."""

from __future__ import annotations

import contextlib
import os
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


#: The system account throwaway database servers run as when the tests run as root.
DB_ACCOUNT = "islandora-job-db"


def database_account() -> pwd.struct_passwd | None:
    """The account a throwaway database server runs as: None (this one) unless we are root;
    as root, `DB_ACCOUNT`, made (a system account, no home, no login shell) when missing, so
    the server never runs as root nor as an account that owns anything else.

    Raises ServerStartError when the account cannot be made.
    """
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(DB_ACCOUNT)
    done = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", DB_ACCOUNT],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:
        # Another process of the run may have made it meanwhile: then useradd failed.
        return pwd.getpwnam(DB_ACCOUNT)
    except KeyError:
        raise ServerStartError(
            f"cannot make the system account {DB_ACCOUNT!r} that throwaway databases run as "
            f"when the tests run as root: useradd said {done.stderr.strip() or done.returncode!r};"
            f" make it yourself (useradd --system --user-group --no-create-home --shell "
            f"/usr/sbin/nologin {DB_ACCOUNT}), or run the tests as another user"
        ) from None


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
