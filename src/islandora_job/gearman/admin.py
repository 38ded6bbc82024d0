"""Text admin protocol: status, workers, version, getpid, show jobs, cancel job,
drop function, maxqueue.

CONTRACT:
- class GearmanAdmin(address: str, timeout: float = 5.0); context manager; close().
  - version() -> str ; getpid() -> int
  - status() -> list[FunctionStatus(function, queued, running, workers)]   (queued = total)
  - workers() -> list[WorkerInfo(fd, ip, client_id, functions: tuple[str, ...])]
  - show_jobs() -> list[JobInfo(handle, retries, ignore_job, job_queued)]
  - cancel_job(handle) -> bool ; drop_function(name) -> bool ; maxqueue(function, size) -> None
  Raises ServerUnavailable when the server cannot be reached and AdminError on an ERR reply.
"""
