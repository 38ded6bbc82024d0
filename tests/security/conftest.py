"""Another local user, for real: a throwaway unprivileged account made for the session.

The tests run as root (as CI does) and make an account with a random name (`useradd`), run
its attempts as that account (`runuser -u NAME -- /usr/bin/python3 SCRIPT ...`, the system
Python: the suite's own lives under /root), and remove it after (`userdel`). Not root: the
tests skip, saying so.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

SYSTEM_PYTHON = "/usr/bin/python3"


@dataclass
class OtherUser:
    """An unprivileged local account, and a shared directory (sticky, 1777, as /tmp is) where
    it and we both create names."""

    name: str
    uid: int
    gid: int
    shared: Path

    def command(self, *argv: str) -> list[str]:
        """argv run as this account."""
        return ["runuser", "-u", self.name, "--", *argv]

    def script(self, source: str) -> Path:
        """Write a Python script this account can read; returns its path."""
        path = self.shared / f"script-{secrets.token_hex(4)}.py"
        path.write_text(textwrap.dedent(source))
        path.chmod(0o644)
        return path

    def run(
        self, source: str, *args: str, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a Python script as this account; its output, whatever its exit status."""
        return subprocess.run(
            self.command(SYSTEM_PYTHON, str(self.script(source)), *args),
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def start(self, source: str, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
        """Start a Python script as this account (end it with `stop`)."""
        return subprocess.Popen(
            self.command(SYSTEM_PYTHON, str(self.script(source)), *args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
        )  # fmt: skip

    @staticmethod
    def stop(proc: subprocess.Popen[str]) -> None:
        """End what `start` started: runuser and the processes below it, by their PIDs (runuser
        forks, so killing it alone would leave the script running as the account)."""
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
        proc.kill()
        proc.wait()


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the other-user tests make a throwaway account: they need root (CI is root)")
    for tool in ("useradd", "userdel", "runuser"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found: the other-user tests need it (util-linux, passwd)")
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"{SYSTEM_PYTHON} not found: the other user runs its attempts with it")


@pytest.fixture(scope="session")
def other_user() -> Iterator[OtherUser]:
    """A throwaway unprivileged account (root only), removed with its processes after."""
    _require_root()
    name = f"pij-{secrets.token_hex(4)}"
    subprocess.run(
        ["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
         "/usr/sbin/nologin", "--user-group", name],
        check=True, capture_output=True,
    )  # fmt: skip
    shared = Path(tempfile.mkdtemp(prefix="pij-shared-"))
    shared.chmod(0o1777)
    entry = pwd.getpwnam(name)
    try:
        yield OtherUser(name, entry.pw_uid, entry.pw_gid, shared)
    finally:
        # The account's processes are the ones the tests started; each test stops its own,
        # and userdel refuses while one still runs: say so rather than leave the account.
        done = subprocess.run(["userdel", name], check=False, capture_output=True, text=True)
        shutil.rmtree(shared, ignore_errors=True)
        assert done.returncode == 0, f"userdel {name}: {done.stderr.strip()}"


@pytest.fixture
def shared_dir(other_user: OtherUser, tmp_path: Path) -> Iterator[Path]:
    """A fresh sticky 1777 directory for one test, like the system temp dir."""
    path = Path(tempfile.mkdtemp(prefix="t-", dir=other_user.shared))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)
