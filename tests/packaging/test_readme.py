"""The README's quick start runs as written, by both of its routes: the ini key without
installing the project, and the entry point of the installed project."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.packaging.conftest import ROOT, run, succeeded

BLOCK = re.compile(r"^```(python|toml)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def quick_start_blocks() -> list[tuple[str, str]]:
    """(file name, content) of each python and toml block of the README's quick start; a
    block's first line is a comment naming its file."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for _, text in BLOCK.findall(section):
        first = text.splitlines()[0]
        assert first.startswith("# "), f"a quick-start block must name its file: {first!r}"
        blocks.append((first[2:].strip(), text))
    return blocks


def write_project(directory: Path, route: str) -> None:
    """The quick start's project: its python files and the pyproject.toml of one route,
    "[tool.pytest.ini_options]" (the ini key) or "[project]" (the entry point)."""
    pyprojects = []
    for name, text in quick_start_blocks():
        if name == "pyproject.toml":
            pyprojects.append(text)
            continue
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text, encoding="utf-8")
    (chosen,) = [text for text in pyprojects if f"\n{route}\n" in text]
    (directory / "pyproject.toml").write_text(chosen, encoding="utf-8")


def test_the_quick_start_names_every_file_it_needs() -> None:
    names = [name for name, _ in quick_start_blocks()]
    assert names.count("pyproject.toml") == 2  # one per route
    for needed in ("mypackage/jobs.py", "mypackage/fixity.py", "tests/test_jobs.py"):
        assert needed in names


def test_the_quick_start_runs_with_the_ini_key(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ISLANDORA_JOB_SERVERS", "ISLANDORA_JOB_TEMP_DIR", "ISLANDORA_JOB_MODULES"):
        monkeypatch.delenv(name, raising=False)
    write_project(pytester.path, "[tool.pytest.ini_options]")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=3)


def test_the_quick_start_runs_through_the_entry_point_once_installed(
    fresh_venv: Path, tmp_path: Path
) -> None:
    write_project(tmp_path, "[project]")
    succeeded(run([fresh_venv / "bin" / "pip", "install", "-q", "-e", tmp_path]))
    out = succeeded(run([fresh_venv / "bin" / "pytest", "-p", "no:cacheprovider"], cwd=tmp_path))
    assert re.search(r"\b3 passed\b", out), out
