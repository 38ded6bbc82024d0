"""Submitting jobs: foreground, background, batch, status, as in the original module.

`JobClient` is bound to the settings it is given (or those in force when it is made); the
module-level functions resolve `settings()` once per call and use one client per thread,
process and settings.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence

from islandora_job import config, payload
from islandora_job.config import Settings, parse_max_payload, parse_servers
from islandora_job.gearman.admin import AdminError, GearmanAdmin
from islandora_job.gearman.client import GearmanClient, GearmanTimeout, JobResult, JobStatus
from islandora_job.gearman.protocol import ProtocolError

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


def queue_status(servers: Iterable[str], functions: Iterable[str], timeout: float = 2.0) -> str:
    """Say, per server, how many jobs of each function are queued and running, and by how
    many workers; used to explain a timeout. Takes at most ``timeout`` seconds in all.
    Never raises: an unreachable or silent server is said so.
    """
    wanted = list(dict.fromkeys(functions))
    parts: list[str] = []
    deadline = time.monotonic() + timeout
    for server in servers:
        left = deadline - time.monotonic()
        if left <= 0:
            parts.append(f"{server}: status not asked (no time left)")
            continue
        try:
            with GearmanAdmin(server, timeout=left) as admin:
                rows = {row.function: row for row in admin.status()}
        except (OSError, AdminError, ProtocolError) as exc:
            parts.append(f"{server}: status unavailable ({exc})")
            continue
        for function in wanted:
            row = rows.get(function)
            if row is None or row.workers == 0:
                queued = row.queued if row else 0
                parts.append(
                    f"no worker registered for {function!r} on {server} ({queued} queued): "
                    "start one (islandora-job start-worker NAME)"
                )
            else:
                parts.append(
                    f"{function!r} on {server}: {row.queued} queued, {row.running} running, "
                    f"{row.workers} workers"
                )
    return "; ".join(parts)


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
    """Submits jobs to a list of gearmand servers.

    Its settings are `settings` when given, else those in force when it is made
    (`islandora_job.settings()`, resolved once); `servers` and `max_payload` override theirs.
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
    ) -> None:
        """Bind to servers ("host:port" list or comma-separated string); ValueError if a
        server or the payload limit is malformed."""
        resolved = config.settings() if settings is None else settings
        if servers is not None or max_payload is not None:
            resolved = dataclasses.replace(
                resolved,
                servers=resolved.servers if servers is None else parse_servers(servers),
                max_payload=(
                    resolved.max_payload if max_payload is None else parse_max_payload(max_payload)
                ),
            )
        self.settings = resolved
        self.servers = self.settings.servers
        self.max_payload = self.settings.max_payload
        # Connects on first use; it drops a connection whose server is lost, and remembers
        # which servers hung and which created each background handle.
        self._gearman = GearmanClient(
            self.servers,
            connect_timeout=connect_timeout,
            # A result may be as large as a payload; what else a job sends, a little more.
            max_reply=self.max_payload + _REPLY_HEADROOM,
        )

    def __repr__(self) -> str:
        return f"JobClient(servers={list(self.servers)!r})"

    def __enter__(self) -> JobClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections; the next call opens new ones."""
        self._gearman.close()

    def _encode(self, job_name: str, args: Sequence[object]) -> bytes:
        return payload.encode(job_name, args, max_size=self.max_payload)

    def _decode(self, job_name: str, result: JobResult) -> object:
        if not result.ok:
            raise _failure(job_name, result)
        return payload.decode_result(result.data, max_size=self.max_payload)

    def _timed_out(self, job_names: Iterable[str], timeout: float | None) -> JobTimeout:
        names = list(dict.fromkeys(job_names))
        # Within the slack a timeout allows, even when a server hangs.
        status = queue_status(self.servers, names, timeout=_STATUS_BUDGET)
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
            result = self._gearman.submit(job_name, data, timeout=timeout)
        except GearmanTimeout:
            raise self._timed_out([job_name], timeout) from None
        return self._decode(job_name, result)

    def submit_background(self, job_name: str, *args: object) -> str:
        """Queue a job in the background and return its handle ("H:host:N").

        Raises TypeError/PayloadError for arguments that cannot be sent and
        ServerUnavailable when no server can be reached.
        """
        data = self._encode(job_name, args)
        return self._gearman.submit_background(job_name, data)

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
            results = self._gearman.submit_many(jobs, timeout=timeout)
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
        return self._gearman.get_status(handle)


_local = threading.local()


def _client() -> JobClient:
    """This thread's client for the settings in force (resolved once per call), replaced
    when they change."""
    resolved, pid = config.settings(), os.getpid()
    cached: tuple[int, JobClient] | None = getattr(_local, "client", None)
    if cached is not None:
        owner, client = cached
        if owner == pid and (client.settings is resolved or client.settings == resolved):
            return client
        if owner == pid:
            client.close()
        # After a fork the socket is the parent's: leave it to the parent.
    client = JobClient(settings=resolved)
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
