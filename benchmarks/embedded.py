"""5. The embedded Gearman server next to gearmand, in the same run.

- start-to-ready of the embedded gearman_server (make_servers + start, as the fixture runs
  them: fork, bind, our admin `getpid` check), next to gearmand's under the process backend;
- foreground round trips through it with our client and native worker, next to the same
  through gearmand, runs alternating (one native worker on each server, both up throughout);
- pipelined background submits (GearmanClient.stream_background), a fresh server per run,
  next to gearmand's, the queued count checked after each run.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.background import PIPELINED, _queued, pipelined_rate
from benchmarks.common import Row, Stats, gearmand, job_settings, native_workers, workdir
from benchmarks.roundtrip import JOBS, protocol_rate
from pytest_islandora_job.config import ServerSettings
from pytest_islandora_job.servers import make_servers

SECTION = "5 embedded"
START_TARGET_MS = 30.0
ROUNDTRIP_TARGET = 0.6
PIPELINED_TARGET = 30000


def start_ms(backend: str, where: Path) -> float:
    """Milliseconds from make_servers to a started server of this backend; closed after."""
    start = time.perf_counter()
    (server,) = make_servers(ServerSettings(backend=backend), where)
    try:
        server.start()
        return (time.perf_counter() - start) * 1000.0
    finally:
        server.close()


def start_rows(runs: int) -> list[Row]:
    """Start-to-ready of both backends, alternating, after one warm-up each."""
    samples: dict[str, list[float]] = {"embedded": [], "process": []}
    with workdir("embedded-start") as where:
        for i in range(runs + 1):
            for backend, found in samples.items():
                elapsed = start_ms(backend, where / f"{backend}-{i}")
                if i:
                    found.append(elapsed)
    embedded, process = Stats.of(samples["embedded"]), Stats.of(samples["process"])
    return [
        Row(
            SECTION,
            "embedded gearman_server start-to-ready",
            "ms",
            embedded,
            "process backend (gearmand)",
            process,
            f"<= {START_TARGET_MS:.0f} ms",
            embedded.median <= START_TARGET_MS,
        )
    ]


def roundtrip_rows(runs: int) -> list[Row]:
    """Sequential foreground jobs/s through each server, one native worker on each."""
    samples: dict[str, list[float]] = {"process": [], "embedded": []}
    # Entered in order: each native worker is started while its server's settings are on.
    with (
        workdir("embedded-roundtrip") as where,
        gearmand(where / "gearmand") as reference,
        gearmand(where / "embedded", backend="embedded") as server,
        job_settings(reference, where / "gearmand"),
        native_workers(1, "rt-gearmand"),
        job_settings(server, where / "embedded"),
        native_workers(1, "rt-embedded"),
    ):
        addresses = {"process": reference.address, "embedded": server.address}
        for address in addresses.values():  # warm up connections and imports
            protocol_rate(address, 50)
        for _ in range(runs):
            for backend, address in addresses.items():
                samples[backend].append(protocol_rate(address, JOBS))
    mine, ref = Stats.of(samples["embedded"]), Stats.of(samples["process"])
    return [
        Row(
            SECTION,
            f"embedded: GearmanClient.submit + native worker, {JOBS} jobs",
            "jobs/s",
            mine,
            "the same through gearmand",
            ref,
            f">= {ROUNDTRIP_TARGET} x gearmand",
            mine.median >= ROUNDTRIP_TARGET * ref.median,
        )
    ]


def pipelined_rows(runs: int) -> list[Row]:
    """Pipelined background jobs/s into a fresh server per run, both backends alternating."""
    jobs = PIPELINED["builtin"]
    samples: dict[str, list[float]] = {"embedded": [], "process": []}
    with workdir("embedded-pipelined") as where:
        for run in range(runs):
            for backend, found in samples.items():
                with gearmand(where / f"{backend}-{run}", backend=backend) as server:
                    found.append(pipelined_rate(server.address, jobs))
                    queued = _queued(server.address)
                if queued != jobs + 1:
                    raise RuntimeError(f"{backend} holds {queued} jobs, {jobs + 1} were submitted")
    mine = Stats.of(samples["embedded"])
    return [
        Row(
            SECTION,
            f"embedded: pipelined background, {jobs} jobs",
            "jobs/s",
            mine,
            "the same into gearmand",
            Stats.of(samples["process"]),
            f">= {PIPELINED_TARGET:,}",
            mine.median >= PIPELINED_TARGET,
        )
    ]


def run(runs: int) -> list[Row]:
    """Every embedded-server figure, `runs` times each."""
    return start_rows(runs * 2) + roundtrip_rows(runs) + pipelined_rows(runs)
