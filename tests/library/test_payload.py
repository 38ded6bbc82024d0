"""The wire format: {"func": name, "args": [...]} as JSON, results, failures, bad bytes."""

from __future__ import annotations

import json
import math

import pytest

import islandora_job
from islandora_job import payload
from islandora_job.payload import PayloadError


def test_encode_is_the_original_modules_json() -> None:
    data = payload.encode("add", [1, 2.5, "x"])
    assert json.loads(data) == {"func": "add", "args": [1, 2.5, "x"]}
    assert payload.decode(data, "add") == ("add", [1, 2.5, "x"])


def _reference(name: str, args: list[object], json_result: bool) -> bytes:
    obj: dict[str, object] = {"func": name, "args": args}
    if json_result:
        obj["result"] = "json"
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


@pytest.mark.parametrize("encoder", ["C", "pure Python"])
@pytest.mark.parametrize("json_result", [False, True])
@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("echo", [5]),
        ('quote " back\\slash\nnewline ☃', ("tuple", 2.5, None)),
        ("d", [{"k": [1, {"x": "ü\u2028"}]}, -0.0, 10**30]),
        ("empty", []),
    ],
)
def test_encode_writes_what_json_dumps_writes_with_either_encoder(
    monkeypatch: pytest.MonkeyPatch,
    encoder: str,
    json_result: bool,
    name: str,
    args: list[object],
) -> None:
    if encoder != "C":
        monkeypatch.setattr(payload, "_C_ENCODE", None)
    for _ in range(2):  # the cached start of a name's payload too
        data = payload.encode(name, args, json_result=json_result)
        assert data == _reference(name, list(args), json_result)


class _Caseless(str):
    """A name equal to any name that differs only in case."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.lower() == other.lower()

    def __hash__(self) -> int:
        return hash(self.lower())


def test_a_str_subclass_name_does_not_change_the_payload_of_a_name_it_equals() -> None:
    assert json.loads(payload.encode(_Caseless("ECHO"), [1]))["func"] == "ECHO"
    assert json.loads(payload.encode("echo", [1]))["func"] == "echo"
    assert json.loads(payload.encode(_Caseless("ECHO"), [1]))["func"] == "ECHO"


@pytest.mark.parametrize(
    "args",
    [
        ["nul\0byte", "new\nline", "naïve ☃ 漢字 🦀"],
        [{"nested": {"list": [None, True, False, -1, 1e300]}}],
        [],
    ],
)
def test_arguments_round_trip_intact(args: list[object]) -> None:
    assert payload.decode(payload.encode("echo", args), "echo") == ("echo", args)


def test_job_names_with_newlines_and_non_ascii_round_trip() -> None:
    name = "naïve\njob ☃"
    assert payload.decode(payload.encode(name, [1]), name) == (name, [1])


@pytest.mark.parametrize("bad", [object(), {1, 2}, b"bytes", math.nan, math.inf])
def test_arguments_json_cannot_encode_raise_type_error_saying_to_serialize(bad: object) -> None:
    with pytest.raises(TypeError, match="serialize them"):
        payload.encode("echo", [1, bad])


def test_circular_arguments_raise_type_error() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(TypeError, match="cannot be encoded as JSON"):
        payload.encode("echo", [loop])


@pytest.mark.parametrize(
    ("name", "error"), [("", ValueError), ("a\0b", ValueError), (3, TypeError)]
)
def test_bad_job_names_are_refused(name: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="job name"):
        payload.encode(name, [])  # type: ignore[arg-type]


def test_maximum_size_is_enforced_on_encode_and_decode() -> None:
    data = payload.encode("echo", ["x" * 100])
    with pytest.raises(
        PayloadError, match=r"more than the maximum of 50.*ISLANDORA_JOB_MAX_PAYLOAD"
    ):
        payload.encode("echo", ["x" * 100], max_size=50)
    with pytest.raises(PayloadError, match="more than the maximum of 50"):
        payload.decode(data, "echo", max_size=50)
    assert payload.decode(data, "echo", max_size=len(data)) == ("echo", ["x" * 100])


def test_the_codec_is_pure_and_the_client_takes_the_limit_of_its_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert islandora_job.settings().max_payload == 16 * 1024 * 1024
    monkeypatch.setenv("ISLANDORA_JOB_MAX_PAYLOAD", "64")
    # The codec never looks the limit up: its default is the 16 MiB constant.
    assert payload.decode(payload.encode("echo", ["x" * 64]), "echo")[1] == ["x" * 64]
    # A client resolves the settings once, when it is made, and keeps their limit.
    client = islandora_job.JobClient(servers="127.0.0.1:1")
    assert client.max_payload == 64
    with pytest.raises(PayloadError, match="maximum of 64"):
        client.submit_background("echo", "x" * 64)
    previous = islandora_job.configure(max_payload=1000)
    try:
        assert islandora_job.JobClient(servers="127.0.0.1:1").max_payload == 1000
        assert client.max_payload == 64
    finally:
        islandora_job.restore(previous)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'{"args": []}', 'no job name in "func"'),
        (b'{"func": "", "args": []}', 'no job name in "func"'),
        (b'{"func": 3, "args": []}', 'no job name in "func"'),
        (b'{"func": "echo"}', 'no list in "args"'),
        (b'{"func": "echo", "args": {"a": 1}}', 'no list in "args"'),
    ],
)
def test_bad_payloads_raise_payload_error_naming_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        payload.decode(data, "echo")


@pytest.mark.parametrize(
    "text",
    [
        '{"func":"echo","args":[1]}',
        ' \n{"func": "echo", "args": [1]}\t\r\n',
        '{"func":"echo","args":[1],"func":"echo"}',
        '{"func":"echo","args":[NaN, -Infinity, 1e400, "\\u2603"]}',
    ],
)
def test_payloads_decode_as_json_loads_reads_them(text: str) -> None:
    # What our encoders write takes a shorter way than json.loads; any JSON reads the same.
    expected = json.loads(text)
    name, args = payload.decode(text.encode(), "echo")
    assert (name, repr(args)) == (expected["func"], repr(expected["args"]))


@pytest.mark.parametrize(
    "data",
    [b'{"func":"echo","args":[]} x', b'{"func":"echo","args":[]}{}', b"\xef\xbb\xbf{}", b"[1,"],
)
def test_payloads_json_loads_refuses_are_refused_as_not_json(data: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(data.decode("utf-8"))
    with pytest.raises(PayloadError, match="not JSON"):
        payload.decode(data, "echo")


def test_a_payload_for_another_function_is_refused_naming_both() -> None:
    data = payload.encode("add", [1])
    with pytest.raises(PayloadError, match="names job 'add' but was sent on function 'hello'"):
        payload.decode(data, "hello")
    assert payload.decode(data, None) == ("add", [1])


def test_results_are_json() -> None:
    value = {"a": [1, "☃", None]}
    assert payload.decode_result(payload.encode_result(value)) == value
    assert payload.encode_result(None) == b"null"
    with pytest.raises(TypeError, match="JSON cannot encode"):
        payload.encode_result(object())
    with pytest.raises(PayloadError, match="not JSON"):
        payload.decode_result(b"plain text")


def test_failures_carry_the_exception_type_and_message() -> None:
    data = payload.encode_failure(ValueError("bad ☃"))
    assert json.loads(data) == {"type": "ValueError", "message": "bad ☃"}
    assert payload.decode_failure(data) == payload.RemoteFailure("ValueError", "bad ☃")


def test_foreign_failure_bytes_become_the_message() -> None:
    assert payload.decode_failure(b"segfault\n") == payload.RemoteFailure("", "segfault")
    assert payload.decode_failure(b"\xff") == payload.RemoteFailure("", "\ufffd")
