"""`islandora-job worker --via-gearman-cli` (the C tool running `islandora-job route` per
job) answers PHP as the original router does and our client with JSON, on a site's
functions when given `--site`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

import islandora_job
from pytest_islandora_job.servers.base import GearmanServer

from .conftest import SITE, needs_gearman_tool, needs_php, php, unbase64, wait_for_functions

pytestmark = [needs_php, needs_gearman_tool]

StartCli = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def cli_worker(gearman_server: GearmanServer) -> Iterator[StartCli]:
    """Start `islandora-job [OPTIONS] worker --via-gearman-cli` for the interop jobs."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*options: str, functions: tuple[str, ...]) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "islandora_job", "--servers", gearman_server.address]
        command += ["--modules", "tests.interop.jobs", *options, "worker", "--via-gearman-cli"]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        started.append(process)
        wait_for_functions(gearman_server.address, functions, process)
        return process

    yield start
    for process in started:
        process.terminate()
        process.wait(10)


def test_php_gets_text_and_our_client_json(
    gearman_server: GearmanServer, cli_worker: StartCli
) -> None:
    cli_worker(functions=("hello_world", "interop_returns"))
    report = php(
        {
            "server": gearman_server.address,
            "action": "normal",
            "job": "interop_returns",
            "args": ["true"],
        }
    )
    assert (report["return_code"], unbase64(report["result"])) == (0, b"1")
    with islandora_job.JobClient([gearman_server.address], check_jobs=False) as client:
        assert client.submit("interop_returns", "dict", timeout=15) == {"a": 1, "b": [True]}
        assert client.submit("interop_returns", "true", timeout=15) is True
    with islandora_job.JobClient(
        [gearman_server.address], results="text", check_jobs=False
    ) as client:
        assert client.submit("interop_returns", "true", timeout=15) == "1"


def test_cli_site_option(gearman_server: GearmanServer, cli_worker: StartCli) -> None:
    cli_worker("--site", SITE, functions=(f"{SITE}_hello_world",))
    report = php(
        {
            "server": gearman_server.address,
            "action": "normal",
            "job": "hello_world",
            "args": ["Danny"],
            "site": SITE,
        }
    )
    assert (report["return_code"], unbase64(report["result"])) == (0, b"Hello Danny")
    with islandora_job.JobClient([gearman_server.address], site=SITE, check_jobs=False) as client:
        assert client.submit("hello_world", "Ours", timeout=15) == "Hello Ours"
