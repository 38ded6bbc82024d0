"""Gearman worker: CAN_DO / GRAB_JOB_UNIQ / PRE_SLEEP loop over several servers.

CONTRACT:
- class GearmanWorker(servers: Sequence[str], client_id: str | None = None)
  - register(function: str, handler: Callable[[WorkerJob], bytes]) : CAN_DO on every server.
  - work() : loop until request_stop(); reconnects to a lost server with capped exponential
    backoff, never spinning. A handler's return value is sent as WORK_COMPLETE; a handler that
    raises WorkFailure(data) sends WORK_EXCEPTION(data) (when data) then WORK_FAIL; any other
    exception is turned into WorkFailure(repr) and the loop carries on.
  - request_stop() : async-signal-safe; an idle worker returns from work() promptly, a busy
    worker finishes the current job (its result reaches the server) first.
  - registered_on() -> list of "host:port" where CAN_DO has been sent (for readiness).
- class WorkerJob: handle, function, unique, data (bytes); send_data(b), send_status(n, d),
  send_warning(b).
- class WorkFailure(Exception): data: bytes | None.
"""
