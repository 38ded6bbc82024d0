"""Where throwaway database servers keep their files: private directories tagged with their run.

Data directories, sockets and templates live under `SHARED_ROOT`, not in the test's temp dir:
socket paths must stay short, and the PostgreSQL user (when running as root) must reach them.
A directory whose owning run is gone is swept by the next run that looks.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import tempfile
from pathlib import Path

from pytest_islandora_job import processes

SHM = Path("/dev/shm")
SHM_MIN_FREE = 1 << 30
OWNER_FILE = "owner"


def _shared_root() -> Path:
    # In memory when there is room: copying a data directory to a busy disk takes up to a
    # second, to tmpfs a few milliseconds (a container's 64 MB /dev/shm is passed over).
    base = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        stat = os.statvfs(SHM)
        if stat.f_bavail * stat.f_frsize >= SHM_MIN_FREE and os.access(SHM, os.W_OK):
            base = SHM
    return base / f"pytest-islandora-job-db-{os.getuid()}"


#: The root of every throwaway server's files, one per user.
SHARED_ROOT = _shared_root()


def private_dir(parent: Path, prefix: str, user: pwd.struct_passwd | None) -> Path:
    """A fresh 0700 directory under `parent`, owned by `user` when given, tagged with the run."""
    parent.mkdir(parents=True, exist_ok=True)
    # Reachable by the database user, whose own directories below stay private.
    for directory in (SHARED_ROOT, parent):
        directory.chmod(0o755)
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


def sweep(parent: Path, prefix: str = "") -> None:
    """Remove directories under `parent` (named `prefix`...) whose owning process is gone."""
    if not parent.is_dir():
        return
    for path in parent.iterdir():
        if path.name.startswith(prefix) and path.is_dir() and _owner_gone(path):
            shutil.rmtree(path, ignore_errors=True)
