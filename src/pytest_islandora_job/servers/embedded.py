"""The embedded Gearman server (``islandora-job server``) as a child process.

Needs nothing but this package: for machines without gearmand or Docker. The child runs in
its own process group with the run's tag, like gearmand under the process backend; it is
ready when admin ``getpid`` answers with its own PID. Its queue is in memory, or in an SQLite
file (``sqlite``); the MySQL and PostgreSQL queues are gearmand's and skip the test.

The server object adds test controls gearmand lacks: :meth:`hold`, :meth:`release`,
:meth:`queued_jobs` and :meth:`drop_workers`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import islandora_job
import islandora_job.gearman
from islandora_job.gearman.admin import GearmanAdmin
from islandora_job.server import QueuedJob, read_queued_line
from pytest_islandora_job.readiness import ServerStartError
from pytest_islandora_job.servers.process import ProcessGearmanServer

if TYPE_CHECKING:
    from pytest_islandora_job.config import ServerSettings
    from pytest_islandora_job.databases.base import QueueDatabase

__all__ = ["EmbeddedGearmanServer", "QueuedJob"]


# The child imports the server's modules and nothing else of the library: the packages above
# them are stood in for by empty modules, so that their __init__ (which imports the whole job
# layer, about 80 ms) does not run; -I -S skip site-packages too. Start to ready: ~25 ms.
_STAND_INS = [
    ("islandora_job", str(Path(islandora_job.__file__).parent)),
    ("islandora_job.gearman", str(Path(islandora_job.gearman.__file__).parent)),
]
_LAUNCH = "\n".join(
    [
        "import sys, types",
        f"for name, path in {_STAND_INS!r}:",
        "    module = sys.modules[name] = types.ModuleType(name)",
        "    module.__path__ = [path]",
        "from islandora_job.server.main import run_server",
        "a = dict(zip(sys.argv[1::2], sys.argv[2::2]))",
        "sys.exit(run_server(a['--listen'], int(a['--port']), a['--queue'] or None,",
        "                    int(a['--job-retries']), a['--log-file']))",
    ]
)


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
        self.log_file = self.log_path = workdir / "server.log"

    def command(self) -> list[str]:
        """The command line this server runs: ``islandora-job server``'s options (every one
        given; an empty queue is the in-memory one) after the launcher."""
        queue = f"sqlite:{self.database.dsn.database}" if self.database is not None else ""
        retries = self.settings.job_retries or 0
        return [sys.executable, "-I", "-S", "-c", _LAUNCH, "--listen", self.settings.listen,
                "--port", str(self.port), "--queue", queue, "--job-retries", str(retries),
                "--log-file", str(self.log_file)]  # fmt: skip

    def wait_ready(self, timeout: float, alive: Callable[[], bool]) -> None:
        """Wait until the server answers, then check with admin ``getpid`` that it is our
        child. Raises ServerStartError when it dies, is late, or another process answers."""
        super().wait_ready(timeout, alive)
        expected = self.pid
        with GearmanAdmin(self.address) as admin:
            pid = admin.getpid()
        if pid != expected:
            raise ServerStartError(
                f"another server (pid {pid}) answers on {self.address}, not the embedded server "
                f"we started (pid {expected}); give another --gearman-port or leave it unset"
            )

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
