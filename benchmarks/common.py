"""What every benchmark shares: repeated timing, median/min/max, result rows, the table,
and the gearmand, worker and settings set-up they all run on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psutil

import islandora_job
from islandora_job.config import configured
from islandora_job.gearman.admin import GearmanAdmin
from pytest_islandora_job.config import ServerSettings
from pytest_islandora_job.servers import GearmanServer, make_servers

REPO = Path(__file__).resolve().parent.parent
JOB_MODULE = "benchmarks.jobs"


@dataclasses.dataclass(frozen=True)
class Stats:
    """Median, min and max of repeated measurements, and how many there were."""

    median: float
    min: float
    max: float
    runs: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        """Summarise samples; ValueError when there are none."""
        if not samples:
            raise ValueError("no samples to summarise: run the measurement at least once")
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))


@dataclasses.dataclass
class Row:
    """One line of the table: a figure, its reference measured in the same run, the ratio
    (figure median / reference median) and the target it is held against.

    value None means the figure could not be measured; note then says why.
    """

    section: str
    name: str
    unit: str
    value: Stats | None
    reference: str = ""
    ref_value: Stats | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    # The machine's load average when the row's section ended (see load()).
    load: str = ""

    @property
    def ratio(self) -> float | None:
        """Figure median over reference median, when both exist."""
        if self.value is None or self.ref_value is None or not self.ref_value.median:
            return None
        return self.value.median / self.ref_value.median

    def to_json(self) -> dict[str, object]:
        """The row as plain JSON types."""
        data = dataclasses.asdict(self)
        data["ratio"] = self.ratio
        return data


def unavailable(section: str, name: str, unit: str, reason: str) -> Row:
    """A row for a figure that could not be measured, with the reason in one line."""
    first = reason.strip().splitlines()[0] if reason.strip() else "unknown reason"
    return Row(section, name, unit, None, note=f"unavailable: {first[:160]}")


def describe_error(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def repeat(measure: Callable[[], float], runs: int) -> Stats:
    """Call measure() runs times and summarise what it returned."""
    return Stats.of([measure() for _ in range(runs)])


def timed(action: Callable[[], object]) -> float:
    """Seconds action() took, on the monotonic high-resolution clock."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) the threads of process ``pid`` have used so far, at
    nanosecond resolution (/proc/PID/task/*/schedstat, one line per live thread: psutil's
    figures come in 10 ms clock ticks, a large share of what a benchmark's window costs).
    psutil.NoSuchProcess when it is gone."""
    tasks = Path(f"/proc/{pid}/task")
    try:
        total = 0
        for task in tasks.iterdir():
            with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9
    except FileNotFoundError:
        raise psutil.NoSuchProcess(pid) from None
    except (OSError, ValueError, IndexError):  # no schedstat here: psutil's ticks
        return sum(psutil.Process(pid).cpu_times()[:2])


def load() -> str:
    """The 1-minute load average and the core count, e.g. "1.52 on 2 cores"."""
    return f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def machine() -> str:
    """The machine in one line: CPU model, cores, memory, kernel, e.g. for the table's head."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.1f} GiB"
    return f"{model}, {os.cpu_count()} cores{memory}, Linux {os.uname().release}"


def _cell(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("ms", "us"):
        return f"{value:,.1f}"
    if unit in ("s", "x"):
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def table(rows: Sequence[Row]) -> str:
    """The rows as one fixed-width text table."""
    head = (
        "benchmark",
        "figure",
        "unit",
        "median",
        "min",
        "max",
        "reference",
        "ref",
        "ratio",
        "target",
        "met",
        "load",
    )
    lines = [head]
    for row in rows:
        v, r = row.value, row.ref_value
        met = {True: "yes", False: "NO", None: ""}[row.met]
        lines.append(
            (
                row.section,
                row.name + (f" [{row.note}]" if row.note else ""),
                row.unit,
                _cell(v.median if v else None, row.unit),
                _cell(v.min if v else None, row.unit),
                _cell(v.max if v else None, row.unit),
                row.reference,
                _cell(r.median if r else None, row.unit),
                f"{row.ratio:.2f}" if row.ratio is not None else "",
                row.target,
                met,
                row.load,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    numeric = {3, 4, 5, 7, 8}
    out = []
    for n, line in enumerate(lines):
        cells = [
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def write_json(path: Path, rows: Sequence[Row], meta: dict[str, object]) -> None:
    """Write the run's metadata and rows as JSON."""
    path.write_text(
        json.dumps({"meta": meta, "rows": [r.to_json() for r in rows]}, indent=2) + "\n"
    )


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A temporary directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{prefix}-") as name:
        yield Path(name)


@contextlib.contextmanager
def gearmand(
    where: Path, queue: str = "builtin", backend: str = "process", extra_args: Sequence[str] = ()
) -> Iterator[GearmanServer]:
    """A gearmand (or, with backend "embedded", the embedded server) started as the
    gearman_server fixture starts it (make_servers), with ``extra_args`` as
    --gearman-extra-args gives them, closed after.

    Raises what make_servers and start raise (ServerStartError, ImportError for a queue
    type whose database support is missing).
    """
    settings = ServerSettings(queue=queue, backend=backend, extra_args=tuple(extra_args))
    server = make_servers(settings, where)[0]
    try:
        server.start()
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def job_settings(server: GearmanServer, where: Path) -> Iterator[None]:
    """islandora_job bound to this server, the bench's job module and a temp dir."""
    with configured(servers=[server.address], temp_dir=where, modules=[JOB_MODULE]):
        yield


@contextlib.contextmanager
def native_workers(count: int, prefix: str = "bench") -> Iterator[list[str]]:
    """count detached native workers (start_worker), stopped afterwards; needs job_settings."""
    names: list[str] = []
    try:
        for i in range(count):
            name = f"{prefix}-{i}.pid"
            islandora_job.start_worker(name)
            names.append(name)
        yield names
    finally:
        for name in names:
            islandora_job.stop_worker(name)


def function_workers(address: str, function: str) -> int:
    """How many workers gearmand counts for a function (admin `status`)."""
    with GearmanAdmin(address, timeout=2.0) as admin:
        return next((row.workers for row in admin.status() if row.function == function), 0)


def wait_until(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.001) -> None:
    """Poll check() until it is true; TimeoutError naming what did not happen."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(poll)


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM a child that leads its own session, SIGKILL after grace seconds, reap it,
    then SIGKILL what is left of its process group."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # What the child spawned in its session (the C tool under a CLI worker) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def child_env() -> dict[str, str]:
    """The environment for child processes: the repository on PYTHONPATH (the job module)."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


def python() -> str:
    """The interpreter running the benchmarks (the venv's)."""
    return sys.executable
