"""What every queue database offers to a gearmand fixture.

CONTRACT:

@dataclass(frozen=True) class PersistedJob: function: str, unique_key: str, priority: int, data: bytes

class QueueDatabase(abc.ABC):
    queue: str                     # "mysql" | "postgres" | "sqlite"
    table: str                     # "gearman_queue" unless told otherwise
    start() -> None                # throwaway: boot the server / create the file;
                                   # existing (DSN): create our own database, never touch others
    stop() -> None                 # drop what start() made; stop what it booted
    gearmand_args() -> list[str]   # e.g. ["-q", "MySQL", "--mysql-host", "127.0.0.1", ...]
    rows() -> list[PersistedJob]
    counts() -> dict[str, int]     # jobs left per function (the module README's query)
    delete(function: str | None = None) -> int
    describe() -> str              # for headers and errors; never contains a password
"""
