"""What every queue database offers to a gearmand fixture, and the throwaway server under it.

A `QueueDatabase` is the database gearmand keeps its persistent queue in: `start()` makes it
(a throwaway server, a database of our own on an existing server, or a file), `gearmand_args()`
points gearmand at it, `rows()`/`counts()`/`delete()` read and change the queue table, and
`stop()` removes what `start()` made and nothing else.

A `LocalServer` is a throwaway MariaDB or PostgreSQL: its data directory is copied from a
template made once per run (shared by the xdist workers of the run under a file lock), and it
listens on a claimed loopback port until `remove()`.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from islandora_job.dsn import DSN, DatabaseUnavailable
from islandora_job.queue import DEFAULT_TABLE, check_table_name, table_counts
from pytest_islandora_job import ports, processes
from pytest_islandora_job.readiness import ServerStartError, wait_ready
from pytest_islandora_job.servers.base import tail

__all__ = [
    "LocalServer",
    "PersistedJob",
    "QueueDatabase",
    "ServerQueue",
    "find_program",
    "unique_name",
]

SHM = Path("/dev/shm")
SHM_MIN_FREE = 1 << 30


def _shared_root() -> Path:
    # In memory when there is room: copying a data directory to a busy disk takes up to a
    # second, to tmpfs a few milliseconds (a container's 64 MB /dev/shm is passed over).
    base = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        stat = os.statvfs(SHM)
        if stat.f_bavail * stat.f_frsize >= SHM_MIN_FREE and os.access(SHM, os.W_OK):
            base = SHM
    return base / f"pytest-islandora-job-db-{os.getuid()}"


#: Data directories, sockets and templates live here, not in the test's temp dir: socket paths
#: must stay short, and the PostgreSQL user (when running as root) must reach them.
SHARED_ROOT = _shared_root()
OWNER_FILE = "owner"
TEMPLATE_BUILD_TIMEOUT = 180.0


@dataclass(frozen=True)
class PersistedJob:
    """One row of the queue table: a background job gearmand has stored and not finished."""

    function: str
    unique_key: str
    priority: int
    data: bytes


def unique_name(prefix: str = "gearman_queue") -> str:
    """A database name no other run picks: prefix_<8 hex digits>."""
    return f"{prefix}_{secrets.token_hex(4)}"


def _text(value: Any) -> str:
    return bytes(value).decode("utf-8", "replace") if not isinstance(value, str) else value


def _bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


class QueueDatabase(abc.ABC):
    """The database of one gearmand's persistent queue."""

    queue: str
    #: Parameter marker of the DB-API driver.
    placeholder = "%s"
    #: gearmand flags whose value is a secret; `redacted_args()` hides their values.
    secret_flags: tuple[str, ...] = ()

    def __init__(self, workdir: Path, table: str = DEFAULT_TABLE) -> None:
        self.workdir = workdir
        self.table = check_table_name(table)

    @abc.abstractmethod
    def start(self) -> None:
        """Make the database (boot a throwaway server, or create our own database on an existing
        one, or prepare the file). Raises ServerStartError in one line (plus a log tail when a
        server failed) when that is impossible."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Remove what start() made and stop what it booted; idempotent."""

    @abc.abstractmethod
    def gearmand_args(self) -> list[str]:
        """The gearmand flags that select this queue (valid after start())."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the queue lives, for headers and errors; never holds a password."""

    @property
    @abc.abstractmethod
    def dsn(self) -> DSN:
        """The DSN of the queue's database (valid after start())."""

    @property
    def gearmand_dsn(self) -> DSN:
        """Where gearmand reaches the database: `dsn`, unless gearmand runs elsewhere (in a
        container, reaching the database by a network alias or a mounted path)."""
        return self.dsn

    def redacted_args(self) -> list[str]:
        """gearmand_args() with secret values replaced by ***, safe to log or print."""
        args = self.gearmand_args()
        return [
            "***" if i and args[i - 1] in self.secret_flags else arg for i, arg in enumerate(args)
        ]

    def _query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[tuple[Any, ...]], int]:
        with contextlib.closing(self.dsn.connect()) as conn:
            cursor = conn.cursor()
            cursor.execute(sql, tuple(params))
            rows = cursor.fetchall() if cursor.description else []
            return list(rows), cursor.rowcount

    def rows(self) -> list[PersistedJob]:
        """Every row of the queue table, ordered by function and unique key.

        Raises DatabaseUnavailable when the database cannot be reached, and the driver's error
        when the table does not exist yet (gearmand creates it when it starts).
        """
        found, _ = self._query(
            "SELECT function_name, unique_key, priority, data "
            f"FROM {self.table} ORDER BY function_name, unique_key"
        )
        return [
            PersistedJob(_text(function), _text(unique), int(priority), _bytes(data))
            for function, unique, priority, data in found
        ]

    def counts(self) -> dict[str, int]:
        """Jobs left per function: the module README's GROUP BY query on the queue table."""
        with contextlib.closing(self.dsn.connect()) as conn:
            return table_counts(conn, self.table)

    def delete(self, function: str | None = None) -> int:
        """Delete the rows of one function (or all) and return how many went.

        gearmand still holds those jobs in memory: use clear_queue() on the server to make
        it forget them; this is for tables no gearmand runs on.
        """
        if function is None:
            _, count = self._query(f"DELETE FROM {self.table}")
        else:
            _, count = self._query(
                f"DELETE FROM {self.table} WHERE function_name = {self.placeholder}", (function,)
            )
        return count


def find_program(name: str, where: Sequence[str], package: str, queue: str, dsn_hint: str) -> str:
    """The path of a database server program, searched in PATH and then in `where`.

    Raises ServerStartError, in one line, naming what was looked for and the three ways out.
    """
    found = shutil.which(name)
    for directory in where:
        if found is None:
            found = shutil.which(name, path=directory)
    if found is None:
        looked = ", ".join(["PATH", *where])
        raise ServerStartError(
            f"{name} not found (looked in {looked}): install it (apt-get install {package}), "
            f"give {dsn_hint} to use a running server, or use another --gearman-queue "
            f"(builtin or sqlite) instead of {queue}"
        )
    return found


def run_as_prefix(user: pwd.struct_passwd | None) -> list[str]:
    """Command prefix that runs a program as `user` (nothing when it is None)."""
    if user is None:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise ServerStartError(
            f"setpriv not found in PATH, needed to run the database as {user.pw_name!r} "
            "while running as root: install util-linux, or run the tests as another user"
        )
    # setpriv execs (no fork), so the process we track is the server itself.
    return [setpriv, "--reuid", user.pw_name, "--regid", str(user.pw_gid), "--init-groups", "--"]


def _private_dir(parent: Path, prefix: str, user: pwd.struct_passwd | None) -> Path:
    """A fresh 0700 directory under `parent`, owned by `user` when given, tagged with the run."""
    parent.mkdir(parents=True, exist_ok=True)
    # Reachable by the database user, whose own directories below stay private.
    for directory in (SHARED_ROOT, parent):
        directory.chmod(0o755)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    (path / OWNER_FILE).write_text(processes.run_tag())
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


def _owner_gone(path: Path) -> bool:
    try:
        tag = (path / OWNER_FILE).read_text().strip()
    except OSError:
        return False  # being made right now, or not ours
    return not processes.owner_alive(tag)


def sweep(parent: Path, prefix: str = "") -> None:
    """Remove directories under `parent` (named `prefix`...) whose owning process is gone."""
    if not parent.is_dir():
        return
    for path in parent.iterdir():
        if path.name.startswith(prefix) and path.is_dir() and _owner_gone(path):
            shutil.rmtree(path, ignore_errors=True)


def _copy_tree(source: Path, dest: Path) -> None:
    # cp -a keeps owners and modes (the database user's, when running as root) and is about
    # twice as fast as shutil.copytree on a data directory of a thousand files.
    done = subprocess.run(
        ["cp", "-a", "--", str(source), str(dest)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ServerStartError(
            f"cannot copy the database template {source} to {dest}: {done.stderr.strip()}"
        )


def _run_key() -> str:
    # xdist workers of one run share PYTEST_XDIST_TESTRUNUID, so they share the template.
    return os.environ.get("PYTEST_XDIST_TESTRUNUID") or processes.run_tag().replace(":", "-")


_made_templates: list[tuple[str, Path]] = []


def _template_lock(key: str, timeout: float = TEMPLATE_BUILD_TIMEOUT) -> filelock.FileLock:
    return filelock.FileLock(SHARED_ROOT / "templates" / f"{key}.lock", timeout=timeout)


def remove_made_templates() -> None:
    """Remove the templates this process built (runs at exit)."""
    for key, path in _made_templates:
        with _template_lock(key, timeout=30):
            shutil.rmtree(path, ignore_errors=True)


atexit.register(remove_made_templates)


def copy_template(
    key: str,
    build: Callable[[Path, Path], None],
    dest: Path,
    user: pwd.struct_passwd | None,
) -> None:
    """Copy the data directory template `key` of this run to `dest`, building it first if no
    process of the run has: `build(datadir, log_path)` makes it. The process that built a
    template removes it at exit; a later copy builds it again."""
    templates = SHARED_ROOT / "templates"
    path = templates / f"{key}-{_run_key()}"
    templates.mkdir(parents=True, exist_ok=True)
    # One lock per template kind, shared by every run: lock files never pile up. Under it,
    # no one copies this kind, so templates of killed runs can go.
    with _template_lock(key):
        if not (path / "data").is_dir():
            sweep(templates, f"{key}-")
            shutil.rmtree(path, ignore_errors=True)
            made = _private_dir(templates, f"{path.name}.", user)
            try:
                build(made / "data", made / "build.log")
                made.rename(path)
            except BaseException:
                shutil.rmtree(made, ignore_errors=True)
                raise
            _made_templates.append((key, path))
        _copy_tree(path / "data", dest)


def run_to_end(argv: Sequence[str], log_path: Path, what: str, timeout: float) -> None:
    """Run a one-shot program (initdb, mariadb-install-db) with its output in log_path.

    Raises ServerStartError with the log tail when it fails or outlasts `timeout`.
    """
    proc = processes.spawn(argv, log_path)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        processes.stop(proc, grace=1.0)
    if code != 0:
        outcome = f"exited with {code}" if code is not None else f"ran over {timeout:g}s"
        raise ServerStartError(f"{what} {outcome}; log tail:\n{tail(log_path)}")


class LocalServer(abc.ABC):
    """A throwaway database server: a child process on a claimed loopback port.

    `start()` (first time: copy the data directory from the run's template), `stop()` (keeps
    the data, so `start()` brings the same database back on the same port), `restart()`,
    and `remove()` (stop, delete the data, give the port back).
    """

    #: Shown in messages: "MariaDB", "PostgreSQL".
    name: str
    #: Signal for a fast, clean shutdown.
    stop_signal: int = signal.SIGTERM

    def __init__(self, workdir: Path, start_timeout: float) -> None:
        self.workdir = workdir
        self.start_timeout = start_timeout
        self.log_path = workdir / f"{self.name.lower()}.log"
        self.port: int | None = None
        self.scratch: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def user(self) -> pwd.struct_passwd | None:
        """The account the server runs as, when not the current one."""
        return None

    @property
    @abc.abstractmethod
    def admin_dsn(self) -> DSN:
        """A DSN with full rights on the server (valid once a port is claimed)."""

    @abc.abstractmethod
    def template_key(self) -> str:
        """Names the data directory template after the server binary: "mariadb-<digest>"."""

    @abc.abstractmethod
    def build_template(self, datadir: Path, log_path: Path) -> None:
        """Make a fresh data directory (initdb, mariadb-install-db)."""

    @abc.abstractmethod
    def argv(self, datadir: Path, sockdir: Path) -> list[str]:
        """The server's command line."""

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> None:
        """Start the server and return once it accepts a connection.

        Raises ServerStartError (with the log tail) when the program is missing, the data
        directory cannot be made, or the server exits or stays silent during start-up.
        """
        if self.pid is not None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        user = self.user
        argv_prefix = run_as_prefix(user)
        if self.scratch is None:
            runs = SHARED_ROOT / "run"
            sweep(runs)
            scratch = _private_dir(runs, f"{self.name.lower()}-", user)
            try:
                copy_template(self.template_key(), self.build_template, scratch / "data", user)
            except BaseException:
                shutil.rmtree(scratch, ignore_errors=True)
                raise
            self.scratch = scratch
        if self.port is None:
            self.port = ports.claim_port()
        argv = argv_prefix + self.argv(self.scratch / "data", self.scratch)
        self._proc = processes.spawn(argv, self.log_path)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self._proc is not None
        proc = self._proc
        wait_ready(
            self.admin_dsn.answers,
            lambda: proc.poll() is None,
            self.start_timeout,
            died=lambda: (
                f"throwaway {self.name} exited with {proc.poll()} during start-up on "
                f"127.0.0.1:{self.port}; log tail:\n{tail(self.log_path)}"
            ),
            late=lambda: (
                f"throwaway {self.name} did not accept connections on 127.0.0.1:{self.port} "
                f"within {self.start_timeout:g}s; log tail:\n{tail(self.log_path)}"
            ),
            max_delay=0.1,
        )

    def stop(self, grace: float = 10.0) -> None:
        """Shut the server down cleanly (SIGKILL after `grace` seconds); keeps its data."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        processes.stop(proc, grace=1.0)

    def restart(self) -> None:
        """Stop the server and start it again on the same port with the same data."""
        self.stop()
        self.start()

    def remove(self) -> None:
        """Stop the server, delete its data and give its port back; idempotent."""
        self.stop()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None
        if self.port is not None:
            ports.release(self.port)
            self.port = None


class ServerQueue(QueueDatabase):
    """A queue in a database of our own on a database server: a throwaway `LocalServer` by
    default, or the running server a DSN names (then only our database is made and dropped)."""

    #: The option that names an existing server, e.g. "--gearman-mysql-dsn".
    dsn_option: str
    #: What the server is called in messages: "MySQL server", "PostgreSQL server".
    server_kind: str

    def __init__(
        self,
        workdir: Path,
        dsn: DSN | None = None,
        table: str = DEFAULT_TABLE,
        start_timeout: float = 30.0,
    ) -> None:
        super().__init__(workdir, table)
        self.server_dsn = dsn
        self.instance = self.make_instance(workdir, start_timeout) if dsn is None else None
        self.database_name = unique_name()
        self._dsn: DSN | None = None

    @abc.abstractmethod
    def make_instance(self, workdir: Path, start_timeout: float) -> LocalServer:
        """The throwaway server used when no DSN is given."""

    @abc.abstractmethod
    def create_sql(self) -> str:
        """The statement that creates our database."""

    @abc.abstractmethod
    def drop_sql(self) -> str:
        """The statement that drops our database (and nothing else)."""

    @property
    def dsn(self) -> DSN:
        if self._dsn is None:
            raise RuntimeError(f"{self.describe()} is not started; call start() first")
        return self._dsn

    def _server(self) -> DSN:
        if self.instance is not None:
            return self.instance.admin_dsn
        assert self.server_dsn is not None
        return self.server_dsn

    def start(self) -> None:
        """Boot the throwaway server (if ours) and create our database on the server."""
        if self._dsn is not None:
            return
        try:
            if self.instance is not None:
                self.instance.start()
            self._execute(self.create_sql(), "create database")
            self._dsn = self._server().with_database(self.database_name)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Drop our database on an existing server, or remove the throwaway server."""
        started, self._dsn = self._dsn, None
        if started is not None and self.instance is None:
            self._execute(self.drop_sql(), "drop database")
        if self.instance is not None:
            self.instance.remove()

    def _execute(self, sql: str, what: str) -> None:
        server = self._server()
        try:
            with contextlib.closing(server.connect()) as conn:
                conn.cursor().execute(sql)
        except DatabaseUnavailable as exc:
            raise ServerStartError(
                f"{exc}; start that server, fix {self.dsn_option}, or leave it unset for a "
                "throwaway server"
            ) from None
        except Exception as exc:  # the driver's own errors: privileges, server state
            reason = server.scrub(" ".join(str(exc).split()))
            raise ServerStartError(
                f"cannot {what} {self.database_name} on {server.describe()}: {reason}; "
                f"give the user of {self.dsn_option} the right to create and drop databases"
            ) from None

    def describe(self) -> str:
        where = self._dsn.describe() if self._dsn is not None else "(not started)"
        if self.instance is not None:
            return f"throwaway {self.instance.name} {where}, table {self.table}"
        return f"existing {self.server_kind} {where}, table {self.table}"
