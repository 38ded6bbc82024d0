"""An embedded Gearman server for development machines and test suites.

Production stays on gearmand; this server speaks what this library, the C ``gearman`` tool,
PHP's gearman extension and Perl's Gearman::Client use, in gearmand 1.1.20's formats, keeps
background jobs in an SQLite file when asked, and has test controls gearmand lacks (hold and
release a function's jobs, list queued payloads, drop the workers holding a function's jobs).

``state`` is the sans-I/O server, ``commands`` the admin text protocol, ``store`` the
persistent queue, ``loop`` the sockets.
"""

from __future__ import annotations

import signal
from types import FrameType

from islandora_job.server.commands import QueuedJob, read_queued_line
from islandora_job.server.loop import EmbeddedServer
from islandora_job.server.state import VERSION, ServerState
from islandora_job.server.store import SQLiteStore, StoreError, open_store

__all__ = [
    "VERSION",
    "EmbeddedServer",
    "QueuedJob",
    "SQLiteStore",
    "ServerState",
    "StoreError",
    "open_store",
    "read_queued_line",
    "serve",
]


def serve(
    listen: str = "127.0.0.1", port: int = 4730, queue: str | None = None, job_retries: int = 0
) -> None:
    """Run a server in the foreground until SIGTERM, SIGINT or admin ``shutdown``.

    Raises ValueError on a bad queue spec or retry count, OSError when the address cannot be
    bound, and StoreError when the queue file cannot be read.
    """
    if job_retries < 0:
        raise ValueError(f"--job-retries {job_retries}: give 0 (retry forever) or more")
    store = open_store(queue)
    try:
        server = EmbeddedServer(listen, port, job_retries=job_retries, store=store)
    except BaseException:
        if store is not None:
            store.close()
        raise

    def stop(signum: int, frame: FrameType | None) -> None:
        server.request_stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
