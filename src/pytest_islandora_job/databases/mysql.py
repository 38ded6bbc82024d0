"""The MySQL/MariaDB queue: a throwaway MariaDB, or a database of our own on a running server.

gearmand 1.1.20 takes a MySQL password from its command line (it shows in `ps`) unless the
client library finds it elsewhere. On a throwaway server, gearmand connects through the Unix
socket (`--mysql-host localhost`) with `MARIADB_HOME`/`MYSQL_HOME` naming a 0700 directory
whose my.cnf `[client]` group names the socket (MYSQL_UNIX_PORT loses to Debian's own option
files), as an account that the socket's peer credentials prove (no password at all). With the DSN
of a running server, the password goes on the command line as before; `redacted_args()` and
`describe()` never show one.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pwd
from pathlib import Path

from islandora_job.dsn import DSN
from pytest_islandora_job.databases.local_server import LocalServer
from pytest_islandora_job.databases.programs import find_program, run_as_prefix, run_to_end
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


#: The fixtures' account on a throwaway MariaDB: all rights, no password, reached through the
#: private socket alone (MariaDB's root, renamed).
ADMIN = "fixtures"


class MariaDBServer(LocalServer):
    """A throwaway MariaDB on a Unix socket in its private directory (no TCP), never as OS
    root; its admin account (`ADMIN`) has no password and is reached through that socket.
    INTO OUTFILE and LOAD_FILE are confined to an empty private directory."""

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
        if self.tcp:
            return DSN("mysql", "127.0.0.1", self.port or 0, ADMIN, None, "")
        return DSN("mysql", str(self._sockdir / "mysqld.sock"), 3306, ADMIN, None, "")

    @property
    def _sockdir(self) -> Path:
        if self.scratch is None:
            raise RuntimeError(f"throwaway {self.name} is not started; call start() first")
        return self.scratch

    def template_key(self) -> str:
        mariadbd = Path(self.programs[0])
        stat = mariadbd.stat()
        digest = hashlib.sha256(f"{mariadbd}:{stat.st_mtime_ns}:{stat.st_size}".encode())
        return f"mariadb-{digest.hexdigest()[:12]}"

    def build_template(self, datadir: Path, log_path: Path) -> None:
        # The OS user's own name is gearmand's account (see MySQLQueue.account), "root" too.
        extra = log_path.with_name("admin.sql")
        # No RENAME USER while bootstrapping (grant tables are off): change the table itself.
        extra.write_text(f"UPDATE mysql.global_priv SET User = '{ADMIN}' WHERE User = 'root';\n")
        argv = [
            self.programs[1],
            "--no-defaults",
            f"--datadir={datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            "--innodb-log-file-size=8M",
            f"--extra-file={extra}",
        ]
        run_to_end(
            [*run_as_prefix(self.user), *argv], log_path, "mariadb-install-db",
            TEMPLATE_BUILD_TIMEOUT,
        )  # fmt: skip

    def argv(self, datadir: Path, sockdir: Path) -> list[str]:
        files = sockdir / "files"
        # The only place INTO OUTFILE may write: empty, and the server's own.
        files.mkdir(mode=0o700, exist_ok=True)
        if self.user is not None:
            os.chown(files, self.user.pw_uid, self.user.pw_gid)
        listen = (
            [f"--port={self.port}", "--bind-address=127.0.0.1"]
            if self.tcp
            else ["--skip-networking"]
        )
        return [
            self.programs[0],
            "--no-defaults",
            f"--datadir={datadir}",
            *listen,
            f"--socket={sockdir / 'mysqld.sock'}",
            f"--pid-file={sockdir / 'mariadbd.pid'}",
            f"--secure-file-priv={files}",
            "--local-infile=0",
            *SERVER_OPTIONS,
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

    def account(self) -> tuple[str, str | None]:
        """gearmand's account: named after the OS user gearmand runs as (us), proved by the
        socket's peer credentials (unix_socket): gearmand 1.1.20 sends an empty password
        rather than none, so a password in its option file is never used, and one on its
        command line would show in `ps`."""
        return pwd.getpwuid(os.geteuid()).pw_name, None

    def account_sql(self, user: str, password: str | None) -> list[str]:
        # Rights on its own database only: no FILE, no other database, no GRANT.
        return [
            f"CREATE USER '{user}'@'localhost' IDENTIFIED VIA unix_socket",
            f"GRANT ALL PRIVILEGES ON `{self.database_name}`.* TO '{user}'@'localhost'",
        ]

    @property
    def client_dir(self) -> Path:
        """The 0700 directory of gearmand's option file (my.cnf), on a throwaway server."""
        return self.workdir / "gearmand-mysql"

    def gearmand_env(self) -> dict[str, str]:
        dsn = self.gearmand_dsn
        if not dsn.host.startswith("/"):
            return {}
        self.client_dir.mkdir(mode=0o700, exist_ok=True)
        path = self.client_dir / "my.cnf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"[client]\nsocket={dsn.host}\npassword={dsn.password or ''}\n")
        home = str(self.client_dir)
        return {"MARIADB_HOME": home, "MYSQL_HOME": home}

    def stop(self) -> None:
        (self.client_dir / "my.cnf").unlink(missing_ok=True)
        super().stop()

    def drop_sql(self) -> str:
        return f"DROP DATABASE IF EXISTS `{self.database_name}`"

    def gearmand_args(self) -> list[str]:
        dsn = self.gearmand_dsn
        if dsn.host.startswith("/"):
            # "localhost" is the Unix socket to the client library; the socket's path and the
            # password come from the option file of gearmand_env(), off the command line.
            return ["-q", "MySQL", "--mysql-host", "localhost", "--mysql-user", dsn.user,
                    "--mysql-db", dsn.database, "--mysql-table", self.table]  # fmt: skip
        # To the MySQL client library "localhost" means the Unix socket, not TCP.
        host = "127.0.0.1" if dsn.host == "localhost" else dsn.host
        args = ["-q", "MySQL", "--mysql-host", host, "--mysql-port", str(dsn.port)]
        args += ["--mysql-user", dsn.user]
        if dsn.password:
            args += ["--mysql-password", dsn.password]
        return [*args, "--mysql-db", dsn.database, "--mysql-table", self.table]
