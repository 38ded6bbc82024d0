"""The heartbeat: every native worker serves a ping function of its own, answered by the
worker loop itself (not a job), and `ping_workers` asks each registered worker through
gearmand (the `islandora-job ping` command).

A worker's ping function is `islandora_job_ping:<host>:<pid>` (`{site}_...` with a site):
one per worker, since gearmand hands a function's job to any of its workers. A worker busy
with a long job answers once that job ends: within the ping's timeout or not at all.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections.abc import Sequence

from islandora_job import config, payload
from islandora_job.config import Settings
from islandora_job.gearman.admin import AdminError, GearmanAdmin
from islandora_job.gearman.client import GearmanClient, GearmanTimeout, JobResult, ServerError
from islandora_job.gearman.connection import ServerUnavailable
from islandora_job.gearman.protocol import ProtocolError
from islandora_job.gearman.worker import Handler, WorkerJob

__all__ = ["PING", "PingAnswer", "ping_function", "ping_handler", "ping_workers"]

PING = "islandora_job_ping"


def ping_function(pid: int, site: str | None = None, host: str | None = None) -> str:
    """The ping function of our worker with this PID on this host (this machine's name when
    None), with the site prefix."""
    name = f"{PING}:{socket.gethostname() if host is None else host}:{pid}"
    return payload.gearman_function(name, site) if site else name


def ping_handler(jobs: Sequence[str]) -> Handler:
    """The worker's answer to a ping: JSON {"pid", "host", "jobs"}."""
    answer = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "jobs": list(jobs)})

    def pong(job: WorkerJob) -> bytes:
        return answer.encode()

    return pong


@dataclasses.dataclass(frozen=True)
class PingAnswer:
    """One registered worker, as a server lists it, and what its ping came to.

    function: its ping function ("" for a worker that serves none: not a native worker of
    ours, so not checked); answer: its JSON answer when it answered; error: why not.
    """

    server: str
    client_id: str
    functions: tuple[str, ...]
    function: str = ""
    answer: dict[str, object] | None = None
    error: str = ""

    @property
    def checked(self) -> bool:
        """True for a worker with a ping function."""
        return bool(self.function)

    @property
    def ok(self) -> bool:
        """True when a worker with a ping function answered."""
        return self.answer is not None


def _is_ping(function: str) -> bool:
    return function.startswith(PING + ":") or f"_{PING}:" in function


def ping_workers(*, timeout: float = 5.0, settings: Settings | None = None) -> list[PingAnswer]:
    """Ask every server of the settings for its registered workers (admin `workers`), and
    ping each that serves a ping function, all at once, waiting at most ``timeout`` seconds
    per server. A server that cannot be reached gives one PingAnswer with its error (and no
    client id). Never raises for a worker or server that does not answer."""
    resolved = config.settings() if settings is None else settings
    return [answer for server in resolved.servers for answer in _ping_server(server, timeout)]


def _ping_server(server: str, timeout: float) -> list[PingAnswer]:
    try:
        with GearmanAdmin(server, timeout=timeout) as admin:
            registered = [w for w in admin.workers() if w.functions]
    except (OSError, AdminError, ProtocolError) as exc:
        return [PingAnswer(server, "", (), error=f"server unavailable: {exc}")]
    workers = [
        PingAnswer(
            server, w.client_id, w.functions, next((f for f in w.functions if _is_ping(f)), "")
        )
        for w in registered
    ]
    pinged = [w for w in workers if w.checked]
    answered: dict[int, JobResult] = {}
    error = "no answer"
    if pinged:
        with GearmanClient([server], connect_timeout=timeout) as client:
            try:
                client.submit_many(
                    [(w.function, b"") for w in pinged],
                    timeout=timeout,
                    on_end=answered.__setitem__,
                )
            except (GearmanTimeout, ServerUnavailable, ServerError, ProtocolError) as exc:
                error = f"no answer within {timeout:g} s ({exc})"
    # The pinged workers' results, in the workers' order.
    results = iter([answered.get(index) for index in range(len(pinged))])
    return [
        _outcome(w, next(results), error)
        if w.checked
        else dataclasses.replace(w, error="serves no ping function: not a native worker of ours")
        for w in workers
    ]


def _outcome(worker: PingAnswer, result: JobResult | None, error: str) -> PingAnswer:
    if result is None:
        return dataclasses.replace(worker, error=error)
    if not result.ok:
        return dataclasses.replace(worker, error=f"the ping ended with {result.status}")
    try:
        answer = json.loads(result.data)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return dataclasses.replace(worker, error="answered no JSON object")
    return dataclasses.replace(worker, answer=answer)
