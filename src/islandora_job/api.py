"""Submitting jobs: foreground, background, batch, status, as in the original module.

`JobClient` is bound to a list of servers; the module-level functions use the servers of
the current `settings()`, through one client per thread, process and server list.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence

from islandora_job import payload
from islandora_job.config import parse_servers, settings
from islandora_job.gearman.client import GearmanClient, GearmanTimeout, JobResult, JobStatus
from islandora_job.gearman.connection import ServerUnavailable
from islandora_job.queue import queue_status

log = logging.getLogger(__name__)


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


def _check_batch(batch: Sequence[Mapping[str, object]]) -> list[tuple[str, Sequence[object]]]:
    if isinstance(batch, (str, bytes)) or not isinstance(batch, Sequence):
        raise TypeError(
            f"a batch must be a list of {{'job_name': ..., 'args': [...]}}, "
            f"not {type(batch).__name__}"
        )
    jobs: list[tuple[str, Sequence[object]]] = []
    for index, entry in enumerate(batch):
        where = f"batch entry {index}"
        if not isinstance(entry, Mapping):
            raise TypeError(
                f"{where} is a {type(entry).__name__}: give {{'job_name': ..., 'args': [...]}}"
            )
        unknown = set(entry) - {"job_name", "args"}
        if unknown:
            raise ValueError(f"{where} has unknown keys {sorted(unknown)}: use job_name and args")
        if "job_name" not in entry:
            raise ValueError(f"{where} has no job_name: give {{'job_name': ..., 'args': [...]}}")
        args = entry.get("args", [])
        if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
            raise TypeError(f"{where}: args must be a list, not {type(args).__name__}")
        try:
            job_name = payload.check_job_name(entry["job_name"])
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: {exc}") from None
        jobs.append((job_name, args))
    return jobs


class JobClient:
    """Submits jobs to a list of gearmand servers (default: the settings' servers).

    Not safe to share between threads: give each thread its own (the module-level
    functions do). Closes its connection on close() or at the end of a `with` block.
    """

    def __init__(
        self,
        servers: str | Iterable[str] | None = None,
        *,
        connect_timeout: float = 5.0,
        max_payload: int | None = None,
    ) -> None:
        """Bind to servers ("host:port" list or comma-separated string); ValueError if malformed."""
        self.servers = settings().servers if servers is None else parse_servers(servers)
        self.max_payload = max_payload
        self._connect_timeout = connect_timeout
        self._client: GearmanClient | None = None

    def __repr__(self) -> str:
        return f"JobClient(servers={list(self.servers)!r})"

    def __enter__(self) -> JobClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; the next call opens a new one."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    @contextlib.contextmanager
    def _gearman(self) -> Iterator[GearmanClient]:
        if self._client is None:
            self._client = GearmanClient(self.servers, connect_timeout=self._connect_timeout)
        try:
            yield self._client
        except ServerUnavailable:
            # A lost server leaves the connection unusable: the next call reconnects.
            self.close()
            raise

    def _encode(self, job_name: str, args: Sequence[object]) -> bytes:
        return payload.encode(job_name, args, max_size=self.max_payload)

    def _decode(self, job_name: str, result: JobResult) -> object:
        if not result.ok:
            raise _failure(job_name, result)
        return payload.decode_result(result.data, max_size=self.max_payload)

    def _timed_out(self, job_names: Iterable[str], timeout: float | None) -> JobTimeout:
        names = list(dict.fromkeys(job_names))
        status = queue_status(self.servers, names)
        # The connection may still carry the unfinished jobs' replies: start afresh.
        self.close()
        return JobTimeout(", ".join(names), timeout, status)

    def submit(self, job_name: str, *args: object, timeout: float | None = None) -> object:
        """Run a job in the foreground and return its decoded result.

        Raises JobFailed when the job raised or failed, JobTimeout when `timeout` seconds
        pass first, TypeError when an argument cannot be encoded as JSON, PayloadError for
        an oversized payload or a result that is not JSON, ServerUnavailable when no
        server can be reached.
        """
        data = self._encode(job_name, args)
        try:
            with self._gearman() as gearman:
                result = gearman.submit(job_name, data, timeout=timeout)
        except GearmanTimeout:
            raise self._timed_out([job_name], timeout) from None
        return self._decode(job_name, result)

    def submit_background(self, job_name: str, *args: object) -> str:
        """Queue a job in the background and return its handle ("H:host:N").

        Raises TypeError/PayloadError for arguments that cannot be sent and
        ServerUnavailable when no server can be reached.
        """
        data = self._encode(job_name, args)
        with self._gearman() as gearman:
            return gearman.submit_background(job_name, data)

    def submit_batch(
        self, batch: Sequence[Mapping[str, object]], timeout: float | None = None
    ) -> bool:
        """Run a batch of {"job_name": ..., "args": [...]} concurrently; True if none failed.

        Every entry is checked and encoded before anything is sent (ValueError/TypeError
        name the bad entry). Raises JobTimeout when `timeout` seconds pass before all end.
        """
        jobs = [(name, self._encode(name, args)) for name, args in _check_batch(batch)]
        if not jobs:
            return True
        try:
            with self._gearman() as gearman:
                results = gearman.submit_many(jobs, timeout=timeout)
        except GearmanTimeout:
            raise self._timed_out((name for name, _ in jobs), timeout) from None
        ok = True
        for (name, _), result in zip(jobs, results, strict=True):
            if not result.ok:
                ok = False
                log.warning("%s", _failure(name, result))
        return ok

    def job_status(self, handle: str) -> JobStatus:
        """The status of a job by handle: known, running, numerator, denominator."""
        with self._gearman() as gearman:
            return gearman.get_status(handle)


_local = threading.local()


def _client() -> JobClient:
    """This thread's client for the configured servers, replaced when they change."""
    servers, pid = settings().servers, os.getpid()
    cached: tuple[int, JobClient] | None = getattr(_local, "client", None)
    if cached is not None:
        owner, client = cached
        if owner == pid and client.servers == servers:
            return client
        if owner == pid:
            client.close()
        # After a fork the socket is the parent's: leave it to the parent.
    client = JobClient(servers)
    _local.client = (pid, client)
    return client


def submit(job_name: str, *args: object, timeout: float | None = None) -> object:
    """`JobClient.submit` on the configured servers."""
    return _client().submit(job_name, *args, timeout=timeout)


def submit_background(job_name: str, *args: object) -> str:
    """`JobClient.submit_background` on the configured servers."""
    return _client().submit_background(job_name, *args)


def submit_batch(batch: Sequence[Mapping[str, object]], timeout: float | None = None) -> bool:
    """`JobClient.submit_batch` on the configured servers."""
    return _client().submit_batch(batch, timeout=timeout)


def job_status(handle: str) -> JobStatus:
    """`JobClient.job_status` on the configured servers."""
    return _client().job_status(handle)
