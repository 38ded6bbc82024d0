"""gearmand in a container: the same handle as a process, on loopback, labelled with the run."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from islandora_job.gearman.admin import GearmanAdmin
from islandora_job.gearman.connection import ServerUnavailable
from pytest_islandora_job import processes
from pytest_islandora_job.docker import containers
from pytest_islandora_job.docker.image import image_tag
from pytest_islandora_job.servers import ServerStartError
from pytest_islandora_job.servers.docker import DockerGearmanServer

Factory = Callable[..., DockerGearmanServer]


def inspect(engine: Any, server: DockerGearmanServer) -> dict[str, Any]:
    return engine.client.containers.get(server.container_id).attrs


def wait_for_text(server: DockerGearmanServer, text: str, count: int = 1) -> str:
    deadline = time.monotonic() + 10
    while True:
        log = server.log_path.read_text(errors="replace")
        if log.count(text) >= count or time.monotonic() > deadline:
            return log
        time.sleep(0.02)


def test_gearmand_answers_on_a_loopback_port_of_a_labelled_container(
    docker_server: Factory, docker_engine: Any
) -> None:
    server = docker_server()
    assert server.backend == "docker"
    assert server.address == f"127.0.0.1:{server.port}"
    assert server.version.startswith("1.1.")
    assert server.status() == []
    attrs = inspect(docker_engine, server)
    assert attrs["HostConfig"]["PortBindings"] == {
        "4730/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(server.port)}]
    }
    labels = attrs["Config"]["Labels"]
    assert labels[containers.RUN_LABEL] == processes.run_tag()
    assert labels[containers.HOST_LABEL] == socket.gethostname()
    assert labels[containers.ROLE_LABEL] == "gearmand"
    assert attrs["Config"]["Image"] == image_tag("gearmand")
    assert server.pid == attrs["State"]["Pid"] > 0


def test_kill_is_sigkill_and_restart_brings_back_the_same_container_port_and_flags(
    docker_server: Factory, docker_engine: Any
) -> None:
    server = docker_server(job_retries=3, threads=1)
    before = inspect(docker_engine, server)
    assert "--job-retries=3" in before["Args"] and "--threads=1" in before["Args"]
    old_pid = server.pid

    server.kill()
    assert server.pid is None
    assert inspect(docker_engine, server)["State"]["ExitCode"] == 137
    with pytest.raises(ServerUnavailable), GearmanAdmin(server.address, timeout=1.0) as admin:
        admin.version()

    server.restart()
    after = inspect(docker_engine, server)
    assert after["Id"] == before["Id"]
    assert after["Args"] == before["Args"]
    assert after["HostConfig"]["PortBindings"] == before["HostConfig"]["PortBindings"]
    assert server.pid not in (None, old_pid)
    assert server.version.startswith("1.1.")


def test_stop_is_a_clean_shutdown_and_start_comes_back(
    docker_server: Factory, docker_engine: Any
) -> None:
    server = docker_server()
    server.stop()
    state = inspect(docker_engine, server)["State"]
    assert (state["Running"], state["ExitCode"]) == (False, 0)
    server.stop()  # idempotent
    server.start()
    assert server.version.startswith("1.1.")


def test_the_log_file_follows_the_container_across_restarts(docker_server: Factory) -> None:
    server = docker_server()
    with GearmanAdmin(server.address) as admin:
        admin.status()
    assert "Accepted connection" in wait_for_text(server, "Accepted connection")
    server.kill()
    server.restart()
    log = wait_for_text(server, "Adding event for listening socket", count=2)
    assert log.count("Adding event for listening socket") == 2
    assert "Adding event for listening socket" in server.log_tail(5)


def test_a_gearmand_that_exits_fails_start_with_its_log(docker_server: Factory) -> None:
    with pytest.raises(ServerStartError) as info:
        docker_server(extra_args=("--no-such-flag",))
    message = str(info.value)
    assert "exited during start-up" in message
    assert "unrecognised option '--no-such-flag'" in message


def test_an_image_named_by_the_settings_is_used(docker_server: Factory, docker_engine: Any) -> None:
    server = docker_server(image=image_tag("gearmand"))
    assert inspect(docker_engine, server)["Config"]["Image"] == image_tag("gearmand")
    assert server.version.startswith("1.1.")


def test_an_image_that_cannot_be_pulled_fails_start_in_one_line(docker_server: Factory) -> None:
    with pytest.raises(ServerStartError) as info:
        docker_server(image="pytest-islandora-job/no-such-image:none")
    message = str(info.value)
    assert message.startswith("cannot start gearmand (pytest-islandora-job/no-such-image:none)")
    assert "\n" not in message
