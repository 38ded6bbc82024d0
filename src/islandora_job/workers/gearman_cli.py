"""The original architecture: the C `gearman -w` tool runs `islandora-job route` per job."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from typing import BinaryIO

from islandora_job import config, jobcontext, payload
from islandora_job.config import Settings, settings_env
from islandora_job.registry import RegistryError, UnknownJob, load_registry
from islandora_job.workers.identity import holding_pidfile
from islandora_job.workers.jobs import encode_result, select_jobs

log = logging.getLogger(__name__)


def gearman_cli_command(names: Sequence[str], site: str | None = None) -> list[str]:
    """The C tool command line of the original architecture, for these jobs (their
    functions prefixed `{site}_` with a site).

    The tool takes one -h/-p pair; it reads the whole server list from the GEARMAN_SERVER
    environment variable instead, which `run_gearman_cli_worker` sets. FileNotFoundError
    when the `gearman` tool is not installed.
    """
    tool = shutil.which("gearman")
    if tool is None:
        raise FileNotFoundError(
            "the C `gearman` tool is not installed: apt-get install gearman-tools, "
            "or run the native worker (without --via-gearman-cli)"
        )
    functions = [arg for name in names for arg in ("-f", payload.gearman_function(name, site))]
    return [tool, "-w", *functions, "--", sys.executable, "-m", "islandora_job", "route"]


def run_gearman_cli_worker(
    only: Iterable[str] | None = None,
    pidfile: str | os.PathLike[str] | None = None,
    *,
    settings: Settings | None = None,
) -> int:
    """Run the original architecture: `gearman -w -f job ... -- python -m islandora_job
    route` as a child, one router process per job; returns the tool's exit status.

    SIGTERM and SIGINT are passed on to the tool, which stops at once: unlike the native
    worker it cannot finish the job in hand first. `settings` as for `run_worker`. Raises
    like `run_worker`, and FileNotFoundError when the tool is not installed.
    """
    resolved = config.settings() if settings is None else settings
    names = select_jobs(load_registry(resolved.modules), only)
    command = gearman_cli_command(names, resolved.site)
    env = {**os.environ, **settings_env(resolved), "GEARMAN_SERVER": ",".join(resolved.servers)}
    with holding_pidfile(pidfile, resolved):
        tool = subprocess.Popen(command, stdin=subprocess.DEVNULL, env=env)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda signum, _: tool.send_signal(signum))
        log.info("worker %d runs %s", os.getpid(), " ".join(command))
        return tool.wait()


def route(stdin: BinaryIO, stdout: BinaryIO, *, settings: Settings | None = None) -> int:
    """Run the one job whose payload is on stdin, write its result on stdout; 0.

    The result is JSON when the payload asks for it (our client does), else the text the
    original router echoes (see `payload.encode_text_result`).

    On a failure (bad payload, unregistered job, the job raised) write the failure JSON on
    stdout and return 1: the C tool then sends it as WORK_DATA followed by WORK_FAIL, so
    the client sees a failure, not an empty success. The C tool does not say which
    function the job came on, so the payload's "func" names the job. `settings`: the
    settings in force when None.
    """
    resolved = config.settings() if settings is None else settings
    data = stdin.read(resolved.max_payload + 1)
    # A job calling progress() learns why it cannot report from here.
    token = jobcontext.current.set(jobcontext.VIA_GEARMAN_CLI)
    try:
        name, args, json_result = payload.decode_job(data, None, max_size=resolved.max_payload)
        result = encode_result(load_registry(resolved.modules).resolve(name)(*args), json_result)
    except (payload.PayloadError, UnknownJob, RegistryError) as exc:
        log.error("job refused: %s", exc)
        stdout.write(payload.encode_failure(exc))
        return 1
    except (Exception, SystemExit) as exc:
        log.exception("job raised")
        stdout.write(payload.encode_failure(exc))
        return 1
    finally:
        jobcontext.current.reset(token)
    stdout.write(result)
    return 0
