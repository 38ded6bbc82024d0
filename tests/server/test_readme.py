"""The README's test-control examples, run as written on the embedded backend."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks() -> dict[str, str]:
    """Python blocks of the embedded server's section, by the file name on their first line."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## The embedded Gearman server", 1)[1].split("\n## ", 1)[0]
    found = {}
    for block in re.findall(r"```python\n(.*?)```", section, re.DOTALL):
        name = re.match(r"# (\S+\.py)", block)
        assert name, f"a README block names no file: {block[:60]!r}"
        found[name.group(1)] = block
    return found


def test_the_readme_examples_pass(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    blocks = _blocks()
    assert set(blocks) == {"myjobs.py", "test_controls.py"}
    for name, code in blocks.items():
        (pytester.path / name).write_text(code, encoding="utf-8")
    pytester.makeini("[pytest]\nislandora_job_modules = myjobs\n")
    monkeypatch.setenv(
        "PYTHONPATH", str(pytester.path) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    for name in ("ISLANDORA_JOB_SERVERS", "ISLANDORA_JOB_TEMP_DIR", "ISLANDORA_JOB_MODULES"):
        monkeypatch.delenv(name, raising=False)
    # In process: a "myjobs" another test imported must not stand in for this one.
    monkeypatch.delitem(sys.modules, "myjobs", raising=False)
    result = pytester.runpytest("--gearman-backend=embedded")
    result.assert_outcomes(passed=2)
