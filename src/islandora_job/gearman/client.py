"""Gearman client: SUBMIT_JOB*, many jobs in flight for batches, GET_STATUS, failover.

A client holds at most one connection per server and submits on the first server of its
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
from collections.abc import Sequence
from dataclasses import dataclass, field

from .connection import Connection, ServerUnavailable, parse_address
from .protocol import Packet, PacketType, ProtocolError, request

__all__ = [
    "GearmanClient",
    "GearmanTimeout",
    "JobResult",
    "JobStatus",
    "Priority",
    "ServerError",
    "ServerUnavailable",
]

_T = PacketType
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
# Background handles remembered for get_status(); old ones are forgotten first.
_MAX_REMEMBERED_HANDLES = 100_000


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


@dataclass
class JobStatus:
    """A GET_STATUS answer: whether the server knows the job, whether it runs, its progress."""

    handle: str
    known: bool
    running: bool
    numerator: int
    denominator: int


def _apply(result: JobResult, packet: Packet) -> bool:
    """Record one WORK_* packet in ``result``; True when it ended the job."""
    kind = packet.type
    if kind is _T.WORK_COMPLETE:
        result.status = "complete"
        result.data = packet.args[1]
        return True
    if kind is _T.WORK_EXCEPTION:
        # gearmand 1.1 ends the job with WORK_EXCEPTION (a WORK_FAIL sent after it is
        # refused); older servers forward a WORK_FAIL too, which then finds no job here.
        result.status = "exception"
        result.exception = packet.args[1]
        return True
    if kind is _T.WORK_FAIL:
        result.status = "fail"
        return True
    if kind is _T.WORK_DATA:
        result.partial.append(packet.args[1])
    elif kind is _T.WORK_WARNING:
        result.warnings.append(packet.args[1])
    else:
        result.progress.append((_number(packet.args[1]), _number(packet.args[2])))
    return False


def _number(raw: bytes) -> int:
    text = raw.rstrip(b"\0")
    if not text:
        # Perl's Gearman::Server sends empty numbers for a job that reported no progress.
        return 0
    if not text.isdigit():
        raise ProtocolError(f"expected a number from gearmand, got {raw!r}")
    return int(text)


def _handle(raw: bytes) -> str:
    # gearmand counts a C string's terminating NUL into some handle arguments (WORK_FAIL).
    return raw.rstrip(b"\0").decode("utf-8", "surrogateescape")


def _name(function: str) -> bytes:
    if not function or "\0" in function:
        raise ValueError(
            f"function name {function!r} is empty or contains a NUL byte; Gearman function "
            "names must be non-empty and NUL-free"
        )
    return function.encode("utf-8", "surrogateescape")


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


def _payload(data: bytes) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"job data must be bytes, not {type(data).__name__}; encode it first")
    return bytes(data)


class GearmanClient:
    """Submit jobs to a list of gearmand servers ("host:port", port defaulting to 4730).

    ``connect_timeout`` bounds each connect; ``ack_timeout`` bounds each wait for gearmand
    to acknowledge a request (JOB_CREATED, STATUS_RES, OPTION_RES). A new connection goes
    to the first server of the list that accepts it. Methods raise ServerUnavailable when no server can be reached or the server is lost
    while a job runs, GearmanTimeout when an answer does not come in time, ServerError on a
    gearmand ERROR packet and ProtocolError on malformed bytes.
    """

    def __init__(
        self,
        servers: Sequence[str],
        connect_timeout: float = 5.0,
        *,
        ack_timeout: float = 30.0,
    ) -> None:
        if isinstance(servers, str):
            servers = [servers]
        if not servers:
            raise ValueError("no gearmand servers given; pass a list of 'host:port' strings")
        self._addresses = [parse_address(server) for server in servers]
        self.servers = [Connection.format_address(*address) for address in self._addresses]
        self.connect_timeout = connect_timeout
        self.ack_timeout = ack_timeout
        self._conns: dict[int, Connection] = {}
        self._current: int | None = None
        self._handle_servers: OrderedDict[str, int] = OrderedDict()

    def __repr__(self) -> str:
        return f"<GearmanClient {self.servers}>"

    def close(self) -> None:
        """Close every connection (a later call opens new ones)."""
        for index in list(self._conns):
            self._drop(index)

    def __enter__(self) -> GearmanClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- connections ------------------------------------------------------------------

    def _server_conn(self, index: int) -> Connection:
        conn = self._conns.get(index)
        if conn is not None and not conn.closed:
            return conn
        host, port = self._addresses[index]
        conn = Connection(host, port, self.connect_timeout)
        try:
            conn.send(request(_T.OPTION_REQ, b"exceptions"))
            reply = conn.read_packet(self.ack_timeout)
        except (TimeoutError, ProtocolError) as exc:
            conn.close()
            raise ServerUnavailable(
                f"gearmand at {conn.address} did not answer OPTION_REQ: {exc}"
            ) from exc
        if reply.type is not _T.OPTION_RES:
            conn.close()
            raise ServerUnavailable(
                f"gearmand at {conn.address} answered OPTION_REQ exceptions with "
                f"{reply.type.name} {reply.args!r}"
            )
        self._conns[index] = conn
        return conn

    def _submit_conn(self) -> tuple[int, Connection]:
        index = self._current
        if index is not None:
            conn = self._conns.get(index)
            if conn is not None and not conn.closed:
                return index, conn
        errors = []
        for index in range(len(self._addresses)):
            try:
                conn = self._server_conn(index)
            except ServerUnavailable as exc:
                errors.append(str(exc))
                continue
            self._current = index
            return index, conn
        raise ServerUnavailable("no gearmand server reachable: " + "; ".join(errors))

    def _drop(self, index: int) -> None:
        conn = self._conns.pop(index, None)
        if conn is not None:
            conn.close()
        if self._current == index:
            self._current = None

    def _read(
        self,
        index: int,
        conn: Connection,
        deadline: float | None,
        waiting_for: str,
        handles: Sequence[str] = (),
        *,
        ack: bool = False,
    ) -> Packet:
        """Read the next packet before ``deadline``; an acknowledgement (``ack``) must also
        come within ``ack_timeout``. Closes the connection on any failure."""
        while True:
            if deadline is None:
                # Always the same value: the socket's timeout is then never changed.
                timeout = self.ack_timeout
            else:
                timeout = max(deadline - time.monotonic(), 0.0)
                if ack:
                    timeout = min(timeout, self.ack_timeout)
            try:
                packet: Packet = conn.read_packet(timeout)
            except TimeoutError:
                if deadline is None and not ack:
                    continue
                self._drop(index)
                raise GearmanTimeout(
                    f"{waiting_for}: no answer from gearmand at {conn.address} "
                    f"within {timeout:g} s",
                    handles,
                ) from None
            except (ServerUnavailable, ProtocolError):
                self._drop(index)
                raise
            if packet.type is _T.ERROR:
                self._drop(index)
                raise ServerError(
                    conn.address,
                    packet.args[0].decode("utf-8", "replace"),
                    packet.args[1].decode("utf-8", "replace"),
                )
            return packet

    def _send_first(
        self, data: bytes, deadline: float | None, what: str
    ) -> tuple[int, Connection, Packet]:
        """Send submit packets and return the first JOB_CREATED; retry once on a fresh
        connection when the server is lost before it acknowledged anything."""
        for attempt in (0, 1):
            index, conn = self._submit_conn()
            try:
                conn.send(data)
                while True:
                    packet = self._read(index, conn, deadline, what, ack=True)
                    if packet.type is _T.JOB_CREATED:
                        return index, conn, packet
                    self._check_stray(index, conn, packet)
            except ServerUnavailable:
                self._drop(index)
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_stray(self, index: int, conn: Connection, packet: Packet) -> None:
        """Accept a WORK_* packet of a job this call does not wait for; refuse anything else."""
        if packet.type not in _WORK_TYPES:
            self._drop(index)
            raise ProtocolError(f"unexpected {packet.type.name} from gearmand at {conn.address}")

    def _remember(self, handle: str, index: int) -> None:
        handles = self._handle_servers
        handles[handle] = index
        if len(handles) > _MAX_REMEMBERED_HANDLES:
            handles.popitem(last=False)

    # -- submits ----------------------------------------------------------------------

    def submit(
        self,
        function: str,
        data: bytes,
        *,
        unique: str | None = None,
        priority: Priority = Priority.NORMAL,
        timeout: float | None = None,
    ) -> JobResult:
        """Run a job in the foreground and return its result once it ended.

        ``timeout`` (seconds) bounds the whole call; GearmanTimeout when it runs out.
        """
        packet = request(_FOREGROUND[priority], _name(function), _unique(unique), _payload(data))
        deadline = None if timeout is None else time.monotonic() + timeout
        what = f"job {function!r}"
        index, conn, created = self._send_first(packet, deadline, what)
        handle = created.args[0].rstrip(b"\0")
        result = JobResult(_handle(handle), function)
        what = f"job {function!r} ({result.handle})"
        try:
            while True:
                packet_in = self._read(index, conn, deadline, what, (result.handle,))
                if packet_in.type in _WORK_TYPES:
                    if packet_in.args[0].rstrip(b"\0") == handle and _apply(result, packet_in):
                        return result
                else:
                    self._check_stray(index, conn, packet_in)
        except ServerUnavailable as exc:
            raise ServerUnavailable(f"{what} is lost: {exc}") from exc

    def submit_background(
        self,
        function: str,
        data: bytes,
        *,
        unique: str | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> str:
        """Queue a job and return its handle (``H:host:N``) at once."""
        packet = request(_BACKGROUND[priority], _name(function), _unique(unique), _payload(data))
        index, _conn, created = self._send_first(packet, None, f"background job {function!r}")
        handle = _handle(created.args[0])
        self._remember(handle, index)
        return handle

    def submit_many(
        self, jobs: Sequence[tuple[str, bytes]], *, timeout: float | None = None
    ) -> list[JobResult]:
        """Run foreground jobs all at once on one connection; results in input order.

        ``timeout`` bounds the whole call; GearmanTimeout names how many jobs had not ended.
        """
        if not jobs:
            return []
        data = b"".join(
            request(_T.SUBMIT_JOB, _name(function), _unique(None), _payload(payload))
            for function, payload in jobs
        )
        deadline = None if timeout is None else time.monotonic() + timeout
        what = f"batch of {len(jobs)} jobs"
        index, conn, packet = self._send_first(data, deadline, what)
        results: list[JobResult] = []
        running: dict[bytes, JobResult] = {}
        try:
            while True:
                if packet.type is _T.JOB_CREATED:
                    if len(results) == len(jobs):
                        self._drop(index)
                        raise ProtocolError(f"more JOB_CREATED than jobs from {conn.address}")
                    result = JobResult(_handle(packet.args[0]), jobs[len(results)][0])
                    results.append(result)
                    running[packet.args[0].rstrip(b"\0")] = result
                elif packet.type in _WORK_TYPES:
                    key = packet.args[0].rstrip(b"\0")
                    result_for = running.get(key)
                    if result_for is not None and _apply(result_for, packet):
                        del running[key]
                else:
                    self._check_stray(index, conn, packet)
                if not running and len(results) == len(jobs):
                    return results
                waiting = len(running) + len(jobs) - len(results)
                packet = self._read(
                    index,
                    conn,
                    deadline,
                    f"{what} ({waiting} not ended)",
                    [r.handle for r in results if r.status == "pending"],
                )
        except ServerUnavailable as exc:
            raise ServerUnavailable(f"{what} is lost: {exc}") from exc

    def submit_background_many(
        self, jobs: Sequence[tuple[str, bytes]], *, priority: Priority = Priority.NORMAL
    ) -> list[str]:
        """Queue many jobs with one write; return their handles in input order."""
        if not jobs:
            return []
        kind = _BACKGROUND[priority]
        data = b"".join(
            request(kind, _name(function), _unique(None), _payload(payload))
            for function, payload in jobs
        )
        what = f"{len(jobs)} background jobs"
        index, conn, packet = self._send_first(data, None, what)
        handles = [_handle(packet.args[0])]
        while len(handles) < len(jobs):
            packet = self._read(index, conn, None, what, ack=True)
            if packet.type is _T.JOB_CREATED:
                handles.append(_handle(packet.args[0]))
            else:
                self._check_stray(index, conn, packet)
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
                conn = self._server_conn(index)
                conn.send(packet)
                while True:
                    reply = self._read(index, conn, None, f"status of {handle}", ack=True)
                    if reply.type is _T.STATUS_RES and reply.args[0].rstrip(b"\0") == raw:
                        break
                    self._check_stray(index, conn, reply)
            except ServerUnavailable as exc:
                self._drop(index)
                errors.append(str(exc))
                continue
            answered = True
            status = JobStatus(
                handle,
                reply.args[1].rstrip(b"\0") == b"1",
                reply.args[2].rstrip(b"\0") == b"1",
                _number(reply.args[3]),
                _number(reply.args[4]),
            )
            if status.known:
                return status
        if not answered:
            raise ServerUnavailable(f"cannot ask about job {handle}: " + "; ".join(errors))
        return JobStatus(handle, False, False, 0, 0)
