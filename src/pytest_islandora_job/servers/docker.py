"""gearmand in a Docker container, through testcontainers: the same handle as a process.

The image is built once per machine from the shipped Dockerfile (or named by --gearman-image:
any image with gearmand on its PATH). The port is published on 127.0.0.1 of a local engine;
kill() is `docker kill` (SIGKILL), and restart() starts the same container again: same
published port, same flags, same queue. (A remote engine, or a testcontainers connection mode
other than docker_host, publishes on a port it picks at each start.) The container's output is
copied into `log_path` as it comes, so failure reports can attach it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_islandora_job import ports
from pytest_islandora_job.docker import client, containers
from pytest_islandora_job.docker.databases import ContainerSide, make_container_database
from pytest_islandora_job.docker.image import ensure_image
from pytest_islandora_job.readiness import ServerStartError
from pytest_islandora_job.servers import client_host
from pytest_islandora_job.servers.base import GearmanServer, tail

if TYPE_CHECKING:
    from docker.models.containers import Container
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.docker_client import DockerClient

    from pytest_islandora_job.config import ServerSettings

GEARMAN_PORT = 4730
STOP_GRACE = 5


class DockerGearmanServer(GearmanServer):
    """A gearmand container; its queue database (if any) in a container or a mounted file."""

    backend = "docker"

    def __init__(self, settings: ServerSettings, workdir: Path) -> None:
        super().__init__(settings, make_container_database(settings, workdir / "queue"))
        self.workdir = workdir
        self.log_path = workdir / "gearmand.log"
        self.host = client_host(settings.listen)
        # The claimed port, kept apart from self.port, which a remote engine may change.
        self._claimed: int | None = None
        if settings.port is None:
            self._claimed = self.port = ports.claim_port()
        else:
            self.port = settings.port
        self._container: DockerContainer | None = None
        self._local = True
        self._logs = containers.LogFollower(self.log_path)

    @property
    def container_id(self) -> str | None:
        """The gearmand container's id once it was created."""
        return self._container.get_container_id() if self._container is not None else None

    @property
    def pid(self) -> int | None:
        """gearmand's process id, as the engine's host sees it, while its container runs."""
        return containers.host_pid(self._container)

    def command(self) -> list[str]:
        """gearmand's arguments in the container (the image's gearmand is the entrypoint)."""
        argv = [
            "--listen=0.0.0.0",
            f"--port={GEARMAN_PORT}",
            "--log-file=stderr",
            "--verbose=INFO",
            # Not the default /var/gearmand.pid: the container does not run as root.
            "--pid-file=/tmp/gearmand.pid",
            f"--threads={self.settings.threads}",
        ]
        if self.settings.job_retries is not None:
            argv.append(f"--job-retries={self.settings.job_retries}")
        if self.database is not None:
            argv += self.database.gearmand_args()
        return argv + list(self.settings.extra_args)

    def _wrapped(self) -> Container:
        assert self._container is not None
        return self._container.get_wrapped_container()

    def _running(self) -> bool:
        return containers.is_running(self._container)

    def start(self) -> None:
        """Start gearmand's container (and its queue database) and wait until gearmand
        answers admin `version`.

        Raises DockerUnavailable (one line) when no Docker engine answers, ServerStartError
        with the container's log when gearmand exits or stays silent, or when the image
        cannot be built or pulled.
        """
        if self._running():
            return
        engine = client()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._start_database()
        self._version = None
        if self._container is None:
            container = self._create(engine)
            containers.start_container(container, "gearmand")
            self._container = container
        else:
            self._wrapped().start()
        if not self._local:
            self.host, self.port = containers.reach(self._container, GEARMAN_PORT)
        self._logs.follow(self._container)
        try:
            self.wait_ready(self.settings.start_timeout, self._running)
        except ServerStartError:
            self.kill()
            raise

    def _create(self, engine: DockerClient) -> DockerContainer:
        image = self.settings.image or ensure_image(engine, "gearmand")
        self._local = containers.engine_is_local(engine)
        published = (self.settings.listen, self.port) if self._local else None
        side = self.database if isinstance(self.database, ContainerSide) else ContainerSide()
        container = containers.make_container(
            image,
            self.command(),
            "gearmand",
            port=GEARMAN_PORT,
            published=published,
            labels=self.settings.labels,
            network=side.shared_network(),
            entrypoint=["gearmand"],
            # Files gearmand writes in mounted directories belong to the user running the tests.
            user=f"{os.getuid()}:{os.getgid()}",
        )
        for host_path, container_path, mode in side.mounts():
            container.with_volume_mapping(host_path, container_path, mode)
        return container

    def stop(self) -> None:
        """`docker stop`: SIGTERM, SIGKILL after 5 s; the container stays for restart()."""
        if self._running():
            self._wrapped().stop(timeout=STOP_GRACE)
        self._logs.join()

    def kill(self) -> None:
        """`docker kill` (SIGKILL), as a crash would, and wait until the container stopped."""
        if self._running():
            wrapped = self._wrapped()
            wrapped.kill()
            wrapped.wait(timeout=STOP_GRACE)
        self._logs.join()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines gearmand's container wrote."""
        if not self._running():
            self._logs.join()
        return tail(self.log_path, lines)

    def close(self) -> None:
        """Remove gearmand's container, then its queue database, and give the port back."""
        container, self._container = self._container, None
        if container is not None:
            containers.remove_container(container)
        self._logs.join()
        self._stop_database()
        if self._claimed is not None:
            ports.release(self._claimed)
            self._claimed = None
