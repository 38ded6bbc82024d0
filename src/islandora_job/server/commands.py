"""The server side of the text admin protocol: pure parsing of command lines and formatting
of replies, in gearmand 1.1.20's formats. No state, no sockets.

gearmand ends ``OK``/``ERR`` lines of some commands with ``\\r\\n`` and others with ``\\n``,
and writes error messages with ``+`` for spaces; the replies here copy that byte for byte,
since clients (``gearadmin``, PHP's and Perl's admin code) were written against it.

Commands only this server knows (the test controls) are ``hold F``, ``release F``,
``show queued [F]`` and ``drop workers F``; ``shutdown [graceful]``, which gearmand 1.1.20 no
longer has, answers ``OK`` as older gearmand did.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "AdminCommand",
    "AdminSyntaxError",
    "QueuedJob",
    "block",
    "error",
    "ok",
    "parse_command",
    "queued_line",
    "read_queued_line",
]


class AdminSyntaxError(Exception):
    """A command line the server cannot run; ``reply`` is the ``ERR`` line to send back."""

    def __init__(self, reply: bytes) -> None:
        super().__init__(reply.decode("utf-8", "replace").rstrip())
        self.reply = reply


@dataclass(frozen=True, slots=True)
class AdminCommand:
    """One parsed command: its canonical name (``"show jobs"``, ``"cancel job"``, ...) and
    its arguments as bytes (names may be in any encoding)."""

    name: str
    args: tuple[bytes, ...] = ()


def error(code: str, message: str = "") -> bytes:
    """An ``ERR`` line as gearmand writes it: ``ERR CODE message+with+plus``, ``\\r\\n`` end."""
    text = f"ERR {code} {message.replace(' ', '+')}" if message else f"ERR {code}"
    return text.encode() + b"\r\n"


def ok(value: bytes | None = None) -> bytes:
    """An ``OK`` line: ``OK value\\n`` for a value (version, getpid), bare ``OK\\r\\n`` else."""
    return b"OK\r\n" if value is None else b"OK " + value + b"\n"


def block(lines: Iterable[bytes]) -> bytes:
    """A block reply: each line ended by ``\\n``, then a line holding a single ``.``."""
    return b"".join(line + b"\n" for line in lines) + b".\n"


def _incomplete(command: str) -> AdminSyntaxError:
    return AdminSyntaxError(
        error(
            "INVALID_ARGUMENTS",
            f"An incomplete set of arguments was sent to this command {command}",
        )
    )


# Commands of one word with no arguments, and the two-word ones, by their words.
_SIMPLE = {b"status", b"prioritystatus", b"workers", b"version", b"getpid", b"verbose"}
_TWO_WORDS = {
    (b"show", b"jobs"): "show jobs",
    (b"show", b"unique"): "show unique jobs",
    (b"cancel", b"job"): "cancel job",
    (b"drop", b"function"): "drop function",
    (b"create", b"function"): "create function",
    (b"drop", b"workers"): "drop workers",
    (b"show", b"queued"): "show queued",
}


def parse_command(line: bytes) -> AdminCommand:
    """Parse one admin line (its line end removed) as gearmand does: words split on
    whitespace, command words case-insensitive, extra words after a complete command ignored.

    Raises AdminSyntaxError, carrying gearmand's ``ERR`` reply, on an unknown command or
    missing arguments.
    """
    words = line.split()
    head = words[0].lower() if words else b""
    if head in _SIMPLE:
        return AdminCommand(head.decode())
    if len(words) >= 2 and (name := _TWO_WORDS.get((head, words[1].lower()))) is not None:
        rest = words[2:]
        if name == "show unique jobs":
            if not rest or rest[0].lower() != b"jobs":
                raise _unknown(head)
            return AdminCommand(name)
        if name in ("show jobs", "show queued"):
            return AdminCommand(name, tuple(rest[:1]))
        if not rest:
            raise _incomplete(head.decode())
        return AdminCommand(name, (rest[0],))
    if head == b"maxqueue":
        if len(words) < 2:
            raise _incomplete("maxqueue")
        sizes = words[2:5]
        return AdminCommand("maxqueue", (words[1], *sizes))
    if head in (b"hold", b"release"):
        if len(words) < 2:
            raise _incomplete(head.decode())
        return AdminCommand(head.decode(), (words[1],))
    if head == b"shutdown":
        graceful = len(words) > 1 and words[1].lower() == b"graceful"
        return AdminCommand("shutdown", (b"graceful",) if graceful else ())
    raise _unknown(head)


def _unknown(head: bytes) -> AdminSyntaxError:
    # gearmand glues the command to its message without a separator.
    return AdminSyntaxError(
        b"ERR UNKNOWN_COMMAND Unknown+server+command" + head.replace(b" ", b"+") + b"\r\n"
    )


def queued_line(handle: bytes, function: bytes, unique: bytes, priority: int, data: bytes) -> bytes:
    """One line of ``show queued``: a JSON object (text fields UTF-8 with surrogate escapes,
    the payload in base64, so that any byte survives a line-based reply)."""

    # Imported here, as in read_queued_line: only the test controls need them.
    import base64
    import json

    def text(value: bytes) -> str:
        return value.decode("utf-8", "surrogateescape")

    record = {
        "handle": text(handle),
        "function": text(function),
        "unique": text(unique),
        "priority": priority,
        "data": base64.b64encode(data).decode("ascii"),
    }
    return json.dumps(record, separators=(",", ":")).encode("ascii")


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A job waiting for a worker: handle, function, unique id, priority (0 high, 1 normal,
    2 low) and payload."""

    handle: str
    function: str
    unique: str
    priority: int
    data: bytes


def read_queued_line(line: str) -> QueuedJob:
    """Decode one ``show queued`` line.

    Raises ValueError when the line is not what :func:`queued_line` writes.
    """
    import base64
    import json

    try:
        record = json.loads(line)
        return QueuedJob(
            str(record["handle"]),
            str(record["function"]),
            str(record["unique"]),
            int(record["priority"]),
            base64.b64decode(record["data"], validate=True),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"show queued line {line!r} is not a queued-job record: {exc}") from None
