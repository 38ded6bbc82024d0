"""Settings of the job library: servers, temp dir, job modules, payload limit, results, site.

Each setting comes from an explicit `configure()` call if one was made, else from its
environment variable, else from a default. `settings()` resolves them on every call, so
a change of the environment is seen at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import ParamSpec, TypeVar

from islandora_job.gearman.connection import DEFAULT_PORT, parse_address
from islandora_job.private import private_dir

ENV_SERVERS = "ISLANDORA_JOB_SERVERS"
ENV_TEMP_DIR = "ISLANDORA_JOB_TEMP_DIR"
ENV_MODULES = "ISLANDORA_JOB_MODULES"
ENV_MAX_PAYLOAD = "ISLANDORA_JOB_MAX_PAYLOAD"
ENV_RESULTS = "ISLANDORA_JOB_RESULTS"
ENV_SITE = "ISLANDORA_JOB_SITE"
ENV_TIMEOUT = "ISLANDORA_JOB_TIMEOUT"

DEFAULT_SERVERS = (f"127.0.0.1:{DEFAULT_PORT}",)
DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024
# How the client reads results: "json" (our worker's JSON, the default) or "text" (the raw
# text a worker that is not ours echoes, returned as str).
RESULTS = ("json", "text")

T = TypeVar("T")
P = ParamSpec("P")


@dataclasses.dataclass(frozen=True)
class Settings:
    """The resolved settings: what the library uses right now.

    servers: normalised "host:port" strings; temp_dir: where pidfiles and worker logs go;
    modules: import paths of job modules (besides the entry points); max_payload: the
    largest payload, in bytes, that is sent or accepted; results: how clients read results
    ("json" or "text"); site: the multisite prefix of Gearman function names (None: none);
    default_timeout: seconds a foreground call waits when given no timeout (None: forever).
    """

    servers: tuple[str, ...]
    temp_dir: Path
    modules: tuple[str, ...]
    max_payload: int
    results: str = "json"
    site: str | None = None
    default_timeout: float | None = None


@dataclasses.dataclass(frozen=True)
class Overrides:
    """Settings made in code by `configure()`; None means "not set, use the environment"."""

    servers: tuple[str, ...] | None = None
    temp_dir: Path | None = None
    modules: tuple[str, ...] | None = None
    max_payload: int | None = None
    results: str | None = None
    # "" is an explicit "no site", beating the environment.
    site: str | None = None
    default_timeout: float | None = None


_overrides = Overrides()
_layers: list[tuple[object, Overrides]] = []
_layered = Overrides()  # every layer merged, the newest winning
_ENV_NAMES = (
    ENV_SERVERS,
    ENV_TEMP_DIR,
    ENV_MODULES,
    ENV_MAX_PAYLOAD,
    ENV_RESULTS,
    ENV_SITE,
    ENV_TIMEOUT,
)
# The last resolution: its inputs, the working directory when a relative temp dir made it
# depend on it (else None), and the settings.
_cached: tuple[tuple[object, ...], str | None, Settings] | None = None
# The variables as os.environ keeps them for the system (bytes on POSIX): a lookup there
# spares encoding each name and decoding each value, most of the cost of a call that finds
# nothing changed. os.environ's writes go through that mapping at once.
_ENV_KEYS = tuple(getattr(os.environ, "encodekey", str)(name) for name in _ENV_NAMES)


def _environment() -> tuple[object, ...]:
    """The raw values of the variables settings() reads, to notice a change."""
    env = os.environ
    raw: Mapping[object, object] | None = getattr(env, "_data", None)
    if raw is None:  # not CPython's os.environ (replaced, or another Python)
        return tuple(env.get(name) for name in _ENV_NAMES)
    return tuple(map(raw.get, _ENV_KEYS))


def parse_server(server: str) -> str:
    """Normalise one "host:port" string (port defaults to 4730); ValueError when malformed."""
    if not isinstance(server, str):
        raise ValueError(f"a Gearman server must be a 'host:port' string, not {server!r}")
    try:
        host, port = parse_address(server)
    except ValueError as exc:
        raise ValueError(
            f"{exc} (write each server as host:port, e.g. {DEFAULT_SERVERS[0]})"
        ) from None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_servers(servers: str | Iterable[str]) -> tuple[str, ...]:
    """Normalise a comma-separated string or a list of servers; ValueError when none or malformed."""
    items = servers.split(",") if isinstance(servers, str) else list(servers)
    parsed = tuple(parse_server(s) for s in items if not (isinstance(s, str) and not s.strip()))
    if not parsed:
        raise ValueError(
            f"no Gearman server given: name at least one as host:port, e.g. {DEFAULT_SERVERS[0]}"
        )
    return parsed


def _parse_modules(modules: str | Iterable[str]) -> tuple[str, ...]:
    items = modules.split(",") if isinstance(modules, str) else list(modules)
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"job module {item!r} is not an import path string")
    return tuple(m.strip() for m in items if m.strip())


def parse_max_payload(value: str | int) -> int:
    """A positive payload limit in bytes; ValueError naming the value otherwise."""
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = 0
    if isinstance(value, bool) or size <= 0:
        raise ValueError(
            f"malformed maximum payload size {value!r}: give a positive number of bytes, "
            f"e.g. {DEFAULT_MAX_PAYLOAD}"
        )
    return size


def parse_results(value: str) -> str:
    """Check a results mode ("json" or "text"); ValueError naming the choices otherwise."""
    if value not in RESULTS:
        raise ValueError(
            f"unknown results mode {value!r}: give 'json' (our worker's JSON results, the "
            "default) or 'text' (the raw text a worker that is not ours echoes)"
        )
    return value


def parse_site(value: str) -> str:
    """Check a multisite prefix ("" for none); ValueError when Gearman cannot carry it."""
    if not isinstance(value, str):
        raise ValueError(f"a site must be a str, not {type(value).__name__}")
    if "\0" in value or any(c.isspace() for c in value):
        raise ValueError(
            f"site {value!r} holds whitespace or a NUL byte, which Gearman function names "
            "cannot carry in the admin protocol: give a bare prefix such as 'site1'"
        )
    return value


def default_temp_dir() -> Path:
    """The temp dir when none is set: `<system temp dir>/islandora-job-<uid>`, private to this
    user (made 0700 and checked, see `islandora_job.private`): the system temp dir itself is
    shared, and anyone could plant pidfiles, locks or FIFOs in it.

    Raises UnsafeDirectory when no private directory can be had there.
    """
    return private_dir(Path(tempfile.gettempdir()) / f"islandora-job-{os.getuid()}")


def parse_timeout(value: str | float) -> float:
    """A positive number of seconds; ValueError naming the value otherwise."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = 0.0
    if isinstance(value, bool) or not 0 < seconds < math.inf:
        raise ValueError(
            f"malformed timeout {value!r}: give a positive, finite number of seconds, e.g. 60"
        )
    return seconds


def _from_env(name: str, parse: Callable[[str], T], default: T, env: Mapping[str, str]) -> T:
    """The parsed value of environment variable ``name``, or ``default`` when unset or empty;
    ValueError naming the variable when malformed."""
    raw = env.get(name)
    if not raw:
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _pick(high: T | None, low: T | None) -> T | None:
    return low if high is None else high


def _over(low: Overrides, high: Overrides) -> Overrides:
    """``high`` over ``low``: each setting ``high`` leaves unset comes from ``low``."""
    return Overrides(
        servers=_pick(high.servers, low.servers),
        temp_dir=_pick(high.temp_dir, low.temp_dir),
        modules=_pick(high.modules, low.modules),
        max_payload=_pick(high.max_payload, low.max_payload),
        results=_pick(high.results, low.results),
        site=_pick(high.site, low.site),
        default_timeout=_pick(high.default_timeout, low.default_timeout),
    )


def settings() -> Settings:
    """The settings in force: `configure()` values, else those of the newest layer (see
    `layered()`) that sets them, else environment variables, else defaults.

    Raises ValueError naming the variable when an environment variable is malformed.
    """
    global _cached
    # Callers resolve once per call; still, parse only when an input changed.
    key = (_overrides, _layered, _environment())
    cached = _cached
    if cached is not None and cached[0] == key and (cached[1] is None or cached[1] == os.getcwd()):
        return cached[2]
    env = os.environ
    o = _over(_layered, _overrides)
    temp_dir = o.temp_dir
    if temp_dir is None:
        given = env.get(ENV_TEMP_DIR)
        temp_dir = Path(given) if given else default_temp_dir()
    # A relative temp dir is relative to the working directory of the moment.
    cwd = None if temp_dir.is_absolute() else os.getcwd()
    resolved = Settings(
        servers=(
            o.servers
            if o.servers is not None
            else _from_env(ENV_SERVERS, parse_servers, DEFAULT_SERVERS, env)
        ),
        temp_dir=temp_dir.absolute(),
        modules=o.modules if o.modules is not None else _parse_modules(env.get(ENV_MODULES, "")),
        max_payload=(
            o.max_payload
            if o.max_payload is not None
            else _from_env(ENV_MAX_PAYLOAD, parse_max_payload, DEFAULT_MAX_PAYLOAD, env)
        ),
        results=o.results
        if o.results is not None
        else _from_env(ENV_RESULTS, parse_results, "json", env),
        site=(o.site if o.site is not None else _from_env(ENV_SITE, parse_site, "", env)) or None,
        default_timeout=(
            o.default_timeout
            if o.default_timeout is not None
            else _from_env(ENV_TIMEOUT, parse_timeout, None, env)
        ),
    )
    _cached = (key, cwd, resolved)
    return resolved


def configure(
    *,
    servers: str | Iterable[str] | None = None,
    temp_dir: str | os.PathLike[str] | None = None,
    modules: str | Iterable[str] | None = None,
    max_payload: int | None = None,
    results: str | None = None,
    site: str | None = None,
    default_timeout: float | None = None,
) -> Overrides:
    """Set settings in code; None leaves a setting as it is (site "" sets "no site").

    Returns the overrides in force before the call: pass them to `restore()` to undo it.
    Raises ValueError (nothing changed) when a value is malformed.
    """
    global _overrides
    previous = _overrides
    _overrides = _over(
        previous,
        _overrides_of(servers, temp_dir, modules, max_payload, results, site, default_timeout),
    )
    return previous


def restore(previous: Overrides) -> None:
    """Put back the overrides `configure()` returned, including "not set" ones."""
    global _overrides
    _overrides = previous


def settings_env(resolved: Settings) -> dict[str, str]:
    """The environment variables that give a child process these settings."""
    return {
        ENV_SERVERS: ",".join(resolved.servers),
        ENV_TEMP_DIR: str(resolved.temp_dir),
        ENV_MODULES: ",".join(resolved.modules),
        ENV_MAX_PAYLOAD: str(resolved.max_payload),
        ENV_RESULTS: resolved.results,
        ENV_SITE: resolved.site or "",
        ENV_TIMEOUT: "" if resolved.default_timeout is None else str(resolved.default_timeout),
    }


def _for_a_block(
    set_settings: Callable[P, Overrides],
) -> Callable[P, contextlib.AbstractContextManager[Settings]]:
    """`set_settings` for the duration of a with block, which gets the settings then in
    force; the same parameters, so the two can never drift apart."""

    @contextlib.contextmanager
    def scoped(*args: P.args, **kwargs: P.kwargs) -> Iterator[Settings]:
        previous = set_settings(*args, **kwargs)
        try:
            yield settings()
        finally:
            restore(previous)

    return scoped


configured = _for_a_block(configure)
configured.__doc__ = """`configure()` for the duration of a with block; yields the settings then
in force. Raises ValueError (nothing changed) when a value is malformed."""


def _overrides_of(
    servers: str | Iterable[str] | None = None,
    temp_dir: str | os.PathLike[str] | None = None,
    modules: str | Iterable[str] | None = None,
    max_payload: int | None = None,
    results: str | None = None,
    site: str | None = None,
    default_timeout: float | None = None,
) -> Overrides:
    """Parse settings given in code; ValueError when one is malformed."""
    return Overrides(
        servers=None if servers is None else parse_servers(servers),
        temp_dir=None if temp_dir is None else Path(temp_dir).absolute(),
        modules=None if modules is None else _parse_modules(modules),
        max_payload=None if max_payload is None else parse_max_payload(max_payload),
        results=None if results is None else parse_results(results),
        site=None if site is None else parse_site(site),
        default_timeout=None if default_timeout is None else parse_timeout(default_timeout),
    )


def _merge_layers() -> None:
    global _layered
    merged = Overrides()
    for _, layer in _layers:
        merged = _over(merged, layer)
    _layered = merged


@contextlib.contextmanager
def layered(
    *,
    servers: str | Iterable[str] | None = None,
    temp_dir: str | os.PathLike[str] | None = None,
    modules: str | Iterable[str] | None = None,
    default_timeout: float | None = None,
) -> Iterator[None]:
    """Settings beneath `configure()` and above the environment while the with block runs.

    For holders of a resource that outlives calls to `configure()`/`restore()`, such as a
    test server fixture: layers may end in any order, and ending one never undoes another,
    nor what `configure()` set meanwhile. Raises ValueError (nothing changed) when malformed.
    """
    layer = _overrides_of(servers, temp_dir, modules, default_timeout=default_timeout)
    token = object()
    _layers.append((token, layer))
    _merge_layers()
    try:
        yield
    finally:
        _layers[:] = [entry for entry in _layers if entry[0] is not token]
        _merge_layers()
