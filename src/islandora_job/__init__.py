"""Gearman jobs for Python, a port of the Drupal module Islandora Job.

Modules register job functions (`register_jobs()`); code submits jobs in the foreground
(`submit`), in the background (`submit_background`, or `stream_background` for many) or as
a batch (`submit_batch`, `run_batch`), with priorities and unique ids; pidfile-managed workers (`start_worker` /
`stop_worker`) run them, and a job reports its `progress`. `islandora_job.aio` is the
asyncio client. Payloads are JSON.
"""

from islandora_job.api import (
    JobClient,
    JobFailed,
    JobTimeout,
    NoServerChosen,
    job_status,
    run_batch,
    stream_background,
    submit,
    submit_background,
    submit_batch,
    unique_id,
)
from islandora_job.config import Overrides, Settings, configure, configured, restore, settings
from islandora_job.gearman.client import JobStatus
from islandora_job.jobcontext import NoJobRunning, progress
from islandora_job.payload import PayloadError
from islandora_job.registry import JobSpec, Registry, RegistryError, UnknownJob, load_registry
from islandora_job.workers import (
    PidfileError,
    WorkerRunning,
    WorkerStartError,
    run_worker,
    start_worker,
    stop_worker,
    worker_log_path,
)

__all__ = [
    "JobClient",
    "JobFailed",
    "JobSpec",
    "JobStatus",
    "JobTimeout",
    "NoJobRunning",
    "NoServerChosen",
    "Overrides",
    "PayloadError",
    "PidfileError",
    "Registry",
    "RegistryError",
    "Settings",
    "UnknownJob",
    "WorkerRunning",
    "WorkerStartError",
    "configure",
    "configured",
    "job_status",
    "load_registry",
    "progress",
    "restore",
    "run_batch",
    "run_worker",
    "settings",
    "start_worker",
    "stop_worker",
    "stream_background",
    "submit",
    "submit_background",
    "submit_batch",
    "unique_id",
    "worker_log_path",
]
