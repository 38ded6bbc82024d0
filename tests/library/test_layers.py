"""The job library knows nothing of pytest: it imports neither pytest nor the plugin."""

from __future__ import annotations

import subprocess
import sys


def test_the_library_imports_no_pytest_and_no_plugin() -> None:
    code = (
        "import sys, islandora_job, islandora_job.cli, islandora_job.queue, islandora_job.dsn\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest', "
        "'pytest_islandora_job')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
