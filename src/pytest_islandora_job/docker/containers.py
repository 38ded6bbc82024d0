"""Containers and networks labelled with the run that made them, and their removal.

Every container and network the backend makes carries the run tag (see processes.run_tag) and
this machine's name. They are removed when their owner closes them, at exit, and, when a run
was killed outright, by the next run on this machine (the tag's process is gone). This works
with or without Ryuk, testcontainers' reaper, which needs an image from a registry.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pytest_islandora_job import processes
from pytest_islandora_job.readiness import ServerStartError

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.docker_client import DockerClient
    from testcontainers.core.network import Network

RUN_LABEL = "org.islandora-job.run"
HOST_LABEL = "org.islandora-job.host"
ROLE_LABEL = "org.islandora-job.role"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def run_labels(role: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Labels for a container or network of this run: extra ones, the run tag, host and role."""
    return {
        **(extra or {}),
        RUN_LABEL: processes.run_tag(),
        HOST_LABEL: socket.gethostname(),
        ROLE_LABEL: role,
    }


def _remove(items: list[Any], force: bool) -> list[str]:
    import docker.errors

    removed = []
    for item in items:
        # Another run may be removing the same leftover: gone is as good as removed.
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            if force:
                item.remove(force=True, v=True)
            else:
                item.remove()
            removed.append(item.name)
    return removed


def _remove_labelled(engine: DockerClient, keep: Callable[[dict[str, str]], bool]) -> list[str]:
    """Remove this machine's labelled containers, then networks, for which keep() is false."""
    here = socket.gethostname()

    def doomed(labels: dict[str, str] | None) -> bool:
        labels = labels or {}
        return labels.get(HOST_LABEL) == here and not keep(labels)

    found = engine.client.containers.list(all=True, filters={"label": RUN_LABEL})
    removed = _remove([c for c in found if doomed(c.labels)], force=True)
    networks = engine.client.networks.list(filters={"label": RUN_LABEL})
    return removed + _remove([n for n in networks if doomed(n.attrs.get("Labels"))], force=False)


def reap_leftovers(engine: DockerClient) -> list[str]:
    """Remove containers and networks of earlier runs on this machine whose process is gone;
    returns their names."""
    return _remove_labelled(engine, lambda labels: processes.owner_alive(labels[RUN_LABEL]))


def remove_run(engine: DockerClient, tag: str) -> list[str]:
    """Remove every container and network of the run `tag` on this machine; returns names."""
    return _remove_labelled(engine, lambda labels: labels[RUN_LABEL] != tag)


def remove_at_exit(engine: DockerClient) -> None:
    """At interpreter exit, remove what this run left (teardown normally has already)."""
    tag = processes.run_tag()
    pid = os.getpid()

    def remove() -> None:
        # A forked child inherits atexit handlers; only the process that made them cleans up.
        if os.getpid() == pid:
            with contextlib.suppress(Exception):
                remove_run(engine, tag)

    atexit.register(remove)


def engine_is_local(engine: DockerClient) -> bool:
    """True when the engine runs on this machine and its published ports are reached through
    this machine's loopback (testcontainers' docker_host connection mode)."""
    from testcontainers.core.config import ConnectionMode

    return (
        engine.host() in LOOPBACK_NAMES
        and engine.get_connection_mode() is ConnectionMode.docker_host
    )


def reach(container: DockerContainer, internal_port: int) -> tuple[str, int]:
    """(host, port) a started container's port is reached at, as testcontainers finds them
    for a remote engine or another connection mode."""
    host = container.get_container_host_ip()
    # "localhost" may resolve to ::1 first, where nothing is published.
    return ("127.0.0.1" if host in LOOPBACK_NAMES else host), container.get_exposed_port(
        internal_port
    )


def make_network(role: str, labels: Mapping[str, str] | None = None) -> Network:
    """A new labelled user-defined network (testcontainers Network), created."""
    from testcontainers.core.network import Network

    return Network(docker_network_kw={"labels": run_labels(role, labels)}).create()


def remove_network(network: Network) -> None:
    """Remove a network; one already gone is fine."""
    import docker.errors

    with contextlib.suppress(docker.errors.NotFound):
        network.remove()


def make_container(
    image: str,
    command: list[str],
    role: str,
    *,
    port: int,
    published: tuple[str, int] | None,
    labels: Mapping[str, str] | None = None,
    network: Network | None = None,
    alias: str | None = None,
    **kwargs: Any,
) -> DockerContainer:
    """A labelled testcontainers DockerContainer (not started); kwargs go to `docker create`.

    `port` is published on `published` = (host address, host port), or on a port the engine
    picks on all its addresses when `published` is None (a remote engine).
    """
    from testcontainers.core.container import DockerContainer

    container = DockerContainer(image, labels=run_labels(role, labels), **kwargs)
    # with_command takes a list (the constructor's hint says str only).
    container.with_command(command)
    if network is not None:
        container.with_network(network)
        if alias:
            container.with_network_aliases(alias)
    # testcontainers' with_bind_ports() takes no host address; the SDK takes (address, port).
    # Its hint says int, but the SDK under it takes the tuple too.
    cast(dict[str, object], container.ports)[f"{port}/tcp"] = published
    return container


def start_container(container: DockerContainer, what: str) -> None:
    """Create and start a container; raises ServerStartError in one line when Docker refuses
    (missing image that cannot be pulled, port taken, bad option)."""
    import docker.errors

    try:
        container.start()
    except docker.errors.DockerException as exc:
        explanation = getattr(exc, "explanation", None) or exc
        reason = " ".join(str(explanation).split())
        with contextlib.suppress(docker.errors.DockerException):
            container.stop()
        raise ServerStartError(f"cannot start {what} ({container.image}): {reason}") from None


def is_running(container: DockerContainer | None) -> bool:
    """True while a created container runs (asks the engine afresh)."""
    if container is None:
        return False
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    status: str = wrapped.status
    return status == "running"


def host_pid(container: DockerContainer | None) -> int | None:
    """The container's main process id, as the engine's host sees it, while it runs."""
    if container is None or not is_running(container):
        return None
    pid: int = container.get_wrapped_container().attrs["State"]["Pid"]
    return pid or None


def remove_container(container: DockerContainer) -> None:
    """Remove a container and its anonymous volumes, running or not; one already gone is fine."""
    import docker.errors

    with contextlib.suppress(docker.errors.NotFound):
        container.stop()


def logs(container: DockerContainer) -> bytes:
    """Everything the container wrote to stdout and stderr, across its restarts."""
    import docker.errors

    try:
        written: bytes = container.get_wrapped_container().logs(stdout=True, stderr=True)
    except docker.errors.DockerException:
        return b""
    return written


class LogFollower:
    """Copies a container's output into a file as it comes, so the file is current whenever
    a failure report reads it. follow() again after each (re)start of the container."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread: threading.Thread | None = None

    def follow(self, container: DockerContainer) -> None:
        """Rewrite the file with the container's whole output, then append what follows."""
        self.join()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stream = container.get_wrapped_container().logs(stream=True, follow=True)
        self._thread = threading.Thread(
            target=self._copy, args=(stream,), name=f"logs {self.path}", daemon=True
        )
        self._thread.start()

    def _copy(self, stream: Any) -> None:
        # The stream ends when the container stops or is removed, or the engine goes away.
        with contextlib.suppress(Exception), self.path.open("wb") as out:
            for chunk in stream:
                out.write(chunk)
                out.flush()

    def join(self, timeout: float = 5.0) -> None:
        """Wait for the copy of a stopped container's output to finish."""
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
