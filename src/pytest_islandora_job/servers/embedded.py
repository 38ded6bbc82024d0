"""The embedded Gearman server as a child of this process.

Needs nothing but this package: for machines without gearmand or Docker. The child is forked
from the test process, which has imported the server already, so it answers within a few
milliseconds instead of the 50 to 200 an interpreter start with imports takes here. Right
after the fork it leads a new session (its own process group, as gearmand's under the process
backend), closes every inherited descriptor but its log, and asks the kernel for SIGTERM when
this process ends, however it ends: it cannot outlive the run. It is ready when admin
``getpid`` answers with its own PID. Its queue is in memory, or in an SQLite file
(``sqlite``); the MySQL and PostgreSQL queues are gearmand's and skip the test.

The server object adds test controls gearmand lacks: :meth:`hold`, :meth:`release`,
:meth:`queued_jobs` and :meth:`drop_workers`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sqlite3  # noqa: F401  (imported before any fork: a child never imports)
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from islandora_job.gearman.admin import GearmanAdmin
from islandora_job.server import QueuedJob, read_queued_line
from islandora_job.server.main import run_server
from pytest_islandora_job.readiness import ServerStartError
from pytest_islandora_job.servers.process import ProcessGearmanServer

if TYPE_CHECKING:
    from pytest_islandora_job.config import ServerSettings
    from pytest_islandora_job.databases.base import QueueDatabase

__all__ = ["EmbeddedGearmanServer", "QueuedJob"]

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


class _Child:
    """A forked child of this process: its PID and, once reaped, its exit status."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit status once the child has ended (it is reaped then), else None."""
        if self.returncode is None:
            try:
                done, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1  # reaped by someone else: gone all the same
                return self.returncode
            if done:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> bool:
        """Wait up to timeout seconds for the child to end; True when it has."""
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True

    def signal_group(self, sig: int) -> None:
        """Send sig to the child's process group (it leads one)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after grace seconds; reaped either way."""
        if self.poll() is None:
            self.signal_group(signal.SIGTERM)
            if not self.wait(grace):
                self.signal_group(signal.SIGKILL)
                self.wait(30.0)
        self.signal_group(signal.SIGKILL)


def _fork(argv: tuple[str, int, str | None, int, str], log_file: Path) -> _Child:
    """Fork a child running run_server(*argv), its output appended to log_file."""
    log_fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    parent = os.getpid()
    pid = os.fork()
    if pid:
        os.close(log_fd)
        os.close(null_fd)
        return _Child(pid)
    code = 70
    try:
        os.setsid()
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(0)  # the parent ended before the request above took hold
        os.dup2(null_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        # Fresh objects: another thread of the parent may have held the old ones' locks.
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        code = run_server(*argv)
    except BaseException:
        with contextlib.suppress(BaseException):
            os.write(2, traceback.format_exc().encode("utf-8", "replace"))
    finally:
        os._exit(code)


class EmbeddedGearmanServer(ProcessGearmanServer):
    """The embedded server as a child process on a claimed loopback port; it starts, stops,
    is killed and restarted as gearmand is under the process backend."""

    backend = "embedded"

    def __init__(
        self, settings: ServerSettings, workdir: Path, database: QueueDatabase | None = None
    ) -> None:
        if settings.queue not in ("builtin", "sqlite"):
            pytest.skip(
                f"the embedded Gearman server keeps its queue in SQLite only, not {settings.queue}: "
                "run with --gearman-backend=process or docker for gearmand's queues"
            )
        super().__init__(settings, workdir, database)
        self.log_path = workdir / "server.log"
        self._child: _Child | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._child.pid if self._child and self._child.poll() is None else None

    def command(self) -> list[str]:
        """The command line that runs the same server outside the test process."""
        listen, port, queue, retries, log_file = self.arguments()
        argv = [sys.executable, "-m", "islandora_job", "server", "--listen", listen,
                "--port", str(port), "--job-retries", str(retries), "--log-file", log_file]  # fmt: skip
        return argv + (["--queue", queue] if queue else [])

    def arguments(self) -> tuple[str, int, str | None, int, str]:
        """What the child runs: ``run_server(listen, port, queue, job_retries, log_file)``,
        as ``islandora-job server`` would with these options."""
        queue = f"sqlite:{self.database.dsn.database}" if self.database is not None else None
        retries = self.settings.job_retries or 0
        return (self.settings.listen, self.port, queue, retries, str(self.log_path))

    def start(self) -> None:
        """Start the server and wait until admin ``getpid`` answers with the child's PID.

        Raises ServerStartError with the log tail when it exits early, when another process
        answers on the port, or when it does not answer within the start timeout.
        """
        if self.pid is not None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._start_database()
        self._version = None
        child = self._child = _fork(self.arguments(), self.log_path)
        try:
            self.wait_ready(self.settings.start_timeout, lambda: child.poll() is None, child.pid)
        except ServerStartError:
            child.stop(grace=1.0)
            self._child = None
            raise

    def stop(self) -> None:
        """SIGTERM the server, SIGKILL after 5 s; idempotent."""
        if self._child is not None:
            self._child.stop(grace=5.0)
            self._child = None

    def kill(self) -> None:
        """SIGKILL the server and wait until it is gone."""
        if self._child is not None:
            self._child.signal_group(signal.SIGKILL)
            self._child.wait(30.0)
            self._child = None

    # -- test controls ------------------------------------------------------------------

    def _control(self, line: str, block: bool = False) -> tuple[str, ...]:
        admin = _Controls(self.address)
        try:
            return admin.run(line, block)
        finally:
            admin.close()

    def hold(self, function: str) -> None:
        """Keep the jobs of ``function`` queued: no worker gets one until :meth:`release`.

        Raises ServerUnavailable when the server is not running, ValueError on a name the
        admin protocol cannot carry (empty, whitespace).
        """
        self._control(f"hold {_word(function)}")

    def release(self, function: str) -> None:
        """Let workers take the jobs of ``function`` again (sleeping workers are woken)."""
        self._control(f"release {_word(function)}")

    def queued_jobs(self, function: str | None = None) -> list[QueuedJob]:
        """The jobs waiting for a worker (of one function, or all), in the order they would
        run; running jobs and cancelled ones are not listed."""
        line = "show queued" if function is None else f"show queued {_word(function)}"
        return [read_queued_line(text) for text in self._control(line, block=True)]

    def drop_workers(self, function: str) -> int:
        """Close the connections of the workers running a job of ``function``, as a crash
        would (their jobs go back to the queue); returns how many were closed."""
        (count,) = self._control(f"drop workers {_word(function)}")
        return int(count)


class _Controls(GearmanAdmin):
    """The admin connection, with the commands only the embedded server knows."""

    def run(self, line: str, block: bool) -> tuple[str, ...]:
        """Send one command line; its reply's lines. Raises AdminError on ``ERR``."""
        return self._command(line, block=block).lines


def _word(value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError(
            f"function name {value!r} is empty or holds whitespace: the admin protocol, which "
            "the test controls use, cannot name it"
        )
    return value
