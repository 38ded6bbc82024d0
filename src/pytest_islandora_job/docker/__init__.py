"""The Docker side of the docker backend: the engine client, images, labelled containers.

Importing this package does not import the Docker SDK (the `docker` extra); `client()` does, so
the process backend never needs it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pytest_islandora_job.readiness import ServerStartError

if TYPE_CHECKING:
    from testcontainers.core.docker_client import DockerClient

__all__ = ["DockerUnavailable", "client", "connect"]

ALTERNATIVES = (
    "use --gearman-backend=process, or --gearman-backend=external --gearman-servers=HOST:PORT"
)
WAYS_OUT = f"start Docker (scripts/docker-up starts one that needs no registry), {ALTERNATIVES}"

_clients: dict[str, DockerClient] = {}


class DockerUnavailable(ServerStartError):
    """No Docker engine answers, or the docker extra is missing; one line with the ways out."""

    backend_missing = True  # the fixtures skip (outside CI) rather than fail


_REASONS = (
    ("No such file or directory", "no socket there"),
    ("Connection refused", "connection refused"),
    ("Permission denied", "permission denied: join the docker group, or set DOCKER_HOST"),
)


def engine_address() -> str:
    """Where the engine was looked for, and why there: DOCKER_HOST, the docker context or
    ~/.testcontainers.properties, else the default socket."""
    from testcontainers.core.docker_client import get_docker_host

    if os.environ.get("DOCKER_HOST"):
        return f"{os.environ['DOCKER_HOST']} (DOCKER_HOST)"
    found = get_docker_host()
    if found:
        return f"{found} (docker context or tc.host; DOCKER_HOST unset)"
    return "unix:///var/run/docker.sock (the default; DOCKER_HOST unset)"


def _reason(error: str) -> str:
    # The SDK wraps the socket error in two layers of exception text; name the cause plainly.
    for marker, reason in _REASONS:
        if marker in error:
            return reason
    return " ".join(error.split())


def connect(timeout: float | None = None) -> DockerClient:
    """A new testcontainers DockerClient; `timeout` is the SDK's per-request timeout.

    Raises DockerUnavailable, in one line, when the docker extra is not installed or no engine
    answers at DOCKER_HOST (or the default socket).
    """
    try:
        import docker.errors
        from testcontainers.core.config import ConnectionMode
        from testcontainers.core.config import testcontainers_config as tc_config
        from testcontainers.core.docker_client import DockerClient
    except ImportError as exc:
        raise DockerUnavailable(
            f"--gearman-backend=docker needs the docker extra ({exc.name} is not installed): "
            f"pip install 'pytest-islandora-job[docker]'; or {ALTERNATIVES}"
        ) from None
    # Ryuk, testcontainers' reaper, needs an image from a registry; we reap our own containers
    # by label, so it only runs when asked for explicitly.
    if "TESTCONTAINERS_RYUK_DISABLED" not in os.environ:
        tc_config.ryuk_disabled = True
    # On a host with /.dockerenv testcontainers would guess the bridge gateway; our ports are
    # published on the engine host's loopback unless the user chose a connection mode.
    if tc_config.connection_mode_override is None:
        tc_config.connection_mode_override = ConnectionMode.docker_host
    kwargs = {} if timeout is None else {"timeout": timeout}
    try:
        # Creating the client asks the engine for its API version: it fails when none answers.
        found = DockerClient(**kwargs)
    except docker.errors.DockerException as exc:
        reason = _reason(str(exc))
        raise DockerUnavailable(
            f"Docker is unavailable: no engine answers at {engine_address()} ({reason}); {WAYS_OUT}"
        ) from None
    return found


def client() -> DockerClient:
    """The shared DockerClient of this process (one per DOCKER_HOST).

    The first one also removes what earlier, killed runs left behind and arranges for this
    run's containers to be removed at exit. Raises DockerUnavailable like connect().
    """
    key = os.environ.get("DOCKER_HOST", "")
    found = _clients.get(key)
    if found is None:
        from pytest_islandora_job.docker import containers

        found = connect()
        containers.reap_leftovers(found)
        containers.remove_at_exit(found)
        _clients[key] = found
    return found
