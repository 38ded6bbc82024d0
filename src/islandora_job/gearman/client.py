"""Gearman client: SUBMIT_JOB*, many jobs in flight for batches, GET_STATUS, failover.

A client holds at most one connection per server, each with a sans-I/O
:class:`~islandora_job.gearman.tracker.ReplyTracker` that matches replies to requests; one
read loop (``_events``) feeds it. It submits on the first server of its list that accepts a
connection; when that connection dies, the next call connects again,
starting from the first server. A submit that fails before gearmand acknowledged it is
retried once on a fresh connection (the job's unique id makes a repeat harmless). Not safe
for use from several threads at once.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .connection import Connection, ServerUnavailable, parse_address
from .protocol import (
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
    "STREAM_WINDOW",
    "GearmanClient",
    "GearmanTimeout",
    "Job",
    "JobResult",
    "JobStatus",
    "Priority",
    "ServerError",
    "ServerUnavailable",
    "submit_packets",
]

_T = PacketType
# Background handles remembered for get_status(); old ones are forgotten first.
_MAX_REMEMBERED_HANDLES = 100_000
# How long a server that hung (accepted, then acknowledged nothing) is tried last.
_SUSPECT_SECONDS = 60.0
# Jobs a stream frames and sends at a time: small enough that gearmand starts on them
# while the next are made, large enough that a send carries many.
_STREAM_CHUNK = 128
# The longest a stream waits for its iterable to fill a chunk before it sends what it has.
_STREAM_LINGER = 0.005
#: The jobs a stream keeps sent and not yet acknowledged, by default. gearmand answers a
#: read's worth of submits at a time: with a few hundred in flight it would wait for the
#: client between reads.
STREAM_WINDOW = 4000


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

    def __init__(self, address: str, code: str, message: str, during: str = "") -> None:
        """``during`` names what was under way (it ends the text, in parentheses)."""
        text = f"gearmand at {address} answered {code}: {message}"
        super().__init__(f"{text} ({during})" if during else text)
        self.address = address
        self.code = code
        self.message = message


class Job(NamedTuple):
    """One job to submit: its function, its data, its unique id (None: a fresh uuid4) and
    its priority."""

    function: str
    data: bytes
    unique: str | None = None
    priority: Priority = Priority.NORMAL


# Fresh unique ids are version 4 UUIDs whose first four groups are random per process and
# whose last group (48 bits) counts up from a random start below 2**47: as unlikely to
# repeat as random ones (unique ids need uniqueness, not secrecy), at a fraction of the cost
# on the submit path. A forked child draws a prefix of its own.
_prefix = b""
_counter = itertools.count()


def _fresh_prefix() -> None:
    global _prefix, _counter
    h = os.urandom(10).hex()
    # The RFC 4122 version (4) starts the third group, the variant bits (10) the fourth.
    variant = "89ab"[int(h[15], 16) & 3]
    _prefix = f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{variant}{h[16:19]}-".encode()
    _counter = itertools.count(int.from_bytes(os.urandom(8), "big") >> 17)


_fresh_prefix()
os.register_at_fork(after_in_child=_fresh_prefix)
# A fresh id's last group and the NUL after it, as submit_packets writes them: 12 hex digits
# always (the mask keeps a counter past 2**48, which would take centuries, from a 13th).
_COUNTED = b"%012x\0"
_COUNTED_SIZE = len(_COUNTED % 0)
_COUNTED_MASK = 0xFFFFFFFFFFFF


def _given_unique(unique: str) -> bytes:
    if "\0" in unique:
        raise ValueError(f"unique id {unique!r} contains a NUL byte; remove it")
    return unique.encode("utf-8", "surrogateescape")


_REQ = Magic.REQ.value
_NUL = b"\0"
_SIZE = struct.Struct(">I")


# Sequences taken as a (function, data) pair, besides tuples.
_PAIRS = (tuple, list)


def _kind(kinds: dict[Priority, PacketType], priority: object) -> PacketType:
    """The packet type of a priority; TypeError naming it when it is not a Priority."""
    kind: PacketType | None
    try:
        kind = kinds.get(priority)  # type: ignore[call-overload]
    except TypeError:  # unhashable
        kind = None
    if kind is None:
        raise TypeError(f"priority must be a Priority, not {priority!r}")
    return kind


def submit_packets(
    jobs: Iterable[tuple[str, bytes] | Job],
    *,
    background: bool,
    priority: Priority = Priority.NORMAL,
) -> bytes:
    """The SUBMIT_JOB* packets of ``jobs`` (foreground or background), in one piece; a job
    given as a (function, data) pair gets a fresh unique id and ``priority``.

    Raises TypeError for a function name that is not a str, data that is not bytes or a
    priority that is not a Priority, ValueError for an empty name or a NUL byte in a name or
    unique id.
    """
    # Framed here rather than by protocol.request (whose checks function_name and _unique
    # make already): this runs once per job of a pipelined batch, and request() costs
    # several times more. The function name of a pair is checked once a call.
    kinds = _BACKGROUND if background else _FOREGROUND
    pair_kind = _kind(kinds, priority)
    pair_head = _REQ + _SIZE.pack(pair_kind)
    # Bound once a call: a fork between two calls draws a new prefix (see _fresh_prefix).
    prefix, counter = _prefix, _counter
    # Per function name of a pair: its wire name, a NUL and the fresh ids' prefix.
    starts: dict[str, bytes] = {}
    parts: list[bytes] = []
    extend = parts.extend
    pack = _SIZE.pack
    for job in jobs:
        if type(job) is tuple and len(job) == 2:
            function, data = job
            start = starts.get(function) if type(function) is str else None
            if start is None:
                start = function_name(function) + _NUL + prefix
                if type(function) is str:
                    starts[function] = start
            if type(data) is not bytes:
                data = _payload(data)
            # The fresh id's last group, then the data: see _fresh_prefix.
            extend(
                (
                    pair_head,
                    pack(len(start) + _COUNTED_SIZE + len(data)),
                    start,
                    _COUNTED % (next(counter) & _COUNTED_MASK),
                    data,
                )
            )
            continue
        if isinstance(job, Job):
            function, data, unique, job_priority = job
            kind = _kind(kinds, job_priority)
        elif isinstance(job, _PAIRS) and len(job) == 2:
            (function, data), unique, kind = job, None, pair_kind
        else:
            raise TypeError(
                f"each job must be a Job or a (function, data) pair, not {job!r}: give the "
                "unique id and priority through Job(function, data, unique, priority)"
            )
        raw = function_name(function)
        if type(data) is not bytes:
            data = _payload(data)
        if unique is None:
            uid = prefix + b"%012x" % (next(counter) & _COUNTED_MASK)
        else:
            uid = _given_unique(unique)
        body = len(raw) + len(uid) + len(data) + 2
        extend((_REQ, pack(kind), pack(body), raw, _NUL, uid, _NUL, data))
    return b"".join(parts)


def _framed_prefix(jobs: list[tuple[str, bytes] | Job]) -> list[tuple[str, bytes] | Job]:
    """The jobs before the first one submit_packets fails on."""
    for position, job in enumerate(jobs):
        try:
            submit_packets((job,), background=True)
        except Exception:
            return jobs[:position]
    return jobs


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


# What a call is waiting for, said in its errors: made only when one is raised.
_Describe = Callable[[], str]


def _says(text: str) -> _Describe:
    return lambda: text


@dataclass
class _Link:
    """One open connection and what it waits for."""

    conn: Connection
    tracker: ReplyTracker
    # The server's ERROR, read after events still to be handed out (see _events).
    error: ServerError | None = None


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
        # With one server there is only one to ask about a handle (see get_status).
        self._remembers = len(self._addresses) > 1
        # The connections of streams not yet ended (see stream_background).
        self._streams: set[Connection] = set()

    def __repr__(self) -> str:
        return f"<GearmanClient {self.servers}>"

    def close(self) -> None:
        """Close every connection, those of streams not yet ended too (their next step
        raises ServerUnavailable); a later call opens new ones."""
        for index, link in list(self._links.items()):
            self._drop(index, link)
        for conn in list(self._streams):
            conn.close()

    def __enter__(self) -> GearmanClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- connections ------------------------------------------------------------------

    def _link(self, index: int, deadline: float | None, *, own: bool = False) -> _Link:
        """The open connection to server ``index``, connecting (and asking for exceptions)
        when there is none; with ``own``, a new connection the client does not keep (the
        caller closes it). The connect and the handshake end by ``deadline`` and within
        ``connect_timeout`` each. Raises ServerUnavailable when that fails."""
        link = None if own else self._links.get(index)
        if link is not None and not link.conn.closed:
            return link
        host, port = self._addresses[index]
        conn = Connection(host, port, _within(self.connect_timeout, deadline))
        link = _Link(conn, ReplyTracker(self.max_reply))
        if not own:
            self._links[index] = link
        try:
            link.tracker.asked_option("exceptions")
            what = _says(f"gearmand at {conn.address} did not answer OPTION_REQ exceptions")
            self._send(index, link, request(_T.OPTION_REQ, b"exceptions"), deadline, what)
            while not any(
                isinstance(event, OptionAccepted)
                for event in self._events(
                    index, link, deadline, what, ack_timeout=self.connect_timeout
                )
            ):
                pass
        except (GearmanTimeout, ProtocolError, ServerError) as exc:
            self._drop(index, link)
            # A timeout's message starts with what() already.
            raise ServerUnavailable(
                str(exc) if isinstance(exc, GearmanTimeout) else f"{what()}: {exc}"
            ) from exc
        self._suspects.pop(index, None)
        return link

    def _submit_link(self, deadline: float | None, *, own: bool = False) -> tuple[int, _Link]:
        """The connection to submit on: the current one, else one to the first server of
        the list that accepts it (see _link for ``own``). Raises ServerUnavailable when
        none does."""
        index = None if own else self._current
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
                link = self._link(index, deadline, own=own)
            except ServerUnavailable as exc:
                errors.append(str(exc))
                if deadline is not None and time.monotonic() >= deadline:
                    break
                continue
            if not own:
                self._current = index
            return index, link
        raise ServerUnavailable("no gearmand server reachable: " + "; ".join(errors))

    def _drop(self, index: int, link: _Link) -> None:
        """Close ``link`` (to server ``index``) and forget it when it is the one kept."""
        link.conn.close()
        if self._links.get(index) is link:
            del self._links[index]
            if self._current == index:
                self._current = None

    def _hung(self, index: int, link: _Link) -> None:
        """Server ``index`` did not acknowledge in time: close ``link``, and let the next
        calls try the other servers first for a while."""
        self._drop(index, link)
        self._suspects[index] = time.monotonic() + _SUSPECT_SECONDS

    def _send(
        self, index: int, link: _Link, data: bytes, deadline: float | None, what: _Describe
    ) -> None:
        """Send within the time left (``connect_timeout`` without a deadline); ``what()``
        names what is sent in errors."""
        timeout = self.connect_timeout if deadline is None else _within(float("inf"), deadline)
        try:
            link.conn.send(data, timeout)
        except TimeoutError as exc:
            self._hung(index, link)
            raise GearmanTimeout(f"{what()}: {exc}", link.tracker.running) from None
        except ServerUnavailable:
            self._drop(index, link)
            raise

    def _events(
        self,
        index: int,
        link: _Link,
        deadline: float | None,
        what: _Describe,
        *,
        ack_timeout: float | None = None,
        wait: bool = True,
    ) -> list[Event]:
        """The one read loop: read before ``deadline`` what packets come (at least one) and
        return the events they make (maybe none), in order. While an acknowledgement is
        awaited the wait is also bounded by ``ack_timeout`` (default: the client's). With
        ``wait`` False, only what has come already is read (maybe nothing). Any failure
        closes the connection; ``what()`` names what was awaited in the error."""
        if link.error is not None:
            raise link.error
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
                # Pipelined replies come by the hundred a read: one call takes them all.
                packets = (
                    conn.read_packets(timeout, at_least=tracker.read_at_least())
                    if wait
                    else conn.receive()
                )
                events = tracker.receive_all(packets)
            except TimeoutError:
                if deadline is None and not tracker.awaiting_ack:
                    continue
                if tracker.awaiting_ack:
                    self._hung(index, link)
                else:
                    self._drop(index, link)
                raise GearmanTimeout(
                    f"{what()}: no answer from gearmand at {conn.address} within "
                    f"{max(timeout, 0):.3g} s",
                    tracker.running,
                ) from None
            except ServerUnavailable:
                self._drop(index, link)
                raise
            except ProtocolError as exc:
                self._drop(index, link)
                raise type(exc)(f"{exc} (gearmand at {conn.address})") from None
            error = events[-1] if events else None
            if isinstance(error, ServerErrored):
                events.pop()
                self._drop(index, link)
                if not events:
                    raise ServerError(conn.address, error.code, error.message)
                # What came before it is handed out first: the next call raises.
                link.error = ServerError(conn.address, error.code, error.message)
            return events

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
    ) -> tuple[int, list[Event | None]]:
        """Send submit packets for ``functions`` and read until each job is created
        (background) or has ended (foreground); return the server's index and, per job in
        order, its JobCreated or JobEnded. ``describe(tracker, left)`` names what is awaited
        in errors (called only then); ``on_event(index, event)`` sees each event of these
        jobs as it comes. A server lost before it acknowledged anything is tried once more
        on a fresh connection (the unique ids make a repeat harmless)."""
        count = len(functions)
        for attempt in (0, 1):
            index, link = self._submit_link(deadline)
            tracker = link.tracker
            # The tickets of this call are first .. first + count - 1, in job order.
            first = tracker.submitted_many(functions, background=background)
            outcomes: list[Event | None] = [None] * count
            left = count
            acknowledged = False

            # Called only during this attempt, so reading its variables late is right.
            def what() -> str:
                return describe(tracker, left)  # noqa: B023

            try:
                self._send(index, link, data, deadline, what)
                while left:
                    for event in self._events(index, link, deadline, what):
                        if isinstance(event, JobCreated):
                            acknowledged = True
                            position = event.ticket - first
                            if background:
                                outcomes[position] = event
                                left -= 1
                        elif isinstance(event, JobEnded):
                            position = event.ticket - first
                            outcomes[position] = event
                            left -= 1
                        elif isinstance(event, JobProgress):
                            position = event.ticket - first
                        else:
                            continue
                        if on_event is not None:
                            on_event(position, event)
            except ServerUnavailable as exc:
                self._drop(index, link)
                if acknowledged:
                    raise ServerUnavailable(f"{what()} is lost: {exc}") from exc
                if attempt:
                    raise
                continue
            except BaseException:
                # A caller's callback raised, or the call was interrupted: the connection
                # still carries these jobs' replies, so no later call may read them.
                self._drop(index, link)
                raise
            return index, outcomes
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
        data = submit_packets(jobs, background=False, priority=priority)
        functions = [job[0] for job in jobs]
        deadline = None if timeout is None else time.monotonic() + timeout
        if len(functions) == 1:
            name = f"job {functions[0]!r}"

            def describe(tracker: ReplyTracker, left: int) -> str:
                running = tracker.running
                return f"{name} ({running[0]})" if running else name

        else:
            whole = f"batch of {len(functions)} jobs"

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
        data = submit_packets(jobs, background=True, priority=priority)
        functions = [job[0] for job in jobs]
        what = (
            f"background job {functions[0]!r}"
            if len(functions) == 1
            else (f"{len(functions)} background jobs")
        )
        return self._background(data, functions, what)

    def _background(self, data: bytes, functions: Sequence[str], what: str) -> list[str]:
        index, events = self._run(
            data, functions, background=True, deadline=None, describe=lambda _t, _n: what
        )
        handles = [event.handle for event in events if isinstance(event, JobCreated)]
        if self._remembers:
            for handle in handles:
                self._remember(handle, index)
        return handles

    def stream_background(
        self,
        jobs: Iterable[tuple[str, bytes] | Job],
        *,
        priority: Priority = Priority.NORMAL,
        window: int = STREAM_WINDOW,
    ) -> Generator[str, None, None]:
        """Queue jobs from any iterable and yield their handles in input order, each once
        gearmand acknowledged it.

        The jobs are read as they go out (a generator's need not all exist first), on a
        connection of the stream's own, with at most ``window`` sent and not yet
        acknowledged: memory stays bounded whatever their number, and gearmand queues jobs
        while the next ones are made. They go out up to 128 at a time, fewer once the
        iterable has taken 5 ms to give them (the jobs taken wait while it blocks). A job
        that cannot be framed (see submit_packets), or an iterable that raises, ends the
        stream with that error after every job before it was queued and its handle
        yielded; the jobs after it are not taken. Closing the generator early (``close()``,
        or its collection after a ``break``) waits up to ``ack_timeout`` in all for the
        jobs already sent to be acknowledged, then closes the stream's connection, and
        raises nothing. :meth:`close` of the client closes the connections of its streams:
        their next step raises ServerUnavailable.

        Raises TypeError for a ``jobs`` that is not iterable (or is a str, bytes or a
        mapping) or a bad ``priority``,
        ValueError for a ``window`` that is not a whole number of at least 1 (all at the
        call); then ServerUnavailable when no server can be reached or the connection is
        lost or closed (the message says how many jobs were queued and how many sent and
        not acknowledged: those may or may not be queued), GearmanTimeout when an
        acknowledgement does not come within ``ack_timeout``, ServerError on a gearmand
        ERROR (a full or broken queue: the jobs acknowledged before it were yielded) and
        ProtocolError on malformed replies.
        """
        if type(window) is not int or window < 1:
            raise ValueError(f"window must be a whole number of jobs, at least 1, not {window!r}")
        _kind(_BACKGROUND, priority)
        if isinstance(jobs, str | bytes | Mapping):
            raise TypeError(
                "jobs must be an iterable of Jobs or (function, data) pairs, "
                f"not a {type(jobs).__name__}"
            )
        return self._stream(iter(jobs), priority, window)

    def _stream(
        self, jobs: Iterator[tuple[str, bytes] | Job], priority: Priority, window: int
    ) -> Generator[str, None, None]:
        index, link = self._submit_link(None, own=True)
        self._streams.add(link.conn)
        tracker = link.tracker
        remember = self._remembers
        sent = acknowledged = 0
        failure: Exception | None = None
        more = True
        # The room a send waits for: with less, sends and reads would go a job or two at a
        # time while gearmand is the slower side.
        refill = min(_STREAM_CHUNK, max(1, window // 2))

        def what() -> str:
            return (
                f"stream of background jobs ({acknowledged} queued, "
                f"{sent - acknowledged} sent and not acknowledged)"
            )

        try:
            while True:
                # An ERROR, or a close, ends the stream before another job is taken.
                error = link.error
                if error is not None:
                    raise ServerError(error.address, error.code, error.message, what())
                if link.conn.closed:
                    raise ServerUnavailable(
                        f"connection to gearmand at {link.conn.address} is closed"
                    )
                room = window - sent + acknowledged
                if more and room >= refill:
                    chunk: list[tuple[str, bytes] | Job] = []
                    append, limit = chunk.append, min(_STREAM_CHUNK, room)
                    # A slow iterable's jobs go out when it has taken _STREAM_LINGER for
                    # them, not only once a chunk is full.
                    linger = time.monotonic() + _STREAM_LINGER
                    try:
                        for job in jobs:
                            append(job)
                            if len(chunk) >= limit or time.monotonic() > linger:
                                break
                        else:
                            more = False
                    except Exception as exc:
                        # The iterable failed: the jobs it gave go out first.
                        failure, more = exc, False
                    if chunk:
                        try:
                            data = submit_packets(chunk, background=True, priority=priority)
                        except Exception as exc:
                            # The jobs before the bad one go out; the error waits for them.
                            failure, more = exc, False
                            chunk = _framed_prefix(chunk)
                            data = submit_packets(chunk, background=True, priority=priority)
                        tracker.submitted_many([job[0] for job in chunk], background=True)
                        # Counted before the send: a send cut off midway may have gone out.
                        sent += len(chunk)
                        self._send(index, link, data, None, what)
                if not more and sent == acknowledged:
                    break
                # Waiting only when there is nothing to send: else what gearmand has
                # acknowledged meanwhile is taken, and the next jobs are made.
                room = window - sent + acknowledged
                events = self._events(index, link, None, what, wait=not more or room < refill)
                for event in events:
                    if type(event) is JobCreated:
                        acknowledged += 1
                        if remember:
                            self._remember(event.handle, index)
                        yield event.handle
        except ServerUnavailable as exc:
            if not sent:
                raise
            ended = "is cut off" if sent > acknowledged else "stopped"
            raise ServerUnavailable(f"{what()} {ended}: {exc}") from exc
        except GeneratorExit:
            # Closed early: gearmand still acknowledges what was sent; read it (for a while),
            # so that closing the connection does not reset it under jobs it has not read.
            deadline = time.monotonic() + self.ack_timeout
            quiet = (GearmanTimeout, ServerError, ServerUnavailable, ProtocolError)
            with contextlib.suppress(*quiet):
                while tracker.awaiting_ack and not link.conn.closed:
                    self._events(index, link, deadline, what)
            raise
        finally:
            self._drop(index, link)
            self._streams.discard(link.conn)
        if failure is not None:
            raise failure

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
                what = _says(f"status of {handle}")
                self._send(index, link, packet, None, what)
                answer = None
                while answer is None:
                    for event in self._events(index, link, None, what):
                        if isinstance(event, StatusAnswered):
                            answer = event.status
            except (ServerUnavailable, GearmanTimeout) as exc:
                # The connection is closed already (_link, _send and _events close on failure).
                errors.append(str(exc))
                continue
            answered = True
            if answer.known:
                return answer
        if not answered:
            raise ServerUnavailable(f"cannot ask about job {handle}: " + "; ".join(errors))
        return JobStatus(handle, False, False, 0, 0)
