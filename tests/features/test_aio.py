"""The asyncio client against a real gearmand and real workers."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from islandora_job import JobFailed, JobTimeout
from islandora_job.aio import AsyncJobClient
from islandora_job.gearman.connection import ServerUnavailable
from pytest_islandora_job.servers.base import GearmanServer
from pytest_islandora_job.workerpool import WorkerPool
from tests.helpers import connections_to

pytestmark = pytest.mark.asyncio


async def test_twenty_submits_in_flight_on_one_connection(
    pool: WorkerPool, gearman_server: GearmanServer
) -> None:
    pool.start(2)
    before = connections_to(gearman_server.port)
    async with AsyncJobClient() as client:
        results = await asyncio.gather(*(client.submit("add", n, 1, timeout=20) for n in range(20)))
        assert results == [n + 1 for n in range(20)]
        assert len(connections_to(gearman_server.port) - before) == 1
        assert client.pending == 0


async def test_jobs_overlap_rather_than_queue_behind_each_other(pool: WorkerPool) -> None:
    pool.start(4)
    async with AsyncJobClient() as client:
        began = time.monotonic()
        results = await asyncio.gather(
            *(client.submit("sleep", 0.5, n, timeout=20) for n in range(4))
        )
        assert results == [0, 1, 2, 3]
        assert time.monotonic() - began < 1.5


async def test_failures_timeouts_and_text_results_decode_as_the_blocking_client(
    pool: WorkerPool,
) -> None:
    pool.start(1)
    async with AsyncJobClient() as client:
        with pytest.raises(JobFailed) as failed:
            await client.submit("fail", "no luck", timeout=20)
        assert (failed.value.type, failed.value.message) == ("ValueError", "no luck")
        with pytest.raises(JobTimeout, match=r"job 'sleep' did not end within 0.3 s: 'sleep' on"):
            await client.submit("sleep", 2, timeout=0.3)
        # The timed out job is forgotten: the next call gets its own answer.
        assert await client.submit("echo", "after", timeout=20) == ["after"]
        assert client.pending == 0
    async with AsyncJobClient(results="text") as text_client:
        assert await text_client.submit("add", 40, 2, timeout=20) == "42"


async def test_a_cancelled_submit_leaves_nothing_on_the_connection(pool: WorkerPool) -> None:
    pool.start(2)
    async with AsyncJobClient() as client:
        stale = asyncio.ensure_future(client.submit("sleep", 0.5, "stale"))
        await asyncio.sleep(0.2)
        assert client.pending == 1
        stale.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stale
        assert client.pending == 0
        # The tracker forgot the job too, though it still runs: its end will go nowhere.
        link = client._link
        assert link is not None
        assert (link.tracker.running, link.tracker.awaiting_ack) == ([], False)
        # Another job runs while the cancelled one ends: its reply goes to no one.
        assert await client.submit("sleep", 0.6, "fresh", timeout=20) == "fresh"
        assert await client.submit("echo", 1, timeout=20) == [1]
        assert client.pending == 0


async def test_background_priority_unique_and_status(pool: WorkerPool) -> None:
    async with AsyncJobClient() as client:
        first = await client.submit_background("steps", 3, 0.3, unique="aio:steps")
        assert await client.submit_background("steps", 3, 0.3, unique="aio:steps") == first
        waiting = await client.job_status(first)
        assert (waiting.known, waiting.running) == (True, False)
        pool.start(1)
        deadline = time.monotonic() + 10
        status = await client.job_status(first)
        while status.numerator == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            status = await client.job_status(first)
        assert status.running and status.denominator == 3
        with pytest.raises(ValueError, match="priority must be one of"):
            await client.submit_background("hello", priority="urgent")


async def test_progress_reaches_the_async_caller(pool: WorkerPool) -> None:
    pool.start(1)
    seen: list[tuple[int, int]] = []
    async with AsyncJobClient() as client:
        result = await client.submit("steps", 3, on_progress=lambda n, d: seen.append((n, d)))
    assert result == 3
    assert seen == [(1, 3), (2, 3), (3, 3)]


async def test_run_batch_and_submit_batch(pool: WorkerPool) -> None:
    pool.start(2)
    ended: list[int] = []
    async with AsyncJobClient() as client:
        outcomes = await client.run_batch(
            [
                {"job_name": "sleep", "args": [0.5, "slow"]},
                {"job_name": "fail", "args": ["bad"], "priority": "high"},
                {"job_name": "hello"},
            ],
            timeout=20,
            on_complete=lambda index, _: ended.append(index),
        )
        assert outcomes[0] == "slow" and outcomes[2] == "hello world"
        assert isinstance(outcomes[1], JobFailed)
        assert ended[-1] == 0 and sorted(ended) == [0, 1, 2]
        assert await client.submit_batch([{"job_name": "hello"}], timeout=20) is True
        assert await client.submit_batch([{"job_name": "fail"}], timeout=20) is False
        with pytest.raises(ValueError, match="batch entry 0 has no job_name"):
            await client.run_batch([{"args": []}])


async def test_a_lost_server_fails_the_waiting_calls_and_the_next_call_reconnects(
    pool: WorkerPool, gearman_server: GearmanServer
) -> None:
    pool.start(1)
    unhandled: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: unhandled.append(context))
    async with AsyncJobClient() as client:
        assert await client.submit("hello", timeout=20) == "hello world"
        link = client._link
        assert link is not None
        link.writer.transport.abort()
        with pytest.raises(ServerUnavailable):
            await client.submit("sleep", 0.1, timeout=5)
        assert await client.submit("hello", timeout=20) == "hello world"
    # No future of the lost connection is left with an error nobody retrieved.
    gc.collect()
    assert unhandled == []


async def test_no_server_reachable_says_which(unused_tcp_port: int) -> None:
    # No server fixture here: the name goes unchecked, only the connect is under test.
    address = f"127.0.0.1:{unused_tcp_port}"
    async with AsyncJobClient(servers=[address], check_jobs=False) as client:
        with pytest.raises(
            ServerUnavailable, match=f"no gearmand server reachable: 127.0.0.1:{unused_tcp_port}"
        ):
            await client.submit("hello")


async def test_the_async_job_client_fixture(
    pool: WorkerPool, async_job_client: AsyncJobClient
) -> None:
    pool.start(1)
    assert await async_job_client.submit("add", 2, 3, timeout=20) == 5


async def test_a_failing_progress_callback_fails_that_call_and_nothing_else(
    pool: WorkerPool,
) -> None:
    pool.start(1)

    def broken(numerator: int, denominator: int) -> None:
        raise RuntimeError("the caller's callback")

    async with AsyncJobClient() as client:
        with pytest.raises(RuntimeError, match="the caller's callback"):
            await client.submit("steps", 3, on_progress=broken, timeout=20)
        # The connection's reader lives on: the next calls on it are answered.
        assert await client.submit("steps", 2, timeout=20) == 2
        assert client.pending == 0
