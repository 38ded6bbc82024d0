"""The shipped Dockerfile's images: tagged by content, built once, and a missing base image
explained."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest

from pytest_islandora_job.docker import image
from pytest_islandora_job.servers import ServerStartError


def test_the_tag_hashes_the_dockerfile_and_the_base_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(image.BASE_IMAGE_VAR, raising=False)
    default = image.image_tag("gearmand")
    digest = hashlib.sha256(image.DOCKERFILE.read_bytes() + b"\0").hexdigest()[:12]
    assert default == f"pytest-islandora-job/gearmand:{digest}"
    assert image.image_tag("mariadb") == f"pytest-islandora-job/mariadb:{digest}"
    monkeypatch.setenv(image.BASE_IMAGE_VAR, "local/bookworm:minbase")
    assert image.image_tag("gearmand") != default


def test_the_dockerfile_builds_from_an_overridable_debian_bookworm_base() -> None:
    text = image.DOCKERFILE.read_text()
    assert "ARG BASE_IMAGE=debian:bookworm-slim\n" in text
    assert "FROM ${BASE_IMAGE} AS bookworm\n" in text
    for target in image.TARGETS:
        assert f" AS {target}\n" in text


def test_an_existing_image_is_not_built_again(docker_engine: Any) -> None:
    tag = image.ensure_image(docker_engine, "gearmand")
    started = time.monotonic()
    assert image.ensure_image(docker_engine, "gearmand") == tag
    assert time.monotonic() - started < 1.0
    assert tag in docker_engine.client.images.get(tag).tags


def test_an_unknown_target_is_refused(docker_engine: Any) -> None:
    with pytest.raises(ValueError, match="unknown Dockerfile target 'redis'"):
        image.ensure_image(docker_engine, "redis")


def test_a_base_image_that_cannot_be_found_says_how_to_make_one(
    docker_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(image.BASE_IMAGE_VAR, "pytest-islandora-job/no-such-base:none")
    with pytest.raises(ServerStartError) as info:
        image.ensure_image(docker_engine, "gearmand")
    message = str(info.value)
    assert "FROM pytest-islandora-job/no-such-base:none" in message
    assert image.BASE_IMAGE_VAR in message
    assert "scripts/docker-up" in message
    assert "--gearman-image" in message
