"""gearmand as a local process: every path in the test's temp dir, none in /var or /etc."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_islandora_job import ports, processes
from pytest_islandora_job.readiness import PortConflict, ServerStartError
from pytest_islandora_job.servers import client_host
from pytest_islandora_job.servers.base import GearmanServer

if TYPE_CHECKING:
    from pytest_islandora_job.config import ServerSettings
    from pytest_islandora_job.databases.base import QueueDatabase


# Searched after PATH for a bare name: the C gearmand lives in an sbin directory, which a
# user's PATH may lack while it has /usr/bin, where Perl's Gearman::Server installs its own.
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
#: Claimed ports tried before giving up when others keep taking them first.
PORT_ATTEMPTS = 5


def _is_script(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False


def resolve_gearmand(exe: str) -> str:
    """The C gearmand that exe names: a path as given, a bare name on PATH or in an sbin
    directory, never Perl's Gearman::Server (Debian's gearman-server puts that script at
    /usr/bin/gearmand; it takes none of gearmand's options).

    Raises ServerStartError when there is no such program or exe is a script.
    """
    if os.sep in exe:
        candidates = [exe]
    else:
        path = os.environ.get("PATH", os.defpath).split(os.pathsep)
        candidates = [os.path.join(d, exe) for d in [*path, *_SBIN] if d]
    scripts = []
    for candidate in candidates:
        found = shutil.which(candidate)
        if found is None:
            continue
        if not _is_script(found):
            return found
        scripts.append(found)
    fix = (
        "install it (apt-get install gearman-job-server), give --gearmand-exec PATH, "
        "or use --gearman-backend=docker|external"
    )
    if scripts:
        raise ServerStartError(
            f"{', '.join(scripts)} is a script (Perl's Gearman::Server from gearman-server), "
            f"not the C gearmand the process backend runs: {fix}"
        )
    raise ServerStartError(f"gearmand not found at {exe!r}: {fix}")


class ProcessGearmanServer(GearmanServer):
    """A gearmand child process on a claimed loopback port."""

    backend = "process"

    def __init__(
        self, settings: ServerSettings, workdir: Path, database: QueueDatabase | None = None
    ) -> None:
        super().__init__(settings, database)
        self.workdir = workdir
        self.host = client_host(settings.listen)
        if settings.port is not None and os.environ.get("PYTEST_XDIST_WORKER"):
            raise ServerStartError(
                f"--gearman-port {settings.port} is fixed, but xdist workers each start a "
                "gearmand of their own and cannot share one port: leave --gearman-port unset "
                "under -n, or run with -n 0"
            )
        self.port = settings.port if settings.port is not None else ports.claim_port()
        self._claimed = settings.port is None
        self._started = False
        self.log_path: Path = workdir / "gearmand.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The gearmand process id while it runs."""
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def command(self) -> list[str]:
        """The gearmand command line this server runs."""
        found = resolve_gearmand(self.settings.gearmand_exec)
        argv = [
            found,
            "--listen",
            self.settings.listen,
            "--port",
            str(self.port),
            "--log-file",
            str(self.log_path),
            "--verbose",
            "INFO",
            "--pid-file",
            str(self.workdir / "gearmand.pid"),
            "--threads",
            str(self.settings.threads),
        ]
        if self.settings.job_retries is not None:
            argv += ["--job-retries", str(self.settings.job_retries)]
        if self.database is not None:
            argv += self.database.gearmand_args()
        return argv + list(self.settings.extra_args)

    def start(self) -> None:
        """Start gearmand and wait until it answers admin `version`, and `getpid` with the PID
        of our child.

        A claimed port someone else holds is given up for another (at the first start only:
        a restart keeps the address clients know). Raises PortConflict, in one line naming
        the port and its holder, when a fixed port (or a restart's) is taken, and
        ServerStartError with the log tail when gearmand is missing, exits early or does not
        answer within the start timeout.
        """
        if self.pid is not None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._start_database()
        movable = self._claimed and not self._started
        for attempt in range(PORT_ATTEMPTS):
            try:
                self._start_on_port()
                break
            except PortConflict:
                if not movable or attempt == PORT_ATTEMPTS - 1:
                    raise
                ports.release(self.port)
                self.port = ports.claim_port()
        self._started = True

    def environment(self) -> dict[str, str] | None:
        """gearmand's environment: ours, plus what points it at its queue database's
        private socket (None: ours as it is)."""
        if self.database is None:
            return None
        return {**os.environ, **self.database.gearmand_env()}

    def _start_on_port(self) -> None:
        if ports.in_use(self.port, self.host):
            # gearmand would retry the bind for about 22 s: say so now.
            found = ports.holder(self.port)
            raise PortConflict(
                f"port {self.port} is in use ({found or 'holder not found'}): free it, give "
                "another --gearman-port, or leave it unset for a free one",
                self.port,
                found,
            )
        self._version = None
        proc = self._proc = processes.spawn(self.command(), self.log_path, self.environment())
        try:
            self.wait_ready(self.settings.start_timeout, lambda: proc.poll() is None, proc.pid)
        except ServerStartError:
            processes.stop(proc, grace=1.0)
            self._proc = None
            raise

    def stop(self) -> None:
        """SIGTERM gearmand, SIGKILL after 5 s; idempotent."""
        if self._proc is not None:
            processes.stop(self._proc)
            self._proc = None

    def kill(self) -> None:
        """SIGKILL gearmand and wait until it is gone."""
        if self._proc is not None:
            processes.kill(self._proc)
            self._proc = None

    def close(self) -> None:
        """Stop gearmand, drop its queue database and give its port back."""
        self.stop()
        self._stop_database()
        if self._claimed:
            ports.release(self.port)
