"""Jobs left per function, and clearing a flooded queue, for every gearmand queue type.

Counting goes through the admin protocol (`status`: works for every queue type, the in-memory
one included) or through a persistent queue table (the module README's query, given a DSN).
`status_lines()` / `queue_status()` put the admin counts into words, for timeouts and waits.

Clearing has to go through gearmand: it holds every queued job in memory as well as in its
table, so deleting rows leaves the jobs queued. `clear()` registers as a worker for the
functions, grabs each waiting job and reports it failed; gearmand then drops the job from
memory and deletes its row. Jobs running on other workers are left alone; jobs submitted while
the clearing runs may be cleared too.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from islandora_job.dsn import parse_dsn
from islandora_job.gearman.admin import AdminError, FunctionStatus, GearmanAdmin
from islandora_job.gearman.client import ServerError
from islandora_job.gearman.connection import Connection, ServerUnavailable, parse_address
from islandora_job.gearman.protocol import PacketType, ProtocolError, request

__all__ = [
    "DEFAULT_TABLE",
    "FunctionCount",
    "QueueTableError",
    "ServerStatus",
    "StatusReader",
    "check_table_name",
    "clear",
    "counts_from_table",
    "jobs_left",
    "queue_status",
    "read_status",
    "status",
    "status_lines",
    "table_counts",
]

#: The table gearmand's MySQL and SQLite queues use by default (we give it to Postgres too).
DEFAULT_TABLE = "gearman_queue"
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_GRAB = request(PacketType.GRAB_JOB)


class QueueTableError(Exception):
    """A queue table could not be read (missing, or not gearmand's layout)."""


@dataclass(frozen=True)
class FunctionCount:
    """Jobs of one function summed over servers: all unfinished (`total`), `running` ones,
    and the workers that can do it."""

    function: str
    total: int
    running: int
    workers: int

    @property
    def waiting(self) -> int:
        """Jobs no worker has taken yet."""
        return self.total - self.running


@dataclass(frozen=True)
class ServerStatus:
    """One server's admin `status` rows, or the error that kept them out of reach."""

    address: str
    rows: tuple[FunctionStatus, ...] = ()
    error: Exception | None = None

    def checked(self) -> tuple[FunctionStatus, ...]:
        """The rows; raises the error (ServerUnavailable, AdminError...) if they were not read."""
        if self.error is not None:
            raise self.error
        return self.rows


def read_status(servers: Iterable[str], timeout: float = 5.0) -> list[ServerStatus]:
    """The admin `status` of each server, in order, within ``timeout`` seconds in all (a
    server that hangs cannot hold up the others' answers past it).

    Never raises for a server that cannot be read (unreachable, refusing, garbled, silent):
    its ServerStatus holds the error instead (ServerUnavailable or another OSError,
    AdminError, ProtocolError).
    """
    found = []
    deadline = time.monotonic() + timeout
    for address in servers:
        left = deadline - time.monotonic()
        if left <= 0:
            found.append(ServerStatus(address, error=TimeoutError("not asked: no time left")))
            continue
        with GearmanAdmin(address, left) as admin:
            found.append(_status_of(admin))
    return found


def _status_of(admin: GearmanAdmin) -> ServerStatus:
    try:
        return ServerStatus(admin.address, tuple(admin.status()))
    except (OSError, AdminError, ProtocolError) as exc:
        return ServerStatus(admin.address, error=exc)


class StatusReader:
    """Reads servers' admin `status` as read_status does, but over connections kept open
    from one read of the same servers to the next (a connection per read costs a connect,
    and gearmand an accept), each server's read within ``timeout`` seconds.

    Never raises for a server that cannot be read: its ServerStatus holds the error.
    close() closes the connections.
    """

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._admins: dict[str, GearmanAdmin] = {}

    def read(self, servers: Iterable[str]) -> list[ServerStatus]:
        """The admin `status` of each server, in order; the connections to servers not
        among them are closed (a suite of short-lived servers leaves none open)."""
        wanted = list(servers)
        for address in [a for a in self._admins if a not in wanted]:
            self._admins.pop(address).close()
        return [self._read(address) for address in wanted]

    def _read(self, address: str) -> ServerStatus:
        admin = self._admins.get(address)
        if admin is None:
            admin = self._admins[address] = GearmanAdmin(address, self.timeout)
        kept = admin.connected
        found = _status_of(admin)
        if kept and isinstance(found.error, ServerUnavailable):
            # Closed since the last read (the server restarted): once more, connecting anew.
            found = _status_of(admin)
        return found

    def close(self) -> None:
        """Close every connection (a later read opens new ones)."""
        for admin in self._admins.values():
            admin.close()
        self._admins.clear()


_START_ONE = "start one (islandora-job start-worker PIDFILE)"


def _function_line(
    server: str, function: str, row: FunctionStatus | None, hint: str = _START_ONE
) -> str:
    if row is None or row.workers == 0:
        queued = row.queued if row else 0
        return f"no worker registered for {function!r} on {server} ({queued} queued): {hint}"
    return (
        f"{function!r} on {server}: {row.queued} queued, {row.running} running, "
        f"{row.workers} workers"
    )


def status_lines(
    servers: Iterable[str],
    functions: Iterable[str] | None = None,
    timeout: float = 5.0,
    hints: Mapping[str, str] | None = None,
) -> list[str]:
    """Per server, one line per function of `functions` (every function the server knows when
    None) saying how many jobs are queued and running, by how many workers, and how to start
    a worker when there is none (``hints``: function -> what to say instead); a server that
    cannot be read gets one line saying why.

    Never raises for a server that cannot be read.
    """
    wanted = None if functions is None else list(dict.fromkeys(functions))
    lines: list[str] = []
    for server in read_status(servers, timeout):
        if server.error is not None:
            lines.append(f"{server.address}: status unavailable ({server.error})")
            continue
        rows = {row.function: row for row in server.rows}
        if wanted is None and not rows:
            lines.append(f"{server.address}: no functions known")
        for function in rows if wanted is None else wanted:
            hint = (hints or {}).get(function, _START_ONE)
            lines.append(_function_line(server.address, function, rows.get(function), hint))
    return lines


def queue_status(
    servers: Iterable[str],
    functions: Iterable[str],
    timeout: float = 2.0,
    hints: Mapping[str, str] | None = None,
) -> str:
    """Say, per server, how many jobs of each function are queued and running, and by how
    many workers, on one line, within ``timeout`` seconds in all; used to explain a timeout.
    Never raises: an unreachable or silent server is said so.
    """
    return "; ".join(status_lines(servers, functions, timeout=timeout, hints=hints))


def status(servers: Sequence[str], timeout: float = 5.0) -> dict[str, FunctionCount]:
    """Per function, the admin `status` counts summed over `servers`.

    Raises ServerUnavailable when a server cannot be reached, AdminError or ProtocolError when
    it answers wrongly.
    """
    found: dict[str, FunctionCount] = {}
    for server in read_status(servers, timeout):
        for row in server.checked():
            seen = found.get(row.function, FunctionCount(row.function, 0, 0, 0))
            found[row.function] = FunctionCount(
                row.function,
                seen.total + row.queued,
                seen.running + row.running,
                seen.workers + row.workers,
            )
    return found


def jobs_left(servers: Sequence[str], function: str | None = None) -> dict[str, int]:
    """Unfinished jobs (waiting or running) per function with any, from admin `status`.

    Works for every queue type. Raises ServerUnavailable when a server cannot be reached.
    """
    return {
        name: count.total
        for name, count in sorted(status(servers).items())
        if count.total and (function is None or name == function)
    }


def check_table_name(table: str) -> str:
    """Return `table` if it is a plain SQL identifier; raises ValueError otherwise."""
    if not _TABLE_NAME.match(table):
        raise ValueError(
            f"queue table name {table!r} is not a plain identifier; use letters, digits and _"
        )
    return table


def table_counts(connection: Any, table: str = DEFAULT_TABLE) -> dict[str, int]:
    """Jobs left per function in a queue table, on an open DB-API connection.

    Raises the driver's error when the table does not exist.
    """
    cursor = connection.cursor()
    cursor.execute(
        f"SELECT function_name, COUNT(*) FROM {check_table_name(table)} GROUP BY function_name"
    )
    return {
        (name if isinstance(name, str) else bytes(name).decode("utf-8", "replace")): int(count)
        for name, count in sorted(cursor.fetchall())
    }


def counts_from_table(dsn: str, table: str = DEFAULT_TABLE) -> dict[str, int]:
    """Jobs left per function in the queue table at `dsn` (mysql://, postgresql://, sqlite://).

    Raises DSNError (a ValueError) on a bad DSN, DatabaseUnavailable (a ConnectionError) when
    the database cannot be reached, QueueTableError when the table cannot be read; no message
    holds the password.
    """
    parsed = parse_dsn(dsn)
    with contextlib.closing(parsed.connect()) as conn:
        try:
            return table_counts(conn, table)
        except Exception as exc:  # the driver's own errors: no such table, no rights
            reason = parsed.scrub(" ".join(str(exc).split()))
            raise QueueTableError(
                f"cannot read table {table} at {parsed.describe()}: {reason}; "
                "check the table name (--table) and that gearmand has created it"
            ) from None


def clear(servers: Sequence[str], function: str | None = None, timeout: float = 5.0) -> int:
    """Make each server forget its waiting jobs of `function` (or of every function), in
    memory and in its queue table; return how many jobs were cleared.

    Foreground clients waiting on a cleared job are told it failed. Raises ServerUnavailable
    when a server cannot be reached, ServerError when it answers with an error.
    """
    cleared = 0
    for address in servers:
        # Only functions the server knows with jobs waiting: asking to clear a name it does
        # not know must not make it one (CAN_DO creates the function in gearmand).
        functions = [
            name
            for name, count in status([address], timeout).items()
            if count.waiting > 0 and (function is None or name == function)
        ]
        if functions:
            cleared += _drain(address, functions, timeout)
    return cleared


def _drain(address: str, functions: Sequence[str], timeout: float) -> int:
    host, port = parse_address(address)
    drained = 0
    with Connection(host, port, timeout, timeout) as conn:
        hello = [request(PacketType.CAN_DO, name.encode("utf-8")) for name in functions]
        conn.send(b"".join([*hello, _GRAB]))
        while True:
            packet = conn.read_packet()
            if packet.type is PacketType.JOB_ASSIGN:
                # A failed job is finished: gearmand frees it and deletes its row.
                conn.send(request(PacketType.WORK_FAIL, packet.args[0]) + _GRAB)
                drained += 1
            elif packet.type is PacketType.NO_JOB:
                # Packets are handled in order, so every WORK_FAIL above has been applied.
                return drained
            elif packet.type is PacketType.ERROR:
                code, message = (arg.decode("utf-8", "replace") for arg in packet.args)
                raise ServerError(address, code, message)
            elif packet.type is not PacketType.NOOP:
                raise ProtocolError(f"unexpected {packet.type.name} from gearmand at {address}")
