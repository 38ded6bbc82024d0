"""1. Foreground round trips: 2,000 sequential jobs, our client and native worker in separate
processes, against the C pair on the same gearmand: `gearman -N -f f` fed 2,000 lines, and
`gearman -w -f f`, which without a command spawns nothing: it writes each job's data to its
stdout and sends an empty result. The pairs take turns run by run, so load drifts hit all.
The CPU per job of the native worker (under the C client) and of the C worker (under the C
pair) is read from their CPU times: it moves less with the machine's load than jobs/s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import islandora_job
from benchmarks.common import (
    Row,
    Stats,
    child_env,
    cpu_seconds,
    function_workers,
    gearmand,
    job_settings,
    native_workers,
    python,
    stop_process,
    wait_until,
    workdir,
)
from islandora_job import payload
from islandora_job.config import settings, settings_env
from islandora_job.gearman.client import GearmanClient
from islandora_job.workers.pidfiles import pidfile_path, read_pidfile

SECTION = "1 foreground"
JOBS = 2000
# One router process per job: 2,000 of them would take minutes.
CLI_JOBS = 20
CLI_RUNS = 2
MIXED_RUNS = 3
# The pairs the targets compare run this many times the runs asked for: a sequential round
# trip's rate moves by more than the targets' margins between two runs on this VM, and
# medians of more alternating runs move less.
TARGET_RUNS_FACTOR = 2
C_FUNCTION = "f"
TARGET = 0.85
# submit() within 10% of the protocol client under it; the C client on our worker.
API_TARGET = 0.9
C_CLIENT_TARGET = 0.9


def c_argv(address: str, *args: str) -> list[str]:
    """The C `gearman` tool command line for this server; FileNotFoundError when missing."""
    tool = shutil.which("gearman")
    if tool is None:
        raise FileNotFoundError(
            "the C `gearman` tool is not installed: apt-get install gearman-tools"
        )
    host, _, port = address.rpartition(":")
    return [tool, "-h", host, "-p", port, *args]


def spawn(
    argv: list[str], env: dict[str, str] | None = None, stdout: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a long-running child in its own session, its stdout in a file or discarded."""
    with open(stdout or os.devnull, "wb") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )


def c_client_rate(address: str, jobs: int, worker_output: Path) -> float:
    """Jobs/s of the C client running `jobs` lines, one foreground job each, exec to exit.

    The C worker without a command writes each job's data to its stdout (worker_output)
    and sends an empty result; the growth of that file proves every job ran (the C client
    exits 0 whatever happened).
    """
    lines = "".join(f"{i}\n" for i in range(jobs)).encode()
    expected = sum(len(str(i)) for i in range(jobs))
    before = worker_output.stat().st_size
    argv = c_argv(address, "-N", "-f", C_FUNCTION)
    start = time.perf_counter()
    done = subprocess.run(argv, input=lines, capture_output=True, timeout=300, check=False)
    elapsed = time.perf_counter() - start
    ran = worker_output.stat().st_size - before
    if done.returncode or ran != expected:
        raise RuntimeError(
            f"the C pair ran {ran} of {expected} bytes of jobs: {done.stderr[-200:]!r}"
        )
    return jobs / elapsed


def c_client_json_rate(address: str, jobs: int) -> float:
    """Jobs/s of the C client sending our JSON payloads (one line each) to the native worker."""
    lines = b"".join(payload.encode("echo", [i]) + b"\n" for i in range(jobs))
    argv = c_argv(address, "-N", "-f", "echo")
    start = time.perf_counter()
    done = subprocess.run(argv, input=lines, capture_output=True, timeout=300, check=False)
    elapsed = time.perf_counter() - start
    expected = "".join(f"[{i}]" for i in range(jobs)).encode()
    if done.returncode or done.stdout.replace(b"\n", b"") != expected:
        raise RuntimeError(f"the C client did not get every echo back: {done.stderr[-200:]!r}")
    return jobs / elapsed


def submit_rate(jobs: int) -> float:
    """Jobs/s of islandora_job.submit() (module-level API, JSON payloads), one at a time."""
    submit = islandora_job.submit
    start = time.perf_counter()
    for i in range(jobs):
        if submit("echo", i) != [i]:
            raise RuntimeError(f"echo job {i} came back wrong")
    return jobs / (time.perf_counter() - start)


def protocol_rate(address: str, jobs: int, function: str = "echo") -> float:
    """Jobs/s of GearmanClient.submit with payloads JSON-encoded beforehand."""
    data = [payload.encode("echo", [i]) for i in range(jobs)]
    with GearmanClient([address]) as client:
        start = time.perf_counter()
        for item in data:
            if not client.submit(function, item).ok:
                raise RuntimeError(f"job on {function!r} failed")
        return jobs / (time.perf_counter() - start)


def _start_c_worker(address: str, output: Path) -> subprocess.Popen[bytes]:
    worker = spawn(c_argv(address, "-w", "-f", C_FUNCTION), stdout=output)
    wait_until(lambda: function_workers(address, C_FUNCTION) >= 1, 10, "C worker registering")
    return worker


def _start_cli_worker(address: str) -> subprocess.Popen[bytes]:
    env = {**child_env(), **settings_env(settings())}
    worker = spawn([python(), "-m", "islandora_job", "worker", "--via-gearman-cli"], env)
    wait_until(lambda: function_workers(address, "echo") >= 1, 20, "--via-gearman-cli worker")
    return worker


def cpu_per_job(pid: int, jobs: int, measure: Callable[[int], float]) -> tuple[float, float]:
    """Run measure(jobs) and return the process's CPU per job meanwhile, in µs (user + system)
    and its jobs/s; psutil.NoSuchProcess when the process is gone."""
    before = cpu_seconds(pid)
    rate = measure(jobs)
    used = cpu_seconds(pid) - before
    return used / jobs * 1e6, rate


def _native_worker(pidfile: str) -> int:
    pid = read_pidfile(pidfile_path(pidfile))
    if pid is None:
        raise RuntimeError(f"the native worker's pidfile {pidfile} names no process")
    return pid


def run(runs: int) -> list[Row]:
    """Measure every pair the targets compare `runs` * TARGET_RUNS_FACTOR times,
    alternating; the C worker under our protocol client MIXED_RUNS times, the CLI worker
    fewer times on fewer jobs.

    Besides the two pairs the target compares, the mixed pairs (C client with our worker, our
    protocol client with the C worker) say which side a gap comes from.
    """
    pairs: dict[str, list[float]] = {
        "c": [],
        "submit": [],
        "protocol": [],
        "c_client": [],
        "c_worker": [],
    }
    # CPU per job (µs) of the worker serving the C client: ours, and the C one.
    cpu: dict[str, list[float]] = {"c": [], "c_client": []}
    with workdir("roundtrip") as where, gearmand(where / "gearmand") as server:
        address = server.address
        with job_settings(server, where):
            c_output = where / "c-worker.out"
            c_worker = _start_c_worker(address, c_output)
            try:
                with native_workers(1, "roundtrip") as names:
                    servers = {
                        "c": c_worker.pid,
                        "c_client": _native_worker(names[0]),
                    }
                    measures: dict[str, Callable[[int], float]] = {
                        "c": lambda n: c_client_rate(address, n, c_output),
                        "submit": submit_rate,
                        "protocol": lambda n: protocol_rate(address, n),
                        "c_client": lambda n: c_client_json_rate(address, n),
                        "c_worker": lambda n: protocol_rate(address, n, C_FUNCTION),
                    }
                    for measure in measures.values():  # warm up imports, connections, tables
                        measure(50)
                    for run_index in range(runs * TARGET_RUNS_FACTOR):
                        for name, measure in measures.items():
                            # The pair that only explains a gap runs fewer times.
                            if name in cpu:
                                used, rate = cpu_per_job(servers[name], JOBS, measure)
                                cpu[name].append(used)
                                pairs[name].append(rate)
                            elif name != "c_worker" or run_index < MIXED_RUNS:
                                pairs[name].append(measure(JOBS))
            finally:
                stop_process(c_worker)
            cli_worker = _start_cli_worker(address)
            try:
                submit_rate(2)
                cli = [submit_rate(CLI_JOBS) for _ in range(CLI_RUNS)]
            finally:
                stop_process(cli_worker)
    c = Stats.of(pairs["c"])
    mine = Stats.of(pairs["submit"])
    ref = "C client + C worker"

    def row(name: str, samples: list[float], jobs: int = JOBS) -> Row:
        return Row(SECTION, f"{name}, {jobs} jobs", "jobs/s", Stats.of(samples), ref, c)

    protocol = Stats.of(pairs["protocol"])
    c_client = row("C client (JSON lines) + native worker", pairs["c_client"])
    c_client.target = f">= {C_CLIENT_TARGET} x C"
    c_client.met = c_client.value is not None and (
        c_client.value.median >= C_CLIENT_TARGET * c.median
    )
    return [
        Row(SECTION, f"C client + C worker (gearman -N / -w), {JOBS} jobs", "jobs/s", c),
        Row(
            SECTION,
            f"islandora_job.submit() + native worker, {JOBS} jobs",
            "jobs/s",
            mine,
            ref,
            c,
            f">= {TARGET} x C",
            mine.median >= TARGET * c.median,
        ),
        row("GearmanClient.submit (JSON pre-encoded) + native worker", pairs["protocol"]),
        Row(
            SECTION,
            "  islandora_job.submit() against GearmanClient.submit",
            "jobs/s",
            mine,
            "GearmanClient.submit (pre-encoded)",
            protocol,
            f">= {API_TARGET} x",
            mine.median >= API_TARGET * protocol.median,
        ),
        c_client,
        Row(
            SECTION,
            "  native worker's CPU per job (user + system) under the C client",
            "us",
            Stats.of(cpu["c_client"]),
            "C worker's under the C client",
            Stats.of(cpu["c"]),
        ),
        row("GearmanClient.submit + C worker", pairs["c_worker"]),
        row("islandora_job.submit() + --via-gearman-cli worker", cli, CLI_JOBS),
    ]
