"""2. Background submits per queue type: sequential (one job in flight) and pipelined (many
in flight on one connection), next to the C client's sequential background submits
(`gearman -b -N`) on the same gearmand. No worker runs: jobs stay queued (and, for the
persistent queues, stored) as they would while workers are busy.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from benchmarks.common import (
    Row,
    Stats,
    cpu_seconds,
    describe_error,
    gearmand,
    unavailable,
    workdir,
)
from benchmarks.roundtrip import c_argv
from islandora_job import JobClient, payload
from islandora_job.config import settings
from islandora_job.gearman.admin import GearmanAdmin
from islandora_job.gearman.client import GearmanClient
from pytest_islandora_job.servers import GearmanServer

SECTION = "2 background"
QUEUES = ("builtin", "mysql", "postgres", "sqlite")
# Jobs per measurement: the persistent queues write a row per job, so they get fewer.
SEQUENTIAL = {"builtin": 2000, "mysql": 500, "postgres": 500, "sqlite": 300}
PIPELINED = {"builtin": 20000, "mysql": 2000, "postgres": 2000, "sqlite": 1000}
TARGET = 100000
# gearmand finds a job's unique id in a chained hash table of 991 buckets by default: at
# tens of thousands of queued jobs, walking a chain is most of its CPU per submit.
BUCKETS = ("--hashtable-buckets", "65521")


def sequential_rate(address: str, jobs: int) -> float:
    """Jobs/s of JobClient.submit_background (JSON payloads), one job at a time."""
    # Queued only (no worker runs them): the benchmark's job names need no registry check.
    with JobClient([address], check_jobs=False) as client:
        client.submit_background("echo", -1)  # connect outside the timing
        start = time.perf_counter()
        for i in range(jobs):
            client.submit_background("echo", i)
        return jobs / (time.perf_counter() - start)


def pipelined_rate(address: str, jobs: int, cpu: list[float] | None = None) -> float:
    """Jobs/s of GearmanClient.stream_background (its default window), payloads
    JSON-encoded inside the timing as the stream takes them (the size limit looked up once,
    as JobClient(max_payload=) does). Appends this process's CPU seconds per job to cpu
    when given."""
    limit = settings().max_payload
    encode = payload.encode
    with GearmanClient([address]) as client:
        client.submit_background("echo", encode("echo", [-1], max_size=limit))
        cpu_start = time.process_time()
        start = time.perf_counter()
        made = (("echo", encode("echo", [i], max_size=limit)) for i in range(jobs))
        handles = sum(1 for _ in client.stream_background(made))
        elapsed = time.perf_counter() - start
        if cpu is not None:
            cpu.append((time.process_time() - cpu_start) / jobs)
        if handles != jobs:
            raise RuntimeError(f"{handles} handles came back for {jobs} jobs")
        return jobs / elapsed


def batch_stream_rate(address: str, jobs: int) -> float:
    """Jobs/s of JobClient.stream_background: batch entries checked and encoded as the
    stream takes them (job names not checked against a registry: no worker runs them)."""
    with JobClient([address], check_jobs=False) as client:
        client.submit_background("echo", -1)  # connect outside the timing
        start = time.perf_counter()
        batch = ({"job_name": "echo", "args": [i]} for i in range(jobs))
        handles = sum(1 for _ in client.stream_background(batch))
        elapsed = time.perf_counter() - start
    if handles != jobs:
        raise RuntimeError(f"{handles} handles came back for {jobs} jobs")
    return jobs / elapsed


def c_sequential_rate(address: str, jobs: int) -> float:
    """Jobs/s of the C client queueing one background job per line, exec to exit."""
    lines = b"".join(payload.encode("echo", [i]) + b"\n" for i in range(jobs))
    start = time.perf_counter()
    done = subprocess.run(
        c_argv(address, "-b", "-N", "-f", "echo"),
        input=lines,
        capture_output=True,
        timeout=300,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"the C client failed: {done.stderr[-200:]!r}")
    return jobs / elapsed


def _queued(address: str) -> int:
    with GearmanAdmin(address, timeout=5.0) as admin:
        return sum(row.queued for row in admin.status() if row.function == "echo")


def _pipelined(
    server: GearmanServer, jobs: int, rates: list[float], ours: list[float], theirs: list[float]
) -> None:
    """One pipelined_rate run: its rate, our CPU per job and gearmand's (the submit that
    connects counted in)."""
    pid = server.pid
    if pid is None:
        raise RuntimeError("gearmand is not running")
    before = cpu_seconds(pid)
    rates.append(pipelined_rate(server.address, jobs, ours))
    theirs.append((cpu_seconds(pid) - before) / (jobs + 1))


def _measure(queue: str, where: Path, runs: int) -> list[Row]:
    seq_jobs, pipe_jobs = SEQUENTIAL[queue], PIPELINED[queue]
    c, seq, pipe, client_cpu, server_cpu, batch = [], [], [], [], [], []
    for run in range(runs):
        # A fresh server each run: gearmand slows down as its queue deepens, and what is
        # measured here is submitting, not a queue grown by the runs before.
        with gearmand(where / f"run-{run}", queue) as server:
            address = server.address
            c.append(c_sequential_rate(address, seq_jobs))
            seq.append(sequential_rate(address, seq_jobs))
            _pipelined(server, pipe_jobs, pipe, client_cpu, server_cpu)
            expected = 2 * seq_jobs + pipe_jobs + 2
            if queue == "builtin":
                # After the pipelined jobs, on the queue they left: the high-level path's cost.
                batch.append(batch_stream_rate(address, pipe_jobs))
                expected += pipe_jobs + 1
            queued = _queued(address)
        if queued != expected:
            raise RuntimeError(f"gearmand holds {queued} jobs, {expected} were submitted")
    ref = f"C gearman -b, {seq_jobs} jobs"
    c_stats, pipe_stats = Stats.of(c), Stats.of(pipe)
    pipelined = Row(
        SECTION, f"{queue}: pipelined, {pipe_jobs} jobs", "jobs/s", pipe_stats, ref, c_stats
    )
    rows = [
        Row(SECTION, f"{queue}: C client sequential (reference)", "jobs/s", c_stats),
        Row(
            SECTION, f"{queue}: sequential, {seq_jobs} jobs", "jobs/s", Stats.of(seq), ref, c_stats
        ),
        pipelined,
    ]
    if queue == "builtin":
        pipelined.target = f">= {TARGET:,}"
        pipelined.met = pipe_stats.median >= TARGET
        # What bounds the pipelined rate: CPU per job of each side, whatever the load.
        ours, theirs = (
            Stats.of([s * 1e6 for s in client_cpu]),
            Stats.of([s * 1e6 for s in server_cpu]),
        )
        rows.append(
            Row(
                SECTION,
                f"{queue}: pipelined, our client's CPU per job",
                "us",
                ours,
                "gearmand CPU per job",
                theirs,
                "<= gearmand",
                ours.median <= theirs.median,
            )
        )
        rows.append(
            Row(
                SECTION,
                f"{queue}: the same through JobClient.stream_background (batch entries)",
                "jobs/s",
                Stats.of(batch),
                "pipelined GearmanClient.stream_background",
                pipe_stats,
            )
        )
    return rows


def _bigger_table(where: Path, runs: int) -> list[Row]:
    """The builtin queue's pipelined figures into a gearmand with a larger hash table
    (BUCKETS), after as many jobs as _measure queues first."""
    rates, ours, theirs = [], [], []
    for run in range(runs):
        with gearmand(where / f"buckets-{run}", extra_args=BUCKETS) as server:
            sequential_rate(server.address, 2 * SEQUENTIAL["builtin"])
            _pipelined(server, PIPELINED["builtin"], rates, ours, theirs)
    options = " ".join(BUCKETS)
    return [
        Row(SECTION, f"builtin: pipelined, gearmand {options}", "jobs/s", Stats.of(rates)),
        Row(
            SECTION,
            f"builtin: pipelined, our client's CPU per job, gearmand {options}",
            "us",
            Stats.of([s * 1e6 for s in ours]),
            "gearmand CPU per job",
            Stats.of([s * 1e6 for s in theirs]),
        ),
    ]


def run(runs: int, persistent_runs: int) -> list[Row]:
    """Measure every queue type; a queue type that cannot start is reported unavailable."""
    rows: list[Row] = []
    for queue in QUEUES:
        with workdir(f"background-{queue}") as where:
            try:
                rows += _measure(queue, where, runs * 2 if queue == "builtin" else persistent_runs)
                if queue == "builtin":
                    rows += _bigger_table(where, runs)
            except Exception as exc:
                rows.append(
                    unavailable(
                        SECTION, f"{queue}: background submits", "jobs/s", describe_error(exc)
                    )
                )
    return rows
