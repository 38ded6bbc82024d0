"""Sans-I/O matching of gearmand's replies to what a client sent on one connection.

The client tells a :class:`ReplyTracker` what it sent (submits, status queries, option
requests, in order) and feeds it every packet that arrives; :meth:`ReplyTracker.receive`
turns each packet into at most one event: a job created, a job ended with its result, a
status answered, an option accepted, or the server's ERROR. gearmand answers the requests
of one connection in order, so JOB_CREATED, STATUS_RES and OPTION_RES are matched first in,
first out; WORK_* packets are matched to running jobs by handle. Every state change happens
in ``receive``; nothing here touches a socket.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import count, repeat
from typing import NamedTuple

from .protocol import HEADER_SIZE, MAX_PACKET_SIZE, Packet, PacketType, ProtocolError

__all__ = [
    "Event",
    "JobCreated",
    "JobEnded",
    "JobProgress",
    "JobResult",
    "JobStatus",
    "OptionAccepted",
    "ReplyTooLarge",
    "ReplyTracker",
    "ServerErrored",
    "StatusAnswered",
]

_T = PacketType


@dataclass
class JobResult:
    """What a foreground job sent back.

    ``status`` is ``"complete"``, ``"fail"`` or ``"exception"``; ``data`` is the
    WORK_COMPLETE payload (else empty); ``exception`` the WORK_EXCEPTION payload; ``partial``
    the WORK_DATA payloads, ``warnings`` the WORK_WARNING payloads and ``progress`` the
    WORK_STATUS (numerator, denominator) pairs, in arrival order.
    """

    handle: str
    function: str
    status: str = "pending"
    data: bytes = b""
    exception: bytes | None = None
    partial: list[bytes] = field(default_factory=list)
    warnings: list[bytes] = field(default_factory=list)
    progress: list[tuple[int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the job completed (WORK_COMPLETE)."""
        return self.status == "complete"


@dataclass(frozen=True)
class JobStatus:
    """A GET_STATUS answer: whether the server knows the job, whether it runs, its progress."""

    handle: str
    known: bool
    running: bool
    numerator: int
    denominator: int


class JobCreated(NamedTuple):
    """gearmand acknowledged submit number ``ticket`` with ``handle``."""

    # A named tuple: pipelined submits make one per job, and a tuple is the cheapest to make.
    ticket: int
    handle: str


@dataclass(slots=True)
class JobEnded:
    """Foreground job number ``ticket`` ended; ``result`` holds everything it sent."""

    ticket: int
    result: JobResult


@dataclass(slots=True)
class JobProgress:
    """Foreground job number ``ticket`` reported progress (WORK_STATUS)."""

    ticket: int
    numerator: int
    denominator: int


@dataclass(frozen=True, slots=True)
class StatusAnswered:
    """gearmand answered a GET_STATUS."""

    status: JobStatus


@dataclass(frozen=True, slots=True)
class OptionAccepted:
    """gearmand accepted an OPTION_REQ."""

    option: str


@dataclass(frozen=True, slots=True)
class ServerErrored:
    """gearmand answered with ERROR (for example QUEUE_ERROR on a full or broken queue)."""

    code: str
    message: str


# The other events of jobs are not frozen dataclasses: one is made per reply, and a frozen
# one costs twice as much to build. Nothing changes them after the tracker made them.
Event = JobCreated | JobEnded | JobProgress | StatusAnswered | OptionAccepted | ServerErrored


class ReplyTooLarge(ProtocolError):
    """A job's replies (WORK_DATA, WORK_WARNING, WORK_STATUS, its result) added up to more
    bytes than the tracker's maximum: a runaway or hostile worker. The connection is
    unusable; the message names the job and the limit."""


_PACKET_COST = 64


@dataclass(slots=True)
class _Running:
    ticket: int
    result: JobResult
    size: int = 0
    # Its caller gave up: it still takes its turn of gearmand's replies, which are dropped.
    abandoned: bool = False


@dataclass(slots=True)
class _Handle:
    """The submits of one connection that gearmand made one job (one unique id): it sends
    every packet of that job once per submit, in submit order, so they take turns."""

    jobs: list[_Running]
    turn: int = 0


_WORK_TYPES = frozenset(
    {
        _T.WORK_COMPLETE,
        _T.WORK_FAIL,
        _T.WORK_EXCEPTION,
        _T.WORK_DATA,
        _T.WORK_WARNING,
        _T.WORK_STATUS,
    }
)


def number(raw: bytes) -> int:
    """A decimal number argument; empty reads as 0 (Perl's Gearman::Server sends empty
    progress for a job that never reported any). ProtocolError for anything else."""
    text = raw.rstrip(b"\0")
    if not text:
        return 0
    if not text.isdigit():
        raise ProtocolError(f"expected a number from the server, got {raw!r}")
    return int(text)


def handle_text(raw: bytes) -> str:
    """A handle argument as text; gearmand counts a C string's terminating NUL into some."""
    return raw.rstrip(b"\0").decode("utf-8", "surrogateescape")


# The packet types as module constants: an enum member looked up on its class goes through
# the enum's machinery (about 100 ns in Python 3.11), and receive() compares several a packet.
_JOB_CREATED, _STATUS_RES, _OPTION_RES, _ERROR = (
    _T.JOB_CREATED,
    _T.STATUS_RES,
    _T.OPTION_RES,
    _T.ERROR,
)
_WORK_COMPLETE, _WORK_EXCEPTION, _WORK_DATA, _WORK_WARNING, _WORK_STATUS = (
    _T.WORK_COMPLETE,
    _T.WORK_EXCEPTION,
    _T.WORK_DATA,
    _T.WORK_WARNING,
    _T.WORK_STATUS,
)


class ReplyTracker:
    """What one connection is waiting for, and the events its packets make.

    Submits get consecutive ticket numbers from 0. A background submit ends with its
    JobCreated; a foreground one with its JobEnded. WORK_* packets of a job this tracker
    does not know (one a previous call gave up on) are ignored; any other packet that
    answers nothing raises ProtocolError.
    """

    __slots__ = (
        "_abandoned",
        "_created",
        "_created_size",
        "_max_reply",
        "_next_ticket",
        "_options",
        "_running",
        "_statuses",
    )

    def __init__(self, max_reply: int = MAX_PACKET_SIZE) -> None:
        """``max_reply``: the most bytes one job's replies may add up to (ReplyTooLarge)."""
        self._max_reply = max_reply
        self._next_ticket = 0
        # Submits awaiting JOB_CREATED: (ticket, function, background).
        self._created: deque[tuple[int, str, bool]] = deque()
        # The size of the last JOB_CREATED packet (0: none yet), see read_at_least.
        self._created_size = 0
        # Foreground jobs awaiting their end, by raw handle: several when submits with one
        # unique id were coalesced by gearmand into one job.
        self._running: dict[bytes, _Handle] = {}
        # Tickets whose caller gave up before their JOB_CREATED came.
        self._abandoned: set[int] = set()
        self._statuses: deque[bytes] = deque()
        self._options: deque[str] = deque()

    def submitted(self, function: str, *, background: bool) -> int:
        """Record a submit just sent; returns its ticket."""
        return self.submitted_many((function,), background=background)

    def submitted_many(self, functions: Sequence[str], *, background: bool) -> int:
        """Record submits just sent, in order; returns the first one's ticket (the others
        follow it)."""
        first = self._next_ticket
        self._next_ticket = first + len(functions)
        self._created.extend(zip(count(first), functions, repeat(background)))
        return first

    def asked_status(self, handle: bytes) -> None:
        """Record a GET_STATUS just sent."""
        self._statuses.append(handle)

    def asked_option(self, option: str) -> None:
        """Record an OPTION_REQ just sent."""
        self._options.append(option)

    def abandon(self, ticket: int) -> None:
        """Forget a submit whose caller no longer waits (a cancelled call): its replies
        will be ignored when they come."""
        if any(entry[0] == ticket for entry in self._created):
            self._abandoned.add(ticket)
            return
        for entry in self._running.values():
            for job in entry.jobs:
                if job.ticket == ticket:
                    job.abandoned = True

    def read_at_least(self) -> int:
        """How many bytes the next read may wait for before it wakes the client: while one
        foreground job awaits its JOB_CREATED and nothing else is awaited, one more than
        the last JOB_CREATED (its result usually follows at once, and one wake-up then
        takes both; a handle one digit longer only ends the wait early), else 1."""
        created = self._created
        if (
            self._created_size
            and len(created) == 1
            and not created[0][2]
            and not self._running
            and not self._statuses
            and not self._options
        ):
            return self._created_size + 1
        return 1

    @property
    def awaiting_ack(self) -> bool:
        """True while a request waits for its acknowledgement (JOB_CREATED, STATUS_RES,
        OPTION_RES), which gearmand sends at once, unlike a job's end."""
        return bool(self._created or self._statuses or self._options)

    @property
    def running(self) -> list[str]:
        """Handles of the foreground jobs created and not ended."""
        return [
            entry.jobs[0].result.handle
            for entry in self._running.values()
            if not all(job.abandoned for job in entry.jobs)
        ]

    def receive_all(self, packets: Iterable[Packet]) -> list[Event]:
        """Take packets from the server in order; return the events they make, in order,
        up to and with the first ServerErrored (an ERROR ends what the connection is good
        for: the packets after it are not taken).

        Raises ProtocolError on a packet that answers nothing this connection asked.
        """
        events: list[Event] = []
        append = events.append
        created, abandoned = self._created, self._abandoned
        new = tuple.__new__
        for packet in packets:
            # A background submit's JOB_CREATED, taken here: pipelined submits make
            # thousands a second (see receive for the rest).
            if packet.type is _JOB_CREATED and created and created[0][2] and not abandoned:
                raw = packet.args[0]
                self._created_size = HEADER_SIZE + len(raw)
                handle = raw.rstrip(b"\0").decode("utf-8", "surrogateescape")
                append(new(JobCreated, (created.popleft()[0], handle)))
                continue
            event = self.receive(packet)
            if event is not None:
                append(event)
                if type(event) is ServerErrored:
                    break
        return events

    def receive(self, packet: Packet) -> Event | None:
        """Take one packet from the server; return the event it makes, if any.

        Raises ProtocolError on a packet that answers nothing this connection asked.
        """
        kind = packet.type
        if kind is _JOB_CREATED:
            if not self._created:
                raise ProtocolError("JOB_CREATED from the server for no submit")
            ticket, function, background = self._created.popleft()
            self._created_size = HEADER_SIZE + len(packet.args[0])
            raw = packet.args[0].rstrip(b"\0")
            handle = raw.decode("utf-8", "surrogateescape")
            abandoned = bool(self._abandoned) and ticket in self._abandoned
            if abandoned:
                self._abandoned.discard(ticket)
            if not background:
                # An abandoned one too: gearmand sends its replies all the same.
                job = _Running(ticket, JobResult(handle, function), abandoned=abandoned)
                entry = self._running.get(raw)
                if entry is None:
                    self._running[raw] = _Handle([job])
                else:
                    entry.jobs.append(job)
            return None if abandoned else JobCreated(ticket, handle)
        if kind in _WORK_TYPES:
            return self._work(packet)
        if kind is _STATUS_RES:
            raw = packet.args[0].rstrip(b"\0")
            if not self._statuses or self._statuses[0] != raw:
                raise ProtocolError(f"STATUS_RES from the server for {raw!r}, not asked")
            self._statuses.popleft()
            return StatusAnswered(
                JobStatus(
                    handle_text(raw),
                    packet.args[1].rstrip(b"\0") == b"1",
                    packet.args[2].rstrip(b"\0") == b"1",
                    number(packet.args[3]),
                    number(packet.args[4]),
                )
            )
        if kind is _OPTION_RES:
            if not self._options:
                raise ProtocolError("OPTION_RES from the server for no OPTION_REQ")
            return OptionAccepted(self._options.popleft())
        if kind is _ERROR:
            return ServerErrored(
                packet.args[0].decode("utf-8", "replace"),
                packet.args[1].decode("utf-8", "replace"),
            )
        raise ProtocolError(f"unexpected {kind.name} from the server")

    def _work(self, packet: Packet) -> JobEnded | JobProgress | None:
        raw = packet.args[0].rstrip(b"\0")
        entry = self._running.get(raw)
        if entry is None:
            return None
        turn = entry.turn
        job = entry.jobs[turn]
        entry.turn = (turn + 1) % len(entry.jobs)
        result = job.result
        # Each packet also costs its Python objects: count a floor per packet, so that a
        # flood of tiny WORK_STATUS packets is bounded in memory too.
        args = packet.args
        job.size += sum(map(len, args)) - len(args[0]) + _PACKET_COST
        if job.size > self._max_reply:
            raise ReplyTooLarge(
                f"job {result.handle} ({result.function!r}) sent more than {self._max_reply} "
                "bytes of replies (data, warnings, progress and result together): a runaway "
                "worker, or a result larger than the client's maximum payload"
            )
        kind = packet.type
        if kind is _WORK_DATA:
            result.partial.append(packet.args[1])
        elif kind is _WORK_WARNING:
            result.warnings.append(packet.args[1])
        elif kind is _WORK_STATUS:
            progress = (number(packet.args[1]), number(packet.args[2]))
            result.progress.append(progress)
            return None if job.abandoned else JobProgress(job.ticket, *progress)
        else:
            if kind is _WORK_COMPLETE:
                result.status = "complete"
                result.data = packet.args[1]
            elif kind is _WORK_EXCEPTION:
                # gearmand 1.1 ends the job with WORK_EXCEPTION (a WORK_FAIL sent after it
                # is refused); older servers forward a WORK_FAIL too, which then finds no
                # job here.
                result.status = "exception"
                result.exception = packet.args[1]
            else:
                result.status = "fail"
            del entry.jobs[turn]
            if not entry.jobs:
                del self._running[raw]
            else:
                entry.turn = turn % len(entry.jobs)
            return None if job.abandoned else JobEnded(job.ticket, result)
        return None
