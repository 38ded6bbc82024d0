"""Which jobs a worker serves, and how the native worker runs one: decode, resolve, call, encode."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from islandora_job import jobcontext, payload
from islandora_job.gearman.worker import WorkerJob, WorkFailure
from islandora_job.registry import Registry, RegistryError, UnknownJob

log = logging.getLogger(__name__)

NO_JOBS = (
    "no jobs are registered: list job modules in ISLANDORA_JOB_MODULES (or configure("
    "modules=...)) or declare an `islandora_job.jobs` entry point"
)


def select_jobs(registry: Registry, only: Iterable[str] | None) -> list[str]:
    """The job names a worker registers: every registered one, or the `only` ones.

    Raises UnknownJob for an `only` name nobody registered, RegistryError when there are none.
    """
    names = list(registry.jobs) if not only else [registry.spec(n).name for n in only]
    if not names:
        raise RegistryError(NO_JOBS)
    return names


def encode_result(value: object, json_result: bool) -> bytes:
    """JSON for our own client, which asks for it; else the text the original router echoes."""
    return payload.encode_result(value) if json_result else payload.encode_text_result(value)


def handler(
    registry: Registry, max_payload: int, site: str | None = None
) -> Callable[[WorkerJob], bytes]:
    """The worker's handler for every job: decode, check, resolve, call, encode; a failure
    (bad payload, unregistered job, the job raised) raises WorkFailure with its JSON. With a
    site, jobs arrive on the functions `{site}_{job}`."""

    # Bound once: the handler runs for every job.
    set_current, reset_current = jobcontext.current.set, jobcontext.current.reset
    decode_job, resolve = payload.decode_job, registry.resolve
    encode_json, encode_text = payload.encode_result, payload.encode_text_result

    def handle(job: WorkerJob) -> bytes:
        # The job in hand, for islandora_job.progress() called from the job function.
        token = set_current(job)
        try:
            name, args, json_result = decode_job(
                job.data, job.function, max_size=max_payload, site=site
            )
            value = resolve(name)(*args)
            return encode_json(value) if json_result else encode_text(value)
        except (payload.PayloadError, UnknownJob, RegistryError) as exc:
            log.warning("job %s on %r refused: %s", job.handle, job.function, exc)
            raise WorkFailure(payload.encode_failure(exc)) from exc
        except (Exception, SystemExit) as exc:
            log.exception("job %s on %r raised", job.handle, job.function)
            raise WorkFailure(payload.encode_failure(exc)) from exc
        finally:
            reset_current(token)

    return handle
