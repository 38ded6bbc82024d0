"""What a new user sees after `pip install` of the wheel into a fresh virtualenv."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.packaging.conftest import Dist, run, succeeded

FIXTURES = (
    "gearman_server",
    "persistent_gearman_server",
    "gearman_cluster",
    "job_client",
    "job_worker",
    "persistent_job_worker",
    "cluster_job_worker",
)


def _docstrings(listing: str) -> dict[str, str]:
    """Fixture name -> the first line of its docstring, from `pytest --fixtures`."""
    lines = listing.splitlines()
    found = {}
    for i, line in enumerate(lines):
        match = re.match(r"(\w+)( \[\w+ scope\])? -- ", line)
        if match and i + 1 < len(lines):
            found[match.group(1)] = lines[i + 1].strip()
    return found


def test_pytest_fixtures_shows_a_docstring_for_every_fixture(
    fresh_venv: Path, tmp_path: Path
) -> None:
    listing = succeeded(run([fresh_venv / "bin" / "pytest", "--fixtures"], cwd=tmp_path))
    docs = _docstrings(listing)
    missing = [name for name in FIXTURES if name not in docs]
    assert missing == [], listing
    undocumented = [name for name in FIXTURES if docs[name] in ("", "no docstring available")]
    assert undocumented == []
    assert len({docs[name] for name in FIXTURES}) == len(FIXTURES)  # each its own


def test_the_command_tells_its_version(fresh_venv: Path, dist: Dist) -> None:
    version = dist.wheel.name.split("-")[1]
    out = succeeded(run([fresh_venv / "bin" / "islandora-job", "--version"]))
    assert out == f"islandora-job {version}\n"


def test_the_docker_backend_without_the_extra_is_a_usage_error(
    fresh_venv: Path, tmp_path: Path
) -> None:
    (tmp_path / "test_it.py").write_text("def test_it(gearman_server): pass\n")
    result = run([fresh_venv / "bin" / "pytest", "--gearman-backend=docker"], cwd=tmp_path)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert result.stderr.strip() == (
        "ERROR: --gearman-backend / ini gearman_backend: docker needs the docker extra "
        "(testcontainers is not installed): pip install 'pytest-islandora-job[docker]', "
        "or use --gearman-backend=process"
    )
