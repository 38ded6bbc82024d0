"""Worker processes: the foreground worker, pidfile-managed detached workers, the router.

`run_worker()` is the `islandora-job worker` process (`runtime`). `start_worker(name)`
starts one detached, named by a pidfile in the temp dir, and returns once it is registered
with every server (`spawn`); `stop_worker(name)` stops it, after checking that the PID really
is that worker (`stop`, `identity`). `route()` is the `islandora-job route` command run by
the C `gearman -w` tool per job (`gearman_cli`). Pidfiles themselves: `pidfiles`.

Each of them takes its settings from the caller (`settings=`), or resolves the settings in
force once per call.
"""

from islandora_job.workers.gearman_cli import gearman_cli_command, route, run_gearman_cli_worker
from islandora_job.workers.heartbeat import PingAnswer, ping_workers
from islandora_job.workers.identity import CLIENT_ID_PREFIX, WorkerRunning, client_id
from islandora_job.workers.managed import (
    count_workers,
    managed_pidfiles,
    start_workers,
    stop_workers,
)
from islandora_job.workers.pidfiles import (
    GarbledPidfile,
    PidfileError,
    check_pidfile_name,
    pidfile_path,
    worker_log_path,
)
from islandora_job.workers.runtime import run_worker
from islandora_job.workers.spawn import WorkerStartError, start_worker
from islandora_job.workers.stop import stop_worker

__all__ = [
    "CLIENT_ID_PREFIX",
    "GarbledPidfile",
    "PidfileError",
    "PingAnswer",
    "WorkerRunning",
    "WorkerStartError",
    "check_pidfile_name",
    "client_id",
    "count_workers",
    "gearman_cli_command",
    "managed_pidfiles",
    "pidfile_path",
    "ping_workers",
    "route",
    "run_gearman_cli_worker",
    "run_worker",
    "start_worker",
    "start_workers",
    "stop_worker",
    "stop_workers",
    "worker_log_path",
]
