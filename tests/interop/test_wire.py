"""The wire format of results and multisite functions, without a server: echo text as PHP
prints it, the JSON request key, the site prefix, and the settings that choose them."""

from __future__ import annotations

import json
import math
import subprocess

import pytest

import islandora_job
from islandora_job import payload
from islandora_job.config import ENV_RESULTS, ENV_SITE, settings, settings_env
from islandora_job.gearman.protocol import AdminDecoder, AdminReply, ProtocolError
from islandora_job.workers import gearman_cli_command

from .conftest import PEER_TIMEOUT, PEERS, PHP, needs_php

FLOATS = [0.1, 2.5, 100.0, -0.0, 0.1 + 0.2, 1e20, 1.5e-7, 1e14, 1e15, 0.0001, 0.00001]
FLOATS += [123456789012345678.0, math.pi, -2.75e-300, 1.7976931348623157e308]


@needs_php
def test_floats_are_echoed_as_php_prints_them() -> None:
    assert PHP is not None
    specials = ["INF", "-INF", "NAN"]
    done = subprocess.run(
        [PHP, str(PEERS / "floats.php"), json.dumps([*FLOATS, *specials])],
        capture_output=True,
        text=True,
        timeout=PEER_TIMEOUT,
        check=True,
    )
    values = [*FLOATS, math.inf, -math.inf, math.nan]
    assert [payload.php_float(v) for v in values] == done.stdout.splitlines()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("Hello Danny", b"Hello Danny"),
        ("Grüße", "Grüße".encode()),
        ("", b""),
        (None, b""),
        (b"\x00\xff", b"\x00\xff"),
        (bytearray(b"ab"), b"ab"),
        (True, b"1"),
        (False, b""),
        (0, b"0"),
        (-42, b"-42"),
        (2.5, b"2.5"),
        ([1, "é", None], '[1,"é",null]'.encode()),
        ({"a": {"b": False}}, b'{"a":{"b":false}}'),
    ],
)
def test_echo_text_per_type(value: object, text: bytes) -> None:
    assert payload.encode_text_result(value) == text


def test_echo_text_refuses_what_json_cannot_encode() -> None:
    with pytest.raises(TypeError, match="JSON types"):
        payload.encode_text_result({1, 2})
    with pytest.raises(TypeError, match="not valid Unicode"):
        payload.encode_text_result("\ud800")


def test_our_client_asks_for_json_and_the_original_payload_does_not() -> None:
    ours = payload.encode("hello", ["a"], json_result=True)
    assert json.loads(ours) == {"func": "hello", "args": ["a"], "result": "json"}
    assert payload.decode_job(ours, "hello") == ("hello", ["a"], True)
    original = b'{"func":"hello","args":["a"],"site":"http://localhost","uid":1}'
    assert payload.decode_job(original, "hello") == ("hello", ["a"], False)
    assert payload.decode(ours, "hello") == ("hello", ["a"])


def test_site_prefix() -> None:
    assert payload.gearman_function("hello", None) == "hello"
    assert payload.gearman_function("hello", "site1") == "site1_hello"
    data = payload.encode("hello", [])
    assert payload.decode_job(data, "site1_hello", site="site1")[0] == "hello"
    with pytest.raises(payload.PayloadError, match="site1_<job> of site 'site1'"):
        payload.decode_job(data, "hello", site="site1")
    with pytest.raises(payload.PayloadError, match="was sent on function 'site1_hello'"):
        payload.decode_job(data, "site1_hello")


def test_text_results_are_exact_and_json_ones_say_how_to_read_text() -> None:
    assert payload.decode_text_result(b"42") == "42"
    assert payload.decode_text_result(b"") == ""
    with pytest.raises(payload.PayloadError, match="not UTF-8"):
        payload.decode_text_result(b"\xff")
    with pytest.raises(payload.PayloadError, match="more than the maximum"):
        payload.decode_text_result(b"abc", max_size=2)
    for foreign in (b"Hello Danny", b""):
        with pytest.raises(payload.PayloadError, match=f"results='text' .{ENV_RESULTS}=text"):
            payload.decode_result(foreign)


def test_settings_from_configure_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_RESULTS, raising=False)
    monkeypatch.delenv(ENV_SITE, raising=False)
    assert (settings().results, settings().site) == ("json", None)
    monkeypatch.setenv(ENV_RESULTS, "text")
    monkeypatch.setenv(ENV_SITE, "site1")
    assert (settings().results, settings().site) == ("text", "site1")
    with islandora_job.configured(results="json", site=""):
        # "" is an explicit "no site", beating the environment.
        assert (settings().results, settings().site) == ("json", None)
        assert settings_env(settings())[ENV_SITE] == ""
    with islandora_job.configured(site="site2"):
        assert settings_env(settings())[ENV_SITE] == "site2"
        client = islandora_job.JobClient()
        assert (client.results, client.site) == ("text", "site2")
        assert islandora_job.JobClient(results="json", site="").site is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (ENV_RESULTS, "xml", "unknown results mode 'xml'"),
        (ENV_SITE, "my site", "site .my site. holds whitespace"),
    ],
)
def test_malformed_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"{name}: {message}"):
        settings()


def test_malformed_configure_changes_nothing() -> None:
    with pytest.raises(ValueError, match=r"'json'.*'text'"):
        islandora_job.configure(results="JSON")
    with pytest.raises(ValueError, match="NUL"):
        islandora_job.configure(site="a\0b")
    with pytest.raises(ValueError, match="unknown results mode"):
        islandora_job.JobClient(results="raw")


def test_the_c_tool_worker_serves_the_site_functions() -> None:
    command = gearman_cli_command(["hello", "add"], "site1")
    assert command[command.index("-w") + 1 : command.index("--")] == [
        "-f",
        "site1_hello",
        "-f",
        "site1_add",
    ]


def test_admin_version_may_be_a_bare_line() -> None:
    decoder = AdminDecoder()
    decoder.expect(False, bare=True)
    decoder.expect(False, bare=True)
    decoder.expect(False, bare=True)
    replies = decoder.feed(b"v1.130.1\nOK 1.1.20\r\nERR UNKNOWN_COMMAND x\n")
    assert replies == [
        AdminReply(True, ("v1.130.1",)),
        AdminReply(True, ("1.1.20",)),
        AdminReply(False, ("UNKNOWN_COMMAND", "x")),
    ]
    decoder.expect(False, bare=True)
    with pytest.raises(ProtocolError, match="neither"):
        decoder.feed(b"HELLO\n")
    strict = AdminDecoder()
    strict.expect(False)
    with pytest.raises(ProtocolError, match="neither"):
        strict.feed(b"v1.130.1\n")
