"""The command line of the embedded server: ``islandora-job server``'s arguments and what
runs them (:func:`run_server`, which the plugin also calls in the process it forks)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from islandora_job.server import StoreError, serve

if TYPE_CHECKING:
    import argparse

__all__ = ["HELP", "add_arguments", "main", "run", "run_server"]

HELP = "run an embedded Gearman server in the foreground (for development and tests)"
PROG = "islandora-job server"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the server's arguments on parser."""
    parser.add_argument(
        "--listen", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=4730, help="port (default: 4730)")
    parser.add_argument(
        "--queue", metavar="sqlite:PATH", help="keep background jobs in this SQLite file"
    )
    parser.add_argument(
        "--job-retries",
        type=int,
        default=0,
        metavar="N",
        help="fail a job after N workers died holding it (default 0: retry forever)",
    )
    parser.add_argument("--log-file", metavar="PATH", help="log here instead of to stderr")


def run(args: argparse.Namespace) -> int:
    """Run the server the parsed arguments describe; see :func:`run_server`."""
    return run_server(args.listen, args.port, args.queue, args.job_retries, args.log_file)


def run_server(
    listen: str, port: int, queue: str | None, job_retries: int, log_file: str | None
) -> int:
    """Serve until SIGTERM, SIGINT or admin ``shutdown``; 0 then, 1 (one line on stderr)
    when the address cannot be bound or the queue cannot be opened."""
    handler: logging.Handler = (
        logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s[%(process)d] %(message)s"))
    logger = logging.getLogger("islandora_job.server")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        serve(listen, port, queue, job_retries)
    except (StoreError, ValueError, OSError) as exc:
        logger.error("cannot serve on %s:%s: %s", listen, port, exc)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        logger.removeHandler(handler)
        handler.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse argv and run the server; usage errors exit 2 via argparse."""
    import argparse

    parser = argparse.ArgumentParser(prog=PROG, description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))
