"""Without Docker: one line saying what was looked for and the ways out; the process backend
never needs the Docker SDK."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pytest_islandora_job.config import ServerSettings
from pytest_islandora_job.docker import DockerUnavailable
from pytest_islandora_job.servers import ServerStartError, make_servers


def test_no_engine_at_docker_host_is_one_line_with_the_ways_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    socket = f"unix://{tmp_path}/no-such-docker.sock"
    monkeypatch.setenv("DOCKER_HOST", socket)
    [server] = make_servers(ServerSettings(backend="docker"), tmp_path)
    try:
        with pytest.raises(DockerUnavailable) as info:
            server.start()
    finally:
        server.close()
    message = str(info.value)
    assert isinstance(info.value, ServerStartError)
    assert "\n" not in message
    assert message.startswith(f"Docker is unavailable: no engine answers at {socket} (DOCKER_HOST)")
    assert "start Docker" in message
    assert "--gearman-backend=process" in message
    assert "--gearman-backend=external --gearman-servers=HOST:PORT" in message


def test_the_process_backend_never_imports_docker(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import pytest_islandora_job.plugin\n"
        "from pytest_islandora_job.config import ServerSettings\n"
        "from pytest_islandora_job.servers import make_servers\n"
        "[server] = make_servers(ServerSettings(queue='sqlite'), Path(sys.argv[1]))\n"
        "server.start()\n"
        "server.close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('docker', 'testcontainers')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
