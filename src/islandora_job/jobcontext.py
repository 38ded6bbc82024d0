"""The job in hand, and its progress: `progress(numerator, denominator)` sends WORK_STATUS.

The native worker's handler makes the job it runs the current one (a context variable) for
the call of the job function; `progress` reports through that job's connection, so the
waiting client's `on_progress` and `job_status(handle)` see it while the job runs.
"""

from __future__ import annotations

import contextvars

from islandora_job.gearman.worker import WorkerJob

__all__ = ["NoJobRunning", "progress"]

NO_JOB = (
    "progress() was called outside a job: call it from a job function while the native "
    "worker (islandora-job worker, start_worker) runs it"
)
VIA_GEARMAN_CLI = (
    "progress() cannot be reported from a job run by `islandora-job worker --via-gearman-cli`: "
    "each job runs in an `islandora-job route` process with no connection to gearmand (the "
    "C tool holds it). Run the native worker (without --via-gearman-cli) to report progress"
)

# The job the native worker runs in this context, or the reason no progress can be sent.
current: contextvars.ContextVar[WorkerJob | str] = contextvars.ContextVar(
    "islandora_job_current", default=NO_JOB
)


class NoJobRunning(RuntimeError):
    """progress() was called where no job of the native worker runs; the message says why."""


def progress(numerator: int, denominator: int) -> None:
    """Report that the job in hand has done ``numerator`` of ``denominator`` (WORK_STATUS).

    Raises NoJobRunning outside a job of the native worker (in the `--via-gearman-cli`
    router too), TypeError/ValueError unless both are integers 0 or more, and
    ServerUnavailable when the job's server is gone.
    """
    for name, value in (("numerator", numerator), ("denominator", denominator)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"progress {name} must be an int, not {type(value).__name__}")
        if value < 0:
            raise ValueError(f"progress {name} must be 0 or more, not {value}")
    job = current.get()
    if isinstance(job, str):
        raise NoJobRunning(job)
    job.send_status(numerator, denominator)
