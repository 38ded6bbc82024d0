"""What every gearmand handle offers, whatever the backend that runs it.

CONTRACT for backends (process.py, docker.py, external.py):

class GearmanServer(abc.ABC):
    backend: str                 # "process" | "docker" | "external"
    host: str                    # address clients use ("127.0.0.1")
    port: int
    queue: str                   # "builtin" | "mysql" | "postgres" | "sqlite"
    log_path: Path | None        # gearmand's log file on this machine
    database: QueueDatabase | None   # the persistent queue's store (databases/base.py)
    address -> "host:port"       # property
    version -> str               # admin `version`, cached after start
    start() -> None              # blocks until admin `version` answers; raises ServerStartError
                                 # (message carries the log tail) when the child exits early
    stop() -> None               # SIGTERM, wait, SIGKILL after a grace period; idempotent
    kill() -> None               # SIGKILL, wait until gone
    restart() -> None            # start again: same port, same flags, same queue
    status() -> list[FunctionStatus]   # admin `status`
    log_tail(lines: int = 40) -> str
    # persistent servers (database is not None) also:
    persisted_jobs() -> list[PersistedJob]; persisted_counts() -> dict[str, int]
    clear_queue(function: str | None = None) -> int
"""
