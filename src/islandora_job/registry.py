"""Job registration, the `hook_register_jobs` of Python.

A job module exposes `register_jobs() -> dict[str, spec]`, spec being "package.module:function"
or {"module": "package.module", "function": "name"} (function defaults to the job name).
Job modules are found through the entry point group `islandora_job.jobs` (value: the
module's import path) and through the configured modules (`ISLANDORA_JOB_MODULES`).
A job's own module is imported only when the job first runs.

Reading the entry points means reading every installed distribution's metadata (a few
milliseconds, a start-up cost of every worker). What was read is reused while nothing that
decides it changed: the import path, the distributions in each of its directories (listed
again when the directory's modification time moves) and the state of each one's
entry_points.txt, trusted only once its modification time is older than the clock's
granularity, so that a change within the same tick cannot hide. Job modules themselves are
imported afresh by every process.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.machinery
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import entry_points

from islandora_job.config import ENV_MODULES, settings
from islandora_job.payload import check_job_name

ENTRY_POINT_GROUP = "islandora_job.jobs"


class RegistryError(Exception):
    """A job module or a registration that cannot be used; the message names it and the fix."""


class UnknownJob(LookupError):
    """A job name nobody registered; carries the name, the registered names and the closest
    of them (`closest`, the likely intended names); `fix`, when given, ends the message."""

    def __init__(self, job_name: str, registered: Iterable[str], fix: str = "") -> None:
        self.job_name = job_name
        self.registered = tuple(sorted(registered))
        self.closest = tuple(difflib.get_close_matches(job_name, self.registered, n=3))
        known = ", ".join(repr(n) for n in self.registered) or "none"
        guess = ", ".join(repr(n) for n in self.closest)
        super().__init__(
            f"no job named {job_name!r} is registered ("
            + (f"did you mean {guess}? " if guess else "")
            + f"registered jobs: {known})"
            + (f"; {fix}" if fix else "")
        )


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """One registered job: its name, the function that runs it, and who registered it.

    source: the import path of the module whose register_jobs() named the job;
    found_by: how that module was found ("entry point NAME (DIST)" or the settings).
    """

    name: str
    module: str
    function: str
    source: str
    found_by: str

    @property
    def target(self) -> str:
        """The function as "package.module:function"."""
        return f"{self.module}:{self.function}"


def _parse_spec(name: object, spec: object, source: str, found_by: str) -> JobSpec:
    where = f"{source}.register_jobs()"
    try:
        job_name = check_job_name(name)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{where} registers a bad job name {name!r}: {exc}") from None
    fix = 'use "package.module:function" or {"module": "package.module", "function": "name"}'
    module: object
    function: object
    if isinstance(spec, str):
        module, sep, function = spec.partition(":")
        if not sep:
            function = job_name
    elif isinstance(spec, Mapping):
        module, function = spec.get("module"), spec.get("function", job_name)
        unknown = set(spec) - {"module", "function"}
        if unknown:
            raise RegistryError(f"{where}: job {name!r} has unknown keys {sorted(unknown)}: {fix}")
    else:
        raise RegistryError(
            f"{where}: job {name!r} has a spec of type {type(spec).__name__}: {fix}"
        )
    if not isinstance(module, str) or not module.strip() or not isinstance(function, str):
        raise RegistryError(f"{where}: job {name!r} has a malformed spec {spec!r}: {fix}")
    if not function.isidentifier():
        raise RegistryError(
            f"{where}: job {name!r} names function {function!r}, which is not a Python name: {fix}"
        )
    return JobSpec(job_name, module.strip(), function, source, found_by)


def _register_module(module_path: str, found_by: str) -> list[JobSpec]:
    try:
        module = importlib.import_module(module_path)
    except Exception as exc:
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        if missing and not module_path.startswith(missing):
            # The job module was found; something it imports was not.
            fix = f"install {missing!r}, which the job module imports"
        else:
            fix = (
                "fix the import path, or make the module importable: install its project "
                "(pip install -e .) or put its directory on sys.path (for pytest: ini "
                "pythonpath = .)"
            )
        raise RegistryError(
            f"cannot import job module {module_path!r} (found by {found_by}): "
            f"{type(exc).__name__}: {exc}; {fix}"
        ) from exc
    hook = getattr(module, "register_jobs", None)
    if not callable(hook):
        raise RegistryError(
            f"job module {module_path!r} (found by {found_by}) has no register_jobs() function: "
            "define one returning {job name: spec}"
        )
    jobs = hook()
    if not isinstance(jobs, Mapping):
        raise RegistryError(
            f"{module_path}.register_jobs() returned {type(jobs).__name__}, not a dict of "
            "{job name: spec}"
        )
    return [_parse_spec(name, spec, module_path, found_by) for name, spec in jobs.items()]


#: Seconds a modification time must lie in the past before it is trusted to show the next
#: change: file times advance in coarse ticks, so a change in the same tick keeps the time.
SETTLED = 2.0
# Per directory on the import path: its modification time (ns) and its distributions'
# metadata directories, kept once that time is settled.
_listings: dict[str, tuple[int, tuple[str, ...]]] = {}
# The entry points last read, and the state of the import path they were read in.
_read: tuple[tuple[object, ...], tuple[tuple[str, str], ...]] | None = None


def _metadata_dirs(entry: str, mtime: int) -> tuple[str, ...]:
    """The distributions' metadata directories in one import path directory (as
    importlib.metadata finds them: *.dist-info, *.egg-info, an egg's EGG-INFO); listed
    again unless ``mtime``, the directory's, is the settled one of the last listing."""
    known = _listings.get(entry)
    if known is not None and known[0] == mtime:
        return known[1]
    names: list[str] = []
    if entry.lower().endswith(".egg"):
        names.append("EGG-INFO")
    try:
        with os.scandir(entry) as found:
            names += (e.name for e in found if e.name.lower().endswith((".dist-info", ".egg-info")))
    except OSError:
        pass  # not a directory (a zip file): its own time covers it
    if mtime < _settled():
        _listings[entry] = (mtime, tuple(names))
    return tuple(names)


def _settled() -> int:
    """Modification times (ns) before this one are trusted to show the next change."""
    return time.time_ns() - int(SETTLED * 1e9)


def _path_state() -> tuple[tuple[object, ...], int] | None:
    """What decides the installed entry points (the import path, the distributions in each
    of its directories, the state of each one's entry_points.txt, of each zip file), and the
    newest modification time (ns) among those files; None when a finder other than the
    standard path finder supplies distributions (nothing is reused then)."""
    if any(
        finder is not importlib.machinery.PathFinder
        and getattr(finder, "find_distributions", None) is not None
        for finder in sys.meta_path
    ):
        return None
    state: list[object] = [os.getcwd()]
    newest = 0
    for entry in sys.path:
        # Absolute: a listing kept for "" or "." is that of the working directory then.
        where = os.path.abspath(entry or os.curdir)
        try:
            found = os.stat(where)
        except OSError:
            state.append((entry, None))
            continue
        if not stat.S_ISDIR(found.st_mode):
            state.append((entry, found.st_mtime_ns, found.st_size, found.st_ino))
            newest = max(newest, found.st_mtime_ns)
            continue
        names = _metadata_dirs(where, found.st_mtime_ns)
        state.append((entry, names))
        for name in names:
            try:
                found = os.stat(os.path.join(where, name, "entry_points.txt"))
            except OSError:
                state.append(None)
                continue
            state.append((found.st_mtime_ns, found.st_size, found.st_ino))
            newest = max(newest, found.st_mtime_ns)
    return tuple(state), newest


def installed_job_modules() -> tuple[tuple[str, str], ...]:
    """The job modules of the entry points, as (import path, how it was found); read
    again only when the import path or the installed distributions changed."""
    global _read
    state = _path_state()
    if state is not None and _read is not None and _read[0] == state[0]:
        return _read[1]
    found = tuple(
        (
            ep.value.strip(),
            f"entry point {ep.name!r}" + (f" ({ep.dist.name})" if ep.dist is not None else ""),
        )
        for ep in entry_points(group=ENTRY_POINT_GROUP)
    )
    _read = (state[0], found) if state is not None and state[1] < _settled() else None
    return found


def _job_modules(modules: Iterable[str], found_by: str | None = None) -> dict[str, str]:
    """Import path -> how it was found; entry points first, then the settings (`found_by`
    names where they came from; default: the environment variable)."""
    found: dict[str, str] = {}
    for module, how in installed_job_modules():
        found.setdefault(module, how)
    for module in modules:
        found.setdefault(module, found_by or f"the job modules setting ({ENV_MODULES})")
    return found


def jobs_declared(modules: Iterable[str]) -> bool:
    """True when job modules are configured (`modules`) or installed (entry points): then
    the registry is known, and a name it lacks is a mistake."""
    return any(True for _ in modules) or bool(installed_job_modules())


class Registry:
    """The registered jobs (name -> JobSpec); resolves a job's function on first use."""

    def __init__(self, specs: Iterable[JobSpec]) -> None:
        """Build from specs; RegistryError when two modules register one name."""
        jobs: dict[str, JobSpec] = {}
        for spec in specs:
            other = jobs.get(spec.name)
            if other is not None:
                raise RegistryError(
                    f"job {spec.name!r} is registered twice: by {other.source} "
                    f"(found by {other.found_by}) and by {spec.source} (found by "
                    f"{spec.found_by}); rename one of them"
                )
            jobs[spec.name] = spec
        self.jobs: Mapping[str, JobSpec] = dict(sorted(jobs.items()))
        self._functions: dict[str, Callable[..., object]] = {}
        self._lock = threading.Lock()

    def spec(self, name: str) -> JobSpec:
        """The JobSpec of a job; UnknownJob when nobody registered it."""
        try:
            return self.jobs[name]
        except KeyError:
            raise UnknownJob(name, self.jobs) from None

    def resolve(self, name: str) -> Callable[..., object]:
        """The job's function, importing its module the first time.

        Raises UnknownJob for a name nobody registered and RegistryError when the module or
        function named by the registration cannot be found.
        """
        function = self._functions.get(name)
        if function is not None:
            return function
        spec = self.spec(name)
        with self._lock:
            try:
                module = importlib.import_module(spec.module)
            except Exception as exc:
                raise RegistryError(
                    f"job {name!r} (registered by {spec.source}) needs module {spec.module!r}, "
                    f"which cannot be imported: {type(exc).__name__}: {exc}"
                ) from exc
            found: object = getattr(module, spec.function, None)
            if not callable(found):
                raise RegistryError(
                    f"job {name!r} (registered by {spec.source}) names {spec.target}, "
                    f"but {spec.module} has no function {spec.function!r}"
                )
            self._functions[name] = found
        return found


def load_registry(modules: Iterable[str] | None = None, found_by: str | None = None) -> Registry:
    """Discover the jobs of the entry points and of `modules` (default: the settings);
    `found_by` says where `modules` came from, for the error messages.

    Raises RegistryError for a module that cannot be imported, has no register_jobs(),
    registers malformed specs, or registers a name another module registered.
    """
    wanted = settings().modules if modules is None else tuple(modules)
    specs: list[JobSpec] = []
    for module_path, source in _job_modules(wanted, found_by).items():
        specs.extend(_register_module(module_path, source))
    return Registry(specs)
