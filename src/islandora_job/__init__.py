"""Gearman jobs for Python, a port of the Drupal module Islandora Job.

Modules register job functions (`register_jobs()`); code submits jobs in the foreground
(`submit`), in the background (`submit_background`) or as a batch (`submit_batch`);
pidfile-managed workers (`start_worker` / `stop_worker`) run them. Payloads are JSON.
"""

from islandora_job.api import (
    JobClient,
    JobFailed,
    JobTimeout,
    NoServerChosen,
    job_status,
    submit,
    submit_background,
    submit_batch,
)
from islandora_job.config import Overrides, Settings, configure, configured, restore, settings
from islandora_job.gearman.client import JobStatus
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
    "restore",
    "run_worker",
    "settings",
    "start_worker",
    "stop_worker",
    "submit",
    "submit_background",
    "submit_batch",
    "worker_log_path",
]
