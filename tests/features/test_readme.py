"""The README's examples of priorities, unique ids, progress, batches, asyncio and managed
workers, extracted from README.md and run against a real gearmand and real workers.

A block runs when the line before its fence is `<!-- readme-example[: KIND] -->`: KIND
"no worker" runs before any worker starts, "job module NAME" is written out as NAME.py and
served by the workers, "shell" runs in bash (-e: every command must succeed), none runs with
a worker serving the jobs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import islandora_job
from islandora_job import workers
from islandora_job.config import settings_env
from pytest_islandora_job.servers.base import GearmanServer
from pytest_islandora_job.workerpool import WorkerPool, pool_settings
from tests.features.conftest import MODULES

README = Path(__file__).resolve().parents[2] / "README.md"
_EXAMPLE = re.compile(
    r"^<!-- readme-example(?:: (?P<kind>[^>]*?))? -->\n```(?P<lang>\w+)\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)


def examples() -> list[tuple[str, str]]:
    """(kind, code) of every marked README block, in order."""
    return [(m["kind"] or "", m["code"]) for m in _EXAMPLE.finditer(README.read_text())]


def test_the_readme_marks_its_examples() -> None:
    assert [kind for kind, _ in examples()] == [
        "no worker",
        "job module myjobs",
        "",
        "",
        "",
        "shell",
    ]


def test_the_readme_examples_run(
    gearman_server: GearmanServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = examples()
    modules = [*MODULES]
    for kind, code in blocks:
        if kind.startswith("job module "):
            name = kind.removeprefix("job module ")
            (tmp_path / f"{name}.py").write_text(code)
            modules.append(name)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), *sys.path]))
    temp_dir = tmp_path / "run"
    temp_dir.mkdir()
    pool = WorkerPool(pool_settings([gearman_server.address], modules, temp_dir))
    with islandora_job.configured(
        servers=[gearman_server.address], modules=modules, temp_dir=temp_dir
    ):
        try:
            for kind, code in blocks:
                if kind == "shell":
                    _run_shell(code, settings_env(islandora_job.settings()))
                elif not kind.startswith("job module "):
                    if kind != "no worker" and not len(pool):
                        pool.start(1)
                    exec(compile(code, f"{README}:{kind or 'example'}", "exec"), {})
        finally:
            pool.stop()
            workers.stop_workers(grace=5)
            # The README's job module names are common ones ("myjobs"): leave none of them
            # imported for another test of this process, whose own module has that name.
            for name in modules[len(MODULES) :]:
                sys.modules.pop(name, None)


def _run_shell(code: str, env: dict[str, str]) -> None:
    bin_dir = str(Path(sys.executable).parent)
    done = subprocess.run(
        ["bash", "-e", "-c", code],
        env={**os.environ, **env, "PATH": bin_dir + os.pathsep + os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "started 2 managed workers"
    assert "2" in lines
    assert sum("ok: pid" in line for line in lines) >= 2
    assert "3" in lines and lines[-1] == "stopped 2 managed workers"
