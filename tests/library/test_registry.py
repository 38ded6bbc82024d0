"""Job registration: register_jobs() specs, entry points, lazy import, duplicates."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from islandora_job import registry
from islandora_job.registry import JobSpec, RegistryError, UnknownJob, load_registry


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """write(name, source) creates an importable module for this test only."""
    root = tmp_path / "mods"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    written: list[str] = []

    def write(name: str, source: str) -> str:
        (root / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


def test_the_suites_job_module_is_registered() -> None:
    registry = load_registry(["tests.jobs"])
    found_by = "the job modules setting (ISLANDORA_JOB_MODULES)"
    assert registry.jobs["hello"] == JobSpec("hello", "tests.jobs", "hello", "tests.jobs", found_by)
    # {"module": ...} without "function": the function is named after the job
    assert registry.jobs["echo"].target == "tests.jobs:echo"
    assert registry.resolve("add")(1, 2) == 3


def test_modules_default_to_the_settings() -> None:
    assert "hello" in load_registry().jobs


def test_a_jobs_module_is_imported_only_when_the_job_first_runs(modules) -> None:
    modules(
        "lazy_register",
        """
        def register_jobs():
            return {"lazy": "lazy_impl:run", "other": {"module": "lazy_impl", "function": "run"}}
    """,
    )
    modules(
        "lazy_impl",
        """
        IMPORTS = []
        IMPORTS.append(1)
        def run(x):
            return x * 2
    """,
    )
    registry = load_registry(["lazy_register"])
    assert "lazy_impl" not in sys.modules
    function = registry.resolve("lazy")
    assert function(21) == 42
    assert registry.resolve("lazy") is function
    assert registry.resolve("other") is function
    assert sys.modules["lazy_impl"].IMPORTS == [1]


def test_two_modules_registering_one_name_is_an_error_naming_both(modules) -> None:
    modules("dup_a", "def register_jobs():\n    return {'same': 'dup_a:f'}\n")
    modules("dup_b", "def register_jobs():\n    return {'same': 'dup_b:f'}\n")
    with pytest.raises(RegistryError, match=r"'same' is registered twice: by dup_a .* by dup_b"):
        load_registry(["dup_a", "dup_b"])


def test_one_module_listed_twice_is_registered_once(modules) -> None:
    modules("twice", "def register_jobs():\n    return {'t': 'twice:f'}\n")
    assert load_registry(["twice", "twice"]).jobs["t"].source == "twice"


def test_unknown_job_names_the_registered_ones() -> None:
    registry = load_registry(["tests.jobs"])
    with pytest.raises(
        UnknownJob, match=r"no job named 'nope' is registered \(registered jobs: 'add', 'append'"
    ) as info:
        registry.resolve("nope")
    assert info.value.job_name == "nope"
    assert "hello" in info.value.registered


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ("{'j': 3}", "has a spec of type int"),
        ("{'j': {'module': 'm', 'func': 'x'}}", r"unknown keys \['func'\]"),
        ("{'j': ':f'}", "malformed spec"),
        ("{'j': {'function': 'f'}}", "malformed spec"),
        ("{'j': 'm:not-a-name'}", "not a Python name"),
        ("{'': 'm:f'}", "bad job name"),
        ("{'a\\0b': 'm:f'}", "bad job name"),
        ("['j']", "returned list, not a dict"),
    ],
)
def test_malformed_registrations_are_errors(modules, jobs: str, message: str) -> None:
    name = modules("bad_reg", f"def register_jobs():\n    return {jobs}\n")
    with pytest.raises(RegistryError, match=message):
        load_registry([name])


def test_a_module_that_cannot_be_imported_or_has_no_hook(modules) -> None:
    with pytest.raises(
        RegistryError, match=r"cannot import job module 'no_such_module_x'.*fix the import path"
    ):
        load_registry(["no_such_module_x"])
    # Found, but a dependency of it is missing: the fix names the dependency.
    modules("needs_dep", "import no_such_dependency_y\n")
    with pytest.raises(RegistryError, match=r"install 'no_such_dependency_y', which the job"):
        load_registry(["needs_dep"])
    modules("no_hook", "X = 1\n")
    with pytest.raises(RegistryError, match=r"'no_hook' .* has no register_jobs\(\) function"):
        load_registry(["no_hook"])


def test_a_registration_naming_a_missing_function_fails_when_resolved(modules) -> None:
    modules("missing_fn", "def register_jobs():\n    return {'m': 'missing_fn:absent'}\n")
    registry = load_registry(["missing_fn"])
    with pytest.raises(RegistryError, match="missing_fn has no function 'absent'"):
        registry.resolve("m")


def test_entry_points_are_discovered(tmp_path: Path, modules) -> None:
    modules("ep_jobs", "def register_jobs():\n    return {'from_ep': 'ep_jobs:f'}\n")
    dist = tmp_path / "mods" / "ep_dist-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-dist\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[islandora_job.jobs]\nmine = ep_jobs\n")
    spec = load_registry([]).jobs["from_ep"]
    assert spec.source == "ep_jobs"
    assert spec.found_by == "entry point 'mine' (ep-dist)"
    # listed in the settings as well: still one registration, not a duplicate
    assert load_registry(["ep_jobs"]).jobs["from_ep"] == spec


def _dist(where: Path, name: str, entry_points: str) -> Path:
    """A distribution's metadata directory in `where`, with these entry points."""
    dist = where / f"{name}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(entry_points)
    return dist


def _age(*paths: Path, seconds: float = 60.0) -> None:
    """Set the modification times back, as if the files had been there for a while."""
    for path in paths:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - int(seconds * 1e9)))


def test_entry_points_read_once_are_reused_until_an_install_changes_them(
    tmp_path: Path, modules, monkeypatch: pytest.MonkeyPatch
) -> None:
    modules("reuse_jobs", "def register_jobs():\n    return {'one': 'reuse_jobs:f'}\n")
    root = tmp_path / "mods"
    dist = _dist(root, "reuse_dist", "[islandora_job.jobs]\nmine = reuse_jobs\n")
    _age(dist / "entry_points.txt", dist, root)
    reads: list[object] = []
    real = registry.entry_points

    def counted(**kwargs: str) -> object:
        reads.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(registry, "entry_points", counted)
    assert ("reuse_jobs", "entry point 'mine' (reuse_dist)") in registry.installed_job_modules()
    assert "one" in load_registry([]).jobs
    assert len(reads) == 1  # the second look reused the first
    # Another distribution installed: read again.
    modules("more_jobs", "def register_jobs():\n    return {'two': 'more_jobs:f'}\n")
    _dist(root, "more_dist", "[islandora_job.jobs]\nmore = more_jobs\n")
    assert "two" in load_registry([]).jobs
    assert len(reads) == 2
    # entry_points.txt rewritten in place (its directory's time does not move), just now:
    # too recent to be trusted, so read again every time until it settles.
    (dist / "entry_points.txt").write_text("[islandora_job.jobs]\n")
    assert "one" not in load_registry([]).jobs
    assert "one" not in load_registry([]).jobs
    assert len(reads) == 4


def test_a_change_in_the_same_clock_tick_as_the_read_is_not_missed(tmp_path: Path, modules) -> None:
    modules(
        "tick_jobs", "def register_jobs():\n    return {'a': 'tick_jobs:a', 'b': 'tick_jobs:b'}\n"
    )
    root = tmp_path / "mods"
    changed = "[islandora_job.jobs]\nt = tick_jobs\n"
    dist = _dist(root, "tick_dist", "[islandora_job.jobs]\n#".ljust(len(changed) - 1) + "\n")
    assert "a" not in load_registry([]).jobs
    stamp = (dist / "entry_points.txt").stat()
    (dist / "entry_points.txt").write_text(changed)
    # The same time, size and inode as the file read: a change within one tick of the clock.
    os.utime(dist / "entry_points.txt", ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert (dist / "entry_points.txt").stat().st_size == stamp.st_size
    assert "a" in load_registry([]).jobs
