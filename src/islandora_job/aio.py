"""The asyncio client: `AsyncJobClient`, many jobs in flight on one connection.

It speaks through the same sans-I/O parts as the blocking client: requests are built by
`gearman.protocol.request`, replies decoded by `gearman.protocol.PacketDecoder` and matched
to requests by `gearman.tracker.ReplyTracker`; payloads, results and failures go through
`api.JobCodec`, as `JobClient`'s do. One reader task per connection feeds the tracker and
resolves each caller's future.

    async with AsyncJobClient() as client:
        results = await asyncio.gather(*(client.submit("add", n, 1) for n in range(20)))
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from islandora_job.api import (
    BatchEntry,
    JobCodec,
    _check_batch,
    _priority,
    _unique,
    batch_succeeded,
)
from islandora_job.config import Settings
from islandora_job.gearman.client import Job, ServerError, submit_packets
from islandora_job.gearman.connection import Connection, ServerUnavailable, parse_address
from islandora_job.gearman.protocol import (
    Magic,
    PacketDecoder,
    PacketType,
    ProtocolError,
    request,
)
from islandora_job.gearman.tracker import (
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

__all__ = ["AsyncJobClient"]


_READ_SIZE = 256 * 1024


@dataclasses.dataclass(eq=False)
class _Link:
    """One open connection: its tracker and who waits for what on it."""

    address: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    tracker: ReplyTracker
    decoder: PacketDecoder = dataclasses.field(default_factory=lambda: PacketDecoder(Magic.RES))
    # By ticket: the future of a submit (its JobCreated, background; its JobEnded, foreground).
    jobs: dict[int, asyncio.Future[Event]] = dataclasses.field(default_factory=dict)
    background: set[int] = dataclasses.field(default_factory=set)
    progress: dict[int, Callable[[int, int], None]] = dataclasses.field(default_factory=dict)
    # gearmand answers GET_STATUS and OPTION_REQ in order: first in, first out.
    statuses: deque[asyncio.Future[JobStatus]] = dataclasses.field(default_factory=deque)
    options: deque[asyncio.Future[None]] = dataclasses.field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    error: BaseException | None = None

    @property
    def closed(self) -> bool:
        return self.error is not None


class AsyncJobClient:
    """Submits jobs from asyncio code; an async context manager (or call `aclose()`).

    Takes the settings as `JobClient` does (`settings`, else those in force when it is
    made; `servers`, `max_payload`, `results`, `site` override them), refuses unknown job
    names (``check_jobs``) and waits the settings' default timeout as it does, and decodes
    results and failures as it does. It connects on first use to the first server of its list that
    accepts, and keeps that one connection for every call: any number of calls may be in
    flight at once (`asyncio.gather`). When the connection is lost, the calls waiting on
    it raise ServerUnavailable and the next call connects again. ``connect_timeout`` bounds
    each connect and handshake, ``ack_timeout`` the wait for gearmand to acknowledge a
    background submit or answer a status query. Not for use from several event loops.
    """

    def __init__(
        self,
        servers: str | Iterable[str] | None = None,
        *,
        settings: Settings | None = None,
        connect_timeout: float = 5.0,
        ack_timeout: float = 30.0,
        max_payload: int | None = None,
        results: str | None = None,
        site: str | None = None,
        check_jobs: bool | None = None,
    ) -> None:
        """Bind to servers ("host:port" list or comma-separated string); ValueError if a
        setting is malformed. Nothing is connected yet."""
        self._codec = JobCodec.bound(settings, servers, max_payload, results, site, check_jobs)
        self.settings = self._codec.settings
        self.servers = self.settings.servers
        self.connect_timeout = connect_timeout
        self.ack_timeout = ack_timeout
        self._link: _Link | None = None
        self._connecting = asyncio.Lock()

    def __repr__(self) -> str:
        return (
            f"AsyncJobClient(servers={list(self.servers)!r}, results={self.settings.results!r}, "
            f"site={self.settings.site!r})"
        )

    async def __aenter__(self) -> AsyncJobClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection; calls still waiting raise ServerUnavailable. The next call
        opens a new one."""
        link, self._link = self._link, None
        if link is None:
            return
        self._fail(link, ServerUnavailable(f"the client's connection to {link.address} closed"))
        if link.task is not None:
            link.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await link.task
        with contextlib.suppress(OSError):
            await link.writer.wait_closed()

    @property
    def pending(self) -> int:
        """How many requests wait for an answer on the connection (0 when none is open)."""
        link = self._link
        if link is None or link.closed:
            return 0
        return len(link.jobs) + len(link.statuses) + len(link.options)

    # -- the connection ---------------------------------------------------------------

    async def _connection(self) -> _Link:
        link = self._link
        if link is not None and not link.closed:
            return link
        async with self._connecting:
            link = self._link
            if link is not None and not link.closed:
                return link
            errors: list[str] = []
            for server in self.servers:
                try:
                    self._link = await self._connect(server)
                except (OSError, ProtocolError, ServerError, asyncio.TimeoutError) as exc:
                    errors.append(f"{server}: {exc or type(exc).__name__}")
                    continue
                return self._link
            raise ServerUnavailable("no gearmand server reachable: " + "; ".join(errors))

    async def _connect(self, server: str) -> _Link:
        host, port = parse_address(server)
        address = Connection.format_address(host, port)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), self.connect_timeout
        )
        link = _Link(address, reader, writer, ReplyTracker(self._codec.max_reply))
        link.task = asyncio.get_running_loop().create_task(self._read(link))
        # Ask for WORK_EXCEPTION packets, as the blocking client does.
        accepted = asyncio.get_running_loop().create_future()
        link.tracker.asked_option("exceptions")
        link.options.append(accepted)
        try:
            link.writer.write(request(PacketType.OPTION_REQ, b"exceptions"))
            await self._drain(link)
            await asyncio.wait_for(accepted, self.connect_timeout)
        except BaseException:
            self._fail(link, ServerUnavailable(f"gearmand at {address} did not answer OPTION_REQ"))
            link.task.cancel()
            _seen([accepted])
            raise
        return link

    async def _drain(self, link: _Link) -> None:
        """Wait until what was written to the connection has gone (within connect_timeout);
        ServerUnavailable, the connection closed, otherwise."""
        transport = link.writer.transport
        if transport.get_write_buffer_size() == 0 and not transport.is_closing():
            # The socket took it all at once (the usual case): nothing to wait for.
            return
        try:
            await asyncio.wait_for(link.writer.drain(), self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            lost = ServerUnavailable(f"gearmand at {link.address} did not take a request: {exc}")
            self._fail(link, lost)
            raise lost from None

    async def _read(self, link: _Link) -> None:
        """The connection's one reader: bytes to packets to tracker events to futures."""
        try:
            while True:
                data = await link.reader.read(_READ_SIZE)
                if not data:
                    raise ServerUnavailable(f"gearmand at {link.address} closed the connection")
                for packet in link.decoder.feed(data):
                    self._dispatch(link, link.tracker.receive(packet))
        except (OSError, ProtocolError, ServerError) as exc:
            self._fail(link, exc)

    def _dispatch(self, link: _Link, event: Event | None) -> None:
        if isinstance(event, JobCreated | JobEnded):
            self._resolve(link, event)
        elif isinstance(event, JobProgress):
            callback = link.progress.get(event.ticket)
            if callback is None:
                return
            try:
                callback(event.numerator, event.denominator)
            except Exception as exc:
                # The caller's callback failed: its call raises that, the job is forgotten.
                # The future gets the error before _forget would cancel it.
                future = link.jobs.get(event.ticket)
                if future is not None and not future.done():
                    future.set_exception(exc)
                self._forget(link, [event.ticket])
        elif isinstance(event, StatusAnswered):
            status = link.statuses.popleft()
            if not status.done():
                status.set_result(event.status)
        elif isinstance(event, OptionAccepted):
            option = link.options.popleft()
            if not option.done():
                option.set_result(None)
        elif isinstance(event, ServerErrored):
            raise ServerError(link.address, event.code, event.message)

    def _resolve(self, link: _Link, event: JobCreated | JobEnded) -> None:
        future = link.jobs.get(event.ticket)
        if future is None:
            return
        if isinstance(event, JobCreated) and event.ticket not in link.background:
            return
        del link.jobs[event.ticket]
        link.background.discard(event.ticket)
        link.progress.pop(event.ticket, None)
        if not future.done():
            future.set_result(event)

    def _fail(self, link: _Link, exc: BaseException) -> None:
        """The connection is lost (or closed): every waiter gets ``exc``."""
        if link.error is None:
            link.error = exc
            link.writer.close()
        waiting: list[asyncio.Future[Event] | asyncio.Future[JobStatus] | asyncio.Future[None]]
        waiting = [*link.jobs.values(), *link.statuses, *link.options]
        link.jobs.clear()
        link.background.clear()
        link.progress.clear()
        link.statuses.clear()
        link.options.clear()
        for future in waiting:
            if not future.done():
                future.set_exception(exc)
        if self._link is link:
            self._link = None

    def _forget(self, link: _Link, tickets: Iterable[int]) -> None:
        """The caller no longer waits for these submits: their replies will be ignored."""
        for ticket in tickets:
            future = link.jobs.pop(ticket, None)
            link.progress.pop(ticket, None)
            link.background.discard(ticket)
            if future is not None:
                link.tracker.abandon(ticket)
                future.cancel()  # a no-op once it holds a result or an error

    # -- submits ----------------------------------------------------------------------

    async def _submit(
        self,
        jobs: Sequence[Job],
        *,
        background: bool,
        on_progress: Callable[[int, int, int], None] | None = None,
    ) -> tuple[_Link, dict[int, asyncio.Future[Event]]]:
        """Send the submits in one write; return the link and, in job order, each ticket's
        future (it may be done already: replies come while the write drains)."""
        link = await self._connection()
        data = submit_packets(jobs, background=background)
        loop = asyncio.get_running_loop()
        futures: dict[int, asyncio.Future[Event]] = {}
        # Tickets are handed out in the order the packets go: no await in between.
        for position, job in enumerate(jobs):
            ticket = link.tracker.submitted(job.function, background=background)
            futures[ticket] = link.jobs[ticket] = loop.create_future()
            if background:
                link.background.add(ticket)
            if on_progress is not None:
                link.progress[ticket] = _progress_of(on_progress, position)
        link.writer.write(data)
        try:
            await self._drain(link)
        except BaseException:
            self._forget(link, futures)
            _seen(futures.values())
            raise
        return link, futures

    async def _foreground(
        self,
        entries: Sequence[BatchEntry],
        timeout: float | None,
        *,
        on_end: Callable[[int, JobResult], None] | None = None,
        on_progress: Callable[[int, int, int], None] | None = None,
    ) -> list[JobResult]:
        jobs = [self._codec.job(entry) for entry in entries]
        given, timeout = timeout, self._codec.timeout(timeout)
        link, futures = await self._submit(jobs, background=False, on_progress=on_progress)
        positions = {ticket: position for position, ticket in enumerate(futures)}
        results: dict[int, JobResult] = {}
        try:
            if len(futures) == 1 and on_end is None:
                # One job: await its future itself, without as_completed's machinery.
                (future,) = futures.values()
                ended = await (future if timeout is None else asyncio.wait_for(future, timeout))
                assert isinstance(ended, JobEnded)
                return [ended.result]
            for next_done in asyncio.as_completed(futures.values(), timeout=timeout):
                event = await next_done
                assert isinstance(event, JobEnded)
                position = positions[event.ticket]
                results[position] = event.result
                if on_end is not None:
                    on_end(position, event.result)
        except asyncio.TimeoutError:
            names = [e.job_name for e in entries]
            raise await asyncio.to_thread(self._codec.timed_out, names, timeout, given) from None
        finally:
            # Cancelled, timed out or failed: nothing of these jobs stays on the connection.
            self._forget(link, positions)
        return [results[position] for position in range(len(jobs))]

    async def submit(
        self,
        job_name: str,
        *args: object,
        timeout: float | None = None,
        priority: str = "normal",
        unique: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> object:
        """Run a job in the foreground and return its decoded result, as `JobClient.submit`.

        Cancelling the call forgets the job on the connection (its replies are ignored;
        gearmand still runs it). Raises JobFailed, JobTimeout (after `timeout` seconds),
        TypeError/PayloadError, ValueError (bad priority or unique id), ServerUnavailable.
        """
        entry = BatchEntry(job_name, args, _priority(priority), _unique(unique))
        progress = None if on_progress is None else (lambda _, n, d: on_progress(n, d))
        (result,) = await self._foreground([entry], timeout, on_progress=progress)
        return self._codec.decode(job_name, result)

    async def submit_background(
        self,
        job_name: str,
        *args: object,
        priority: str = "normal",
        unique: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Queue a job and return its handle, as `JobClient.submit_background` (a waiting job
        of the same name and ``unique`` id gives its handle). ``timeout`` bounds the wait
        for gearmand's acknowledgement (default ``ack_timeout``): TimeoutError, and the
        connection is closed, when it runs out."""
        job = self._codec.job(BatchEntry(job_name, args, _priority(priority), _unique(unique)))
        link, futures = await self._submit([job], background=True)
        (created,) = futures.values()
        limit = self.ack_timeout if timeout is None else timeout
        try:
            event = await asyncio.wait_for(created, limit)
        except asyncio.TimeoutError:
            self._fail(link, ServerUnavailable(f"gearmand at {link.address} hung"))
            raise TimeoutError(
                f"gearmand at {link.address} did not acknowledge background job {job_name!r} "
                f"within {limit} s"
            ) from None
        finally:
            self._forget(link, futures)
        assert isinstance(event, JobCreated)
        return event.handle

    async def run_batch(
        self,
        batch: Sequence[Mapping[str, object]],
        timeout: float | None = None,
        on_complete: Callable[[int, object], None] | None = None,
    ) -> list[object]:
        """Run a batch concurrently; in order, each job's result or its JobFailed, as
        `JobClient.run_batch` (``on_complete(index, outcome)`` as each job ends)."""
        entries = _check_batch(batch)
        if not entries:
            return []
        outcomes: dict[int, object] = {}

        def ended(index: int, result: JobResult) -> None:
            outcomes[index] = self._codec.outcome(entries[index].job_name, result)
            if on_complete is not None:
                on_complete(index, outcomes[index])

        await self._foreground(entries, timeout, on_end=ended)
        return [outcomes[index] for index in range(len(entries))]

    async def submit_batch(
        self,
        batch: Sequence[Mapping[str, object]],
        timeout: float | None = None,
        on_complete: Callable[[int, object], None] | None = None,
    ) -> bool:
        """As `run_batch`, returning only whether every job succeeded (failures logged)."""
        return batch_succeeded(await self.run_batch(batch, timeout, on_complete))

    async def job_status(self, handle: str, timeout: float | None = None) -> JobStatus:
        """The status of a job by handle, from the server of the connection: known, running,
        numerator, denominator. ``timeout`` (default ``ack_timeout``) as for
        `submit_background`."""
        link = await self._connection()
        raw = handle.encode("utf-8", "surrogateescape")
        answer: asyncio.Future[JobStatus] = asyncio.get_running_loop().create_future()
        link.tracker.asked_status(raw)
        link.statuses.append(answer)
        link.writer.write(request(PacketType.GET_STATUS, raw))
        try:
            await self._drain(link)
        except BaseException:
            _seen([answer])
            raise
        limit = self.ack_timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(answer, limit)
        except asyncio.TimeoutError:
            self._fail(link, ServerUnavailable(f"gearmand at {link.address} hung"))
            raise TimeoutError(
                f"gearmand at {link.address} did not answer the status of {handle} within {limit} s"
            ) from None


def _progress_of(
    on_progress: Callable[[int, int, int], None], position: int
) -> Callable[[int, int], None]:
    return lambda numerator, denominator: on_progress(position, numerator, denominator)


def _seen(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Mark the exceptions of futures no one will await as retrieved: the caller raises
    the error itself (asyncio would otherwise log each as never retrieved)."""
    for future in futures:
        if future.done() and not future.cancelled():
            future.exception()
