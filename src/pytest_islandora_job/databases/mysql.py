"""The MySQL/MariaDB queue: a throwaway MariaDB, or a database of our own on a running server.

gearmand 1.1.20 reads the MySQL password from its command line only (no option file, no
MYSQL_PWD: it passes the password to the client library explicitly), so with a password in
the DSN it shows in `ps`. Throwaway servers have no password; `redacted_args()` and
`describe()` never show one.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from islandora_job.dsn import DSN
from pytest_islandora_job.databases.local_server import LocalServer
from pytest_islandora_job.databases.programs import find_program, run_to_end
from pytest_islandora_job.databases.server_queue import ServerQueue
from pytest_islandora_job.databases.templates import TEMPLATE_BUILD_TIMEOUT

DSN_OPTION = "--gearman-mysql-dsn"
DSN_HINT = f"{DSN_OPTION} mysql://user:pw@host:port/db"
# Small and fast: nothing here needs to survive a machine crash, only a gearmand crash.
SERVER_OPTIONS = (
    "--skip-log-bin",
    "--skip-name-resolve",
    "--innodb-buffer-pool-size=64M",
    "--innodb-log-file-size=8M",
    "--innodb-flush-log-at-trx-commit=2",
    "--innodb-doublewrite=0",
    # Native AIO contexts are a machine-wide limit (aio-max-nr) that many servers exhaust.
    "--innodb-use-native-aio=0",
    "--innodb-buffer-pool-dump-at-shutdown=0",
    "--innodb-buffer-pool-load-at-startup=0",
    "--performance-schema=OFF",
    "--key-buffer-size=1M",
    "--max-connections=50",
)


def _as_root() -> list[str]:
    # mariadbd refuses to run as root unless told to; as anyone else it runs as that user.
    return ["--user=root"] if os.geteuid() == 0 else []


class MariaDBServer(LocalServer):
    """A throwaway MariaDB on a claimed loopback port; root has no password."""

    name = "MariaDB"

    @functools.cached_property
    def programs(self) -> tuple[str, str]:
        """Paths of mariadbd and mariadb-install-db; raises ServerStartError when missing."""
        return (
            find_program(
                "mariadbd", ("/usr/sbin", "/usr/libexec"), "mariadb-server", "mysql", DSN_HINT
            ),
            find_program(
                "mariadb-install-db",
                ("/usr/bin", "/usr/scripts"),
                "mariadb-server",
                "mysql",
                DSN_HINT,
            ),
        )

    @property
    def admin_dsn(self) -> DSN:
        return DSN("mysql", "127.0.0.1", self.port or 0, "root", None, "")

    def template_key(self) -> str:
        mariadbd = Path(self.programs[0])
        stat = mariadbd.stat()
        digest = hashlib.sha256(f"{mariadbd}:{stat.st_mtime_ns}:{stat.st_size}".encode())
        return f"mariadb-{digest.hexdigest()[:12]}"

    def build_template(self, datadir: Path, log_path: Path) -> None:
        argv = [
            self.programs[1],
            "--no-defaults",
            f"--datadir={datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            "--innodb-log-file-size=8M",
            *_as_root(),
        ]
        run_to_end(argv, log_path, "mariadb-install-db", TEMPLATE_BUILD_TIMEOUT)

    def argv(self, datadir: Path, sockdir: Path) -> list[str]:
        return [
            self.programs[0],
            "--no-defaults",
            f"--datadir={datadir}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={sockdir / 'mysqld.sock'}",
            f"--pid-file={sockdir / 'mariadbd.pid'}",
            *SERVER_OPTIONS,
            *_as_root(),
        ]


class MySQLQueue(ServerQueue):
    """gearmand's MySQL queue in a database of our own: on a throwaway server (a MariaDBServer,
    or a MariaDB container), or on the running server a DSN names."""

    queue = "mysql"
    secret_flags = ("--mysql-password",)
    dsn_option = DSN_OPTION
    server_kind = "MySQL server"

    def create_sql(self) -> str:
        return f"CREATE DATABASE `{self.database_name}`"

    def drop_sql(self) -> str:
        return f"DROP DATABASE IF EXISTS `{self.database_name}`"

    def gearmand_args(self) -> list[str]:
        dsn = self.gearmand_dsn
        # To the MySQL client library "localhost" means the Unix socket, not TCP.
        host = "127.0.0.1" if dsn.host == "localhost" else dsn.host
        args = ["-q", "MySQL", "--mysql-host", host, "--mysql-port", str(dsn.port)]
        args += ["--mysql-user", dsn.user]
        if dsn.password:
            args += ["--mysql-password", dsn.password]
        return [*args, "--mysql-db", dsn.database, "--mysql-table", self.table]
