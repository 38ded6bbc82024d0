"""The main job, end to end: a gearmand on a free loopback port, a pidfile-managed worker,
a foreground job, a background job and a batch; then everything stops.

Where gearmand is not installed the demo runs on the embedded Gearman server instead, and
says so. Run with `make demo` (it installs the example package `islandora_derivatives`, whose
jobs are found through the `islandora_job.jobs` entry point).
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import islandora_job
from islandora_job.config import configured
from pytest_islandora_job.config import ServerSettings, default_backend
from pytest_islandora_job.servers import make_servers


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="islandora-job-demo-") as tmp:
        workdir = Path(tmp)
        default = ServerSettings()
        settings = dataclasses.replace(default, backend=default_backend(default.gearmand_exec))
        (server,) = make_servers(settings, workdir)
        started = time.perf_counter()
        server.start()
        if server.backend == "embedded":
            what = (
                f"gearmand is not installed ({settings.gearmand_exec} not found): "
                f"using the embedded Gearman server {server.version}"
            )
        else:
            what = f"gearmand {server.version}"
        print(
            f"{what} ready on {server.address} in {(time.perf_counter() - started) * 1000:.0f} ms"
        )
        try:
            with configured(servers=[server.address], temp_dir=workdir):
                run_jobs(workdir)
        finally:
            server.close()
        print(f"{'embedded server' if server.backend == 'embedded' else 'gearmand'} stopped; "
              "nothing left running")  # fmt: skip
    return 0


def run_jobs(workdir: Path) -> None:
    print("registered jobs:", ", ".join(sorted(islandora_job.registry.load_registry().jobs)))
    assert islandora_job.start_worker("demo-worker.pid")
    print("worker started, pidfile", workdir / "demo-worker.pid")
    try:
        page = workdir / "page.html"
        page.write_text("<h1>Demo</h1><p>an object to ingest</p>", encoding="utf-8")

        result = islandora_job.submit("derivatives_checksum", str(page), timeout=30)
        print("foreground derivatives_checksum ->", result)

        handle = islandora_job.submit_background(
            "derivatives_full_text", str(page), str(workdir / "page.txt")
        )
        print("background derivatives_full_text -> handle", handle)

        batch = [
            {"job_name": "derivatives_word_count", "args": [text]}
            for text in ("one", "two words", "and three words")
        ]
        print("batch of", len(batch), "->", islandora_job.submit_batch(batch, timeout=30))

        deadline = time.monotonic() + 10
        while islandora_job.job_status(handle).known and time.monotonic() < deadline:
            time.sleep(0.01)
        print("background job wrote:", (workdir / "page.txt").read_text(encoding="utf-8"))
    finally:
        print("worker stopped:", islandora_job.stop_worker("demo-worker.pid"))


if __name__ == "__main__":
    sys.exit(main())
