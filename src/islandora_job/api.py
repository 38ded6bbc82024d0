"""Submitting jobs: foreground, background, batch, status, as in the original module.

`JobClient` is bound to the settings it is given (or those in force when it is made); the
module-level functions resolve `settings()` once per call and use one client per thread,
process and settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence

from islandora_job import config, payload
from islandora_job.config import (
    Settings,
    parse_max_payload,
    parse_results,
    parse_servers,
    parse_site,
)
from islandora_job.gearman.client import (
    STREAM_WINDOW,
    GearmanClient,
    GearmanTimeout,
    Job,
    JobResult,
    JobStatus,
    Priority,
)
from islandora_job.queue import queue_status
from islandora_job.registry import RegistryError, UnknownJob, jobs_declared, load_registry

log = logging.getLogger(__name__)

_REPLY_HEADROOM = 1024 * 1024
# Seconds a JobTimeout may spend asking the servers what became of the job.
_STATUS_BUDGET = 0.4


class JobFailed(Exception):
    """A job that raised or failed on the worker.

    job_name: the job; type: the remote exception's class name ("" when the worker did not
    say); message: the remote exception's message.
    """

    def __init__(self, job_name: str, type: str, message: str) -> None:
        self.job_name = job_name
        self.type = type
        self.message = message
        cause = f"{type}: {message}" if type else message or "the worker reported a failure"
        super().__init__(f"job {job_name!r} failed: {cause}")


class JobTimeout(TimeoutError):
    """A foreground job (or batch) that did not end in time.

    job_name: the job (the batch's job names, comma-separated); timeout: the seconds given;
    queue_status: what the servers said about the job's function when the time ran out.
    """

    def __init__(self, job_name: str, timeout: float | None, queue_status: str) -> None:
        self.job_name = job_name
        self.timeout = timeout
        self.queue_status = queue_status
        super().__init__(f"job {job_name!r} did not end within {timeout} s: {queue_status}")


def _failure(job_name: str, result: JobResult) -> JobFailed:
    if result.exception:
        remote = payload.decode_failure(result.exception)
    elif result.warnings:
        # Our worker sends its failure JSON as WORK_WARNING before WORK_FAIL (see workers.py).
        remote = payload.decode_failure(b"".join(result.warnings))
    elif result.partial:
        # The C worker (`gearman -w ... -- islandora-job route`) sends the router's output as
        # WORK_DATA before WORK_FAIL: that output is our failure JSON.
        remote = payload.decode_failure(b"".join(result.partial))
    else:
        # A bare WORK_FAIL also comes from gearmand itself when it drops a job whose
        # workers died holding it more often than its --job-retries allows.
        remote = payload.RemoteFailure(
            "",
            "failed without details: the worker failed it, or gearmand gave it up after "
            "workers holding it died (gearmand --job-retries)",
        )
    return JobFailed(job_name, remote.type, remote.message)


PRIORITIES = ("high", "normal", "low")
# A dict lookup: calling the enum by value costs several times more, on every submit.
_PRIORITY_BY_NAME = {name: Priority(name) for name in PRIORITIES}


def _priority(priority: str) -> Priority:
    """The Gearman priority named "high", "normal" or "low"; ValueError otherwise."""
    try:
        return _PRIORITY_BY_NAME[priority]
    except (KeyError, TypeError):
        raise ValueError(
            f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}"
        ) from None


# gearmand 1.1 refuses a unique id over 64 bytes (ARGUMENT_TOO_LARGE, dropping the
# connection) and hands a worker the job of a 64-byte one with a NUL before its payload.
MAX_UNIQUE_BYTES = 63


def unique_id(job_name: str, *args: object) -> str:
    """A unique id derived from the job and its arguments (40 hex digits): submitting the
    same job with the same arguments under it while the first still waits gives the first
    job's handle (gearmand coalesces them), so identical waiting jobs are never queued twice.

    Raises TypeError/ValueError as the payload encoder does.
    """
    data = payload.encode(job_name, args, max_size=sys.maxsize)
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def _unique(unique: object) -> str | None:
    """The unique id when it is None or a str gearmand takes; TypeError/ValueError otherwise."""
    if unique is None:
        return None
    if not isinstance(unique, str):
        raise TypeError(f"unique must be a str, not {type(unique).__name__}")
    if len(unique.encode("utf-8", "surrogateescape")) > MAX_UNIQUE_BYTES:
        raise ValueError(
            f"unique id {unique[:20]!r}... is longer than gearmand's {MAX_UNIQUE_BYTES} bytes: "
            "shorten it, or derive one with unique_id(job_name, *args)"
        )
    return unique


@dataclasses.dataclass(frozen=True)
class BatchEntry:
    """One checked batch entry."""

    job_name: str
    args: Sequence[object]
    priority: Priority = Priority.NORMAL
    unique: str | None = None


_BATCH_KEYS = ("job_name", "args", "priority", "unique")
_ENTRY = "{'job_name': ..., 'args': [...]}"


def _check_batch(batch: Sequence[Mapping[str, object]]) -> list[BatchEntry]:
    if isinstance(batch, (str, bytes)) or not isinstance(batch, Sequence):
        raise TypeError(f"a batch must be a list of {_ENTRY}, not {type(batch).__name__}")
    return [_check_entry(index, entry) for index, entry in enumerate(batch)]


def _check_entry(index: int, entry: Mapping[str, object]) -> BatchEntry:
    """Entry ``index`` of a batch, checked; TypeError/ValueError naming it otherwise."""
    where = f"batch entry {index}"
    if not isinstance(entry, Mapping):
        raise TypeError(f"{where} is a {type(entry).__name__}: give {_ENTRY}")
    unknown = set(entry) - set(_BATCH_KEYS)
    if unknown:
        raise ValueError(
            f"{where} has unknown keys {sorted(unknown)}: use {', '.join(_BATCH_KEYS)}"
        )
    if "job_name" not in entry:
        raise ValueError(f"{where} has no job_name: give {_ENTRY}")
    args = entry.get("args", [])
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
        raise TypeError(f"{where}: args must be a list, not {type(args).__name__}")
    try:
        job_name = payload.check_job_name(entry["job_name"])
        priority = _priority(str(entry.get("priority", "normal")))
        unique = _unique(entry.get("unique"))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
    return BatchEntry(job_name, args, priority, unique)


def batch_succeeded(outcomes: Iterable[object]) -> bool:
    """True when no outcome of a batch is a JobFailed; each failure is logged as a warning."""
    ok = True
    for outcome in outcomes:
        if isinstance(outcome, JobFailed):
            ok = False
            log.warning("%s", outcome)
    return ok


class _AnyName:
    """The job names of a client that does not check them: every name."""

    def __contains__(self, name: object) -> bool:
        return True


# Set while every client that is not told otherwise checks job names (see `checking_jobs`).
_always_check: list[object] = []


@contextlib.contextmanager
def checking_jobs() -> Iterator[None]:
    """While the with block runs, clients made with check_jobs=None check job names even
    when no job module is configured or installed (an empty registry refuses every name).
    A test harness uses this: there, a name nobody registered is a mistake."""
    token = object()
    _always_check.append(token)
    try:
        yield
    finally:
        _always_check.remove(token)


# What a client says of a name it does not know, and how to send it anyway.
_UNCHECKED = (
    "to submit to a worker this process does not know (another language or deployment), "
    "use JobClient(check_jobs=False) or islandora-job submit --unregistered"
)


@dataclasses.dataclass
class JobCodec:
    """What a client bound to ``settings`` sends and how it reads the answers: payloads,
    Gearman function names (with the site prefix), results (JSON or text) and failures,
    which job names it refuses (``check_jobs``: True, False, or None to check when job
    modules are configured or installed, or under `checking_jobs()`) and how long a
    foreground call waits by default. Shared by `JobClient` and
    `islandora_job.aio.AsyncJobClient`."""

    settings: Settings
    check_jobs: bool | None = None
    # The names accepted, loaded at the first check (submits are a hot path).
    _jobs: frozenset[str] | _AnyName | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    @classmethod
    def bound(
        cls,
        settings: Settings | None,
        servers: str | Iterable[str] | None = None,
        max_payload: int | None = None,
        results: str | None = None,
        site: str | None = None,
        check_jobs: bool | None = None,
    ) -> JobCodec:
        """``settings`` (else those in force, resolved once) with the given ones overriding
        theirs; ValueError if a setting is malformed."""
        resolved = config.settings() if settings is None else settings
        if any(v is not None for v in (servers, max_payload, results, site)):
            resolved = dataclasses.replace(
                resolved,
                servers=resolved.servers if servers is None else parse_servers(servers),
                max_payload=(
                    resolved.max_payload if max_payload is None else parse_max_payload(max_payload)
                ),
                results=resolved.results if results is None else parse_results(results),
                site=resolved.site if site is None else parse_site(site) or None,
            )
        return cls(resolved, check_jobs)

    def _registered(self) -> frozenset[str] | _AnyName:
        """The names accepted, loaded once; RegistryError when a job module cannot be
        imported."""
        if self._jobs is None:
            check = self.check_jobs
            if check is None:
                check = bool(_always_check) or jobs_declared(self.settings.modules)
            self._jobs = (
                frozenset(load_registry(self.settings.modules).jobs) if check else _AnyName()
            )
        return self._jobs

    def check(self, job_name: str) -> None:
        """UnknownJob, naming the closest registered names, for a name the registry lacks."""
        jobs = self._registered()
        if job_name not in jobs:
            assert isinstance(jobs, frozenset)  # _AnyName holds every name
            payload.check_job_name(job_name)  # a malformed name is told so first
            raise UnknownJob(job_name, jobs, _UNCHECKED)

    def job(self, entry: BatchEntry) -> Job:
        """What to submit for a checked entry: its Gearman function, its payload, its
        unique id and priority. Raises UnknownJob, TypeError or PayloadError before
        anything is sent."""
        self.check(entry.job_name)
        return Job(
            self.function(entry.job_name),
            self.encode(entry.job_name, entry.args),
            entry.unique,
            entry.priority,
        )

    def timeout(self, given: float | None) -> float | None:
        """The seconds a foreground call waits: those given, else the settings' default."""
        return self.settings.default_timeout if given is None else given

    @property
    def max_reply(self) -> int:
        """The most bytes one job's replies may add up to: a result may be as large as a
        payload; what else a job sends, a little more."""
        return self.settings.max_payload + _REPLY_HEADROOM

    def encode(self, job_name: str, args: Sequence[object]) -> bytes:
        """The payload of a job; TypeError/PayloadError when it cannot be sent."""
        # In text mode our worker must answer as the original router would: no JSON asked.
        return payload.encode(
            job_name,
            args,
            max_size=self.settings.max_payload,
            json_result=self.settings.results == "json",
        )

    def function(self, job_name: str) -> str:
        """The Gearman function of a job (``{site}_{job}`` with a site)."""
        return payload.gearman_function(job_name, self.settings.site)

    def decode(self, job_name: str, result: JobResult) -> object:
        """The decoded result; raises JobFailed for a failed job, PayloadError for a result
        that is not JSON (in json mode) or too large."""
        if not result.ok:
            raise _failure(job_name, result)
        if self.settings.results == "text":
            return payload.decode_text_result(result.data, max_size=self.settings.max_payload)
        return payload.decode_result(result.data, max_size=self.settings.max_payload)

    def outcome(self, job_name: str, result: JobResult) -> object:
        """The decoded result, or the JobFailed (returned, not raised)."""
        if not result.ok:
            return _failure(job_name, result)
        return self.decode(job_name, result)

    def timed_out(
        self,
        job_names: Iterable[str],
        timeout: float | None,
        given: float | None,
    ) -> JobTimeout:
        """The JobTimeout for these jobs after ``timeout`` seconds (``given``: what the caller
        passed, None when the default applied), with what the servers say of their functions
        (asked within a fraction of a second, even when a server hangs) and, for a function
        no worker serves, what to do."""
        names = list(dict.fromkeys(job_names))
        jobs = self._jobs if isinstance(self._jobs, frozenset) else None
        if jobs is None:
            # Not checked before sending: what this process registers still tells the reader.
            try:
                jobs = frozenset(load_registry(self.settings.modules).jobs)
            except RegistryError:
                jobs = None
        hints = {}
        for name in names:
            if jobs is None:
                hint = "start a worker that serves it"
            elif name in jobs:
                hint = "start one (islandora-job start-worker PIDFILE, or the job_worker fixture)"
            else:
                known = ", ".join(repr(n) for n in sorted(jobs)) or "none"
                hint = (
                    f"{name!r} is not a job registered here (registered jobs: {known}), "
                    "so only a worker of another process can serve it"
                )
            hints[self.function(name)] = hint
        status = queue_status(
            self.settings.servers, list(hints), timeout=_STATUS_BUDGET, hints=hints
        )
        if given is None and timeout is not None:
            status += (
                f" (the default timeout, from {config.ENV_TIMEOUT} or the plugin's ini "
                "gearman_job_timeout; pass timeout= to wait longer)"
            )
        return JobTimeout(", ".join(names), timeout, status)


class JobClient:
    """Submits jobs to a list of gearmand servers.

    Its settings are `settings` when given, else those in force when it is made
    (`islandora_job.settings()`, resolved once); `servers`, `max_payload`, `results` and
    `site` override theirs. results: "json" (the default: our worker answers with JSON,
    decoded here) or "text" (the raw result, as a str, of a worker that is not ours, such
    as the original module's router); site: the multisite prefix of the Gearman functions
    ("" for none); check_jobs: refuse names the job registry lacks (UnknownJob) before
    sending anything: True, False (send any name: a worker this process does not know
    serves it) or None (the default: check when job modules are configured or installed as
    entry points, or always under `checking_jobs()`, as in a pytest run with the plugin).
    Foreground calls given no timeout wait `settings.default_timeout`.

    Not safe to share between threads: give each thread its own (the module-level
    functions do). Closes its connection on close() or at the end of a `with` block.
    """

    def __init__(
        self,
        servers: str | Iterable[str] | None = None,
        *,
        settings: Settings | None = None,
        connect_timeout: float = 5.0,
        max_payload: int | None = None,
        results: str | None = None,
        site: str | None = None,
        check_jobs: bool | None = None,
    ) -> None:
        """Bind to servers ("host:port" list or comma-separated string); ValueError if a
        setting is malformed."""
        self._codec = JobCodec.bound(settings, servers, max_payload, results, site, check_jobs)
        resolved = self._codec.settings
        self.settings = resolved
        self.servers = resolved.servers
        self.max_payload = resolved.max_payload
        self.results = resolved.results
        self.site = resolved.site
        # Connects on first use; it drops a connection whose server is lost, and remembers
        # which servers hung and which created each background handle.
        self._gearman = GearmanClient(
            self.servers,
            connect_timeout=connect_timeout,
            max_reply=self._codec.max_reply,
        )

    def __repr__(self) -> str:
        return (
            f"JobClient(servers={list(self.servers)!r}, results={self.results!r}, "
            f"site={self.site!r})"
        )

    def __enter__(self) -> JobClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections; the next call opens new ones."""
        self._gearman.close()

    def submit(
        self,
        job_name: str,
        *args: object,
        timeout: float | None = None,
        priority: str = "normal",
        unique: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> object:
        """Run a job in the foreground and return its decoded result (a str in text mode).

        ``priority`` is "high", "normal" or "low"; ``unique`` an id gearmand coalesces
        jobs of one function by (see `unique_id`); ``on_progress(numerator,
        denominator)`` is called whenever the job reports progress.

        Raises UnknownJob (nothing sent) for a name the job registry lacks when the client
        checks names, JobFailed when the job raised or failed, JobTimeout when `timeout`
        seconds (None: `settings.default_timeout`, else no limit) pass first, TypeError
        when an argument cannot be encoded as JSON, ValueError for a bad priority,
        PayloadError for an oversized payload or a result that is not JSON,
        ServerUnavailable when no server can be reached.
        """
        self._codec.check(job_name)
        data = self._codec.encode(job_name, args)
        seconds = self._codec.timeout(timeout)
        try:
            result = self._gearman.submit(
                self._codec.function(job_name),
                data,
                unique=_unique(unique),
                priority=_priority(priority),
                timeout=seconds,
                on_progress=on_progress,
            )
        except GearmanTimeout:
            raise self._codec.timed_out([job_name], seconds, timeout) from None
        return self._codec.decode(job_name, result)

    def submit_background(
        self, job_name: str, *args: object, priority: str = "normal", unique: str | None = None
    ) -> str:
        """Queue a job in the background and return its handle ("H:host:N").

        With ``unique``, a job of the same name and unique id that still waits is not
        queued twice: its handle is returned. Raises UnknownJob (nothing sent) for a name
        the job registry lacks when the client checks names, TypeError/PayloadError for
        arguments that cannot be sent, ValueError for a bad priority and ServerUnavailable
        when no server can be reached.
        """
        self._codec.check(job_name)
        data = self._codec.encode(job_name, args)
        return self._gearman.submit_background(
            self._codec.function(job_name),
            data,
            unique=_unique(unique),
            priority=_priority(priority),
        )

    def run_batch(
        self,
        batch: Sequence[Mapping[str, object]],
        timeout: float | None = None,
        on_complete: Callable[[int, object], None] | None = None,
    ) -> list[object]:
        """Run a batch concurrently and return, in order, each job's result or its JobFailed.

        Entries are {"job_name": ..., "args": [...]} with optional "priority" and "unique".
        ``on_complete(index, outcome)`` is called as each job ends (outcome: its result or
        JobFailed). Every entry is checked and encoded before anything is sent
        (ValueError/TypeError name the bad entry, UnknownJob a name the job registry lacks
        when the client checks names). Raises JobTimeout when `timeout` seconds (None:
        `settings.default_timeout`, else no limit) pass before all end.
        """
        entries = _check_batch(batch)
        if not entries:
            return []
        jobs = [self._codec.job(entry) for entry in entries]
        outcomes: dict[int, object] = {}

        def ended(index: int, result: JobResult) -> None:
            outcome = self._codec.outcome(entries[index].job_name, result)
            outcomes[index] = outcome
            if on_complete is not None:
                on_complete(index, outcome)

        seconds = self._codec.timeout(timeout)
        try:
            self._gearman.submit_many(jobs, timeout=seconds, on_end=ended)
        except GearmanTimeout:
            names = (entry.job_name for entry in entries)
            raise self._codec.timed_out(names, seconds, timeout) from None
        return [outcomes[index] for index in range(len(jobs))]

    def submit_batch(
        self,
        batch: Sequence[Mapping[str, object]],
        timeout: float | None = None,
        on_complete: Callable[[int, object], None] | None = None,
    ) -> bool:
        """Run a batch of {"job_name": ..., "args": [...]} concurrently; True if none failed.

        As `run_batch` (failures are logged as warnings), returning only whether every job
        succeeded, as the original module does.
        """
        return batch_succeeded(self.run_batch(batch, timeout=timeout, on_complete=on_complete))

    def stream_background(
        self, batch: Iterable[Mapping[str, object]], *, window: int = STREAM_WINDOW
    ) -> Generator[str, None, None]:
        """Queue a batch's jobs in the background and yield their handles in input order,
        each once gearmand acknowledged it.

        Entries are as for run_batch, from any iterable: a generator's are read as the jobs
        go out, with at most ``window`` sent and not yet acknowledged, so that memory stays
        bounded whatever their number. An entry that cannot be sent (ValueError/TypeError
        naming it, UnknownJob, PayloadError) raises when it is reached, after every job
        before it was queued and its handle yielded. Raises TypeError for a batch that is
        not iterable, ValueError for a bad ``window`` (both at the call), and otherwise as
        GearmanClient.stream_background (ServerUnavailable, GearmanTimeout, ServerError).
        """
        if isinstance(batch, (str, bytes, Mapping)) or not isinstance(batch, Iterable):
            raise TypeError(f"a batch must be an iterable of {_ENTRY}, not {type(batch).__name__}")
        job = self._codec.job
        jobs = (job(_check_entry(index, entry)) for index, entry in enumerate(batch))
        return self._gearman.stream_background(jobs, window=window)

    def job_status(self, handle: str) -> JobStatus:
        """The status of a job by handle: known, running, numerator, denominator."""
        return self._gearman.get_status(handle)


_local = threading.local()


def _forget_clients() -> None:
    # A forked child must not use the parent's connections: it makes clients of its own.
    # Their sockets close in the child as the old clients go (the parent's stay open), which
    # is no leak to warn of.
    global _local
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        _local = threading.local()


os.register_at_fork(after_in_child=_forget_clients)
# Set while the default servers must not be used (see `refusing_default_servers`).
_refusals: list[str] = []


class NoServerChosen(LookupError):
    """The module-level API was called where no server was chosen and the default one
    (127.0.0.1:4730) is not to be trusted; the message says how to choose one."""


@contextlib.contextmanager
def refusing_default_servers(reason: str) -> Iterator[None]:
    """While the with block runs, the module-level functions raise NoServerChosen (``reason``
    then the ways to choose a server) instead of using the default servers, when no server
    is set in code, in a layer or in ISLANDORA_JOB_SERVERS. A test harness uses this: in a
    test, whatever listens on 127.0.0.1:4730 is not the test's server."""
    _refusals.append(reason)
    try:
        yield
    finally:
        _refusals.remove(reason)


def _client() -> JobClient:
    """This thread's client for the settings in force (resolved once per call), replaced
    when they change; NoServerChosen while the default servers are refused."""
    resolved = config.settings()
    # Identity, not equality: servers set anywhere are a tuple of their own, even when they
    # name 127.0.0.1:4730 too; only the unset default is this object.
    if _refusals and resolved.servers is config.DEFAULT_SERVERS:
        raise NoServerChosen(
            f"{_refusals[-1]}: islandora_job has no Gearman server to use, and whatever "
            f"listens on {config.DEFAULT_SERVERS[0]} is not yours; ask for a server fixture "
            "(gearman_server) in the test's arguments, or set ISLANDORA_JOB_SERVERS or "
            "configure(servers=...) to use a server of your own"
        )
    client: JobClient | None = getattr(_local, "client", None)
    if client is not None:
        if client.settings is resolved or client.settings == resolved:
            return client
        client.close()
    client = _local.client = JobClient(settings=resolved)
    return client


def submit(
    job_name: str,
    *args: object,
    timeout: float | None = None,
    priority: str = "normal",
    unique: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> object:
    """`JobClient.submit` on the configured servers."""
    return _client().submit(
        job_name, *args, timeout=timeout, priority=priority, unique=unique, on_progress=on_progress
    )


def submit_background(
    job_name: str, *args: object, priority: str = "normal", unique: str | None = None
) -> str:
    """`JobClient.submit_background` on the configured servers."""
    return _client().submit_background(job_name, *args, priority=priority, unique=unique)


def submit_batch(
    batch: Sequence[Mapping[str, object]],
    timeout: float | None = None,
    on_complete: Callable[[int, object], None] | None = None,
) -> bool:
    """`JobClient.submit_batch` on the configured servers."""
    return _client().submit_batch(batch, timeout=timeout, on_complete=on_complete)


def run_batch(
    batch: Sequence[Mapping[str, object]],
    timeout: float | None = None,
    on_complete: Callable[[int, object], None] | None = None,
) -> list[object]:
    """`JobClient.run_batch` on the configured servers."""
    return _client().run_batch(batch, timeout=timeout, on_complete=on_complete)


def stream_background(
    batch: Iterable[Mapping[str, object]], *, window: int = STREAM_WINDOW
) -> Generator[str, None, None]:
    """`JobClient.stream_background` on the configured servers."""
    return _client().stream_background(batch, window=window)


def job_status(handle: str) -> JobStatus:
    """`JobClient.job_status` on the configured servers."""
    return _client().job_status(handle)
