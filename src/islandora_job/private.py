"""Directories private to this user in a shared place (the system temp dir).

Anyone may pre-create a name in /tmp: a directory of theirs, a symbolic link, one of ours
left world-readable. A private directory is one we made or own, not a link, with no access
for group or others; anything else is refused, and the next name of a fixed sequence is
tried, so every process of the user picks the same one.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

__all__ = ["UnsafeDirectory", "check_private", "private_dir"]

#: Names tried after the first: `<base>.1` ... `<base>.<ALTERNATIVES>`.
ALTERNATIVES = 20


class UnsafeDirectory(OSError):
    """No private directory could be had; the message names what was refused and why."""


def check_private(path: Path, mode: int = 0o700) -> str | None:
    """Why `path` is not a private directory of ours (None when it is one): not a directory,
    a symbolic link, owned by someone else, or with a permission bit beyond `mode`. Never
    follows a link."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return "does not exist"
    if stat.S_ISLNK(found.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(found.st_mode):
        return "is not a directory"
    if found.st_uid != os.geteuid():
        return f"is owned by uid {found.st_uid}, not {os.geteuid()}"
    if stat.S_IMODE(found.st_mode) & ~mode:
        return f"has mode {stat.S_IMODE(found.st_mode):04o}, not {mode:04o}"
    return None


def _tighten(path: Path, mode: int) -> None:
    """Give `path` exactly `mode` when it is our own directory that no one else could write
    to (one we just made, whose mode the umask cut, or one of ours left readable by others),
    never following a link."""
    found = os.lstat(path)
    if (
        stat.S_ISDIR(found.st_mode)
        and found.st_uid == os.geteuid()
        and not found.st_mode & 0o022
        and stat.S_IMODE(found.st_mode) != mode
    ):
        os.chmod(path, mode, follow_symlinks=False)


def private_dir(base: Path, mode: int = 0o700) -> Path:
    """`base` (or the first of `<base>.1`, `<base>.2`, ... that is) as a private directory:
    made with `mode` (0700; 0711 lets another account we run programs as pass through)
    when missing, used only when it passes `check_private`.

    Raises UnsafeDirectory naming every refused candidate when none is private.
    """
    base.parent.mkdir(parents=True, exist_ok=True)
    refused = []
    for i in range(ALTERNATIVES + 1):
        path = base if i == 0 else base.with_name(f"{base.name}.{i}")
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        _tighten(path, mode)
        problem = check_private(path, mode)
        if problem is None:
            return path
        refused.append(f"{path} {problem}")
    raise UnsafeDirectory(
        "no private directory could be made: "
        + "; ".join(refused[:3])
        + f" (and {len(refused) - 3} more); remove them or choose another directory"
    )
