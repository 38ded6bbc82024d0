"""Gearman client: SUBMIT_JOB*, many jobs in flight for batches, GET_STATUS, failover.

A client holds at most one connection per server, each with a sans-I/O
:class:`~islandora_job.gearman.tracker.ReplyTracker` that matches replies to requests; one
read loop (``_next``) feeds it. A client holds at most one connection per server and submits on the first server of its
list that accepts a connection; when that connection dies, the next call connects again,
starting from the first server. A submit that fails before gearmand acknowledged it is
retried once on a fresh connection (the job's unique id makes a repeat harmless). Not safe
for use from several threads at once.
"""

from __future__ import annotations

import enum
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .connection import Connection, ServerUnavailable, parse_address
from .protocol import (
    _HEADER,
    MAX_PACKET_SIZE,
    Magic,
    PacketType,
    ProtocolError,
    function_name,
    request,
)
from .tracker import (
    Event,
    JobCreated,
    JobEnded,
    JobProgress,
    JobResult,
    JobStatus,
    OptionAccepted,
    ReplyTracker,
    ServerErrored,
    StatusAnswered,
)

__all__ = [
    "GearmanClient",
    "GearmanTimeout",
    "Job",
    "JobResult",
    "JobStatus",
    "Priority",
    "ServerError",
    "ServerUnavailable",
]

_T = PacketType
# Background handles remembered for get_status(); old ones are forgotten first.
_MAX_REMEMBERED_HANDLES = 100_000
# How long a server that hung (accepted, then acknowledged nothing) is tried last.
_SUSPECT_SECONDS = 60.0


class Priority(enum.Enum):
    """Job priority: gearmand hands out HIGH jobs first and LOW jobs last."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


_FOREGROUND = {
    Priority.HIGH: _T.SUBMIT_JOB_HIGH,
    Priority.NORMAL: _T.SUBMIT_JOB,
    Priority.LOW: _T.SUBMIT_JOB_LOW,
}
_BACKGROUND = {
    Priority.HIGH: _T.SUBMIT_JOB_HIGH_BG,
    Priority.NORMAL: _T.SUBMIT_JOB_BG,
    Priority.LOW: _T.SUBMIT_JOB_LOW_BG,
}


class GearmanTimeout(TimeoutError):
    """No answer within the time given; the connection concerned has been closed.

    ``handles`` lists the jobs gearmand had created and that had not ended. gearmand then
    marks such a foreground job ignored: it will not run.
    """

    def __init__(self, message: str, handles: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.handles = list(handles)


class ServerError(Exception):
    """gearmand answered with an ERROR packet (for example a full queue)."""

    def __init__(self, address: str, code: str, message: str) -> None:
        super().__init__(f"gearmand at {address} answered {code}: {message}")
        self.address = address
        self.code = code
        self.message = message


# The version (4) and RFC 4122 variant bits of a UUID, as uuid.UUID(version=4) sets them.
_UUID4_KEEP = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def _unique(unique: str | None) -> bytes:
    if unique is None:
        # A version 4 UUID from the pseudo-random generator (reseeded in forked children):
        # unique ids need uniqueness, not secrecy, and this spares a getrandom() per job.
        # Formatted here rather than through uuid.UUID: a third of the cost, on the hot path.
        n = random.getrandbits(128) & _UUID4_KEEP | _UUID4_SET
        h = f"{n:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}".encode()
    if "\0" in unique:
        raise ValueError(f"unique id {unique!r} contains a NUL byte; remove it")
    return unique.encode("utf-8", "surrogateescape")


class Job(NamedTuple):
    """One job to submit: its function, its data, its unique id (None: a fresh uuid4) and
    its priority."""

    function: str
    data: bytes
    unique: str | None = None
    priority: Priority = Priority.NORMAL


_REQ = Magic.REQ.value


def _submit_packet(job: Job, kinds: dict[Priority, PacketType]) -> bytes:
    priority = job.priority
    if not isinstance(priority, Priority):
        raise TypeError(f"priority must be a Priority, not {priority!r}")
    # Framed here rather than by protocol.request, whose checks function_name and _unique have made
    # already: this runs once per job of a pipelined batch, and request() costs several
    # times more.
    body = b"\0".join((function_name(job.function), _unique(job.unique), _payload(job.data)))
    return _HEADER.pack(_REQ, kinds[priority], len(body)) + body


def _within(limit: float, deadline: float | None) -> float:
    """``limit`` seconds, or fewer when ``deadline`` comes first (never below a microsecond,
    which the socket layer would read as "no limit")."""
    if deadline is None:
        return limit
    return max(min(limit, deadline - time.monotonic()), 1e-6)


def _payload(data: bytes) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"job data must be bytes, not {type(data).__name__}; encode it first")
    return bytes(data)


@dataclass
class _Link:
    """One open connection and what it waits for."""

    conn: Connection
    tracker: ReplyTracker


class GearmanClient:
    """Submit jobs to a list of gearmand servers ("host:port", port defaulting to 4730).

    ``connect_timeout`` bounds each connect, handshake and send; ``ack_timeout`` bounds each
    wait for gearmand to acknowledge a request (JOB_CREATED, STATUS_RES). A call's
    ``timeout`` bounds all of it. ``max_reply`` caps the bytes one job's replies may
    accumulate (WORK_DATA, WORK_WARNING, WORK_STATUS, WORK_COMPLETE). A new connection goes
    to the first server of the list that accepts it; one that hung is tried last for a
    while. Methods raise ServerUnavailable when
    no server can be reached or the server is lost while a job runs, GearmanTimeout when an
    answer does not come in time, ServerError on a gearmand ERROR packet and ProtocolError
    on malformed bytes.
    """

    def __init__(
        self,
        servers: Sequence[str],
        connect_timeout: float = 5.0,
        *,
        ack_timeout: float = 30.0,
        max_reply: int = MAX_PACKET_SIZE,
    ) -> None:
        if isinstance(servers, str):
            servers = [servers]
        if not servers:
            raise ValueError("no gearmand servers given; pass a list of 'host:port' strings")
        self._addresses = [parse_address(server) for server in servers]
        self.servers = [Connection.format_address(*address) for address in self._addresses]
        self.connect_timeout = connect_timeout
        self.ack_timeout = ack_timeout
        self.max_reply = max_reply
        self._links: dict[int, _Link] = {}
        self._suspects: dict[int, float] = {}
        self._current: int | None = None
        self._handle_servers: OrderedDict[str, int] = OrderedDict()

    def __repr__(self) -> str:
        return f"<GearmanClient {self.servers}>"

    def close(self) -> None:
        """Close every connection (a later call opens new ones)."""
        for index in list(self._links):
            self._drop(index)

    def __enter__(self) -> GearmanClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- connections ------------------------------------------------------------------

    def _link(self, index: int, deadline: float | None) -> _Link:
        """The open connection to server ``index``, connecting (and asking for exceptions)
        when there is none. The connect and the handshake end by ``deadline`` and within
        ``connect_timeout`` each. Raises ServerUnavailable when that fails."""
        link = self._links.get(index)
        if link is not None and not link.conn.closed:
            return link
        host, port = self._addresses[index]
        conn = Connection(host, port, _within(self.connect_timeout, deadline))
        link = _Link(conn, ReplyTracker(self.max_reply))
        self._links[index] = link
        try:
            link.tracker.asked_option("exceptions")
            self._send(index, link, request(_T.OPTION_REQ, b"exceptions"), deadline, "OPTION_REQ")
            event = None
            while not isinstance(event, OptionAccepted):
                event = self._next(
                    index, link, deadline, "OPTION_REQ", ack_timeout=self.connect_timeout
                )
        except (GearmanTimeout, ProtocolError, ServerError) as exc:
            self._drop(index)
            raise ServerUnavailable(
                f"gearmand at {conn.address} did not answer OPTION_REQ exceptions: {exc}"
            ) from exc
        self._suspects.pop(index, None)
        return link

    def _submit_link(self, deadline: float | None) -> tuple[int, _Link]:
        index = self._current
        if index is not None:
            link = self._links.get(index)
            if link is not None and not link.conn.closed:
                return index, link
        errors = []
        now = time.monotonic()
        # Servers that recently hung are tried last (a stable sort keeps the list's order).
        order = sorted(range(len(self._addresses)), key=lambda i: self._suspects.get(i, 0) > now)
        for index in order:
            try:
                link = self._link(index, deadline)
            except ServerUnavailable as exc:
                errors.append(str(exc))
                if deadline is not None and time.monotonic() >= deadline:
                    break
                continue
            self._current = index
            return index, link
        raise ServerUnavailable("no gearmand server reachable: " + "; ".join(errors))

    def _drop(self, index: int) -> None:
        link = self._links.pop(index, None)
        if link is not None:
            link.conn.close()
        if self._current == index:
            self._current = None

    def _hung(self, index: int) -> None:
        """Server ``index`` did not acknowledge in time: close it, and let the next calls
        try the other servers first for a while."""
        self._drop(index)
        self._suspects[index] = time.monotonic() + _SUSPECT_SECONDS

    def _send(
        self, index: int, link: _Link, data: bytes, deadline: float | None, what: str
    ) -> None:
        """Send within the time left (``connect_timeout`` without a deadline)."""
        timeout = self.connect_timeout if deadline is None else _within(float("inf"), deadline)
        try:
            link.conn.send(data, timeout)
        except TimeoutError as exc:
            self._hung(index)
            raise GearmanTimeout(f"{what}: {exc}", link.tracker.running) from None
        except ServerUnavailable:
            self._drop(index)
            raise

    def _next(
        self,
        index: int,
        link: _Link,
        deadline: float | None,
        what: str,
        *,
        ack_timeout: float | None = None,
    ) -> Event | None:
        """The one read loop: read the next packet before ``deadline`` and return the event
        it makes. While an acknowledgement is awaited the wait is also bounded by
        ``ack_timeout`` (default: the client's). Any failure closes the connection."""
        conn, tracker = link.conn, link.tracker
        bound = self.ack_timeout if ack_timeout is None else ack_timeout
        while True:
            if deadline is None:
                # Always the same value: the socket's timeout is then never changed.
                timeout = bound
            else:
                # Checked before reading: a peer that floods packets still times out.
                timeout = deadline - time.monotonic()
                if tracker.awaiting_ack:
                    timeout = min(timeout, bound)
            try:
                if timeout <= 0:
                    raise TimeoutError
                packet = conn.read_packet(timeout)
                event = tracker.receive(packet)
            except TimeoutError:
                if deadline is None and not tracker.awaiting_ack:
                    continue
                if tracker.awaiting_ack:
                    self._hung(index)
                else:
                    self._drop(index)
                raise GearmanTimeout(
                    f"{what}: no answer from gearmand at {conn.address} within "
                    f"{max(timeout, 0):g} s",
                    tracker.running,
                ) from None
            except ServerUnavailable:
                self._drop(index)
                raise
            except ProtocolError as exc:
                self._drop(index)
                raise type(exc)(f"{exc} (gearmand at {conn.address})") from None
            if isinstance(event, ServerErrored):
                self._drop(index)
                raise ServerError(conn.address, event.code, event.message)
            return event

    def _remember(self, handle: str, index: int) -> None:
        handles = self._handle_servers
        handles[handle] = index
        if len(handles) > _MAX_REMEMBERED_HANDLES:
            handles.popitem(last=False)

    # -- submits ----------------------------------------------------------------------

    def _run(
        self,
        data: bytes,
        functions: Sequence[str],
        *,
        background: bool,
        deadline: float | None,
        describe: Callable[[ReplyTracker, int], str],
        on_event: Callable[[int, Event], None] | None = None,
    ) -> tuple[int, list[Event]]:
        """Send submit packets for ``functions`` and read until each job is created
        (background) or has ended (foreground); return the server's index and, per job in
        order, its JobCreated or JobEnded. ``describe(tracker, left)`` names what is awaited
        in errors; ``on_event(index, event)`` sees each event of these jobs as it comes. A server lost before it acknowledged anything is tried once more on a
        fresh connection (the unique ids make a repeat harmless)."""
        wanted = JobCreated if background else JobEnded
        for attempt in (0, 1):
            index, link = self._submit_link(deadline)
            tickets = [link.tracker.submitted(f, background=background) for f in functions]
            index_of = {ticket: position for position, ticket in enumerate(tickets)}
            outcomes: dict[int, Event] = {}
            acknowledged = False
            try:
                self._send(index, link, data, deadline, describe(link.tracker, len(tickets)))
                while len(outcomes) < len(tickets):
                    what = describe(link.tracker, len(tickets) - len(outcomes))
                    event = self._next(index, link, deadline, what)
                    if event is None:
                        continue
                    if isinstance(event, JobCreated):
                        acknowledged = True
                    if isinstance(event, wanted):
                        outcomes[event.ticket] = event
                    if on_event is not None and isinstance(
                        event, JobCreated | JobEnded | JobProgress
                    ):
                        on_event(index_of[event.ticket], event)
            except ServerUnavailable as exc:
                self._drop(index)
                if acknowledged:
                    raise ServerUnavailable(f"{what} is lost: {exc}") from exc
                if attempt:
                    raise
                continue
            except BaseException:
                # A caller's callback raised, or the call was interrupted: the connection
                # still carries these jobs' replies, so no later call may read them.
                self._drop(index)
                raise
            return index, [outcomes[ticket] for ticket in tickets]
        raise AssertionError("unreachable")  # pragma: no cover

    def submit(
        self,
        function: str,
        data: bytes,
        *,
        unique: str | None = None,
        priority: Priority = Priority.NORMAL,
        timeout: float | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> JobResult:
        """Run a job in the foreground and return its result once it ended.

        ``timeout`` (seconds) bounds the whole call; GearmanTimeout when it runs out.
        ``on_progress(numerator, denominator)`` is called for each WORK_STATUS the job sends.
        """
        return self.submit_many(
            [Job(function, data, unique, priority)],
            timeout=timeout,
            on_progress=None if on_progress is None else lambda _, n, d: on_progress(n, d),
        )[0]

    def submit_many(
        self,
        jobs: Sequence[tuple[str, bytes] | Job],
        *,
        priority: Priority = Priority.NORMAL,
        timeout: float | None = None,
        on_end: Callable[[int, JobResult], None] | None = None,
        on_progress: Callable[[int, int, int], None] | None = None,
    ) -> list[JobResult]:
        """Run foreground jobs all at once on one connection; results in input order.

        Each job is a Job, or a (function, data) pair submitted with ``priority`` and a
        fresh unique id. ``timeout`` bounds the whole call; GearmanTimeout names how many
        jobs had not ended. ``on_end(index, result)`` is called as each job ends,
        ``on_progress(index, numerator, denominator)`` for each WORK_STATUS.
        """
        if not jobs:
            return []
        batch = [job if isinstance(job, Job) else Job(*job, None, priority) for job in jobs]
        data = b"".join(_submit_packet(job, _FOREGROUND) for job in batch)
        functions = [job.function for job in batch]
        deadline = None if timeout is None else time.monotonic() + timeout
        if len(batch) == 1:
            name = f"job {functions[0]!r}"

            def describe(tracker: ReplyTracker, left: int) -> str:
                running = tracker.running
                return f"{name} ({running[0]})" if running else name

        else:
            whole = f"batch of {len(batch)} jobs"

            def describe(tracker: ReplyTracker, left: int) -> str:
                return f"{whole} ({left} not ended)"

        def on_event(position: int, event: Event) -> None:
            if isinstance(event, JobEnded) and on_end is not None:
                on_end(position, event.result)
            elif isinstance(event, JobProgress) and on_progress is not None:
                on_progress(position, event.numerator, event.denominator)

        _, events = self._run(
            data,
            functions,
            background=False,
            deadline=deadline,
            describe=describe,
            on_event=None if on_end is None and on_progress is None else on_event,
        )
        return [event.result for event in events if isinstance(event, JobEnded)]

    def submit_background(
        self,
        function: str,
        data: bytes,
        *,
        unique: str | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> str:
        """Queue a job and return its handle (``H:host:N``) at once. gearmand coalesces it
        with a waiting job of the same function and ``unique`` id: the handle is then that
        job's."""
        return self.submit_background_many([Job(function, data, unique, priority)])[0]

    def submit_background_many(
        self, jobs: Sequence[tuple[str, bytes] | Job], *, priority: Priority = Priority.NORMAL
    ) -> list[str]:
        """Queue many jobs with one write; return their handles in input order."""
        if not jobs:
            return []
        batch = [job if isinstance(job, Job) else Job(*job, None, priority) for job in jobs]
        data = b"".join(_submit_packet(job, _BACKGROUND) for job in batch)
        what = (
            f"background job {batch[0].function!r}"
            if len(batch) == 1
            else (f"{len(batch)} background jobs")
        )
        return self._background(data, [job.function for job in batch], what)

    def _background(self, data: bytes, functions: Sequence[str], what: str) -> list[str]:
        index, events = self._run(
            data, functions, background=True, deadline=None, describe=lambda _t, _n: what
        )
        handles = [event.handle for event in events if isinstance(event, JobCreated)]
        for handle in handles:
            self._remember(handle, index)
        return handles

    # -- status -----------------------------------------------------------------------

    def get_status(self, handle: str) -> JobStatus:
        """Ask the server that created ``handle`` (else every server) about a job.

        An unknown handle gives ``known=False``. Raises ServerUnavailable when no server
        that could know the job can be reached.
        """
        raw = handle.encode("utf-8", "surrogateescape")
        packet = request(_T.GET_STATUS, raw)
        remembered = self._handle_servers.get(handle)
        candidates = [remembered] if remembered is not None else range(len(self._addresses))
        errors = []
        answered = False
        for index in candidates:
            try:
                link = self._link(index, None)
                link.tracker.asked_status(raw)
                self._send(index, link, packet, None, f"status of {handle}")
                event = None
                while not isinstance(event, StatusAnswered):
                    event = self._next(index, link, None, f"status of {handle}")
            except (ServerUnavailable, GearmanTimeout) as exc:
                self._drop(index)
                errors.append(str(exc))
                continue
            answered = True
            if event.status.known:
                return event.status
        if not answered:
            raise ServerUnavailable(f"cannot ask about job {handle}: " + "; ".join(errors))
        return JobStatus(handle, False, False, 0, 0)
