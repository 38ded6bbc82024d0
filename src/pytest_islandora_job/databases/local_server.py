"""A throwaway MariaDB or PostgreSQL as a child process, reached by a Unix socket only.

Its data directory is copied from a template made once per run (see `templates`), and it
listens until `remove()`. No other local user can reach it: there is no TCP listener, the
socket sits in a 0700 directory owned by the account the server runs as (ours, or a
dedicated system account when we are root: see `programs.database_account`), and gearmand
gets an account of its own that owns only its database (see `server_queue`). `tcp=True`
gives a server on a claimed loopback port instead, as a running server of a user's own would
be (tests of the existing-server path use it).
"""

from __future__ import annotations

import abc
import contextlib
import functools
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from islandora_job.dsn import DSN
from islandora_job.logs import tail
from pytest_islandora_job import ports, processes
from pytest_islandora_job.databases.programs import database_account, run_as_prefix
from pytest_islandora_job.databases.scratch import area, server_dir, sweep
from pytest_islandora_job.databases.templates import copy_template
from pytest_islandora_job.readiness import wait_ready


class LocalServer(abc.ABC):
    """A throwaway database server: a child process on a Unix socket (or, with `tcp`, on a
    claimed loopback port).

    `start()` (first time: copy the data directory from the run's template), `stop()` (keeps
    the data, so `start()` brings the same database back on the same port), `restart()`,
    and `remove()` (stop, delete the data, give the port back).
    """

    #: Shown in messages: "MariaDB", "PostgreSQL".
    name: str
    #: Signal for a fast, clean shutdown.
    stop_signal: int = signal.SIGTERM

    def __init__(self, workdir: Path, start_timeout: float, *, tcp: bool = False) -> None:
        self.workdir = workdir
        self.start_timeout = start_timeout
        self.tcp = tcp
        self.log_path = workdir / f"{self.name.lower()}.log"
        self.port: int | None = None
        self.scratch: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @functools.cached_property
    def user(self) -> pwd.struct_passwd | None:
        """The account the server runs as, when not the current one (we are root)."""
        return database_account()

    @property
    def address(self) -> str:
        """Where the server listens, for messages: a socket path or 127.0.0.1:port."""
        return f"127.0.0.1:{self.port}" if self.tcp else self.admin_dsn.host

    @property
    @abc.abstractmethod
    def admin_dsn(self) -> DSN:
        """A DSN with full rights on the server, valid once started; over the Unix socket
        (its directory is out of other users' reach), or TCP with `tcp`."""

    @abc.abstractmethod
    def template_key(self) -> str:
        """Names the data directory template after the server binary: "mariadb-<digest>"."""

    @abc.abstractmethod
    def build_template(self, datadir: Path, log_path: Path) -> None:
        """Make a fresh data directory (initdb, mariadb-install-db)."""

    @abc.abstractmethod
    def argv(self, datadir: Path, sockdir: Path) -> list[str]:
        """The server's command line."""

    def gearmand_dsn(self, dsn: DSN) -> DSN:
        """How gearmand reaches a database on this server: as the fixtures do, gearmand
        running on this machine too."""
        return dsn

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
            runs = area("run")
            sweep(runs)
            scratch = server_dir(runs, f"{self.name.lower()}-", user)
            try:
                copy_template(self.template_key(), self.build_template, scratch / "data", user)
            except BaseException:
                shutil.rmtree(scratch, ignore_errors=True)
                raise
            self.scratch = scratch
        if self.port is None and self.tcp:
            self.port = ports.claim_port()
        argv = argv_prefix + self.argv(self.scratch / "data", self.scratch)
        proc = self._proc = processes.spawn(argv, self.log_path)
        try:
            self._wait_ready(proc)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        wait_ready(
            self.admin_dsn.answers,
            lambda: proc.poll() is None,
            self.start_timeout,
            died=lambda: (
                f"throwaway {self.name} exited with {proc.poll()} during start-up on "
                f"{self.address}; log tail:\n{tail(self.log_path)}"
            ),
            late=lambda: (
                f"throwaway {self.name} did not accept connections on {self.address} "
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
