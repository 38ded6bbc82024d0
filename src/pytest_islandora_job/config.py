"""Resolve the plugin's settings: factory argument > command-line option > ini key > default.

`None` always means "not set", so 0 and False given anywhere are honoured.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

BACKENDS = ("process", "docker", "external")
QUEUES = ("builtin", "mysql", "postgres", "sqlite")
PERSISTENT_QUEUES = ("mysql", "postgres", "sqlite")


@dataclass(frozen=True)
class Option:
    """One setting: its command-line flag, ini key, default, help text and parser."""

    name: str
    help: str
    default: Any = None
    kind: str = "string"  # "string" | "int" | "bool" | "list" | "args"


OPTIONS: tuple[Option, ...] = (
    Option("gearman_backend", "how gearmand runs: process, docker or external", "process"),
    Option(
        "gearman_queue", "queue type of gearman_server: builtin, mysql, postgres, sqlite", "builtin"
    ),
    Option(
        "gearman_queues",
        "persistent queue types persistent_gearman_server runs over",
        "mysql postgres sqlite",
        "list",
    ),
    Option("gearmand_exec", "path of the gearmand binary", "/usr/sbin/gearmand"),
    Option(
        "gearman_listen",
        "address gearmand listens on (give 0.0.0.0 to accept remote clients)",
        "127.0.0.1",
    ),
    Option("gearman_port", "port of gearman_server (default: a free port)", None, "int"),
    Option(
        "gearman_threads",
        "gearmand I/O threads (0: one thread does all, the fastest here)",
        0,
        "int",
    ),
    Option("gearman_job_retries", "gearmand --job-retries (0: retry forever)", None, "int"),
    Option("gearman_extra_args", "more gearmand arguments (shell-quoted)", "", "args"),
    Option(
        "gearman_servers",
        "external servers, host:port[,host:port...] (backend external)",
        None,
        "list",
    ),
    Option("gearman_image", "Docker image with gearmand (default: build the shipped Dockerfile)"),
    Option(
        "gearman_mysql_dsn",
        "existing MySQL/MariaDB server for the queue: mysql://user:pw@host:port/db",
    ),
    Option(
        "gearman_postgres_dsn",
        "existing PostgreSQL server for the queue: postgresql://user@host:port/db",
    ),
    Option("gearman_start_timeout", "seconds a server may take to become ready", 30.0, "float"),
    Option(
        "gearman_job_timeout",
        "seconds a foreground job or batch may take when the test gives no timeout= (0: no limit)",
        60.0,
        "float",
    ),
    Option(
        "gearman_strict_queue",
        "jobs a test leaves queued are an error, not a report",
        False,
        "bool",
    ),
    Option("islandora_job_modules", "job modules (import paths, comma-separated)", None, "list"),
)
OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}


def flag(option: Option) -> str:
    """The command-line flag of an option: gearman_queue -> --gearman-queue."""
    return "--" + option.name.replace("_", "-")


def parse(option: Option, value: Any) -> Any:
    """Turn a raw option, ini or factory value into the option's type; None stays None.

    Raises pytest.UsageError naming the option when the value does not parse.
    """
    if value is None or not isinstance(value, str):
        return value
    try:
        if option.kind == "int":
            return int(value)
        if option.kind == "float":
            return float(value)
        if option.kind == "bool":
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if option.kind == "list":
            return [item for item in value.replace(",", " ").split() if item]
        if option.kind == "args":
            return shlex.split(value)
    except ValueError:
        raise pytest.UsageError(
            f"{flag(option)} / ini {option.name}: cannot read {value!r} as {option.kind}"
        ) from None
    return value


def get(config: pytest.Config, name: str, override: Any = None) -> Any:
    """The value of one setting: override > command line > ini > default."""
    option = OPTIONS_BY_NAME[name]
    for raw in (override, config.getoption(name), config.getini(name) or None):
        if raw is not None:
            return parse(option, raw)
    return parse(option, option.default)


@dataclass(frozen=True)
class ServerSettings:
    """Everything needed to start one gearmand (or reach an external one)."""

    backend: str = "process"
    queue: str = "builtin"
    gearmand_exec: str = "/usr/sbin/gearmand"
    listen: str = "127.0.0.1"
    port: int | None = None
    threads: int = 0
    job_retries: int | None = None
    extra_args: tuple[str, ...] = ()
    servers: tuple[str, ...] = ()
    image: str | None = None
    # DSNs may hold a password: kept out of repr, which pytest prints in assertion reports.
    mysql_dsn: str | None = field(default=None, repr=False)
    postgres_dsn: str | None = field(default=None, repr=False)
    start_timeout: float = 30.0
    labels: dict[str, str] = field(default_factory=dict)

    def with_(self, **changes: Any) -> ServerSettings:
        """A copy with some fields changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def validate(self) -> ServerSettings:
        """Check choices; raises pytest.UsageError naming the setting and the valid values."""
        if self.backend not in BACKENDS:
            raise pytest.UsageError(
                f"--gearman-backend: unknown backend {self.backend!r}; use one of {', '.join(BACKENDS)}"
            )
        if self.queue not in QUEUES:
            raise pytest.UsageError(
                f"--gearman-queue: unknown queue type {self.queue!r}; use one of {', '.join(QUEUES)}"
            )
        if self.backend == "external" and not self.servers:
            raise pytest.UsageError(
                "--gearman-backend=external needs --gearman-servers host:port[,host:port...]"
            )
        return self


def server_settings(config: pytest.Config, **overrides: Any) -> ServerSettings:
    """Resolve ServerSettings from factory arguments, options, ini keys and defaults."""
    names = {
        "backend": "gearman_backend",
        "queue": "gearman_queue",
        "gearmand_exec": "gearmand_exec",
        "listen": "gearman_listen",
        "port": "gearman_port",
        "threads": "gearman_threads",
        "job_retries": "gearman_job_retries",
        "extra_args": "gearman_extra_args",
        "servers": "gearman_servers",
        "image": "gearman_image",
        "mysql_dsn": "gearman_mysql_dsn",
        "postgres_dsn": "gearman_postgres_dsn",
        "start_timeout": "gearman_start_timeout",
    }
    values = {field_: get(config, name, overrides.get(field_)) for field_, name in names.items()}
    values["extra_args"] = tuple(values["extra_args"] or ())
    values["servers"] = tuple(values["servers"] or ())
    return ServerSettings(**values).validate()


def validate(config: pytest.Config) -> None:
    """Read every setting once so a bad value stops the run at start with a usage error."""
    for option in OPTIONS:
        get(config, option.name)
    unknown = sorted(set(get(config, "gearman_queues")) - set(PERSISTENT_QUEUES))
    if unknown:
        raise pytest.UsageError(
            f"gearman_queues: unknown {' '.join(unknown)}; use {' '.join(PERSISTENT_QUEUES)}"
        )
    server_settings(config)
