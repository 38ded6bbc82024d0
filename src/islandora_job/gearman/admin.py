"""Text admin protocol: status, workers, version, getpid, show jobs, cancel job,
drop function, maxqueue.

Replies as gearmand 1.1.20 sends them: ``version`` -> ``OK 1.1.20``; ``status`` ->
``function\\ttotal\\trunning\\tworkers`` lines; ``workers`` -> ``fd ip client_id : f1 f2``
lines (client id ``-`` when unset); ``show jobs`` -> ``handle\\tretries\\tignore\\tqueued``
lines; blocks end with ``.``; errors are ``ERR CODE message+with+plus+for+spaces``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_plus

from .connection import Connection, parse_address
from .protocol import AdminDecoder, AdminReply, ProtocolError, admin_command

# "fd ip client_id :" then " name" per function; names may hold anything but a space.
_WORKER_LINE = re.compile(r"(\d+) (\S+) (.*?) :(?: (.*))?\Z", re.DOTALL)

__all__ = ["AdminError", "FunctionStatus", "GearmanAdmin", "JobInfo", "WorkerInfo"]


class AdminError(Exception):
    """gearmand answered an admin command with ``ERR``; ``code`` is its error code."""

    def __init__(self, command: str, code: str, message: str) -> None:
        super().__init__(f"gearmand refused {command!r}: {code} {message}".rstrip())
        self.command = command
        self.code = code
        self.message = message


@dataclass(frozen=True)
class FunctionStatus:
    """One line of ``status``: jobs queued (total, running ones included), running, workers."""

    function: str
    queued: int
    running: int
    workers: int


@dataclass(frozen=True)
class WorkerInfo:
    """One line of ``workers``: a connection, its client id and the functions it can do."""

    fd: int
    ip: str
    client_id: str
    functions: tuple[str, ...]


@dataclass(frozen=True)
class JobInfo:
    """One line of ``show jobs``."""

    handle: str
    retries: int
    ignore_job: bool
    job_queued: bool


class GearmanAdmin:
    """A connection to gearmand's text admin protocol, opened at the first command.

    Every method raises ServerUnavailable when the server cannot be reached, AdminError on an
    ``ERR`` reply and ProtocolError on a reply of the wrong shape.
    """

    def __init__(self, address: str, timeout: float = 5.0) -> None:
        self.address = address
        self.host, self.port = parse_address(address)
        self.timeout = timeout
        self._conn: Connection | None = None
        self._decoder: AdminDecoder | None = None

    @property
    def connected(self) -> bool:
        """True while a connection opened by an earlier command is open."""
        return self._conn is not None and not self._conn.closed

    def close(self) -> None:
        """Close the connection (a later command opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> GearmanAdmin:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _command(self, line: str, block: bool, *, bare: bool = False) -> AdminReply:
        data = admin_command(line)
        if self._conn is None or self._conn.closed:
            self._decoder = AdminDecoder()
            self._conn = Connection(
                self.host, self.port, self.timeout, self.timeout, decoder=self._decoder
            )
        assert self._decoder is not None
        self._decoder.expect(block, bare=bare)
        try:
            self._conn.send(data)
            reply: AdminReply = self._conn.read_packet()
        except BaseException:
            # A reply may still be on its way; the connection is out of step with us.
            self.close()
            raise
        if not reply.ok:
            code = reply.lines[0] if reply.lines else ""
            message = unquote_plus(reply.lines[1]) if len(reply.lines) > 1 else ""
            raise AdminError(line, code, message)
        return reply

    def _value(self, line: str) -> str:
        reply = self._command(line, block=False)
        return reply.lines[0] if reply.lines else ""

    def version(self) -> str:
        """The server's version string, e.g. ``1.1.20`` (gearmand) or ``v1.130.1`` (Perl's
        Gearman::Server, which answers with the bare version, without ``OK``)."""
        reply = self._command("version", block=False, bare=True)
        return reply.lines[0] if reply.lines else ""

    def getpid(self) -> int:
        """The server's process id."""
        text = self._value("getpid")
        if not text.isdigit():
            raise ProtocolError(f"getpid answered {text!r}, not a process id")
        return int(text)

    def status(self) -> list[FunctionStatus]:
        """Per function: jobs queued (total), running, and workers that can do it."""
        result = []
        head = None
        for line in self._command("status", block=True).lines:
            # A function name holding a newline spans lines: join until the counters come.
            text = line if head is None else f"{head}\n{line}"
            parts = text.rsplit("\t", 3)
            if len(parts) == 4 and all(p.isdigit() for p in parts[1:]):
                result.append(FunctionStatus(parts[0], *map(int, parts[1:])))
                head = None
            else:
                head = text
        if head is not None:
            raise ProtocolError(f"status line {head!r} is not 'function\\tN\\tN\\tN'")
        return result

    def workers(self) -> list[WorkerInfo]:
        """Every connection with its client id (``-`` when unset) and functions."""
        entries: list[str] = []
        for line in self._command("workers", block=True).lines:
            if _WORKER_LINE.match(line):
                entries.append(line)
            elif entries:
                # The rest of a function name that holds a newline.
                entries[-1] += "\n" + line
            else:
                raise ProtocolError(f"workers line {line!r} is not 'fd ip client_id : f1 f2'")
        result = []
        for entry in entries:
            match = _WORKER_LINE.match(entry)
            assert match is not None
            functions = tuple(f for f in (match.group(4) or "").split(" ") if f)
            result.append(
                WorkerInfo(int(match.group(1)), match.group(2), match.group(3), functions)
            )
        return result

    def show_jobs(self) -> list[JobInfo]:
        """Every job the server holds, with its retry count and flags."""
        result = []
        for line in self._command("show jobs", block=True).lines:
            parts = line.split("\t")
            if len(parts) != 4 or not all(p.isdigit() for p in parts[1:]):
                raise ProtocolError(f"show jobs line {line!r} is not 'handle\\tN\\tN\\tN'")
            result.append(JobInfo(parts[0], int(parts[1]), parts[2] != "0", parts[3] != "0"))
        return result

    def cancel_job(self, handle: str) -> bool:
        """Cancel a queued (not yet running) job; False when the server does not know it.

        gearmand marks the job ignored: ``show_jobs`` lists it with ``ignore_job`` True until a
        worker would take it, and then drops it without running it.
        """
        try:
            self._command(f"cancel job {_word('handle', handle)}", block=False)
        except AdminError as exc:
            if exc.code == "UNKNOWN_JOB":
                return False
            raise
        return True

    def drop_function(self, name: str) -> bool:
        """Forget a function and its queue; False when it is unknown or still has workers or
        waiting clients (gearmand refuses then)."""
        try:
            self._command(f"drop function {_word('function name', name)}", block=False)
        except AdminError as exc:
            if exc.code in ("function", "there"):
                # "ERR function not found" / "ERR there are still connected workers ...":
                # gearmand writes these two without an error code.
                return False
            raise
        return True

    def maxqueue(self, function: str, size: int) -> None:
        """Limit the queue of ``function`` to ``size`` jobs; further submits then get ERROR
        QUEUE_ERROR (ServerError). gearmand applies it only to a function it already knows
        (one that has had a job or a worker); ``size`` 0 or less removes the limit."""
        self._command(f"maxqueue {_word('function name', function)} {int(size)}", block=False)


def _word(what: str, value: str) -> str:
    """Check that ``value`` is one word of an admin command line."""
    if not value or any(c.isspace() for c in value) or "\0" in value:
        raise ValueError(
            f"{what} {value!r} is empty or holds whitespace or NUL; gearmand's admin protocol "
            "splits commands on whitespace, so it cannot be named there"
        )
    return value
