"""The package as a new user gets it: the sdist and wheel built from this tree, and a fresh
virtualenv with nothing but the wheel and its dependencies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 600  # building fetches the build backend into an isolated environment


def run(args: Sequence[str | Path], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command with none of this run's settings in its environment; its output is in
    the assertion message when it fails."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ISLANDORA_JOB_", "PYTEST_", "VIRTUAL_ENV", "PYTHONPATH"))
    }
    return subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    """The output of a command that must have exited 0."""
    assert result.returncode == 0, (
        f"{result.args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def _once(factory: pytest.TempPathFactory, name: str, make: Callable[[Path], object]) -> Path:
    """A directory made once per run, shared by its xdist workers: `make(directory)` fills it."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's own temp dir, above each worker's
    target = base / name
    with FileLock(f"{target}.lock"):
        if not (target / ".made").exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            make(target)
            (target / ".made").touch()
    return target


@dataclass(frozen=True)
class Dist:
    """The sdist and the wheel built from it."""

    sdist: Path
    wheel: Path


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """`python -m build` of this tree: the sdist, then the wheel built from the unpacked sdist
    (so the sdist holds all a build needs)."""
    out = _once(
        tmp_path_factory,
        "dist",
        lambda target: succeeded(run([sys.executable, "-m", "build", "--outdir", target, ROOT])),
    )
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Dist(sdist, wheel)


@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory, dist: Dist) -> Path:
    """A new virtualenv with the wheel installed (no extras), as `pip install` gives it."""

    def make(target: Path) -> None:
        succeeded(run([sys.executable, "-m", "venv", target / "venv"]))
        succeeded(run([target / "venv" / "bin" / "pip", "install", "-q", dist.wheel]))

    return _once(tmp_path_factory, "fresh-venv", make) / "venv"
