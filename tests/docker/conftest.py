"""Fixtures of the docker backend tests: gearmand (and its queue database) in containers.

Tests that need Docker skip, with one line saying what was looked for, when no engine answers;
under CI (CI=true), where .ci/run starts an engine, they fail instead, so a broken engine
cannot pass unnoticed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_islandora_job.config import ServerSettings
from pytest_islandora_job.docker import DockerUnavailable, client
from pytest_islandora_job.servers import make_servers
from pytest_islandora_job.servers.docker import DockerGearmanServer


@pytest.fixture(scope="session")
def docker_engine() -> Any:
    """The Docker engine (a testcontainers DockerClient); skips when none answers."""
    try:
        return client()
    except DockerUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture
def docker_server(
    docker_engine: Any, tmp_path: Path
) -> Iterator[Callable[..., DockerGearmanServer]]:
    """docker_server(queue, **settings) starts a gearmand container; all are closed after."""
    made: list[DockerGearmanServer] = []

    def make(queue: str = "builtin", **changes: Any) -> DockerGearmanServer:
        settings = ServerSettings(backend="docker", queue=queue, **changes)
        [server] = make_servers(settings, tmp_path / f"docker-{len(made)}")
        assert isinstance(server, DockerGearmanServer)
        made.append(server)
        server.start()
        return server

    yield make
    for server in reversed(made):
        server.close()
