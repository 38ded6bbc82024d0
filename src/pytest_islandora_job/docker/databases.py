"""Queue databases for a gearmand in a container.

MariaDB and PostgreSQL run in containers of their own, built from the shipped Dockerfile, on a
user-defined network they share with gearmand: gearmand reaches them by alias, while rows(),
counts() and delete() go through the port published on loopback. SQLite is a file in a
directory of the work dir mounted into gearmand's container. The queues are the local ones
(MySQLQueue, PostgresQueue, SQLiteQueue), given a `DatabaseContainer` as their server in place
of a throwaway local one: the SQL and the gearmand flags are theirs, only `gearmand_dsn` differs.
"""

from __future__ import annotations

import abc
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from islandora_job.dsn import DSN
from islandora_job.logs import last_lines
from pytest_islandora_job import ports
from pytest_islandora_job.databases import make_database
from pytest_islandora_job.databases.base import QueueDatabase
from pytest_islandora_job.databases.mysql import SERVER_OPTIONS, MySQLQueue
from pytest_islandora_job.databases.postgres import SERVER_SETTINGS, PostgresQueue
from pytest_islandora_job.databases.sqlite import SQLiteQueue
from pytest_islandora_job.docker import client, containers
from pytest_islandora_job.docker.image import ensure_image
from pytest_islandora_job.readiness import wait_ready

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

    from pytest_islandora_job.config import ServerSettings

#: Where gearmand's container sees the SQLite queue's directory.
SQLITE_MOUNT = "/queue"


class ContainerSide:
    """What gearmand's container needs from its queue database: a network to join and
    directories to mount."""

    #: The container the database runs in, when it has one.
    db_container: DatabaseContainer | None = None

    def shared_network(self) -> Network | None:
        """The network gearmand must join to reach the database, if any."""
        return self.db_container.network if self.db_container is not None else None

    def mounts(self) -> list[tuple[str, str, str]]:
        """(host path, container path, mode) to mount into gearmand's container."""
        return []


class DatabaseContainer(abc.ABC):
    """A throwaway MariaDB or PostgreSQL in a container, on a labelled network of its own.

    A ServerQueue's `DatabaseServer`, as a LocalServer is: start(), stop() (keeps the
    data), restart(), remove(), pid, admin_dsn, name, gearmand_dsn().
    """

    #: Shown in messages: "MariaDB", "PostgreSQL".
    name: str
    #: DSN kind and Dockerfile target.
    kind: str
    target: str
    #: The port inside the container, the account the server runs as, the admin user.
    internal_port: int
    run_as: str
    admin_user: str
    admin_database: str = ""
    #: The name gearmand reaches the database by on the shared network.
    alias = "queue-db"
    #: Signal of a fast, clean shutdown.
    stop_signal = "SIGTERM"

    def __init__(self, workdir: Path, settings: ServerSettings) -> None:
        self.workdir = workdir
        self.settings = settings
        self.start_timeout = settings.start_timeout
        self.host = "127.0.0.1"
        self.port: int | None = None
        self._claimed = False
        self.network: Network | None = None
        self.container: DockerContainer | None = None

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The server's command line in the container."""

    @property
    def admin_dsn(self) -> DSN:
        """Full rights on the server, through the published port (valid after start())."""
        return DSN(self.kind, self.host, self.port or 0, self.admin_user, None, self.admin_database)

    def gearmand_dsn(self, dsn: DSN) -> DSN:
        """`dsn` as gearmand on the shared network reaches it: by alias and internal port."""
        return replace(dsn, host=self.alias, port=self.internal_port)

    @property
    def pid(self) -> int | None:
        """The server's process id, as the engine's host sees it, while its container runs."""
        return containers.host_pid(self.container)

    def start(self) -> None:
        """Start the database container (again, after stop(): same data, same port) and
        return once it accepts a connection.

        Raises DockerUnavailable when no Docker engine answers and ServerStartError (with the
        container's log) when the image cannot be built or the server does not come up.
        """
        if self.container is None:
            self._create()
        elif not containers.is_running(self.container):
            self.container.get_wrapped_container().start()
            if not self._claimed:
                self.host, self.port = containers.reach(self.container, self.internal_port)
            self._wait_ready()

    def _create(self) -> None:
        engine = client()
        image = ensure_image(engine, self.target)
        published: tuple[str, int] | None = None
        if containers.engine_is_local(engine):
            self.port, self._claimed = ports.claim_port(), True
            published = ("127.0.0.1", self.port)
        self.network = containers.make_network("network", self.settings.labels)
        container = containers.make_container(
            image,
            self.command(),
            self.target,
            port=self.internal_port,
            published=published,
            labels=self.settings.labels,
            network=self.network,
            alias=self.alias,
            user=self.run_as,
            stop_signal=self.stop_signal,
        )
        try:
            containers.start_container(container, f"the {self.name} queue database")
            self.container = container
            if published is None:
                self.host, self.port = containers.reach(container, self.internal_port)
            self._wait_ready()
        except BaseException:
            self.remove()
            raise

    def stop(self, grace: float = 10.0) -> None:
        """Shut the server down cleanly (SIGKILL after `grace` seconds); keeps its data."""
        container = self.container
        if container is not None and containers.is_running(container):
            container.get_wrapped_container().stop(timeout=round(grace))

    def restart(self) -> None:
        """Stop the server and start it again with the same data."""
        self.stop()
        self.start()

    def _wait_ready(self) -> None:
        wait_ready(
            self.admin_dsn.answers,
            lambda: containers.is_running(self.container),
            self.start_timeout,
            died=lambda: (
                f"{self.name} container exited during start-up; its log:\n{self.log_tail()}"
            ),
            late=lambda: (
                f"{self.name} container did not accept connections on "
                f"{self.host}:{self.port} within {self.start_timeout:g}s; its log:\n"
                f"{self.log_tail()}"
            ),
            max_delay=0.1,
        )

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the database container wrote."""
        if self.container is None:
            return "(no container)"
        return last_lines(containers.logs(self.container), lines)

    def remove(self) -> None:
        """Remove the container (data and all) and its network; give the port back. Idempotent."""
        container, self.container = self.container, None
        network, self.network = self.network, None
        if container is not None:
            containers.remove_container(container)
        if network is not None:
            containers.remove_network(network)
        if self._claimed and self.port is not None:
            ports.release(self.port)
            self._claimed = False


class MariaDBContainer(DatabaseContainer):
    """MariaDB from the Dockerfile's `mariadb` target; root has no password."""

    name = "MariaDB"
    kind = "mysql"
    target = "mariadb"
    internal_port = 3306
    run_as = "mysql"
    admin_user = "root"

    def command(self) -> list[str]:
        return [
            "mariadbd",
            "--no-defaults",
            "--datadir=/var/lib/queue",
            f"--port={self.internal_port}",
            "--bind-address=0.0.0.0",
            "--socket=/tmp/mysqld.sock",
            "--pid-file=/tmp/mariadbd.pid",
            *SERVER_OPTIONS,
        ]


class PostgresContainer(DatabaseContainer):
    """PostgreSQL 15 from the Dockerfile's `postgres` target; trust authentication."""

    name = "PostgreSQL"
    kind = "postgres"
    target = "postgres"
    internal_port = 5432
    run_as = "postgres"
    admin_user = "postgres"
    admin_database = "postgres"
    # SIGINT is the fast shutdown; SIGTERM would wait for gearmand to disconnect.
    stop_signal = "SIGINT"

    def command(self) -> list[str]:
        argv = ["/usr/lib/postgresql/15/bin/postgres", "-D", "/var/lib/queue"]
        argv += ["-p", str(self.internal_port), "-k", "/tmp"]
        # The last -c wins: listen on the container's network, not only its loopback.
        for setting in (*SERVER_SETTINGS, "listen_addresses=*"):
            argv += ["-c", setting]
        return argv


class ContainerMySQLQueue(ContainerSide, MySQLQueue):
    """The MySQL queue on a MariaDB container."""

    def __init__(self, workdir: Path, settings: ServerSettings) -> None:
        self.db_container = MariaDBContainer(workdir, settings)
        super().__init__(workdir, self.db_container)


class ContainerPostgresQueue(ContainerSide, PostgresQueue):
    """The Postgres queue on a PostgreSQL container."""

    def __init__(self, workdir: Path, settings: ServerSettings) -> None:
        self.db_container = PostgresContainer(workdir, settings)
        super().__init__(workdir, self.db_container)


class MountedSQLiteQueue(ContainerSide, SQLiteQueue):
    """The SQLite queue in the work dir, mounted into gearmand's container at /queue."""

    @property
    def gearmand_dsn(self) -> DSN:
        return DSN("sqlite", database=f"{SQLITE_MOUNT}/{self.path.name}")

    def mounts(self) -> list[tuple[str, str, str]]:
        return [(str(self.workdir), SQLITE_MOUNT, "rw")]


def make_container_database(settings: ServerSettings, workdir: Path) -> QueueDatabase | None:
    """The queue database of a gearmand in a container (not started), or None for builtin.

    With --gearman-mysql-dsn / --gearman-postgres-dsn the named server is used as the process
    backend uses it (gearmand must be able to reach that host from its container).
    """
    if settings.queue == "sqlite":
        return MountedSQLiteQueue(workdir)
    if settings.queue == "mysql" and settings.mysql_dsn is None:
        return ContainerMySQLQueue(workdir, settings)
    if settings.queue == "postgres" and settings.postgres_dsn is None:
        return ContainerPostgresQueue(workdir, settings)
    return make_database(settings, workdir)
