"""Pidfiles: bare names in the temp dir, opened without following a link, read and written.

A pidfile names one worker; its log, `<name>.log`, sits next to it, and `<name>.lock`
serialises everyone who checks, removes or creates it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

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
    """os.open that never follows a symbolic link: PidfileError (naming `what`) for one, the
    OSError otherwise."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PidfileError(
                f"{what} {path} is a symbolic link; it is never followed: remove it"
            ) from None
        raise


def create_pidfile(path: Path) -> int:
    """Create the pidfile exclusively (never through a link) and return its descriptor;
    FileExistsError when it exists."""
    return os.open(path, _CREATE_FLAGS, 0o644)


def read_pidfile(path: Path) -> int | None:
    """The PID a pidfile names, None when there is none; never follows a symbolic link.

    Raises PidfileError for a link or a file that is not regular, GarbledPidfile when the
    content is not a PID.
    """
    try:
        fd = open_no_link(path, os.O_RDONLY | os.O_NONBLOCK, "pidfile")
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PidfileError(f"pidfile {path} is not a regular file: remove it")
        data = f.read(64)
    text = data.decode("ascii", errors="replace").strip()
    if not text.isdigit() or int(text) <= 0:
        raise GarbledPidfile(
            f"pidfile {path} holds {data[:32]!r}, not a PID: remove it if no worker runs"
        )
    return int(text)


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


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise check / remove-stale / create of one pidfile across processes and threads.

    A blocking flock on `<pidfile>.lock`: it wakes the moment the holder is done, never
    follows a symbolic link, and costs a worker's start-up no import.
    """
    fd = os.open(
        path.with_name(path.name + ".lock"),
        os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o644,
    )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
