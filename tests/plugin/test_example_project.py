"""The example project (examples/derivatives) works as a user's project would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from islandora_job.registry import load_registry

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "derivatives"


def test_its_jobs_are_found_through_the_entry_point():
    jobs = load_registry(modules=[]).jobs
    assert jobs["derivatives_checksum"].module == "islandora_derivatives.jobs"


def test_its_own_suite_passes_with_the_fixtures(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(EXAMPLE / "pyproject.toml"),
            str(EXAMPLE / "tests"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
