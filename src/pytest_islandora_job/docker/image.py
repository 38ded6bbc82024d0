"""Images built from the shipped Dockerfile: once per machine, tagged by content.

The tag holds a hash of the Dockerfile and of the base image it builds FROM, so a changed
Dockerfile gets a new image and an unchanged one is never built twice. A machine-wide file lock
makes concurrent runs and xdist workers wait for the one build instead of repeating it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

from pytest_islandora_job.readiness import ServerStartError

if TYPE_CHECKING:
    from testcontainers.core.docker_client import DockerClient

DOCKERFILE = Path(__file__).with_name("Dockerfile")
TARGETS = ("gearmand", "mariadb", "postgres")
REPOSITORY = "pytest-islandora-job"
# A Debian bookworm image to build FROM instead of debian:bookworm-slim (where no registry is).
BASE_IMAGE_VAR = "ISLANDORA_JOB_DOCKER_BASE_IMAGE"
BUILD_TIMEOUT = 900.0
LOCK_PATH = Path(tempfile.gettempdir()) / "pytest-islandora-job-docker-build.lock"


def base_image() -> str | None:
    """The base image named by ISLANDORA_JOB_DOCKER_BASE_IMAGE, or None for the default."""
    return os.environ.get(BASE_IMAGE_VAR) or None


def image_tag(target: str) -> str:
    """The tag of one Dockerfile target's image: repository/target:content-hash."""
    digest = hashlib.sha256(DOCKERFILE.read_bytes())
    digest.update(f"\0{base_image() or ''}".encode())
    return f"{REPOSITORY}/{target}:{digest.hexdigest()[:12]}"


def _context() -> io.BytesIO:
    # Only the Dockerfile goes to the engine: it copies nothing from the context.
    data = DOCKERFILE.read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def _exists(engine: DockerClient, tag: str) -> bool:
    import docker.errors

    try:
        engine.client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_image(engine: DockerClient, target: str) -> str:
    """The tag of `target`'s image, built from the shipped Dockerfile unless it exists.

    Raises ValueError for an unknown target and ServerStartError, with the end of the build
    log and the fixes, when the build fails (for instance when the base image is missing and
    no registry can be reached).
    """
    if target not in TARGETS:
        raise ValueError(f"unknown Dockerfile target {target!r}; use one of {', '.join(TARGETS)}")
    tag = image_tag(target)
    if _exists(engine, tag):
        return tag
    with FileLock(LOCK_PATH):
        if not _exists(engine, tag):
            build(target, tag)
            _remove_older(engine, target, tag)
    return tag


def _remove_older(engine: DockerClient, target: str, tag: str) -> None:
    # Images of earlier Dockerfiles would pile up; one a container still uses stays.
    import docker.errors

    for found in engine.client.images.list(name=f"{REPOSITORY}/{target}"):
        for old in found.tags:
            if old != tag:
                with contextlib.suppress(docker.errors.APIError):
                    engine.client.images.remove(old)


def build(target: str, tag: str) -> None:
    """Build one target of the shipped Dockerfile as `tag`; raises ServerStartError on failure."""
    import docker.errors

    from pytest_islandora_job.docker import connect

    base = base_image()
    builder = connect(timeout=BUILD_TIMEOUT)
    try:
        builder.client.images.build(
            fileobj=_context(),
            custom_context=True,
            tag=tag,
            target=target,
            buildargs={"BASE_IMAGE": base} if base else None,
            rm=True,
            forcerm=True,
        )
    except docker.errors.BuildError as exc:
        lines = [
            (chunk.get("stream") or chunk.get("error") or "").strip() for chunk in exc.build_log
        ]
        log = "\n".join(line for line in lines if line)[-3000:]
        raise ServerStartError(
            f"docker build of {tag} (target {target} of {DOCKERFILE}) failed: {exc.msg}\n{log}\n"
            f"FROM {base or 'debian:bookworm-slim'}: where no registry is reachable, import a "
            f"Debian bookworm image and name it in {BASE_IMAGE_VAR} (scripts/docker-up does "
            "both), or give --gearman-image NAME"
        ) from None
    except docker.errors.APIError as exc:
        raise ServerStartError(f"docker build of {tag} failed: {exc.explanation or exc}") from None
    finally:
        builder.client.close()
