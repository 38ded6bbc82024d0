"""gearmand 1.1.20's PostgreSQL queue bugs, pinned as they are today (with the MySQL and SQLite
queues as the contrast). When a gearmand release fixes one, its test fails: update the README's
"Persistent queues" section and the test together."""

from __future__ import annotations

from pathlib import Path

import pytest

from islandora_job import payload
from islandora_job.gearman.client import GearmanClient, Priority, ServerError
from islandora_job.queue import clear, jobs_left
from pytest_islandora_job.assertions import wait_until_idle
from pytest_islandora_job.databases.local_server import LocalServer
from pytest_islandora_job.servers import GearmanServer
from tests.persistence.conftest import workers


def database_server(server: GearmanServer) -> LocalServer:
    """The throwaway database server under a gearmand, which these tests restart."""
    instance = getattr(server.database, "instance", None)
    if not isinstance(instance, LocalServer):
        pytest.skip(f"restarts a throwaway database of the process backend, not {instance!r}")
    return instance


def run_order_after_replay(server: GearmanServer, tmp_path: Path) -> list[str]:
    """Queue three LOW jobs, crash and restart gearmand, queue one NORMAL job, then let one
    worker run them all: the order they ran in shows the priorities gearmand replayed."""
    clear([server.address])
    out = tmp_path / "order.txt"

    def append(line: str) -> bytes:
        return payload.encode("append", [str(out), line])

    with GearmanClient([server.address]) as client:
        for i in range(3):
            client.submit_background("append", append(f"low-{i}"), priority=Priority.LOW)
    assert [job.priority for job in server.persisted_jobs()] == [2, 2, 2]
    server.kill()
    server.restart()
    with GearmanClient([server.address]) as client:
        client.submit_background("append", append("normal"), priority=Priority.NORMAL)
    with workers([server.address], tmp_path):
        wait_until_idle(server, timeout=30)
    return out.read_text().splitlines()


def test_postgres_replays_every_job_as_high_priority(
    postgres_server: GearmanServer, tmp_path: Path
) -> None:
    order = run_order_after_replay(postgres_server, tmp_path)
    # Bug: the LOW jobs came back HIGH, so they ran before the NORMAL job.
    assert order[-1] == "normal", order


@pytest.mark.parametrize("queue", ["mysql", "sqlite"])
def test_other_queues_replay_priorities(
    queue: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server = request.getfixturevalue(f"{queue}_server")
    order = run_order_after_replay(server, tmp_path)
    assert order[0] == "normal", order


def test_postgres_queue_does_not_reconnect_after_the_database_restarts(
    postgres_server: GearmanServer,
) -> None:
    server = postgres_server
    clear([server.address])
    with GearmanClient([server.address]) as client:
        client.submit_background("count_a", b"before")
    database_server(server).restart()

    # Bug: gearmand keeps its dead connection; every background submit fails.
    for attempt in range(3):
        with GearmanClient([server.address]) as client, pytest.raises(ServerError) as failed:
            client.submit_background("count_a", b"after %d" % attempt)
        assert failed.value.code == "QUEUE_ERROR"

    server.restart()  # only a gearmand restart reconnects
    with GearmanClient([server.address]) as client:
        client.submit_background("count_a", b"after gearmand restart")
    assert server.persisted_counts() == {"count_a": 2}
    assert jobs_left([server.address]) == {"count_a": 2}
    assert clear([server.address]) == 2


def test_mysql_queue_reconnects_after_the_database_restarts(mysql_server: GearmanServer) -> None:
    server = mysql_server
    clear([server.address])
    database_server(server).restart()
    with GearmanClient([server.address]) as client:
        client.submit_background("count_a", b"after")
    assert server.persisted_counts() == {"count_a": 1}
    assert clear([server.address]) == 1


def test_a_queue_error_on_a_persistent_server_says_the_disk_may_be_full(
    pytester: pytest.Pytester,
) -> None:
    # gearmand's PostgreSQL queue answers QUEUE_ERROR once its database is gone: the failing
    # test's report then says what that may mean.
    pytester.makepyfile(
        test_inner="""
from islandora_job.gearman.client import GearmanClient


def test_submit(persistent_gearman_server):
    persistent_gearman_server.database.instance.stop()
    with GearmanClient([persistent_gearman_server.address]) as client:
        client.submit_background("count_a", b"x")
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-o", "gearman_queues=postgres"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*islandora-job: QUEUE_ERROR*", "*The queue's disk may be full, or its database down*"]
    )
