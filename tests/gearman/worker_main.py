"""A GearmanWorker program for tests that need a worker in its own process.

Usage: python worker_main.py SERVERS CLIENT_ID PREFIX [--record FILE] [--no-exceptions]
SERVERS is comma-separated. Functions, each name starting with PREFIX: rev (reversed
data), echo, fail (WorkFailure with data), crash (RuntimeError), sleep (sleeps float(data)
seconds), record (appends the data's hex to FILE, returns b"ok"). SIGTERM stops the worker
after the current job.
"""

from __future__ import annotations

import argparse
import signal
import time

from islandora_job.gearman import GearmanWorker, WorkerJob, WorkFailure


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("servers")
    parser.add_argument("client_id")
    parser.add_argument("prefix")
    parser.add_argument("--record")
    parser.add_argument("--no-exceptions", dest="exceptions", action="store_false")
    options = parser.parse_args()
    worker = GearmanWorker(
        options.servers.split(","), client_id=options.client_id, exceptions=options.exceptions
    )

    def fail(job: WorkerJob) -> bytes:
        raise WorkFailure(b"failed: " + job.data)

    def crash(job: WorkerJob) -> bytes:
        raise RuntimeError("crashed")

    def record(job: WorkerJob) -> bytes:
        with open(options.record, "a") as f:
            f.write(job.data.hex() + "\n")
        return b"ok"

    def sleep(job: WorkerJob) -> bytes:
        time.sleep(float(job.data))
        return b"slept"

    prefix = options.prefix
    worker.register(prefix + "rev", lambda job: job.data[::-1])
    worker.register(prefix + "echo", lambda job: job.data)
    worker.register(prefix + "fail", fail)
    worker.register(prefix + "crash", crash)
    worker.register(prefix + "record", record)
    worker.register(prefix + "sleep", sleep)
    signal.signal(signal.SIGTERM, lambda signum, frame: worker.request_stop())
    with worker:
        worker.work()


if __name__ == "__main__":
    main()
