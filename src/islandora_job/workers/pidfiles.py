"""Pidfiles: bare names in the temp dir, opened without following a link, read and written.

A pidfile names one worker; its log, `<name>.log`, sits next to it, and `<name>.lock`
serialises everyone who checks, removes or creates it. All three are regular files owned by
us, mode 0600, opened without following a link or blocking (another user may plant a link,
a FIFO or a lock in a temp dir that is shared).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from islandora_job import config
from islandora_job.config import Settings

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class PidfileError(Exception):
    """A pidfile that is unsafe to use (a symbolic link, not a regular file) or garbled."""


class GarbledPidfile(PidfileError):
    """A pidfile whose content is not a PID."""


def check_pidfile_name(name: str) -> str:
    """Return the name when it is a bare file name; ValueError otherwise (nothing touched),
    TypeError when it is not a str."""
    if not isinstance(name, str):
        raise TypeError(f"a pidfile name must be a str, not {type(name).__name__}")
    problem = None
    if not name:
        problem = "is empty"
    elif "\0" in name:
        problem = "contains a NUL byte"
    elif "/" in name or (os.altsep and os.altsep in name):
        problem = "contains a path separator"
    elif name in (".", ".."):
        problem = "is a directory name"
    if problem:
        raise ValueError(
            f"pidfile name {name!r} {problem}: give a bare file name such as 'worker-1.pid'; "
            "it is created in the temp dir (ISLANDORA_JOB_TEMP_DIR)"
        )
    return name


def pidfile_path(name: str, *, settings: Settings | None = None) -> Path:
    """Where the pidfile of that name lives: the temp dir of the settings (the settings in
    force when None); ValueError for a name that is not a bare file name."""
    resolved = config.settings() if settings is None else settings
    return resolved.temp_dir.absolute() / check_pidfile_name(name)


def worker_log_path(pidfile: str, *, settings: Settings | None = None) -> Path:
    """The log file (stdout and stderr) of the worker of a pidfile name: `<name>.log` next to
    the pidfile. ValueError for a name that is not a bare file name."""
    return log_path(pidfile_path(pidfile, settings=settings))


def log_path(path: Path) -> Path:
    """The worker log next to the pidfile at `path`."""
    return path.with_name(path.name + ".log")


def resolve_pidfile(pidfile: str | os.PathLike[str], settings: Settings) -> Path:
    """An absolute pidfile path as given, else the bare name in the temp dir (ValueError for
    a relative path)."""
    path = Path(pidfile)
    return path if path.is_absolute() else pidfile_path(os.fspath(pidfile), settings=settings)


def open_no_link(path: Path, flags: int, what: str) -> int:
    """os.open that never follows a symbolic link and never blocks (a FIFO planted at the
    name), for a regular file owned by us; a file we make is 0600, one we own is made so.

    Raises PidfileError (naming `what`) for a link, a FIFO or other non-regular file, or a
    file owned by another user; the OSError otherwise (FileNotFoundError without O_CREAT).
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PidfileError(
                f"{what} {path} is a symbolic link; it is never followed: remove it"
            ) from None
        if exc.errno == errno.ENXIO:
            raise PidfileError(f"{what} {path} is a FIFO, not a regular file: remove it") from None
        raise
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise PidfileError(f"{what} {path} is not a regular file: remove it")
        if found.st_uid != os.geteuid():
            raise PidfileError(
                f"{what} {path} is owned by uid {found.st_uid}, not by us ({os.geteuid()}): "
                "another user may have planted it; remove it, or use a temp dir of your own "
                "(ISLANDORA_JOB_TEMP_DIR)"
            )
        if found.st_mode & 0o077:
            # Ours but readable by others (made by an older version): payloads show in logs.
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_pidfile(path: Path) -> int:
    """Create the pidfile exclusively (never through a link), 0600, and return its
    descriptor; FileExistsError when it exists."""
    return os.open(path, _CREATE_FLAGS, 0o600)


class PidfileEntry(NamedTuple):
    """What a pidfile says: the PID, and when it was last written (its mtime, epoch seconds)."""

    pid: int
    written: float


def read_pidfile_entry(path: Path) -> PidfileEntry | None:
    """The PID a pidfile names and when it was written, None when there is none; never follows
    a symbolic link nor blocks.

    Raises PidfileError for a link, a file that is not regular or not ours, GarbledPidfile
    when the content is not a PID.
    """
    try:
        fd = open_no_link(path, os.O_RDONLY, "pidfile")
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        written = os.fstat(fd).st_mtime
        data = f.read(64)
    text = data.decode("ascii", errors="replace").strip()
    if not text.isdigit() or int(text) <= 0:
        raise GarbledPidfile(
            f"pidfile {path} holds {data[:32]!r}, not a PID: remove it if no worker runs"
        )
    return PidfileEntry(int(text), written)


def read_pidfile(path: Path) -> int | None:
    """The PID a pidfile names (see `read_pidfile_entry`, which raises the same errors)."""
    entry = read_pidfile_entry(path)
    return None if entry is None else entry.pid


def write_pid(fd: int, pid: int) -> None:
    """Write pid into the pidfile open at fd, and close it."""
    try:
        os.write(fd, f"{pid}\n".encode())
    finally:
        os.close(fd)


def remove_pidfile(path: Path, pid: int) -> None:
    """Remove the pidfile if it still names pid (a later worker may own the name now)."""
    try:
        if read_pidfile(path) == pid:
            path.unlink()
    except (OSError, PidfileError):
        pass


class LockTimeout(PidfileError):
    """The lock of a pidfile stayed held by another process past the timeout."""


@contextlib.contextmanager
def locked(path: Path, timeout: float) -> Iterator[None]:
    """Serialise check / remove-stale / create of one pidfile across processes and threads,
    with a flock on `<pidfile>.lock` (opened as `open_no_link` does), polled until `timeout`
    seconds pass; the lock file is removed on the way out.

    Raises LockTimeout when another process holds it that long, PidfileError for a lock file
    that is a link, a FIFO or not ours.
    """
    lock_path = path.with_name(path.name + ".lock")
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        fd = open_no_link(lock_path, os.O_RDWR | os.O_CREAT, "pidfile lock")
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(
                            f"pidfile lock {lock_path} is held by another process for over "
                            f"{timeout:g}s: wait for it, or remove the lock file if no "
                            "islandora-job command runs"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.02)
            # The holder before us may have removed the file we locked: lock the one at the name.
            try:
                current = os.lstat(lock_path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
            if current is None or (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
                continue
            try:
                yield
            finally:
                # Still holding it: anyone waiting on this file retries on a fresh one.
                with contextlib.suppress(FileNotFoundError):
                    lock_path.unlink()
            return
        finally:
            os.close(fd)
