"""The Gearman server as a sans-I/O state machine: bytes in from connections, bytes out to
connections. No sockets, no clock of its own (time is passed in).

The I/O layer calls :meth:`ServerState.connect`, :meth:`~ServerState.receive`,
:meth:`~ServerState.disconnect` and :meth:`~ServerState.tick`; after each it sends what
:meth:`~ServerState.take_output` returns and closes the connections in
:attr:`~ServerState.closing` once their output is written. Every change of a job's state
happens in one place: ``_queue`` (a job waits), ``_assign`` (a worker has it), ``_requeue``
(its worker is gone or too slow) and ``_finish`` (it is over).

Behaviour follows gearmand 1.1.20 as measured, with these differences: a client that did not
ask for exceptions gets a clean ``WORK_FAIL`` where gearmand sends one whose handle carries a
stray NUL byte (libgearman clients never match that one); ``SUBMIT_REDUCE_JOB*``,
``SUBMIT_JOB_SCHED`` and ``SET_WORKER_LOAD`` are answered ``ERROR INVALID_COMMAND`` (gearmand
closes the connection on the last); ``shutdown`` works as it did before gearmand 1.1.15.
"""

from __future__ import annotations

import functools
import heapq
import logging
from collections import deque
from collections.abc import Callable

from islandora_job.gearman.protocol import (
    HEADER_SIZE,
    MAX_PACKET_SIZE,
    Magic,
    PacketDecoder,
    PacketType,
    ProtocolError,
    response,
)
from islandora_job.server import commands
from islandora_job.server.commands import AdminCommand, AdminSyntaxError, QueuedJob
from islandora_job.server.store import JobStore, StoreError

__all__ = ["VERSION", "QueuedJob", "ServerState"]

log = logging.getLogger(__name__)

#: What admin ``version`` answers: gearmand's version (clients compare it), marked as ours.
VERSION = b"1.1.20+islandora-job-embedded"

_T = PacketType
HIGH, NORMAL, LOW = 0, 1, 2
# SUBMIT_* type -> (priority, background, takes a run time)
_SUBMITS: dict[PacketType, tuple[int, bool, bool]] = {
    _T.SUBMIT_JOB: (NORMAL, False, False),
    _T.SUBMIT_JOB_HIGH: (HIGH, False, False),
    _T.SUBMIT_JOB_LOW: (LOW, False, False),
    _T.SUBMIT_JOB_BG: (NORMAL, True, False),
    _T.SUBMIT_JOB_HIGH_BG: (HIGH, True, False),
    _T.SUBMIT_JOB_LOW_BG: (LOW, True, False),
    _T.SUBMIT_JOB_EPOCH: (NORMAL, True, True),
}
_NOOP = response(_T.NOOP)
_NO_JOB = response(_T.NO_JOB)
_NOT_FOUND = response(_T.ERROR, b"JOB_NOT_FOUND", b"Job given in work result not found")
_NOT_EXPECTED = response(_T.ERROR, b"INVALID_COMMAND", b"Command not expected")
_BAD_MAGIC = response(_T.ERROR, b"INVALID_MAGIC", b"Request magic expected")
_QUEUE_FULL = response(_T.ERROR, b"QUEUE_ERROR", b"Job queue is full")
_UNKNOWN_OPTION = response(_T.ERROR, b"UNKNOWN_OPTION", b"Server does not recognize given option")
#: Longest admin line accepted without its line end.
MAX_LINE = 64 * 1024


class _Job:
    __slots__ = (
        "background",
        "clients",
        "data",
        "deadline",
        "denominator",
        "function",
        "handle",
        "ignore",
        "numerator",
        "priority",
        "retries",
        "store_key",
        "unique",
        "when",
        "worker",
    )

    def __init__(
        self,
        handle: bytes,
        function: _Function,
        unique: bytes,
        data: bytes,
        priority: int,
        background: bool,
        when: int,
    ) -> None:
        self.handle = handle
        self.function = function
        self.unique = unique
        self.data = data
        self.priority = priority
        self.background = background
        self.when = when
        self.clients: list[int] = []
        self.worker: int | None = None
        self.retries = 0
        self.ignore = False
        self.numerator = b"0"
        self.denominator = b"0"
        self.store_key: int | None = None
        self.deadline = 0.0


class _Function:
    __slots__ = ("held", "max_queue", "name", "queues", "running", "total", "workers")

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.queues: tuple[deque[_Job], deque[_Job], deque[_Job]] = (deque(), deque(), deque())
        # Connection ids of the workers that can do it, in the order they said so.
        self.workers: dict[int, None] = {}
        self.running = 0
        # Jobs known (waiting, running, or ignored but not yet dropped), as gearmand counts.
        self.total = 0
        # Per priority; 0 is "no limit".
        self.max_queue = [0, 0, 0]
        self.held = False


class _Conn:
    __slots__ = (
        "abilities",
        "buffer",
        "client_id",
        "decoder",
        "exceptions",
        "id",
        "need",
        "peer",
        "sleeping",
        "waiting",
        "working",
    )

    def __init__(self, conn_id: int, peer: str, max_size: int) -> None:
        self.id = conn_id
        self.peer = peer
        self.client_id = b"-"
        # Function name -> CAN_DO_TIMEOUT seconds (0: none), in CAN_DO order.
        self.abilities: dict[bytes, int] = {}
        self.sleeping = False
        self.exceptions = False
        self.working: dict[bytes, _Job] = {}
        self.waiting: dict[bytes, _Job] = {}
        self.buffer = bytearray()
        # Bytes the buffer must hold before another parse can complete something.
        self.need = 0
        self.decoder = PacketDecoder(max_size=max_size)


class ServerState:
    """Everything a Gearman server knows, changed only by the calls of the I/O layer.

    ``store`` keeps background jobs across restarts (None: in memory); jobs it holds are
    queued again at construction. ``job_retries`` is gearmand's ``--job-retries`` (0: retry
    forever). ``clock`` gives the time in seconds for epoch jobs and CAN_DO_TIMEOUT; it is
    read only inside calls, never on its own. Raises whatever the store raises on loading.
    """

    def __init__(
        self,
        hostname: str,
        pid: int,
        *,
        job_retries: int = 0,
        store: JobStore | None = None,
        clock: Callable[[], float],
        max_packet_size: int = MAX_PACKET_SIZE,
    ) -> None:
        self.hostname = hostname.encode("utf-8", "surrogateescape")
        self.pid = pid
        self.job_retries = job_retries
        self.store = store
        self.clock = clock
        self.max_packet_size = max_packet_size
        #: Connections to close as soon as their pending output is written.
        self.closing: set[int] = set()
        #: Set by admin ``shutdown``: "now" or "graceful"; the I/O layer stops when it is set.
        self.shutdown: str | None = None
        self._output: dict[int, bytearray] = {}
        self._conns: dict[int, _Conn] = {}
        self._functions: dict[bytes, _Function] = {}
        self._jobs: dict[bytes, _Job] = {}
        self._uniques: dict[tuple[bytes, bytes], _Job] = {}
        self._next_handle = 1
        # (run time, handle) of epoch jobs not due yet; (deadline, handle) of timed workers.
        self._scheduled: list[tuple[int, bytes]] = []
        self._deadlines: list[tuple[float, bytes]] = []
        self._handlers: dict[PacketType, Callable[[_Conn, tuple[bytes, ...]], None]] = {
            _T.CAN_DO: self._can_do,
            _T.CAN_DO_TIMEOUT: self._can_do_timeout,
            _T.CANT_DO: self._cant_do,
            _T.RESET_ABILITIES: self._reset_abilities,
            _T.PRE_SLEEP: self._pre_sleep,
            _T.GRAB_JOB: functools.partial(self._grab, False),
            _T.GRAB_JOB_UNIQ: functools.partial(self._grab, True),
            _T.GRAB_JOB_ALL: functools.partial(self._grab, True),
            _T.WORK_STATUS: self._work_status,
            _T.WORK_DATA: functools.partial(self._work_forward, _T.WORK_DATA),
            _T.WORK_WARNING: functools.partial(self._work_forward, _T.WORK_WARNING),
            _T.WORK_COMPLETE: self._work_complete,
            _T.WORK_FAIL: self._work_fail,
            _T.WORK_EXCEPTION: self._work_exception,
            _T.GET_STATUS: self._get_status,
            _T.GET_STATUS_UNIQUE: self._get_status_unique,
            _T.ECHO_REQ: self._echo,
            _T.SET_CLIENT_ID: self._set_client_id,
            _T.OPTION_REQ: self._option,
        }
        for kind, (priority, background, epoch) in _SUBMITS.items():
            self._handlers[kind] = functools.partial(self._submit, priority, background, epoch)
        if store is not None:
            for stored in store.load():
                self._restore(stored.function, stored.unique, stored.priority, stored.data,
                              stored.when, stored.key)  # fmt: skip

    # -- the I/O layer's calls ------------------------------------------------------------

    def connect(self, conn_id: int, peer: str) -> None:
        """A connection was accepted; ``peer`` is its address as ``workers`` shows it."""
        self._conns[conn_id] = _Conn(conn_id, peer, self.max_packet_size)

    def receive(self, conn_id: int, data: bytes) -> None:
        """Bytes arrived on a connection: run every packet and admin line they complete.

        A connection that sends bytes that are not Gearman protocol (or more than the packet
        size limit) is put in :attr:`closing`; nothing raises.
        """
        conn = self._conns.get(conn_id)
        if conn is None or conn_id in self.closing:
            return
        buffer = conn.buffer
        if buffer:
            buffer += data
            if len(buffer) < conn.need:
                return
            source = bytes(buffer)
            buffer.clear()
        else:
            source = data
        try:
            rest = self._parse(conn, source)
        except ProtocolError as exc:
            log.warning("closing connection %d (%s): %s", conn_id, conn.peer, exc)
            self.closing.add(conn_id)
            return
        if rest < len(source):
            buffer += source[rest:]

    def disconnect(self, conn_id: int) -> None:
        """A connection is gone: its jobs go back to the queue, its waits are forgotten."""
        conn = self._conns.pop(conn_id, None)
        self._output.pop(conn_id, None)
        self.closing.discard(conn_id)
        if conn is None:
            return
        for name in conn.abilities:
            function = self._functions.get(name)
            if function is not None:
                function.workers.pop(conn_id, None)
        for job in list(conn.working.values()):
            self._requeue(job, "its worker disconnected")
        for job in conn.waiting.values():
            job.clients.remove(conn_id)
            if not job.clients and not job.background:
                # As gearmand: the job stays counted until a worker would take it, and is
                # then dropped without running (a running one finishes unheard).
                job.ignore = True

    def tick(self) -> float | None:
        """Run what the clock has made due (epoch jobs, CAN_DO_TIMEOUT expiries); return the
        time of the next such event, or None when nothing waits on the clock."""
        if not self._scheduled and not self._deadlines:
            return None  # the usual case, checked once per loop turn: no clock read
        now = self.clock()
        while self._scheduled and self._scheduled[0][0] <= now:
            _, handle = heapq.heappop(self._scheduled)
            job = self._jobs.get(handle)
            if job is not None:
                self._queue(job)
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, handle = heapq.heappop(self._deadlines)
            job = self._jobs.get(handle)
            if job is not None and job.worker is not None and job.deadline == deadline:
                self._requeue(job, "its worker exceeded its CAN_DO_TIMEOUT")
        times = [float(t[0]) for t in self._scheduled[:1]] + [t[0] for t in self._deadlines[:1]]
        return min(times) if times else None

    def take_output(self) -> dict[int, bytearray]:
        """The bytes to send, per connection, since the last call (then forgotten here)."""
        output, self._output = self._output, {}
        return output

    # -- what the test controls and the embedding program read ------------------------------

    def queued_jobs(self, function: bytes | None = None) -> list[QueuedJob]:
        """Jobs waiting for a worker (of one function, or all), in the order they would run."""
        return [
            QueuedJob(_text(j.handle), _text(j.function.name), _text(j.unique), j.priority, j.data)
            for j in self._waiting(function)
        ]

    def _waiting(self, function: bytes | None) -> list[_Job]:
        names = [function] if function is not None else list(self._functions)
        found: list[_Job] = []
        for name in names:
            fn = self._functions.get(name)
            for queue in fn.queues if fn is not None else ():
                found += [job for job in queue if not job.ignore]
        return found

    # -- input ----------------------------------------------------------------------------

    def _parse(self, conn: _Conn, source: bytes) -> int:
        """Run every complete packet and line of source; return where the incomplete rest
        starts. Binary packets and admin lines may alternate on one connection (a packet
        starts with a NUL byte, a line never does)."""
        position = 0
        end = len(source)
        conn.need = 0
        while position < end:
            if source[position] == 0:
                stop = position
                while end - stop >= HEADER_SIZE and source[stop] == 0:
                    size = int.from_bytes(source[stop + 8 : stop + 12], "big")
                    if size > self.max_packet_size:
                        # The decoder refuses the header with a clear message.
                        conn.decoder.feed(source[stop : stop + HEADER_SIZE])
                    if stop + HEADER_SIZE + size > end:
                        # Counted from stop, where the kept rest will start.
                        conn.need = HEADER_SIZE + size
                        break
                    stop += HEADER_SIZE + size
                if stop == position:
                    conn.need = max(conn.need, HEADER_SIZE)
                    return position
                for packet in conn.decoder.feed(source[position:stop]):
                    if packet.magic is not Magic.REQ:
                        self._send(conn.id, _BAD_MAGIC)
                        continue
                    handler = self._handlers.get(packet.type)
                    if handler is None:
                        self._send(conn.id, _NOT_EXPECTED)
                    else:
                        handler(conn, packet.args)
                    if conn.id in self.closing:
                        return end
                position = stop
                if conn.need:
                    return position
            else:
                newline = source.find(b"\n", position)
                if newline < 0:
                    if end - position > MAX_LINE:
                        raise ProtocolError(f"admin line longer than {MAX_LINE} bytes")
                    return position
                line = source[position:newline]
                position = newline + 1
                self._admin(conn, line.removesuffix(b"\r"))
                if conn.id in self.closing:
                    return end
        return position

    def _send(self, conn_id: int, data: bytes) -> None:
        buffer = self._output.get(conn_id)
        if buffer is None:
            self._output[conn_id] = bytearray(data)
        else:
            buffer += data

    def _function(self, name: bytes) -> _Function:
        function = self._functions.get(name)
        if function is None:
            function = self._functions[name] = _Function(name)
        return function

    # -- the job's life: queued, assigned, requeued, finished ------------------------------

    def _new_handle(self) -> bytes:
        handle = b"H:%s:%d" % (self.hostname, self._next_handle)
        self._next_handle += 1
        return handle

    def _restore(
        self, name: bytes, unique: bytes, priority: int, data: bytes, when: int, key: int
    ) -> None:
        job = _Job(self._new_handle(), self._function(name), unique, data, priority, True, when)
        job.store_key = key
        self._add(job)

    def _add(self, job: _Job) -> None:
        self._jobs[job.handle] = job
        if job.unique:
            self._uniques[(job.function.name, job.unique)] = job
        job.function.total += 1
        if job.when and job.when > self.clock():
            heapq.heappush(self._scheduled, (job.when, job.handle))
        else:
            self._queue(job)

    def _queue(self, job: _Job) -> None:
        """The job waits for a worker: at the end of its priority's line; sleepers wake."""
        function = job.function
        function.queues[job.priority].append(job)
        if not function.held:
            self._wake(function)

    def _wake(self, function: _Function) -> None:
        conns = self._conns
        for conn_id in function.workers:
            conn = conns[conn_id]
            if conn.sleeping:
                conn.sleeping = False
                self._send(conn_id, _NOOP)

    def _take(self, conn: _Conn) -> _Job | None:
        """The next job for this worker: its functions in CAN_DO order, high priority first;
        ignored jobs met on the way are dropped."""
        functions = self._functions
        for name in conn.abilities:
            function = functions[name]
            if function.held:
                continue
            for queue in function.queues:
                while queue:
                    job = queue.popleft()
                    if not job.ignore:
                        return job
                    self._finish(job)
        return None

    def _assign(self, conn: _Conn, job: _Job) -> None:
        job.worker = conn.id
        job.function.running += 1
        conn.working[job.handle] = job
        timeout = conn.abilities.get(job.function.name, 0)
        if timeout > 0:
            job.deadline = self.clock() + timeout
            heapq.heappush(self._deadlines, (job.deadline, job.handle))

    def _requeue(self, job: _Job, why: str) -> None:
        """The job's worker is gone or too slow: queue it again, or fail it after
        ``job_retries`` tries (gearmand's rule: the count is raised first, then compared)."""
        worker = self._conns.get(job.worker) if job.worker is not None else None
        if worker is not None:
            worker.working.pop(job.handle, None)
        job.worker = None
        job.function.running -= 1
        job.retries += 1
        if self.job_retries and job.retries >= self.job_retries:
            # gearmand's words, which operators grep for.
            log.info(
                "Dropped job due to max retry count: %s %r (%s)",
                _text(job.handle), _text(job.function.name), why,
            )  # fmt: skip
            fail = response(_T.WORK_FAIL, job.handle)
            for client in job.clients:
                self._send(client, fail)
            self._finish(job)
            return
        log.info("job %s of %r queued again: %s", _text(job.handle), _text(job.function.name), why)
        self._queue(job)

    def _finish(self, job: _Job) -> None:
        """The job is over (done, failed, dropped): forget it everywhere, and in the store."""
        del self._jobs[job.handle]
        function = job.function
        if job.unique and self._uniques.get((function.name, job.unique)) is job:
            del self._uniques[(function.name, job.unique)]
        function.total -= 1
        if job.worker is not None:
            function.running -= 1
            worker = self._conns.get(job.worker)
            if worker is not None:
                worker.working.pop(job.handle, None)
            job.worker = None
        for client in job.clients:
            conn = self._conns.get(client)
            if conn is not None:
                conn.waiting.pop(job.handle, None)
        self._forget_stored(job)

    # -- packets --------------------------------------------------------------------------

    def _submit(
        self, priority: int, background: bool, epoch: bool, conn: _Conn, args: tuple[bytes, ...]
    ) -> None:
        name, unique = args[0], args[1]
        when = 0
        if epoch:
            when_text, data = args[2], args[3]
            when = int(when_text) if when_text.isdigit() else 0
        else:
            data = args[2]
        if unique == b"-":
            # As gearmand: "-" asks for the payload itself as the unique id.
            unique = data
        if unique:
            existing = self._uniques.get((name, unique))
            if existing is not None:
                if not background and conn.id not in existing.clients:
                    existing.clients.append(conn.id)
                    existing.ignore = False
                    conn.waiting[existing.handle] = existing
                self._send(conn.id, response(_T.JOB_CREATED, existing.handle))
                return
        function = self._function(name)
        limit = function.max_queue[priority]
        if limit and function.total >= limit:
            self._send(conn.id, _QUEUE_FULL)
            return
        job = _Job(self._new_handle(), function, unique, data, priority, background, when)
        if background and self.store is not None:
            try:
                job.store_key = self.store.add(name, unique, priority, data, when)
            except StoreError as exc:
                log.error("could not keep a job of %r: %s", _text(name), exc)
                self._send(conn.id, response(_T.ERROR, b"QUEUE_ERROR", str(exc).encode()))
                return
        self._send(conn.id, response(_T.JOB_CREATED, job.handle))
        if not background:
            job.clients.append(conn.id)
            conn.waiting[job.handle] = job
        self._add(job)

    def _can_do(self, conn: _Conn, args: tuple[bytes, ...]) -> None:
        self._add_ability(conn, args[0], 0)

    def _can_do_timeout(self, conn: _Conn, args: tuple[bytes, ...]) -> None:
        text = args[1].strip(b"\0 ")
        self._add_ability(conn, args[0], int(text) if text.isdigit() else 0)

    def _add_ability(self, conn: _Conn, name: bytes, timeout: int) -> None:
        conn.abilities[name] = timeout
        self._function(name).workers[conn.id] = None

    def _cant_do(self, conn: _Conn, args: tuple[bytes, ...]) -> None:
        if conn.abilities.pop(args[0], None) is not None:
            self._functions[args[0]].workers.pop(conn.id, None)

    def _reset_abilities(self, conn: _Conn, args: tuple[bytes, ...]) -> None:
        for name in conn.abilities:
            self._functions[name].workers.pop(conn.id, None)
        conn.abilities.clear()

    def _pre_sleep(self, conn: _Conn, args: tuple[bytes, ...]) -> None:
        # As gearmand: a worker going to sleep while work waits is woken at once.
        for name in conn.abilities:
            function = self._functions[name]
            if not function.held and any(j for q in function.queues for j in q if not j.ignore):
                self._send(conn.id, _NOOP)
                return
        conn.sleeping = True

    def _grab(self, unique: bool, conn: _Conn, args: tuple[bytes, ...]) -> None:
        # GRAB_JOB_ALL too is answered with JOB_ASSIGN_UNIQ, as gearmand 1.1.20 does.
        conn.sleeping = False
        job = self._take(conn)
        if job is None:
            self._send(conn.id, _NO_JOB)
            return
        self._assign(conn, job)
        if unique:
            packet = response(
                _T.JOB_ASSIGN_UNIQ, job.handle, job.function.name, job.unique, job.data
            )
        else:
            packet = response(_T.JOB_ASSIGN, job.handle, job.function.name, job.data)
        self._send(conn.id, packet)

    def _worker_job(self, conn: _Conn, handle: bytes) -> _Job | None:
        job = conn.working.get(handle)
        if job is None:
            self._send(conn.id, _NOT_FOUND)
        return job

    def _work_status(self, conn: _Conn, args: tuple[bytes, ...]) -> None:
        job = self._worker_job(conn, args[0])
        if job is not None:
            job.numerator, job.denominator = args[1], args[2]
            packet = response(_T.WORK_STATUS, *args)
            for client in job.clients:
                self._send(client, packet)

    def _work_forward(self, kind: PacketType, conn: _Conn, args: tuple[bytes, ...]) -> None:
        job = self._worker_job(conn, args[0])
        if job is not None:
            packet = response(kind, *args)
            for client in job.clients:
                self._send(client, packet)

    def _work_complete(self, conn: _Conn, args: tuple[bytes, ...]) -> None:
        job = self._worker_job(conn, args[0])
        if job is not None:
            packet = response(_T.WORK_COMPLETE, *args)
            for client in job.clients:
                self._send(client, packet)
            self._finish(job)

    def _work_fail(self, conn: _Conn, args: tuple[bytes, ...]) -> None:
        job = self._worker_job(conn, args[0])
        if job is not None:
            packet = response(_T.WORK_FAIL, args[0])
            for client in job.clients:
                self._send(client, packet)
            self._finish(job)

    def _work_exception(self, conn: _Conn, args: tuple[bytes, ...]) -> None:
        job = self._worker_job(conn, args[0])
        if job is not None:
            exception = response(_T.WORK_EXCEPTION, *args)
            fail = response(_T.WORK_FAIL, args[0])
            for client in job.clients:
                wants = self._conns[client].exceptions
                self._send(client, exception if wants else fail)
            self._finish(job)

    def _get_status(self, conn: _Conn, args: tuple[bytes, ...]) -> None:
        job = self._jobs.get(args[0])
        if job is None:
            self._send(conn.id, response(_T.STATUS_RES, args[0], b"0", b"0", b"0", b"0"))
            return
        running = b"1" if job.worker is not None else b"0"
        self._send(
            conn.id,
            response(_T.STATUS_RES, job.handle, b"1", running, job.numerator, job.denominator),
        )

    def _get_status_unique(self, conn: _Conn, args: tuple[bytes, ...]) -> None:
        unique = args[0]
        job = next((j for (_, u), j in self._uniques.items() if u == unique), None)
        if job is None:
            reply = response(_T.STATUS_RES_UNIQUE, unique, b"0", b"0", b"0", b"0", b"0")
        else:
            reply = response(
                _T.STATUS_RES_UNIQUE,
                unique,
                b"1",
                b"1" if job.worker is not None else b"0",
                job.numerator,
                job.denominator,
                b"%d" % len(job.clients),
            )
        self._send(conn.id, reply)

    def _echo(self, conn: _Conn, args: tuple[bytes, ...]) -> None:
        self._send(conn.id, response(_T.ECHO_RES, args[0]))

    def _set_client_id(self, conn: _Conn, args: tuple[bytes, ...]) -> None:
        conn.client_id = args[0] or b"-"

    def _option(self, conn: _Conn, args: tuple[bytes, ...]) -> None:
        if args[0] == b"exceptions":
            conn.exceptions = True
            self._send(conn.id, response(_T.OPTION_RES, args[0]))
        else:
            self._send(conn.id, _UNKNOWN_OPTION)

    # -- admin ----------------------------------------------------------------------------

    def _admin(self, conn: _Conn, line: bytes) -> None:
        try:
            command = commands.parse_command(line)
        except AdminSyntaxError as exc:
            self._send(conn.id, exc.reply)
            return
        self._send(conn.id, self._run_admin(conn, command))

    def _run_admin(self, conn: _Conn, command: AdminCommand) -> bytes:
        name, args = command.name, command.args
        if name == "version":
            return commands.ok(VERSION)
        if name == "getpid":
            return commands.ok(b"%d" % self.pid)
        if name == "verbose":
            return commands.ok(b"INFO")
        if name == "status":
            return commands.block(
                b"%s\t%d\t%d\t%d" % (f.name, f.total, f.running, len(f.workers))
                for f in reversed(self._functions.values())
            )
        if name == "prioritystatus":
            return commands.block(
                b"\t".join([f.name, *(b"%d" % _waiting_count(q) for q in f.queues)])
                + b"\t%d" % len(f.workers)
                for f in reversed(self._functions.values())
            )
        if name == "workers":
            return commands.block(
                b"%d %s %s :%s"
                % (
                    c.id,
                    c.peer.encode(),
                    c.client_id,
                    b"".join(b" " + n for n in reversed(c.abilities)),
                )
                for c in reversed(self._conns.values())
            )
        if name == "show jobs":
            return commands.block(
                b"%s\t%d\t%d\t%d" % (j.handle, j.retries, j.ignore, j.background and not j.ignore)
                for j in self._jobs.values()
            )
        if name == "show unique jobs":
            return commands.block(j.unique for j in self._jobs.values())
        if name == "cancel job":
            job = self._jobs.get(args[0])
            if job is None:
                return commands.error("UNKNOWN_JOB")
            if job.worker is None:
                job.ignore = True
                self._forget_stored(job)
            return commands.ok()
        if name == "create function":
            self._function(args[0])
            return commands.ok()
        if name == "drop function":
            return self._drop_function(args[0])
        if name == "maxqueue":
            return self._maxqueue(args)
        if name == "shutdown":
            self.shutdown = "graceful" if args else "now"
            return commands.ok()
        return self._run_control(name, args)

    def _forget_stored(self, job: _Job) -> None:
        if job.store_key is not None and self.store is not None:
            try:
                self.store.remove(job.store_key)
            except StoreError as exc:
                # The job is over either way; the row comes back at the next start.
                log.error("could not forget job %s in the store: %s", _text(job.handle), exc)
            job.store_key = None

    def _drop_function(self, name: bytes) -> bytes:
        function = self._functions.get(name)
        if function is None:
            return b"ERR function not found\r\n"
        if function.workers or function.running:
            return b"ERR there are still connected workers or executing clients\r\n"
        for queue in function.queues:
            for job in list(queue):
                self._finish(job)
            queue.clear()
        for _, handle in list(self._scheduled):
            scheduled = self._jobs.get(handle)
            if scheduled is not None and scheduled.function is function:
                self._finish(scheduled)
        del self._functions[name]
        return commands.ok()

    def _maxqueue(self, args: tuple[bytes, ...]) -> bytes:
        function = self._functions.get(args[0])
        sizes = args[1:]
        if not all(s.lstrip(b"-").isdigit() for s in sizes):
            # gearmand reads a bad number as 0: no limit.
            sizes = tuple(s if s.lstrip(b"-").isdigit() else b"0" for s in sizes)
        if function is not None:
            values = [max(int(s), 0) for s in sizes] or [0]
            if len(values) == 1:
                values = values * 3
            function.max_queue = [*values, 0, 0, 0][:3]
        return commands.ok()

    def _run_control(self, name: str, args: tuple[bytes, ...]) -> bytes:
        """The test controls only this server has."""
        if name == "hold":
            self._function(args[0]).held = True
            return commands.ok()
        if name == "release":
            function = self._function(args[0])
            function.held = False
            if any(function.queues):
                self._wake(function)
            return commands.ok()
        if name == "show queued":
            function_name = args[0] if args else None
            return commands.block(
                commands.queued_line(j.handle, j.function.name, j.unique, j.priority, j.data)
                for j in self._waiting(function_name)
            )
        if name == "drop workers":
            target = self._functions.get(args[0])
            dropped = 0
            for conn in list(self._conns.values()):
                if target is not None and any(j.function is target for j in conn.working.values()):
                    self.closing.add(conn.id)
                    dropped += 1
            return commands.ok(b"%d" % dropped)
        raise AssertionError(f"admin command {name!r} parsed but not handled")


def _waiting_count(queue: deque[_Job]) -> int:
    return sum(not job.ignore for job in queue)


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")
