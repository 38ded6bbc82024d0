"""The `islandora-job` command: submit jobs, run and manage workers, look at queues.

Each subcommand is a `Command` in `COMMANDS`: a name, a help line, a function adding its
arguments and a function running it (returning the exit status). Exit status: 0 success,
1 failure (one line on stderr, no traceback), 2 usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import logging
import sys
from collections.abc import Callable, Sequence

from islandora_job import api, queue, workers
from islandora_job.config import (
    ENV_MODULES,
    ENV_SERVERS,
    ENV_SITE,
    configure,
    restore,
    settings,
)
from islandora_job.gearman.admin import AdminError
from islandora_job.gearman.client import ServerError
from islandora_job.gearman.protocol import ProtocolError
from islandora_job.registry import RegistryError, UnknownJob, load_registry
from islandora_job.server import main as server_main
from islandora_job.workers.pidfiles import resolve_pidfile
from islandora_job.workers.stop import DEFAULT_GRACE

PROG = "islandora-job"
DISTRIBUTION = "pytest-islandora-job"

# Failures a user can fix: reported in one line, exit status 1.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    api.JobFailed,
    RegistryError,
    UnknownJob,
    workers.PidfileError,
    workers.WorkerRunning,
    workers.WorkerStartError,
    ServerError,
    AdminError,
    ProtocolError,
    queue.QueueTableError,
    ValueError,
    TypeError,
    OSError,  # includes JobTimeout, ServerUnavailable, a missing file
)


@dataclasses.dataclass(frozen=True)
class Command:
    """One subcommand: `add_arguments(parser)` declares its arguments, `run(args)` runs it
    and returns the exit status."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _json_value(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a JSON value: quote text as JSON, e.g. '\"{text}\"'"
        ) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _print_json(value: object) -> None:
    print(json.dumps(value, ensure_ascii=False))


def _table(rows: Sequence[Sequence[object]]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


# -- submit ------------------------------------------------------------------------------


def _submit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="the job name")
    parser.add_argument(
        "args",
        nargs="*",
        type=_json_value,
        metavar="ARG",
        help='an argument as a JSON value: 3, "text" (quoted), [1, 2], {"a": 1}',
    )
    parser.add_argument(
        "--background", action="store_true", help="queue the job and print its handle"
    )
    parser.add_argument("--timeout", type=_seconds, help="give up after this many seconds")
    _priority_argument(parser, "the job's priority")
    _unregistered_argument(parser)
    parser.add_argument(
        "--text",
        action="store_true",
        help="print the raw result of a worker that is not ours (the original module's "
        "router echoes text), not JSON",
    )


def _priority_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--priority",
        choices=api.PRIORITIES,
        default="normal",
        help=f"{what}: waiting jobs run high, then normal, then low (default: %(default)s)",
    )


def _unregistered_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--unregistered",
        action="store_true",
        help="send job names the job registry lacks (a worker of another language or "
        "deployment serves them) instead of refusing them",
    )


def _client(args: argparse.Namespace, results: str | None = None) -> api.JobClient:
    """A client checking job names unless --unregistered was given: at a prompt, a name
    nobody registered here is a typo more often than not, even with no job modules set
    (where it would otherwise wait for a worker that never comes)."""
    return api.JobClient(results=results, check_jobs=not args.unregistered)


def _submit(args: argparse.Namespace) -> int:
    text = args.text or settings().results == "text"
    with _client(args, "text" if text else None) as client:
        if args.background:
            print(client.submit_background(args.job, *args.args, priority=args.priority))
        elif text:
            print(client.submit(args.job, *args.args, timeout=args.timeout, priority=args.priority))
        else:
            _print_json(
                client.submit(args.job, *args.args, timeout=args.timeout, priority=args.priority)
            )
    return 0


# -- batch -------------------------------------------------------------------------------


def _batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file",
        metavar="FILE.json",
        help='a JSON list of {"job_name": ..., "args": [...]}; - reads standard input',
    )
    parser.add_argument("--timeout", type=_seconds, help="give up after this many seconds")
    _priority_argument(parser, 'the priority of entries that give no "priority"')
    _unregistered_argument(parser)


def _batch(args: argparse.Namespace) -> int:
    if args.file == "-":
        text = sys.stdin.read()
    else:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
    try:
        batch = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{args.file} is not JSON ({exc})") from None
    if isinstance(batch, list):
        batch = [
            {"priority": args.priority, **entry} if isinstance(entry, dict) else entry
            for entry in batch
        ]
    with _client(args) as client:
        ok = client.submit_batch(batch, timeout=args.timeout)
    print(f"batch of {len(batch)} jobs: {'all succeeded' if ok else 'some failed'}")
    return 0 if ok else 1


# -- jobs, status ------------------------------------------------------------------------


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _jobs(args: argparse.Namespace) -> int:
    registry = load_registry()
    if not registry.jobs:
        print(
            f"no jobs registered (set {ENV_MODULES} or declare an islandora_job.jobs entry point)"
        )
        return 0
    rows = [("JOB", "FUNCTION", "REGISTERED BY", "FOUND BY")]
    rows += [(s.name, s.target, s.source, s.found_by) for s in registry.jobs.values()]
    _table(rows)
    return 0


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from-table",
        metavar="DSN",
        help="count jobs left per function in a persistent queue table instead: "
        "mysql://user:pw@host:port/db, postgresql://user@host:port/db, sqlite:///relative/path "
        "or sqlite:////absolute/path",
    )
    parser.add_argument(
        "--table", default=queue.DEFAULT_TABLE, help="the queue table (default: %(default)s)"
    )


def _status(args: argparse.Namespace) -> int:
    if args.from_table is not None:
        counts = queue.counts_from_table(args.from_table, args.table)
        if counts:
            _table([("FUNCTION", "JOBS"), *counts.items()])
        else:
            print(f"no jobs left in table {args.table}")
        return 0
    rows: list[tuple[object, ...]] = [("SERVER", "FUNCTION", "QUEUED", "RUNNING", "WORKERS")]
    for server in queue.read_status(settings().servers):
        rows += [
            (server.address, r.function, r.queued, r.running, r.workers) for r in server.checked()
        ]
    if len(rows) == 1:
        print("no functions known to the servers")
    else:
        _table(rows)
    return 0


def _clear_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("function", nargs="?", help="clear only this function's jobs")


def _clear(args: argparse.Namespace) -> int:
    cleared = queue.clear(settings().servers, args.function)
    which = f" of {args.function}" if args.function is not None else ""
    print(f"cleared {cleared} queued job{'s' if cleared != 1 else ''}{which}")
    return 0


# -- workers -----------------------------------------------------------------------------


def _start_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pidfile", metavar="PIDFILE", help="a bare file name in the temp dir")
    parser.add_argument(
        "--timeout", type=_seconds, default=30.0, help="seconds to wait for it to register"
    )


def _start_worker(args: argparse.Namespace) -> int:
    resolved = settings()
    path = workers.pidfile_path(args.pidfile, settings=resolved)
    if not workers.start_worker(args.pidfile, timeout=args.timeout, settings=resolved):
        print(f"{PROG}: a worker already runs with pidfile {path}", file=sys.stderr)
        return 1
    log_path = workers.worker_log_path(args.pidfile, settings=resolved)
    print(f"worker started: pidfile {path}, log {log_path}")
    return 0


def _stop_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pidfile",
        metavar="PIDFILE",
        help="a bare file name in the temp dir, or an absolute path (as worker --pidfile takes)",
    )
    parser.add_argument(
        "--grace", type=_seconds, default=DEFAULT_GRACE, help="seconds between SIGTERM and SIGKILL"
    )


def _stop_worker(args: argparse.Namespace) -> int:
    resolved = settings()
    path = resolve_pidfile(args.pidfile, resolved)
    if not workers.stop_worker(args.pidfile, grace=args.grace, settings=resolved):
        print(f"{PROG}: no live worker with pidfile {path}", file=sys.stderr)
        return 1
    print(f"worker stopped: pidfile {path}")
    return 0


def _worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pidfile", help="write this PID to a pidfile (a bare name in the temp dir, or absolute)"
    )
    parser.add_argument(
        "--only", action="extend", nargs="+", metavar="JOB", help="serve only these jobs"
    )
    parser.add_argument(
        "--via-gearman-cli",
        action="store_true",
        help="run the C tool `gearman -w` with one `islandora-job route` process per job",
    )


def _worker(args: argparse.Namespace) -> int:
    if args.via_gearman_cli:
        return workers.run_gearman_cli_worker(args.only, args.pidfile)
    workers.run_worker(args.only, args.pidfile)
    return 0


# -- managed workers, ping ---------------------------------------------------------------


def _workers_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = actions.add_parser(
        "start", help="start N more managed workers (managed-worker-<k>.pid in the temp dir)"
    )
    start.add_argument("count", type=_count, metavar="N", help="how many workers to start")
    start.add_argument(
        "--timeout", type=_seconds, default=30.0, help="seconds to wait for each to register"
    )
    actions.add_parser("count", help="print how many managed workers are alive")
    stop = actions.add_parser("stop-all", help="stop every managed worker")
    stop.add_argument(
        "--grace", type=_seconds, default=DEFAULT_GRACE, help="seconds between SIGTERM and SIGKILL"
    )


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers (0 or more)")
    return value


def _workers(args: argparse.Namespace) -> int:
    if args.action == "start":
        started = workers.start_workers(args.count, timeout=args.timeout)
        print(f"started {len(started)} managed worker{'s' if len(started) != 1 else ''}")
        for name in started:
            print(f"  {workers.pidfile_path(name)}")
    elif args.action == "count":
        print(workers.count_workers())
    else:
        stopped = workers.stop_workers(grace=args.grace)
        print(f"stopped {stopped} managed worker{'s' if stopped != 1 else ''}")
    return 0


def _ping_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout", type=_seconds, default=5.0, help="seconds to wait for the answers, per server"
    )


def _ping(args: argparse.Namespace) -> int:
    answers = workers.ping_workers(timeout=args.timeout)
    rows: list[tuple[object, ...]] = [("SERVER", "WORKER", "ANSWER")]
    for a in answers:
        if a.answer is not None:
            jobs = a.answer.get("jobs")
            serving = ", ".join(map(str, jobs)) if isinstance(jobs, list) else "?"
            said = f"ok: pid {a.answer.get('pid')} on {a.answer.get('host')}, serving {serving}"
        else:
            said = ("NOT CHECKED: " if a.client_id and not a.checked else "NO ANSWER: ") + a.error
        rows.append((a.server, a.client_id or "-", said))
    if len(rows) == 1:
        print(
            f"{PROG}: no worker is registered on {', '.join(settings().servers)}", file=sys.stderr
        )
        return 1
    _table(rows)
    failed = [a for a in answers if not a.ok and (a.checked or not a.client_id)]
    return 1 if failed else 0


def _route(args: argparse.Namespace) -> int:
    return workers.route(sys.stdin.buffer, sys.stdout.buffer)


# -- server ------------------------------------------------------------------------------

SERVER_COMMAND = Command("server", server_main.HELP, server_main.add_arguments, server_main.run)

COMMANDS: list[Command] = [
    Command("submit", "run a job and print its JSON result", _submit_arguments, _submit),
    Command("batch", "run a batch of jobs concurrently", _batch_arguments, _batch),
    Command("jobs", "list the registered jobs and where they come from", _no_arguments, _jobs),
    Command("status", "per function: jobs queued, running, workers", _status_arguments, _status),
    Command(
        "clear",
        "forget queued jobs (not running ones), in gearmand and its queue table",
        _clear_arguments,
        _clear,
    ),
    Command(
        "start-worker",
        "start a detached worker named by a pidfile",
        _start_worker_arguments,
        _start_worker,
    ),
    Command("stop-worker", "stop the worker a pidfile names", _stop_worker_arguments, _stop_worker),
    Command("worker", "run a worker in the foreground", _worker_arguments, _worker),
    Command(
        "workers",
        "managed workers: start N, count, stop-all",
        _workers_arguments,
        _workers,
    ),
    Command(
        "ping",
        "check through gearmand that every registered worker answers its heartbeat",
        _ping_arguments,
        _ping,
    ),
    Command(
        "route",
        "run the job whose payload is on stdin (for `gearman -w`)",
        _no_arguments,
        _route,
    ),
    SERVER_COMMAND,
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command in COMMANDS."""
    parser = argparse.ArgumentParser(prog=PROG, description="Gearman jobs, Islandora Job style.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--servers", help=f"comma-separated gearmand host:port list (default: {ENV_SERVERS})"
    )
    parser.add_argument(
        "--modules", help=f"comma-separated job module import paths (default: {ENV_MODULES})"
    )
    parser.add_argument(
        "--site",
        help="multisite prefix: jobs go on the Gearman functions SITE_<job> "
        f"(default: {ENV_SITE}; '' for none)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def _version() -> str:
    """The installed distribution's version ("not installed" when run from a bare source tree)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


#: How a worker's log lines look.
WORKER_LOG_FORMAT = "%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s"


def _setup_logging(command: str) -> None:
    if command == "worker":
        fmt, level = WORKER_LOG_FORMAT, logging.INFO
    else:
        fmt, level = f"{PROG}: %(message)s", logging.WARNING
    logging.basicConfig(format=fmt, level=level, stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (usage errors exit 2 via argparse)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.command)
    try:
        previous = configure(servers=args.servers, modules=args.modules, site=args.site)
    except ValueError as exc:
        parser.error(str(exc))
    run: Callable[[argparse.Namespace], int] = args.run  # set by build_parser() from COMMANDS
    try:
        return _reported(lambda: run(args))
    finally:
        restore(previous)


def worker_main(pidfile: str) -> int:
    """Run `islandora-job worker --pidfile PIDFILE` (no other option) without building the
    parser, as a forked warm worker does; return its exit status as main() would."""
    _setup_logging("worker")

    def run() -> int:
        workers.run_worker(None, pidfile)
        return 0

    return _reported(run)


def _reported(run: Callable[[], int]) -> int:
    """run()'s exit status; an expected failure is one line on stderr and status 1."""
    try:
        return run()
    except EXPECTED_ERRORS as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
