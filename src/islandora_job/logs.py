"""The end of a log: what error messages and failure reports show of a server or a worker."""

from __future__ import annotations

import os
from pathlib import Path

#: Bytes read from the end of a log file per step while looking for enough lines.
_CHUNK = 16384


def last_lines(data: bytes, lines: int = 40) -> str:
    """The last `lines` lines of a log's bytes (decoded leniently), or a note that it is empty."""
    text = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:]) or "(log is empty)"


def tail(path: Path | None, lines: int = 40) -> str:
    """The last `lines` lines of a log file, or a note saying there is none or it is unreadable.

    Only the end of the file is read, so a long log costs no more than a short one. Never
    raises: this text goes into error messages.
    """
    if path is None:
        return "(no log)"
    try:
        with path.open("rb") as f:
            end = f.seek(0, os.SEEK_END)
            start = end
            data = b""
            # One newline more than lines: the first, partial line read is dropped.
            while start > 0 and data.count(b"\n") <= lines:
                start = max(0, start - _CHUNK)
                f.seek(start)
                data = f.read(end - start)
    except FileNotFoundError:
        return f"(no log at {path})"
    except OSError as exc:
        return f"(cannot read the log {path}: {exc.strerror or exc})"
    if start > 0:
        data = data.partition(b"\n")[2]
    return last_lines(data, lines)
