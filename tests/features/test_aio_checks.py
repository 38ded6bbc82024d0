"""The async client refuses unknown job names and waits the default timeout, as JobClient."""

from __future__ import annotations

import asyncio
import time

import pytest

from islandora_job import UnknownJob, configured
from islandora_job.aio import AsyncJobClient
from pytest_islandora_job.servers.base import GearmanServer


def test_a_mistyped_name_is_refused_before_anything_is_sent(
    gearman_server: GearmanServer,
) -> None:
    async def main() -> None:
        async with AsyncJobClient(servers=[gearman_server.address]) as client:
            with pytest.raises(UnknownJob, match="did you mean 'hello'"):
                await client.submit("helo", timeout=5)
            with pytest.raises(UnknownJob):
                await client.submit_background("helo")

    asyncio.run(main())


def test_a_call_given_no_timeout_waits_the_default_one(gearman_server: GearmanServer) -> None:
    async def main() -> float:
        async with AsyncJobClient(servers=[gearman_server.address]) as client:
            started = time.monotonic()
            with pytest.raises(Exception, match="default timeout") as info:
                await client.submit("hello")  # no worker serves it here
            assert type(info.value).__name__ == "JobTimeout"
            return time.monotonic() - started

    with configured(default_timeout=0.5):
        elapsed = asyncio.run(main())
    assert elapsed < 5
