"""Settings of the job library: servers, temp dir, job modules, payload limit, results, site.

Each setting comes from an explicit `configure()` call if one was made, else from its
environment variable, else from a default. `settings()` resolves them on every call, so
a change of the environment is seen at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from islandora_job.gearman.connection import DEFAULT_PORT, parse_address

ENV_SERVERS = "ISLANDORA_JOB_SERVERS"
ENV_TEMP_DIR = "ISLANDORA_JOB_TEMP_DIR"
ENV_MODULES = "ISLANDORA_JOB_MODULES"
ENV_MAX_PAYLOAD = "ISLANDORA_JOB_MAX_PAYLOAD"
ENV_RESULTS = "ISLANDORA_JOB_RESULTS"
ENV_SITE = "ISLANDORA_JOB_SITE"

DEFAULT_SERVERS = (f"127.0.0.1:{DEFAULT_PORT}",)
DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024
# How the client reads results: "json" (our worker's JSON, the default) or "text" (the raw
# text a worker that is not ours echoes, returned as str).
RESULTS = ("json", "text")


@dataclasses.dataclass(frozen=True)
class Settings:
    """The resolved settings: what the library uses right now.

    servers: normalised "host:port" strings; temp_dir: where pidfiles and worker logs go;
    modules: import paths of job modules (besides the entry points); max_payload: the
    largest payload, in bytes, that is sent or accepted; results: how clients read results
    ("json" or "text"); site: the multisite prefix of Gearman function names (None: none).
    """

    servers: tuple[str, ...]
    temp_dir: Path
    modules: tuple[str, ...]
    max_payload: int
    results: str = "json"
    site: str | None = None


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


_overrides = Overrides()
_layers: list[tuple[object, Overrides]] = []
_layered = Overrides()  # every layer merged, the newest winning
_ENV_NAMES = (ENV_SERVERS, ENV_TEMP_DIR, ENV_MODULES, ENV_MAX_PAYLOAD, ENV_RESULTS, ENV_SITE)
_cached: tuple[tuple[object, ...], Settings] | None = None


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


def _parse_max_payload(value: str | int) -> int:
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


def _from_env(name: str, parse, env: Mapping[str, str]):
    try:
        return parse(env[name])
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def settings() -> Settings:
    """The settings in force: `configure()` values, else those of the newest layer (see
    `layered()`) that sets them, else environment variables, else defaults.

    Raises ValueError naming the variable when an environment variable is malformed.
    """
    global _cached
    env = os.environ
    o, layer = _overrides, _layered
    # Every submit asks for the settings: parse only when an input changed.
    key = (o, layer, *(env.get(name) for name in _ENV_NAMES), os.getcwd())
    if _cached is not None and _cached[0] == key:
        return _cached[1]
    o = Overrides(
        *(
            mine if mine is not None else theirs
            for mine, theirs in zip(_fields(o), _fields(layer), strict=True)
        )
    )
    servers = o.servers
    if servers is None:
        servers = (
            _from_env(ENV_SERVERS, parse_servers, env) if env.get(ENV_SERVERS) else DEFAULT_SERVERS
        )
    temp_dir = o.temp_dir
    if temp_dir is None:
        temp_dir = Path(env.get(ENV_TEMP_DIR) or tempfile.gettempdir())
    modules = o.modules
    if modules is None:
        modules = _parse_modules(env.get(ENV_MODULES, ""))
    max_payload = o.max_payload
    if max_payload is None:
        max_payload = (
            _from_env(ENV_MAX_PAYLOAD, _parse_max_payload, env)
            if env.get(ENV_MAX_PAYLOAD)
            else DEFAULT_MAX_PAYLOAD
        )
    results = o.results
    if results is None:
        results = _from_env(ENV_RESULTS, parse_results, env) if env.get(ENV_RESULTS) else "json"
    site = o.site
    if site is None:
        site = _from_env(ENV_SITE, parse_site, env) if env.get(ENV_SITE) else ""
    resolved = Settings(servers, temp_dir.absolute(), modules, max_payload, results, site or None)
    _cached = (key, resolved)
    return resolved


def configure(
    *,
    servers: str | Iterable[str] | None = None,
    temp_dir: str | os.PathLike[str] | None = None,
    modules: str | Iterable[str] | None = None,
    max_payload: int | None = None,
    results: str | None = None,
    site: str | None = None,
) -> Overrides:
    """Set settings in code; None leaves a setting as it is (site "" sets "no site").

    Returns the overrides in force before the call: pass them to `restore()` to undo it.
    Raises ValueError (nothing changed) when a value is malformed.
    """
    global _overrides
    previous = _overrides
    changes: dict[str, object] = {}
    if servers is not None:
        changes["servers"] = parse_servers(servers)
    if temp_dir is not None:
        changes["temp_dir"] = Path(temp_dir).absolute()
    if modules is not None:
        changes["modules"] = _parse_modules(modules)
    if max_payload is not None:
        changes["max_payload"] = _parse_max_payload(max_payload)
    if results is not None:
        changes["results"] = parse_results(results)
    if site is not None:
        changes["site"] = parse_site(site)
    _overrides = dataclasses.replace(previous, **changes)
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
    }


@contextlib.contextmanager
def configured(
    *,
    servers: str | Iterable[str] | None = None,
    temp_dir: str | os.PathLike[str] | None = None,
    modules: str | Iterable[str] | None = None,
    max_payload: int | None = None,
    results: str | None = None,
    site: str | None = None,
) -> Iterator[Settings]:
    """`configure()` for the duration of a with block; yields the settings then in force."""
    previous = configure(
        servers=servers,
        temp_dir=temp_dir,
        modules=modules,
        max_payload=max_payload,
        results=results,
        site=site,
    )
    try:
        yield settings()
    finally:
        restore(previous)


def _fields(overrides: Overrides) -> tuple[object, ...]:
    return (
        overrides.servers,
        overrides.temp_dir,
        overrides.modules,
        overrides.max_payload,
        overrides.results,
        overrides.site,
    )


def _merge_layers() -> None:
    global _layered
    merged = Overrides()
    for _, layer in _layers:
        merged = dataclasses.replace(
            merged, **{k: v for k, v in dataclasses.asdict(layer).items() if v is not None}
        )
    _layered = merged


@contextlib.contextmanager
def layered(
    *,
    servers: str | Iterable[str] | None = None,
    temp_dir: str | os.PathLike[str] | None = None,
) -> Iterator[None]:
    """Settings beneath `configure()` and above the environment while the with block runs.

    For holders of a resource that outlives calls to `configure()`/`restore()`, such as a
    test server fixture: layers may end in any order, and ending one never undoes another,
    nor what `configure()` set meanwhile. Raises ValueError (nothing changed) when malformed.
    """
    layer = Overrides(
        servers=None if servers is None else parse_servers(servers),
        temp_dir=None if temp_dir is None else Path(temp_dir).absolute(),
    )
    token = object()
    _layers.append((token, layer))
    _merge_layers()
    try:
        yield
    finally:
        _layers[:] = [entry for entry in _layers if entry[0] is not token]
        _merge_layers()
