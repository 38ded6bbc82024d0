"""`make demo` without root: apt is skipped and the demo runs on the embedded server."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
needs_root_tools = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("runuser") is None,
    reason="needs root, unshare and runuser to play a machine without gearmand, root or sudo",
)


@needs_root_tools
@pytest.mark.skipif(shutil.which("sudo") is not None, reason="sudo is installed here")
def test_without_root_or_sudo_make_demo_skips_apt() -> None:
    done = subprocess.run(
        ["runuser", "-u", "nobody", "--", "make", "-n", "-C", str(REPO), "demo"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "apt cannot run here (not root, no sudo)" in done.stdout
    assert "apt-get" not in done.stdout
    assert "examples/demo.py" in done.stdout
    as_root = subprocess.run(
        ["make", "-n", "-C", str(REPO), "demo"], capture_output=True, text=True, timeout=60
    )
    assert "apt-get" in as_root.stdout


@needs_root_tools
@pytest.mark.skipif(
    importlib.util.find_spec("islandora_derivatives") is None,
    reason="the example package is not installed (make demo installs it)",
)
def test_the_demo_runs_on_the_embedded_server_where_gearmand_is_missing() -> None:
    demo = REPO / "examples" / "demo.py"
    script = f"mount -t tmpfs tmpfs /usr/sbin && exec {sys.executable} {demo}"
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gearmand is not installed (/usr/sbin/gearmand not found): using the embedded" in (
        done.stdout
    )
    assert "batch of 3 -> True" in done.stdout
    assert "embedded server stopped; nothing left running" in done.stdout
