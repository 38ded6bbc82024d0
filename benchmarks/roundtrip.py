"""1. Foreground round trips: 2,000 sequential jobs, our client and native worker in separate
processes, against the C pair (`gearman -N -f f` fed 2,000 lines, `gearman -w -f f` echoing)
on the same gearmand. The runs of each pair alternate, so load drifts hit both alike.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import islandora_job
from benchmarks.common import (
    Row,
    Stats,
    child_env,
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

SECTION = "1 foreground"
JOBS = 2000
# One router process per job: 2,000 of them would take minutes.
CLI_JOBS = 100
C_FUNCTION = "f"
TARGET = 0.8


def _c_argv(address: str, *args: str) -> list[str]:
    tool = shutil.which("gearman")
    if tool is None:
        raise FileNotFoundError("the C `gearman` tool is not installed: apt-get install gearman-tools")
    host, _, port = address.rpartition(":")
    return [tool, "-h", host, "-p", port, *args]


def spawn(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a long-running child in its own session, its output discarded."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
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
    argv = _c_argv(address, "-N", "-f", C_FUNCTION)
    start = time.perf_counter()
    done = subprocess.run(argv, input=lines, capture_output=True, timeout=300, check=False)
    elapsed = time.perf_counter() - start
    ran = worker_output.stat().st_size - before
    if done.returncode or ran != expected:
        raise RuntimeError(
            f"the C pair ran {ran} of {expected} bytes of jobs: {done.stderr[-200:]!r}"
        )
    return jobs / elapsed


def submit_rate(jobs: int) -> float:
    """Jobs/s of islandora_job.submit() (module-level API, JSON payloads), one at a time."""
    submit = islandora_job.submit
    start = time.perf_counter()
    for i in range(jobs):
        if submit("echo", i) != [i]:
            raise RuntimeError(f"echo job {i} came back wrong")
    return jobs / (time.perf_counter() - start)


def protocol_rate(address: str, jobs: int) -> float:
    """Jobs/s of GearmanClient.submit with payloads JSON-encoded beforehand."""
    data = [payload.encode("echo", [i]) for i in range(jobs)]
    with GearmanClient([address]) as client:
        start = time.perf_counter()
        for item in data:
            if not client.submit("echo", item).ok:
                raise RuntimeError("echo job failed")
        return jobs / (time.perf_counter() - start)


def _start_c_worker(address: str, output: Path) -> subprocess.Popen[bytes]:
    with output.open("wb") as out:
        worker = subprocess.Popen(
            _c_argv(address, "-w", "-f", C_FUNCTION),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    wait_until(lambda: function_workers(address, C_FUNCTION) >= 1, 10, "C worker registering")
    return worker


def _start_cli_worker(address: str) -> subprocess.Popen[bytes]:
    env = {**child_env(), **settings_env(settings())}
    worker = spawn([python(), "-m", "islandora_job", "worker", "--via-gearman-cli"], env)
    wait_until(lambda: function_workers(address, "echo") >= 1, 20, "--via-gearman-cli worker")
    return worker


def run(runs: int) -> list[Row]:
    """Measure the three pairs; runs repetitions each (fewer for the per-job-process worker)."""
    c_rates: list[float] = []
    ours: list[float] = []
    protocol: list[float] = []
    cli: list[float] = []
    with workdir("roundtrip") as where, gearmand(where / "gearmand") as server:
        address = server.address
        with job_settings(server, where):
            c_output = where / "c-worker.out"
            c_worker = _start_c_worker(address, c_output)
            try:
                with native_workers(1, "roundtrip"):
                    # Warm up: imports, connections, gearmand's function tables.
                    c_client_rate(address, 50, c_output)
                    submit_rate(50)
                    for _ in range(runs):
                        c_rates.append(c_client_rate(address, JOBS, c_output))
                        ours.append(submit_rate(JOBS))
                        protocol.append(protocol_rate(address, JOBS))
            finally:
                stop_process(c_worker)
            cli_worker = _start_cli_worker(address)
            try:
                submit_rate(5)
                cli = [submit_rate(CLI_JOBS) for _ in range(max(2, runs // 2))]
            finally:
                stop_process(cli_worker)
    c = Stats.of(c_rates)
    ref = "C gearman -N / -w"
    mine = Stats.of(ours)
    return [
        Row(SECTION, f"C pair, {JOBS} jobs (reference)", "jobs/s", c),
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
        Row(
            SECTION,
            f"GearmanClient.submit (pre-encoded JSON) + native worker, {JOBS} jobs",
            "jobs/s",
            Stats.of(protocol),
            ref,
            c,
        ),
        Row(
            SECTION,
            f"islandora_job.submit() + --via-gearman-cli worker, {CLI_JOBS} jobs",
            "jobs/s",
            Stats.of(cli),
            ref,
            c,
        ),
    ]
