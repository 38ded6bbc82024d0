"""Gearman worker: CAN_DO / GRAB_JOB_UNIQ / PRE_SLEEP loop over several servers.

On each connection the worker first grabs with no function registered (the server answers
NO_JOB), and sends its CAN_DOs only then: a server that refuses GRAB_JOB_UNIQ with ERROR
(Perl's Gearman::Server has none) is asked with GRAB_JOB instead, and one that refuses both
cannot hand this worker jobs: :meth:`GearmanWorker.work` raises :class:`GrabRefused` rather
than idling. So a worker that a server lists with its functions is one that takes jobs.

One connection per server, all watched by one epoll together with a wake-up pipe, so
that :meth:`GearmanWorker.request_stop` (safe to call from a signal handler) ends an idle
wait at once while a running job still finishes and sends its result. A lost server is
reconnected with capped exponential backoff while the other servers keep being served.

A job that a client waits for costs the worker two waits, one read and two writes: woken
while asleep, it grabs at once and reads the server's NOOP together with the job (the
sockets are edge-triggered, so the unread NOOP does not end the next wait); it sends the
result with PRE_SLEEP (see ``_after_job``).

Writes never block: each server has its own outgoing buffer, written when epoll says the
socket is writable. A server that takes none of it for ``write_timeout`` seconds (stopped,
or reading nothing) is dropped and reconnected with backoff; the others are served meanwhile.

A handler's failure is sent as WORK_EXCEPTION when it carries data, else as WORK_FAIL.
gearmand 1.1 ends the job on WORK_EXCEPTION and answers a WORK_FAIL sent after it with
ERROR JOB_NOT_FOUND, so the worker never sends both. To clients that did not ask for
exceptions gearmand 1.1.20 forwards a WORK_FAIL whose handle carries a stray NUL byte;
libgearman clients (the C ``gearman`` tool among them) never match it and wait forever.
A worker serving such clients is made with ``exceptions=False``: a failure with data is
then sent as WORK_WARNING(data) followed by WORK_FAIL. To a server without GRAB_JOB_UNIQ
(Perl's), which has no WORK_WARNING and ends a job on WORK_FAIL only, a failure with data
goes as WORK_EXCEPTION(data) followed by WORK_FAIL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import selectors
import time
from collections.abc import Callable, Sequence

from .connection import Connection, ServerUnavailable, parse_address
from .protocol import Packet, PacketType, ProtocolError, function_name, request, trusted_request

__all__ = ["GearmanWorker", "GrabRefused", "WorkFailure", "WorkerJob"]

log = logging.getLogger(__name__)

_T = PacketType
_GRAB = request(_T.GRAB_JOB_UNIQ)
_GRAB_PLAIN = request(_T.GRAB_JOB)
_PRE_SLEEP = request(_T.PRE_SLEEP)
# Seconds to wait for gearmand to close its side after the worker's last result.
_CLOSE_LINGER = 1.0
# Seconds the worker spends at exit sending what its buffers still hold.
_CLOSE_FLUSH = 2.0
# Bytes a handler's progress packets may pile up for one server before the handler waits
# for the server to take them (or the server is dropped): memory stays bounded.
_MAX_BACKLOG = 4 * 1024 * 1024
# While grabbing after a job finds nothing, grab anyway after this many jobs to notice a
# backlog, twice as many after each such grab that finds nothing, up to _PROBE_MAX
# (see _after_job).
_PROBE_EVERY = 8
_PROBE_MAX = 128
# epoll flags. Server sockets are edge-triggered (each arrival of bytes is one event, bytes
# left unread raise none), so that a sleeping worker's wake-up can wait unread (see
# _wake_up); EPOLLRDHUP tells a closing peer from bytes. Every read drains the socket.
_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
_EDGE = select.EPOLLET | select.EPOLLRDHUP
_CLOSING = select.EPOLLERR | select.EPOLLHUP | select.EPOLLRDHUP
_READABLE = select.EPOLLIN | _CLOSING
# The packet types _handle and _run compare with, as module constants: an enum member
# looked up on its class costs about 100 ns a time, several times a job.
_WORK_COMPLETE = _T.WORK_COMPLETE
_JOB_ASSIGN_UNIQ = _T.JOB_ASSIGN_UNIQ
_JOB_ASSIGN = _T.JOB_ASSIGN
_NO_JOB = _T.NO_JOB
_NOOP = _T.NOOP
_ERROR = _T.ERROR
# A tuple, not ``bytes | bytearray | memoryview``: the union would be built at every job.
_BYTES_LIKE = (bytes, bytearray, memoryview)


class WorkFailure(Exception):
    """Raise in a handler to fail the job; ``data`` (when given) reaches the client as the
    WORK_EXCEPTION payload (as a WORK_WARNING for a worker made with ``exceptions=False``)."""

    def __init__(self, data: bytes | None = None) -> None:
        super().__init__(data)
        self.data = data


class GrabRefused(OSError):
    """A server refused both GRAB_JOB_UNIQ and GRAB_JOB: it cannot hand this worker jobs."""


class WorkerJob:
    """A job handed to a handler: its handle, function, unique id and data (bytes).

    The send_* methods report to the waiting client while the job runs; they raise
    ServerUnavailable when the server is gone.
    """

    __slots__ = ("_raw_handle", "_send", "data", "function", "handle", "unique")

    def __init__(
        self,
        send: Callable[[bytes], None],
        raw_handle: bytes,
        function: str,
        unique: str,
        data: bytes,
    ) -> None:
        self._send = send
        self._raw_handle = raw_handle
        self.handle = raw_handle.decode("utf-8", "surrogateescape")
        self.function = function
        self.unique = unique
        self.data = data

    def __repr__(self) -> str:
        return f"<WorkerJob {self.function!r} {self.handle} {len(self.data)} bytes>"

    def send_data(self, data: bytes) -> None:
        """Send a piece of partial result (WORK_DATA)."""
        self._send(request(_T.WORK_DATA, self._raw_handle, bytes(data)))

    def send_warning(self, data: bytes) -> None:
        """Send a warning (WORK_WARNING)."""
        self._send(request(_T.WORK_WARNING, self._raw_handle, bytes(data)))

    def send_status(self, numerator: int, denominator: int) -> None:
        """Report progress, ``numerator`` of ``denominator`` (WORK_STATUS)."""
        self._send(
            request(
                _T.WORK_STATUS,
                self._raw_handle,
                str(int(numerator)).encode(),
                str(int(denominator)).encode(),
            )
        )


Handler = Callable[[WorkerJob], bytes]


class _Server:
    """One server of the worker: its connection (None while away) and backoff state."""

    __slots__ = (
        "address",
        "candidate",
        "conn",
        "delay",
        "eager",
        "events",
        "fd",
        "flush_by",
        "grab",
        "host",
        "out",
        "port",
        "probe_every",
        "probe_in",
        "probed",
        "probing",
        "ready",
        "retry_at",
        "send_job",
        "sleeping",
    )

    def __init__(self, host: str, port: int, delay: float) -> None:
        self.host = host
        self.port = port
        self.address = Connection.format_address(host, port)
        self.conn: Connection | None = None
        # Which of the host's addresses the current connect goes to.
        self.candidate = 0
        self.delay = delay
        self.retry_at = 0.0
        self.sleeping = False
        # Grab right after a job (see GearmanWorker._after_job); ``probing`` while such a
        # grab awaits its answer; ``probe_in`` jobs to go before the next such grab while
        # not eager, ``probe_every`` jobs between two.
        self.eager = True
        self.probing = False
        self.probe_every = _PROBE_EVERY
        self.probe_in = _PROBE_EVERY
        # GRAB_JOB_UNIQ, or GRAB_JOB once the server refused it (kept across reconnects);
        # ``probed`` once the first grab of the connection, sent before any CAN_DO, is answered.
        self.grab = _GRAB
        self.probed = False
        # True once gearmand answered after our CAN_DOs, i.e. it has registered them.
        self.ready = False
        # What the socket did not take yet, the selector events watched, and by when the
        # server must take more of ``out`` before it is dropped.
        self.out = bytearray()
        self.events = 0
        self.flush_by = 0.0
        # The connection's socket in the poller (kept: a connection closed on an error
        # says -1), or -1.
        self.fd = -1
        # What the connection's jobs send their progress packets through (see _job_sender).
        self.send_job: Callable[[bytes], None] = _not_connected


def _not_connected(data: bytes) -> None:
    raise ServerUnavailable("not connected to gearmand")


def _deadline(server: _Server) -> float | None:
    """When the server needs attention without a socket event: its retry or connect
    deadline while away or connecting, its flush deadline while output waits, else None."""
    if server.conn is None or server.conn.connecting:
        return server.retry_at
    return server.flush_by if server.out else None


class GearmanWorker:
    """Run handlers for jobs from one or more gearmand servers ("host:port").

    ``client_id`` is sent with SET_CLIENT_ID (it shows in the admin ``workers`` list).
    ``exceptions`` chooses how a failure with data is reported (see the module docstring).
    ``write_timeout`` is how long a server may take none of what is sent to it before it
    is dropped and reconnected. ``on_registered`` is called once, in :meth:`work`, when every
    server has registered the functions. Handlers run one at a time in the thread that calls
    :meth:`work`.
    """

    def __init__(
        self,
        servers: Sequence[str],
        client_id: str | None = None,
        *,
        exceptions: bool = True,
        connect_timeout: float = 2.0,
        write_timeout: float = 10.0,
        backoff_start: float = 0.05,
        backoff_max: float = 2.0,
        on_registered: Callable[[], None] | None = None,
    ) -> None:
        if isinstance(servers, str):
            servers = [servers]
        if not servers:
            raise ValueError("no gearmand servers given; pass a list of 'host:port' strings")
        if client_id is not None and (not client_id or any(c.isspace() for c in client_id)):
            raise ValueError(
                f"client id {client_id!r} is empty or holds whitespace; gearmand's admin "
                "'workers' list separates fields by spaces"
            )
        self.client_id = client_id
        self.exceptions = exceptions
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        self._on_registered = on_registered
        self._servers = [_Server(*parse_address(s), backoff_start) for s in servers]
        self._handlers: dict[bytes, tuple[str, Handler]] = {}
        self._stop = False
        self._poller: select.epoll | None = None
        # The server of each socket in the poller.
        self._by_fd: dict[int, _Server] = {}
        # How many servers wait for a retry, a connect or a flush (zero on the hot path).
        self._timed = 0
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)

    def __repr__(self) -> str:
        return f"<GearmanWorker {[s.address for s in self._servers]} {self.functions()}>"

    def __enter__(self) -> GearmanWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def functions(self) -> list[str]:
        """The registered function names."""
        return [name for name, _ in self._handlers.values()]

    def register(self, function: str, handler: Handler) -> None:
        """Run ``handler`` for jobs of ``function`` (CAN_DO on every connected server).

        Raises ValueError on an empty function name or one holding NUL.
        """
        raw = function_name(function)
        self._handlers[raw] = (function, handler)
        for server in self._servers:
            if server.conn is not None and not server.conn.connecting:
                self._send(server, request(_T.CAN_DO, raw))

    def registered_on(self) -> list[str]:
        """Addresses of the servers that have acknowledged this worker's functions."""
        return [s.address for s in self._servers if s.ready and s.conn is not None]

    def sleeping_on(self) -> list[str]:
        """Addresses of the servers this worker has told PRE_SLEEP and that have not woken it
        since: it waits there for a NOOP, with no job of theirs in hand."""
        return [s.address for s in self._servers if s.sleeping and s.conn is not None]

    def request_stop(self) -> None:
        """Make :meth:`work` return: at once when idle, after the current job otherwise.

        Only sets a flag and writes one byte to a pipe, so a signal handler may call it.
        """
        self._stop = True
        # OSError: the pipe is full (a wake-up is pending anyway) or closed by close().
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"\0")

    def close(self) -> None:
        """Close the connections and the wake-up pipe, once :meth:`work` has returned.
        Idempotent."""
        self._disconnect_all()
        for fd in (self._wake_read, self._wake_write):
            if fd >= 0:
                os.close(fd)
        self._wake_read = self._wake_write = -1

    def work(self) -> None:
        """Serve jobs until :meth:`request_stop`; then close the connections and return.

        Raises RuntimeError when no function is registered or the worker was closed.
        """
        if not self._handlers:
            raise RuntimeError("register at least one function before calling work()")
        if self._wake_read < 0:
            raise RuntimeError("this worker is closed; create a new one")
        poller = select.epoll()
        self._poller = poller
        wake = self._wake_read
        # Level-triggered: the pipe is drained at every event anyway.
        poller.register(wake, _IN)
        by_fd = self._by_fd
        # select.epoll, not the selectors module: its wrapper is Python run twice a job.
        poll = poller.poll
        most = len(self._servers) + 1
        try:
            for server in self._servers:
                self._connect(server)
            while not self._stop:
                for fd, mask in poll(self._timer_timeout() if self._timed else -1, most):
                    if self._stop:
                        break
                    peer = by_fd.get(fd)
                    if peer is None:
                        if fd == wake:
                            self._drain_wakeups()
                        continue  # a socket dropped while this batch was handled
                    if mask == _IN and peer.sleeping:
                        self._wake_up(peer)
                        continue
                    if mask & _OUT and peer.out:
                        self._flush(peer)
                    if mask & _READABLE or peer.events == _OUT:
                        conn = peer.conn
                        self._service(peer)
                        # A peer's close is one event, and a read that took its last bytes
                        # stops short of the end: read on to it.
                        if (
                            mask & _CLOSING
                            and not self._stop
                            and conn is not None
                            and peer.conn is conn
                        ):
                            self._service(peer)
                if self._timed:
                    self._timers_due()
            self._flush_all(time.monotonic() + _CLOSE_FLUSH)
        finally:
            self._disconnect_all()
            self._poller = None
            self._by_fd.clear()
            poller.close()

    # -- connections ------------------------------------------------------------------
    #
    # A server is away (no connection, ``retry_at`` is when to try again), connecting
    # (``retry_at`` is the connect deadline) or connected. Connects never block: the
    # socket joins the selector and the hello goes out once it turns writable.

    def _connect(
        self, server: _Server, candidate: int = 0, cause: BaseException | None = None
    ) -> None:
        """Start connecting to the ``candidate``-th address; ``cause`` is why the previous
        address failed (reported instead of "no such address" when none is left)."""
        try:
            conn = Connection(server.host, server.port, wait=False, candidate=candidate)
        except ServerUnavailable as exc:
            self._schedule_retry(server, cause or exc)
            return
        server.conn = conn
        server.candidate = candidate
        server.retry_at = time.monotonic() + self.connect_timeout
        assert self._poller is not None
        fd = server.fd = conn.fileno()
        self._poller.register(fd, _OUT | _EDGE)
        self._by_fd[fd] = server
        server.events = _OUT
        self._count_timed()

    def _connected(self, server: _Server, conn: Connection) -> None:
        hello = []
        if self.client_id is not None:
            hello.append(request(_T.SET_CLIENT_ID, self.client_id.encode("utf-8")))
        # The probe (see the module docstring): the CAN_DOs follow its answer.
        hello.append(server.grab)
        try:
            conn.finish_connect()
        except ServerUnavailable as exc:
            self._drop(server)
            # The host may have more addresses (IPv6 and IPv4): try the next one at once.
            self._connect(server, server.candidate + 1, exc)
            return
        self._watch(server, _IN)
        server.send_job = self._job_sender(server, conn)
        server.sleeping = False
        server.probing = False
        server.eager = True
        server.ready = False
        server.probed = False
        self._count_timed()
        log.debug("connected to gearmand at %s", server.address)
        self._send(server, b"".join(hello))

    def _drop(self, server: _Server, linger: float = 0.0) -> None:
        """Forget the server's connection and close it (with ``linger``, see
        Connection.close, unless it is still connecting or output was left unsent)."""
        conn, server.conn = server.conn, None
        server.ready = False
        unsent = bool(server.out)
        server.out.clear()
        server.events = 0
        server.send_job = _not_connected
        fd, server.fd = server.fd, -1
        if self._by_fd.pop(fd, None) is not None and self._poller is not None:
            # OSError: the connection closed its socket on an error (epoll forgot it then).
            with contextlib.suppress(OSError):
                self._poller.unregister(fd)
        if conn is not None:
            conn.close(linger=0.0 if conn.connecting or unsent else linger)

    def _lost(self, server: _Server, exc: BaseException) -> None:
        self._drop(server)
        self._schedule_retry(server, exc)

    def _schedule_retry(self, server: _Server, exc: BaseException) -> None:
        server.retry_at = time.monotonic() + server.delay
        log.warning(
            "gearmand at %s unavailable (%s); retry in %.2f s", server.address, exc, server.delay
        )
        server.delay = min(server.delay * 2, self.backoff_max)
        self._count_timed()

    def _count_timed(self) -> None:
        self._timed = sum(1 for s in self._servers if _deadline(s) is not None)

    def _timer_timeout(self) -> float:
        due = min(d for d in map(_deadline, self._servers) if d is not None)
        return max(due - time.monotonic(), 0.0)

    def _timers_due(self) -> None:
        now = time.monotonic()
        for server in self._servers:
            due = _deadline(server)
            if self._stop or due is None or due > now:
                continue
            if server.conn is None:
                self._connect(server)
            elif server.conn.connecting:
                self._drop(server)
                self._schedule_retry(
                    server, TimeoutError(f"no connection within {self.connect_timeout:g} s")
                )
            else:
                self._lost(
                    server,
                    TimeoutError(
                        f"it took none of {len(server.out)} bytes to send within "
                        f"{self.write_timeout:g} s (stopped or overloaded)"
                    ),
                )

    # -- sending ----------------------------------------------------------------------
    #
    # Nothing waits for a socket to take bytes: what it does not take at once waits in the
    # server's buffer, written when epoll says the socket is writable (see work()).

    def _watch(self, server: _Server, events: int) -> None:
        if events != server.events and server.conn is not None and self._poller is not None:
            self._poller.modify(server.fd, events | _EDGE)
            server.events = events

    def _send(self, server: _Server, data: bytes) -> bool:
        """Send to the server without waiting; what the socket does not take is sent later.
        False (the server dropped, and scheduled for a reconnect) when it is lost."""
        conn = server.conn
        if conn is None:
            return False
        if server.out:
            server.out += data
            return True
        try:
            sent = conn.send_some(data)
        except ServerUnavailable as exc:
            self._lost(server, exc)
            return False
        if sent < len(data):
            server.out += memoryview(data)[sent:]
            server.flush_by = time.monotonic() + self.write_timeout
            self._watch(server, _IN | _OUT)
            self._count_timed()
        return True

    def _flush(self, server: _Server) -> None:
        """Write what the socket takes of the server's buffer; the deadline moves on with
        every byte taken."""
        conn = server.conn
        if conn is None:
            return
        try:
            sent = conn.send_some(server.out)
        except ServerUnavailable as exc:
            self._lost(server, exc)
            return
        if sent:
            del server.out[:sent]
            server.flush_by = time.monotonic() + self.write_timeout
        if not server.out:
            self._watch(server, _IN)
            self._count_timed()

    def _job_sender(self, server: _Server, conn: Connection) -> Callable[[bytes], None]:
        """What a running job's progress packets go through: the server's buffer, and a
        wait for the server to take it when it grows past _MAX_BACKLOG (a handler runs in
        this thread, so nothing else is served meanwhile anyway). Raises ServerUnavailable
        once the server is gone."""

        def send(data: bytes) -> None:
            if server.conn is not conn or not self._send(server, data):
                raise ServerUnavailable(f"lost the connection to gearmand at {server.address}")
            if len(server.out) <= _MAX_BACKLOG:
                return  # the usual case: no waiting, no selector of its own
            with selectors.DefaultSelector() as waiter:
                waiter.register(conn, selectors.EVENT_WRITE)
                while len(server.out) > _MAX_BACKLOG:
                    if not waiter.select(max(server.flush_by - time.monotonic(), 0.0)):
                        self._lost(server, TimeoutError("a job's progress packets piled up"))
                        raise ServerUnavailable(
                            f"gearmand at {server.address} took none of a job's progress "
                            f"packets within {self.write_timeout:g} s"
                        )
                    self._flush(server)
                    if server.conn is not conn:
                        raise ServerUnavailable(
                            f"lost the connection to gearmand at {server.address}"
                        )

        return send

    def _flush_all(self, deadline: float) -> None:
        """At exit: send what the buffers hold, until ``deadline`` at the latest. Waits for
        writability alone: a readable socket or the wake-up pipe must not make it spin."""
        while True:
            pending = [(s, s.conn) for s in self._servers if s.out and s.conn is not None]
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                return
            with selectors.DefaultSelector() as waiter:
                for server, conn in pending:
                    waiter.register(conn, selectors.EVENT_WRITE, server)
                ready = waiter.select(remaining)
            for key, _ in ready:
                self._flush(key.data)

    def _disconnect_all(self) -> None:
        # One linger for all: a stopped server must not hold up the exit once per server.
        deadline = time.monotonic() + _CLOSE_LINGER
        for server in self._servers:
            # Half-close and wait for gearmand to close: the last result sent is then
            # surely read by the server before the socket goes away.
            self._drop(server, linger=max(deadline - time.monotonic(), 1e-3))

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_read, 512):
                pass
        except BlockingIOError:
            pass

    # -- packets ----------------------------------------------------------------------

    def _service(self, server: _Server) -> None:
        conn = server.conn
        if conn is None:
            return
        if conn.connecting:
            self._connected(server, conn)
            return
        try:
            for packet in conn.receive():
                self._handle(server, packet)
                if self._stop or server.conn is None:
                    return
        except (ServerUnavailable, ProtocolError) as exc:
            self._lost(server, exc)

    def _handle(self, server: _Server, packet: Packet) -> None:
        kind = packet.type
        if kind is _JOB_ASSIGN_UNIQ or kind is _JOB_ASSIGN:
            if not server.probed:
                # A function registered while the probe was out was sent at once and got
                # the probe a job: the others still need their CAN_DOs.
                server.probed = True
                self._send(server, self._abilities())
            self._confirmed(server)
            if server.probing:
                server.eager = True
            reply = self._run(server.send_job, packet, legacy=server.grab is _GRAB_PLAIN)
            self._send(server, reply if self._stop else reply + self._after_job(server))
        elif kind is _NO_JOB and not server.probed:
            server.probed = True
            self._send(server, self._abilities() + server.grab)
        elif kind is _NO_JOB:
            self._confirmed(server)
            if server.probing:
                server.probe_every = (
                    _PROBE_EVERY if server.eager else min(server.probe_every * 2, _PROBE_MAX)
                )
                server.probe_in = server.probe_every
                server.eager = False
            server.probing = False
            server.sleeping = True
            self._send(server, _PRE_SLEEP)
        elif kind is _NOOP:
            if server.sleeping:
                self._wake_up(server)
        elif kind is _ERROR:
            code = packet.args[0].decode("utf-8", "replace")
            message = packet.args[1].decode("utf-8", "replace")
            if server.probed:
                log.warning("gearmand at %s reported %s: %s", server.address, code, message)
            elif server.grab is _GRAB:
                # An ERROR before the probe is answered refuses the probe: the server has no
                # GRAB_JOB_UNIQ (Perl's Gearman::Server). Jobs then come without unique ids.
                log.info(
                    "gearmand at %s refused GRAB_JOB_UNIQ (%s: %s); using GRAB_JOB",
                    server.address,
                    code,
                    message,
                )
                server.grab = _GRAB_PLAIN
                self._send(server, _GRAB_PLAIN)
            else:
                raise GrabRefused(
                    f"gearmand at {server.address} refused GRAB_JOB_UNIQ and GRAB_JOB "
                    f"({code}: {message}): it cannot hand jobs to this worker; use a Gearman "
                    "server that implements the worker protocol"
                )
        else:
            raise ProtocolError(f"unexpected {kind.name} from gearmand at {server.address}")

    def _wake_up(self, server: _Server) -> None:
        """A sleeping worker woken by the server: grab.

        The work loop calls this on bytes from a sleeping server without reading them: all
        a server sends a sleeping worker is NOOP, so the grab goes out at once and the NOOP
        is read with the answer to the grab, in one read after one wait (the socket is
        edge-triggered, so the unread NOOP does not end the wait). An ERROR or a close is
        read then too; a close that came with the bytes is read at once (EPOLLRDHUP).
        """
        server.sleeping = False
        server.probing = False
        self._send(server, server.grab)

    def _abilities(self) -> bytes:
        return b"".join(request(_T.CAN_DO, raw) for raw in self._handlers)

    def _after_job(self, server: _Server) -> bytes:
        """What to send with a job's result: GRAB_JOB_UNIQ, or PRE_SLEEP straight away.

        When jobs queue up, grabbing at once saves a round trip. When they come one at a
        time (a client waiting for each result), the grab only earns NO_JOB and then
        PRE_SLEEP costs another exchange: sleeping at once halves the packets per job.
        gearmand answers PRE_SLEEP with NOOP at once when a job is waiting, so nothing is
        missed either way. The choice follows what the last grab after a job found; while
        they find nothing, they come ever more rarely (each costs an exchange).
        """
        server.probe_in -= 1
        if server.eager or server.probe_in <= 0:
            server.probing = True
            server.sleeping = False
            return server.grab
        server.probing = False
        server.sleeping = True
        return _PRE_SLEEP

    def _confirmed(self, server: _Server) -> None:
        if not server.ready:
            server.ready = True
            server.delay = self.backoff_start
            if self._on_registered is not None and len(self.registered_on()) == len(self._servers):
                call, self._on_registered = self._on_registered, None
                call()

    def _run(self, send: Callable[[bytes], None], packet: Packet, *, legacy: bool = False) -> bytes:
        """Run the job's handler and return the packet that reports its outcome; the job's
        progress packets go through ``send``; ``legacy`` for a server without
        GRAB_JOB_UNIQ (see _failure)."""
        if packet.type is _JOB_ASSIGN:
            (raw_handle, raw_function, data), raw_unique = packet.args, b""
        else:
            raw_handle, raw_function, raw_unique, data = packet.args
        entry = self._handlers.get(raw_function)
        function = entry[0] if entry else raw_function.decode("utf-8", "surrogateescape")
        job = WorkerJob(
            send, raw_handle, function, raw_unique.decode("utf-8", "surrogateescape"), data
        )
        try:
            if entry is None:
                raise WorkFailure(f"no handler registered for function {function!r}".encode())
            result = entry[1](job)
            if not isinstance(result, _BYTES_LIKE):
                raise WorkFailure(
                    f"handler for {function!r} returned {type(result).__name__}, "
                    "expected bytes".encode()
                )
            # The handle came from the server split at NUL, the result is opaque: no checks.
            return trusted_request(_WORK_COMPLETE, raw_handle, bytes(result))
        except WorkFailure as failure:
            return self._failure(raw_handle, failure.data, legacy)
        except Exception as exc:
            log.exception("job %s (%s) raised", job.handle, function)
            return self._failure(raw_handle, repr(exc).encode("utf-8", "replace"), legacy)

    def _failure(self, raw_handle: bytes, data: bytes | None, legacy: bool = False) -> bytes:
        if not data:
            return request(_T.WORK_FAIL, raw_handle)
        if legacy:
            # A server of the older protocol (Perl's Gearman::Server) has no WORK_WARNING,
            # relays WORK_EXCEPTION to the clients that asked for exceptions and ends the job
            # on the WORK_FAIL after it.
            return request(_T.WORK_EXCEPTION, raw_handle, bytes(data)) + request(
                _T.WORK_FAIL, raw_handle
            )
        if self.exceptions:
            return request(_T.WORK_EXCEPTION, raw_handle, bytes(data))
        return request(_T.WORK_WARNING, raw_handle, bytes(data)) + request(_T.WORK_FAIL, raw_handle)
