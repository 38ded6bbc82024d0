"""Gearman client: SUBMIT_JOB*, many jobs in flight for batches, GET_STATUS, failover.

CONTRACT:
- class GearmanClient(servers: Sequence[str], connect_timeout: float = 5.0)
  servers are "host:port" strings (port defaults to 4730); on connect failure the client
  fails over to the next server.
  - submit(function: str, data: bytes, *, unique: str | None = None,
           priority: Priority = Priority.NORMAL, timeout: float | None = None) -> JobResult
    foreground; blocks until WORK_COMPLETE/FAIL/EXCEPTION; raises GearmanTimeout.
  - submit_background(function, data, *, unique=None, priority=Priority.NORMAL) -> str  (handle)
  - submit_many(jobs: Sequence[tuple[str, bytes]], *, timeout=None) -> list[JobResult]
    foreground, all in flight at once on one connection, results in input order.
  - submit_background_many(jobs, *, priority=...) -> list[str]  pipelined background submits.
  - get_status(handle: str) -> JobStatus
  - close(); context manager.
  Every job gets a uuid4 unique id unless one is given. OPTION_REQ "exceptions" is sent once
  per connection.
- class Priority(enum.Enum): HIGH, NORMAL, LOW.
- @dataclass class JobResult: handle: str, function: str, status: "complete"|"fail"|"exception",
  data: bytes (WORK_COMPLETE payload, or b""), exception: bytes | None (WORK_EXCEPTION payload),
  partial: list[bytes] (WORK_DATA), warnings: list[bytes]; property ok.
- @dataclass class JobStatus: handle, known: bool, running: bool, numerator: int, denominator: int.
- class GearmanTimeout(TimeoutError); class ServerUnavailable(ConnectionError) (in connection.py).
"""
