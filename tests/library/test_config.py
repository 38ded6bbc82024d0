"""Settings: environment variables, configure()/restore(), the child's environment."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import islandora_job
from islandora_job import config
from islandora_job.config import Overrides, Settings

ENV = (
    "ISLANDORA_JOB_SERVERS",
    "ISLANDORA_JOB_TEMP_DIR",
    "ISLANDORA_JOB_MODULES",
    "ISLANDORA_JOB_MAX_PAYLOAD",
)


@pytest.fixture(autouse=True)
def pristine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No override, no layer (a server fixture of this session may hold one) and no
    environment variable: the defaults."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(config, "_layers", [])
    monkeypatch.setattr(config, "_layered", Overrides())
    previous = islandora_job.configure()
    islandora_job.restore(Overrides())
    yield
    islandora_job.restore(previous)


def test_defaults() -> None:
    assert islandora_job.settings() == Settings(
        servers=("127.0.0.1:4730",),
        temp_dir=Path(tempfile.gettempdir(), f"islandora-job-{os.getuid()}").absolute(),
        modules=(),
        max_payload=16 * 1024 * 1024,
    )


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ISLANDORA_JOB_SERVERS", " gm1:4731, gm2 ,[::1]:4732")
    monkeypatch.setenv("ISLANDORA_JOB_TEMP_DIR", str(tmp_path))
    monkeypatch.setenv("ISLANDORA_JOB_MODULES", "a.jobs, b.jobs,,")
    monkeypatch.setenv("ISLANDORA_JOB_MAX_PAYLOAD", "1024")
    assert islandora_job.settings() == Settings(
        servers=("gm1:4731", "gm2:4730", "[::1]:4732"),
        temp_dir=tmp_path,
        modules=("a.jobs", "b.jobs"),
        max_payload=1024,
    )


@pytest.mark.parametrize(
    ("variable", "value", "fix"),
    [
        *(
            ("ISLANDORA_JOB_SERVERS", v, "host:port")
            for v in ["gm1:port", "gm1:0", "gm1:70000", ":4730", ","]
        ),
        *(
            ("ISLANDORA_JOB_MAX_PAYLOAD", v, "positive number of bytes")
            for v in ["0", "-5", "lots"]
        ),
        *(
            ("ISLANDORA_JOB_TIMEOUT", v, "positive, finite")
            for v in ["inf", "nan", "-1", "0", "soon"]
        ),
    ],
)
def test_a_malformed_setting_in_the_environment_names_the_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fix: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=rf"{variable}: .*{re.escape(fix)}"):
        islandora_job.settings()


def test_configure_overrides_the_environment_and_restore_undoes_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ISLANDORA_JOB_SERVERS", "env-host:4731")
    monkeypatch.setenv("ISLANDORA_JOB_MODULES", "env.jobs")
    first = islandora_job.configure(servers=["code-host:1"], temp_dir=tmp_path)
    assert first == Overrides()
    second = islandora_job.configure(modules=["code.jobs"], max_payload=10)
    assert islandora_job.settings() == Settings(("code-host:1",), tmp_path, ("code.jobs",), 10)
    islandora_job.restore(second)
    assert islandora_job.settings().modules == ("env.jobs",)
    assert islandora_job.settings().servers == ("code-host:1",)
    islandora_job.restore(first)
    assert islandora_job.settings().servers == ("env-host:4731",)


def test_configure_takes_a_comma_separated_string_too() -> None:
    islandora_job.configure(servers="a:1,b:2", modules="x.jobs, y.jobs")
    assert islandora_job.settings().servers == ("a:1", "b:2")
    assert islandora_job.settings().modules == ("x.jobs", "y.jobs")


@pytest.mark.parametrize(
    "kwargs",
    [{"servers": ["ok:1", "bad:port"]}, {"servers": []}, {"max_payload": 0}, {"modules": [3]}],
)
def test_configure_with_a_malformed_value_changes_nothing(kwargs: dict[str, object]) -> None:
    before = islandora_job.settings()
    with pytest.raises(ValueError):
        islandora_job.configure(**kwargs)  # type: ignore[arg-type]
    assert islandora_job.settings() == before


def test_settings_env_gives_a_child_the_same_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    islandora_job.configure(servers=["h:5"], temp_dir=tmp_path, modules=["m.jobs"], max_payload=99)
    resolved = islandora_job.settings()
    env = config.settings_env(resolved)
    islandora_job.restore(Overrides())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert islandora_job.settings() == resolved


def test_relative_temp_dir_is_made_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    islandora_job.configure(temp_dir="rel")
    assert islandora_job.settings().temp_dir == tmp_path / "rel"


def test_a_relative_temp_dir_from_the_environment_follows_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.setenv("ISLANDORA_JOB_TEMP_DIR", "rel")
    monkeypatch.chdir(tmp_path / "a")
    assert islandora_job.settings().temp_dir == tmp_path / "a" / "rel"
    monkeypatch.chdir(tmp_path / "b")
    assert islandora_job.settings().temp_dir == tmp_path / "b" / "rel"
    monkeypatch.setenv("ISLANDORA_JOB_TEMP_DIR", str(tmp_path / "abs"))
    assert islandora_job.settings().temp_dir == tmp_path / "abs"


def test_layers_sit_beneath_configure_and_end_in_any_order(monkeypatch) -> None:
    monkeypatch.setenv("ISLANDORA_JOB_SERVERS", "env-host:1")
    first, second = config.layered(servers=["first:1"]), config.layered(servers=["second:2"])
    first.__enter__()
    second.__enter__()
    assert config.settings().servers == ("second:2",)
    previous = config.configure(servers=["mine:3"])
    assert config.settings().servers == ("mine:3",)
    first.__exit__(None, None, None)  # ends before the newer layer: the newer one stays
    config.restore(previous)
    assert config.settings().servers == ("second:2",)
    second.__exit__(None, None, None)
    assert config.settings().servers == ("env-host:1",)
