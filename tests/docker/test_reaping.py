"""No container outlives its run: removed at close and at exit, and what a run killed outright
left is removed by the next one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from pytest_islandora_job.docker import containers

START_SERVER = (
    "import os, sys\n"
    "from pathlib import Path\n"
    "from pytest_islandora_job import processes\n"
    "from pytest_islandora_job.config import ServerSettings\n"
    "from pytest_islandora_job.servers import make_servers\n"
    "[server] = make_servers(ServerSettings(backend='docker', queue=sys.argv[2]), Path(sys.argv[1]))\n"
    "server.start()\n"
    "print(server.container_id, processes.run_tag(), flush=True)\n"
)


def run_child(code: str, tmp_path: Path, queue: str = "builtin") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ISLANDORA_JOB_RUN"}
    return subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "child"), queue],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def labelled(engine: Any, container_id: str) -> dict[str, str] | None:
    try:
        return engine.client.containers.get(container_id).labels
    except docker.errors.NotFound:
        return None


def test_a_run_that_exits_without_closing_removes_its_containers_at_exit(
    docker_engine: Any, tmp_path: Path
) -> None:
    done = run_child(START_SERVER, tmp_path, "mysql")
    assert done.returncode == 0, done.stderr
    gearmand_id, run = done.stdout.split()
    assert labelled(docker_engine, gearmand_id) is None
    of_run = {"label": f"{containers.RUN_LABEL}={run}"}
    assert docker_engine.client.containers.list(all=True, filters=of_run) == []
    assert docker_engine.client.networks.list(filters=of_run) == []


def test_the_leftovers_of_a_killed_run_are_reaped_by_the_next(
    docker_engine: Any, tmp_path: Path
) -> None:
    done = run_child(START_SERVER + "os.kill(os.getpid(), 9)\n", tmp_path, "mysql")
    assert done.returncode == -9, done.stderr
    gearmand_id = done.stdout.split()[0]
    labels = labelled(docker_engine, gearmand_id)
    assert labels is not None, "SIGKILL leaves the container behind"
    dead_run = labels[containers.RUN_LABEL]
    left = docker_engine.client.containers.list(
        all=True, filters={"label": f"{containers.RUN_LABEL}={dead_run}"}
    )
    networks = docker_engine.client.networks.list(
        filters={"label": f"{containers.RUN_LABEL}={dead_run}"}
    )
    assert sorted(c.labels[containers.ROLE_LABEL] for c in left) == ["gearmand", "mariadb"]
    assert len(networks) == 1

    mine = docker_engine.client.networks.create(
        "islandora-job-live-run", labels=containers.run_labels("network")
    )
    try:
        removed = containers.reap_leftovers(docker_engine)
        assert sorted(removed) == sorted([c.name for c in left] + [networks[0].name])
        assert labelled(docker_engine, gearmand_id) is None
        with pytest.raises(docker.errors.NotFound):
            docker_engine.client.networks.get(networks[0].id)
        docker_engine.client.networks.get(mine.id)  # a live run's network stays
    finally:
        mine.remove()
