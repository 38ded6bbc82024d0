"""The sdist carries what the README tells people to run; the wheel is typed and licensed."""

from __future__ import annotations

import re
import tarfile
import zipfile
from pathlib import Path

from tests.packaging.conftest import ROOT, Dist

# What the README runs: make demo/test/bench (Makefile, examples, tests, benchmarks),
# scripts/docker-up and -down, and .ci/run.
CARRIED = ("tests", "examples", "benchmarks", "scripts", ".ci")
TOP_FILES = ("Makefile", "README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml")
NOT_SOURCE = ("__pycache__", ".pytest_cache", ".hypothesis", "build")
DEBIAN_GPL3 = Path("/usr/share/common-licenses/GPL-3")


def _source_files() -> set[str]:
    found = set(TOP_FILES)
    for top in CARRIED:
        for path in (ROOT / top).rglob("*"):
            parts = path.relative_to(ROOT).parts
            ignored = any(part in NOT_SOURCE or part.endswith(".egg-info") for part in parts)
            if path.is_file() and not ignored and path.suffix != ".pyc":
                found.add("/".join(parts))
    return found


def _members(dist: Dist) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(dist.sdist) as sdist:
        return {
            member.name.split("/", 1)[1]: member
            for member in sdist.getmembers()
            if "/" in member.name
        }


def test_the_sdist_carries_the_tests_examples_benchmarks_makefile_and_scripts(dist: Dist) -> None:
    members = _members(dist)
    expected = _source_files()
    assert "tests/packaging/test_sdist.py" in expected  # the walk sees the tree
    assert sorted(expected - set(members)) == []
    for script in ("scripts/docker-up", "scripts/docker-down", ".ci/run"):
        assert members[script].mode & 0o111, f"{script} lost its executable bit"
    leftovers = [name for name in members if name.endswith(".pyc") or "/__pycache__/" in name]
    assert leftovers == []
    assert not [name for name in members if name.startswith("examples/") and ".egg-info" in name]


def test_the_license_is_debians_gpl3_text() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.split()[:5] == ["GNU", "GENERAL", "PUBLIC", "LICENSE", "Version"]
    if DEBIAN_GPL3.exists():  # Debian's base-files ships the text the file is a copy of
        assert text == DEBIAN_GPL3.read_text(encoding="utf-8")


def test_the_wheel_is_typed_licensed_and_classified(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = set(wheel.namelist())
        info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/METADATA"))
        metadata = wheel.read(f"{info}/METADATA").decode()
        license_text = wheel.read(f"{info}/licenses/LICENSE").decode()
    assert {"islandora_job/py.typed", "pytest_islandora_job/py.typed"} <= names
    assert "pytest_islandora_job/docker/Dockerfile" in names
    assert license_text == (ROOT / "LICENSE").read_text(encoding="utf-8")
    lines = set(metadata.splitlines())
    assert "License-Expression: GPL-3.0-or-later" in lines
    assert {"Requires-Dist: pytest>=7.0", "Requires-Dist: pluggy>=1.2"} <= lines
    for classifier in (
        "Typing :: Typed",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.13",
        "Framework :: Pytest",
    ):
        assert f"Classifier: {classifier}" in lines
    assert any(line.startswith("Classifier: Development Status :: ") for line in lines)
    assert any(line.startswith("Project-URL: ") for line in lines)
    assert (ROOT / "CHANGELOG.md").read_text(encoding="utf-8").startswith("# Changelog\n")


def test_make_test_oldest_pins_the_floor_the_package_declares(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as wheel:
        info = next(n.split("/")[0] for n in wheel.namelist() if n.endswith("dist-info/METADATA"))
        metadata = wheel.read(f"{info}/METADATA").decode()
    floors = dict(re.findall(r"^Requires-Dist: (pytest|pluggy)>=([\d.]+)$", metadata, re.M))
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    pins = re.search(r"^OLDEST_PINS := (.*)$", makefile, re.M)
    assert pins is not None
    assert dict(pin.split("==") for pin in pins.group(1).split()) == {
        name: f"{version}.0" if version.count(".") == 1 else version
        for name, version in floors.items()
    }
    assert "make test-oldest" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
