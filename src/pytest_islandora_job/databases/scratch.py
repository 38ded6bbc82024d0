"""Where throwaway database servers keep their files: private directories tagged with their run.

Data directories, sockets and templates live under `shared_root()`, not in the test's temp
dir: socket paths must stay short, and the database account (when running as root) must reach
them. The root is ours (not a link, checked), 0711 so that account passes through it without
listing it; each server's directory below is 0700 and owned by the account the server runs as,
so its socket is out of every other user's reach. A directory whose owning run is gone is
swept at the start of every run (`sweep_leftovers`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import tempfile
from pathlib import Path

from islandora_job.private import check_private, private_dir
from pytest_islandora_job import processes

SHM = Path("/dev/shm")
SHM_MIN_FREE = 1 << 30
OWNER_FILE = "owner"


def _shared_base() -> Path:
    # In memory when there is room: copying a data directory to a busy disk takes up to a
    # second, to tmpfs a few milliseconds (a container's 64 MB /dev/shm is passed over).
    base = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        stat = os.statvfs(SHM)
        if stat.f_bavail * stat.f_frsize >= SHM_MIN_FREE and os.access(SHM, os.W_OK):
            base = SHM
    return base / f"pytest-islandora-job-db-{os.getuid()}"


#: Where the root of every throwaway server's files is asked for, one per user.
SHARED_BASE = _shared_base()
#: Access the root and its folders give the database account: pass through, no listing.
PASS_THROUGH = 0o711


def shared_root() -> Path:
    """The root of every throwaway server's files: `SHARED_BASE` or the first private
    alternative (see `islandora_job.private`). Raises UnsafeDirectory when none is private."""
    return private_dir(SHARED_BASE, PASS_THROUGH)


def area(name: str) -> Path:
    """A folder of the shared root ("run", "templates"), checked as the root is."""
    return private_dir(shared_root() / name, PASS_THROUGH)


def server_dir(parent: Path, prefix: str, user: pwd.struct_passwd | None) -> Path:
    """A fresh 0700 directory under `parent`, owned by `user` when given, tagged with the run."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    (path / OWNER_FILE).write_text(processes.run_tag())
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


def _owner_gone(path: Path) -> bool:
    try:
        tag = (path / OWNER_FILE).read_text().strip()
    except OSError:
        return False  # being made right now, or not ours
    return not processes.owner_alive(tag)


def sweep_leftovers() -> None:
    """Remove the server directories and templates of runs that are gone (killed outright),
    whether or not this run uses a database: they hold tens of MB of shared memory."""
    root = shared_root()
    for name in ("run", "templates"):
        if check_private(root / name, PASS_THROUGH) is None:
            sweep(root / name)


def sweep(parent: Path, prefix: str = "") -> None:
    """Remove directories under `parent` (named `prefix`...) whose owning process is gone."""
    if not parent.is_dir():
        return
    for path in parent.iterdir():
        if path.name.startswith(prefix) and path.is_dir() and _owner_gone(path):
            shutil.rmtree(path, ignore_errors=True)
