"""Data directory templates: made once per run, copied for every throwaway server.

The xdist workers of one run share a template under a file lock; the process that built it
removes it at exit (an atexit hook), and templates of killed runs are swept by the next build.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import filelock

from pytest_islandora_job import processes
from pytest_islandora_job.databases.scratch import area, server_dir, sweep
from pytest_islandora_job.readiness import ServerStartError

TEMPLATE_BUILD_TIMEOUT = 180.0


def templates_dir() -> Path:
    """Where the templates are (made and checked, see `scratch.area`)."""
    return area("templates")


_made_templates: list[tuple[str, Path]] = []


def _copy_tree(source: Path, dest: Path) -> None:
    # cp -a keeps owners and modes (the database user's, when running as root) and is about
    # twice as fast as shutil.copytree on a data directory of a thousand files.
    done = subprocess.run(
        ["cp", "-a", "--", str(source), str(dest)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ServerStartError(
            f"cannot copy the database template {source} to {dest}: {done.stderr.strip()}"
        )


def _run_key() -> str:
    # xdist workers of one run share PYTEST_XDIST_TESTRUNUID, so they share the template.
    return os.environ.get("PYTEST_XDIST_TESTRUNUID") or processes.run_tag().replace(":", "-")


def _template_lock(key: str, timeout: float = TEMPLATE_BUILD_TIMEOUT) -> filelock.FileLock:
    return filelock.FileLock(templates_dir() / f"{key}.lock", timeout=timeout)


def remove_made_templates() -> None:
    """Remove the templates this process built (runs at exit)."""
    for key, path in _made_templates:
        with _template_lock(key, timeout=30):
            shutil.rmtree(path, ignore_errors=True)


atexit.register(remove_made_templates)


def copy_template(
    key: str,
    build: Callable[[Path, Path], None],
    dest: Path,
    user: pwd.struct_passwd | None,
) -> None:
    """Copy the data directory template `key` of this run to `dest`, building it first if no
    process of the run has: `build(datadir, log_path)` makes it. The process that built a
    template removes it at exit; a later copy builds it again.

    Raises ServerStartError when the copy fails, and whatever `build` raises.
    """
    templates = templates_dir()
    path = templates / f"{key}-{_run_key()}"
    # One lock per template kind, shared by every run: lock files never pile up. Under it,
    # no one copies this kind, so templates of killed runs can go.
    with _template_lock(key):
        if not (path / "data").is_dir():
            sweep(templates, f"{key}-")
            shutil.rmtree(path, ignore_errors=True)
            made = server_dir(templates, f"{path.name}.", user)
            try:
                build(made / "data", made / "build.log")
                made.rename(path)
            except BaseException:
                shutil.rmtree(made, ignore_errors=True)
                raise
            _made_templates.append((key, path))
        _copy_tree(path / "data", dest)
