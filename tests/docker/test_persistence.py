"""Persistent queues with gearmand in a container: MariaDB and PostgreSQL in containers of
their own on a shared network, SQLite in a mounted directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import islandora_job
from pytest_islandora_job.docker import containers
from pytest_islandora_job.docker.databases import SQLITE_MOUNT
from pytest_islandora_job.servers.docker import DockerGearmanServer

Factory = Callable[..., DockerGearmanServer]


def check_placement(server: DockerGearmanServer, engine: Any) -> None:
    """gearmand reaches its database by alias on a shared network (or a mounted file), while
    the tests reach it through loopback."""
    gearmand = engine.client.containers.get(server.container_id).attrs
    args = gearmand["Args"]
    database = server.database
    if server.queue == "sqlite":
        assert args[args.index("--libsqlite3-db") + 1] == f"{SQLITE_MOUNT}/{database.path.name}"
        assert [m["Source"] for m in gearmand["Mounts"]] == [str(database.workdir)]
        return
    db = database.instance
    assert database.dsn.host == "127.0.0.1" and database.dsn.port == db.port
    db_attrs = engine.client.containers.get(db.container.get_container_id()).attrs
    network = db.network.name
    assert set(gearmand["NetworkSettings"]["Networks"]) == {network}
    assert db_attrs["NetworkSettings"]["Networks"][network]["Aliases"][0] == db.alias
    assert db_attrs["HostConfig"]["PortBindings"] == {
        f"{db.internal_port}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(db.port)}]
    }
    assert db_attrs["Config"]["Labels"][containers.ROLE_LABEL] == db.target
    if server.queue == "mysql":
        assert args[args.index("--mysql-host") + 1] == db.alias
        assert args[args.index("--mysql-port") + 1] == "3306"
    else:
        conninfo = args[args.index("--libpq-conninfo") + 1]
        assert f"host='{db.alias}'" in conninfo and "port='5432'" in conninfo


@pytest.mark.parametrize("queue", ["sqlite", "mysql", "postgres"])
def test_the_queue_database_sits_beside_gearmand(
    queue: str, docker_server: Factory, docker_engine: Any
) -> None:
    """The crash test itself runs on both backends: tests/persistence/test_crash_recovery.py."""
    server = docker_server(queue)
    check_placement(server, docker_engine)
    # Queued only, for the table: no worker here, and this factory sets no job modules.
    with islandora_job.JobClient(servers=[server.address], check_jobs=False) as client:
        client.submit_background("append", "/nonexistent", "0")
    assert server.persisted_counts() == {"append": 1}


def test_close_removes_the_database_container_and_its_network(
    docker_server: Factory, docker_engine: Any
) -> None:
    import docker.errors

    server = docker_server("mysql")
    db = server.database.instance
    container_id, network_id = db.container.get_container_id(), db.network.id
    server.close()
    with pytest.raises(docker.errors.NotFound):
        docker_engine.client.containers.get(container_id)
    with pytest.raises(docker.errors.NotFound):
        docker_engine.client.networks.get(network_id)


@pytest.mark.parametrize("queue", ["mysql", "postgres"])
def test_the_database_container_restarts_with_its_data_on_the_same_port(
    queue: str, docker_server: Factory, tmp_path: Path
) -> None:
    server = docker_server(queue)
    # Queued only, for the table: no worker here, and this factory sets no job modules.
    with islandora_job.JobClient(servers=[server.address], check_jobs=False) as client:
        for number in range(3):
            client.submit_background("append", str(tmp_path / "ran.txt"), str(number))
    db = server.database.instance
    port, pid = db.port, db.pid
    assert pid is not None

    db.stop()
    assert db.pid is None
    db.restart()
    assert db.port == port and db.pid not in (None, pid)
    assert server.persisted_counts() == {"append": 3}
