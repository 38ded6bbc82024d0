"""Resolve the plugin's settings: factory argument > command-line option > ini key > default.

`None` always means "not set", so 0 and False given anywhere are honoured.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from islandora_job.config import parse_server, parse_servers
from islandora_job.dsn import DSNError, parse_dsn

BACKENDS = ("process", "docker", "external", "embedded")
QUEUES = ("builtin", "mysql", "postgres", "sqlite")
PERSISTENT_QUEUES = ("mysql", "postgres", "sqlite")


@dataclass(frozen=True)
class Option:
    """One setting: its command-line flag, ini key, default, help text and parser."""

    name: str
    help: str
    default: Any = None
    # How a raw value is read and checked: a key of READERS ("string" takes any text).
    kind: str = "string"


OPTIONS: tuple[Option, ...] = (
    Option(
        "gearman_backend",
        "how gearmand runs: process, docker, external, or embedded (a Python server in its place;"
        " the default when gearmand is not installed, else process)",
    ),
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
        "address",
    ),
    Option("gearman_port", "port of gearman_server (default: a free port)", None, "port"),
    Option(
        "gearman_threads",
        "gearmand I/O threads (0: one thread does all, the fastest here)",
        0,
        "count",
    ),
    Option("gearman_job_retries", "gearmand --job-retries (0: retry forever)", None, "count"),
    Option("gearman_extra_args", "more gearmand arguments (shell-quoted)", "", "args"),
    Option(
        "gearman_servers",
        "external servers, host:port[,host:port...] ([v6addr]:port for IPv6; backend external)",
        None,
        "servers",
    ),
    Option(
        "gearman_image",
        "Docker image with gearmand (default: build the shipped Dockerfile)",
        None,
        "image",
    ),
    Option(
        "gearman_mysql_dsn",
        "existing MySQL/MariaDB server for the queue: mysql://user:pw@host:port/db",
        None,
        "mysql_dsn",
    ),
    Option(
        "gearman_postgres_dsn",
        "existing PostgreSQL server for the queue: postgresql://user@host:port/db",
        None,
        "postgres_dsn",
    ),
    Option("gearman_start_timeout", "seconds a server may take to become ready", 30.0, "seconds"),
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
    Option("islandora_job_modules", "job modules (import paths, comma-separated)", None, "modules"),
)
OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}


def flag(option: Option) -> str:
    """The command-line flag of an option: gearman_queue -> --gearman-queue."""
    return "--" + option.name.replace("_", "-")


def _number(text: str, kind: type[int] | type[float], what: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"cannot read {text!r} as {kind.__name__}: give {what}") from None


def _port(text: str) -> int:
    port = _number(text, int, "a port number from 1 to 65535")
    if not 0 < port < 65536:
        raise ValueError(f"{port} is not a port: give 1-65535, or leave it unset for a free port")
    return int(port)


def _count(text: str) -> int:
    count = _number(text, int, "a whole number, 0 or more")
    if count < 0:
        raise ValueError(f"{count} is below 0: give 0 or more")
    return int(count)


def _seconds(text: str) -> float:
    seconds = _number(text, float, "a number of seconds")
    if not seconds > 0:
        raise ValueError(f"{seconds} is not a positive number of seconds: give more than 0")
    return float(seconds)


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"cannot read {text!r} as bool: give true or false")


def _list(text: str) -> list[str]:
    return [item for item in text.replace(",", " ").split() if item]


def _args(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"cannot read {text!r} as args ({exc}): quote as a shell would") from None


def _address(text: str) -> str:
    host = text.strip()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(
                f"{text!r} is not an address: give an IP address or a host name "
                "(the port is --gearman-port)"
            ) from None
    return host


def _servers(text: str) -> list[str]:
    servers = _list(text)
    if not servers:
        raise ValueError("no server given: write host:port[,host:port...]")
    for server in servers:
        bracketed = server.startswith("[")
        if not bracketed and server.count(":") > 1:
            raise ValueError(
                f"{server!r} is not one host:port: separate servers with commas, and write "
                "an IPv6 address in brackets, [v6addr]:port"
            )
        parse_server(server)  # ValueError naming the bad host or port
        if (bracketed and "]:" not in server) or (not bracketed and ":" not in server):
            raise ValueError(
                f"{server!r} has no port: write host:port ([v6addr]:port for IPv6), "
                "e.g. 127.0.0.1:4730"
            )
    return servers


def _image(text: str) -> str:
    if not _IMAGE.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a Docker image reference: write name[:tag], e.g. mine/gearmand:1 "
            "(lower case, no spaces)"
        )
    return text


def _dsn(kind: str) -> Callable[[str], str]:
    def read(text: str) -> str:
        try:
            parse_dsn(text, kind)
        except DSNError as exc:
            raise ValueError(str(exc)) from None
        return text

    return read


def _modules(text: str) -> list[str]:
    modules = _list(text)
    for module in modules:
        if not all(part.isidentifier() for part in module.split(".")):
            raise ValueError(
                f"{module!r} is not an import path: write dotted module names, "
                "e.g. mypackage.jobs (not a file name)"
            )
    return modules


_HOSTNAME = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
# [registry[:port]/]path[:tag][@digest], as `docker build -t` and `docker run` accept them.
_IMAGE = re.compile(
    r"([A-Za-z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?"
)

# Each kind of option: how its raw text is read; ValueError says what is wrong and the fix.
READERS: dict[str, Callable[[str], Any]] = {
    "string": str,
    "float": lambda text: _number(text, float, "a number"),
    "port": _port,
    "count": _count,
    "seconds": _seconds,
    "bool": _bool,
    "list": _list,
    "args": _args,
    "address": _address,
    "servers": _servers,
    "image": _image,
    "mysql_dsn": _dsn("mysql"),
    "postgres_dsn": _dsn("postgres"),
    "modules": _modules,
}


def parse(option: Option, value: Any) -> Any:
    """Turn a raw option, ini or factory value into the option's type; None stays None.

    Raises pytest.UsageError naming the option, what is wrong and the fix when the value does
    not parse.
    """
    if value is None or not isinstance(value, str):
        return value
    try:
        return READERS[option.kind](value)
    except ValueError as exc:
        raise pytest.UsageError(f"{flag(option)} / ini {option.name}: {exc}") from None


def flag_arguments(option: Option) -> dict[str, Any]:
    """More keyword arguments for `addoption`: a bool is an on/off flag, --x or --no-x, that
    takes no value (so it never swallows the next argument)."""
    if option.kind == "bool":
        return {"action": argparse.BooleanOptionalAction}
    return {}


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


def default_backend(gearmand_exec: str) -> str:
    """The backend when none was chosen: process where gearmand is installed (found as the
    process backend finds it: never Perl's Gearman::Server), else embedded."""
    from pytest_islandora_job.readiness import ServerStartError
    from pytest_islandora_job.servers.process import resolve_gearmand

    try:
        resolve_gearmand(gearmand_exec)
    except ServerStartError:
        return "embedded"
    return "process"


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
    if values["servers"]:
        try:
            values["servers"] = parse_servers(values["servers"])
        except ValueError as exc:
            raise pytest.UsageError(f"--gearman-servers / ini gearman_servers: {exc}") from None
    values["servers"] = tuple(values["servers"] or ())
    if values["backend"] is None:
        values["backend"] = default_backend(values["gearmand_exec"])
    return ServerSettings(**values).validate()


def _refuse(name: str, problem: str) -> None:
    option = OPTIONS_BY_NAME[name]
    raise pytest.UsageError(f"{flag(option)} / ini {option.name}: {problem}")


def _missing_docker_extra() -> str | None:
    """The first module of the docker extra that cannot be imported, or None."""
    for module in ("testcontainers", "docker"):
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except (ImportError, ValueError):
            return module
    return None


def validate(config: pytest.Config) -> None:
    """Read and check every setting once, so a bad value or a contradiction stops the run at
    start with a one-line usage error naming the option and the fix, whether or not a test
    uses the fixtures.
    """
    for option in OPTIONS:
        get(config, option.name)
    unknown = sorted(set(get(config, "gearman_queues")) - set(PERSISTENT_QUEUES))
    if unknown:
        _refuse(
            "gearman_queues",
            f"unknown {' '.join(unknown)}; use any of {' '.join(PERSISTENT_QUEUES)}",
        )
    backend = get(config, "gearman_backend")
    if get(config, "gearman_servers") and backend != "external":
        _refuse(
            "gearman_servers",
            f"servers are for the external backend, not {backend or default_backend(get(config, 'gearmand_exec'))}: "
            "add --gearman-backend=external, or drop --gearman-servers",
        )
    if backend == "docker":
        missing = _missing_docker_extra()
        if missing is not None:
            _refuse(
                "gearman_backend",
                f"docker needs the docker extra ({missing} is not installed): "
                "pip install 'pytest-islandora-job[docker]', or use --gearman-backend=process",
            )
    server_settings(config)
