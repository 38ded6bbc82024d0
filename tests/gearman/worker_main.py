"""A GearmanWorker program for tests that need a worker in its own process.

Usage: python worker_main.py SERVERS CLIENT_ID PREFIX [RECORD_FILE]
SERVERS is comma-separated. Functions, each name starting with PREFIX: rev (reversed data), echo, fail (WorkFailure with
data), crash (RuntimeError), sleep (sleeps float(data) s), record (appends the data's hex to RECORD_FILE, returns b"ok").
SIGTERM stops the worker after the current job.
"""

from __future__ import annotations

import signal
import sys
import time

from islandora_job.gearman import GearmanWorker, WorkerJob, WorkFailure


def main() -> None:
    servers, client_id = sys.argv[1].split(","), sys.argv[2]
    prefix = sys.argv[3]
    record_file = sys.argv[4] if len(sys.argv) > 4 else None
    worker = GearmanWorker(servers, client_id=client_id)

    def fail(job: WorkerJob) -> bytes:
        raise WorkFailure(b"failed: " + job.data)

    def crash(job: WorkerJob) -> bytes:
        raise RuntimeError("crashed")

    def record(job: WorkerJob) -> bytes:
        assert record_file is not None
        with open(record_file, "a") as f:
            f.write(job.data.hex() + "\n")
        return b"ok"

    worker.register(prefix + "rev", lambda job: job.data[::-1])
    worker.register(prefix + "echo", lambda job: job.data)
    worker.register(prefix + "fail", fail)
    worker.register(prefix + "crash", crash)
    worker.register(prefix + "record", record)
    worker.register(prefix + "sleep", lambda job: time.sleep(float(job.data)) or b"slept")
    signal.signal(signal.SIGTERM, lambda signum, frame: worker.request_stop())
    with worker:
        worker.work()


if __name__ == "__main__":
    main()
