"""The wire format, as in the original module: JSON in, JSON out, never pickle.

A job's payload is the JSON object {"func": job_name, "args": [...]} sent on the Gearman
function named after the job; its result is the JSON of the returned value; a failure is
{"type": "ValueError", "message": "..."}.

The codec is pure: the size limit is an argument (16 MiB unless given), never looked up;
callers pass the limit of the settings they were handed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from islandora_job.config import DEFAULT_MAX_PAYLOAD, ENV_MAX_PAYLOAD


class PayloadError(ValueError):
    """Bytes that are not a valid payload or result; the message says what is wrong."""


@dataclasses.dataclass(frozen=True)
class RemoteFailure:
    """Why a job failed on the worker: the exception type name and its message."""

    type: str
    message: str


def check_job_name(job_name: object) -> str:
    """Return the name when it can be a Gearman function name; ValueError/TypeError if not."""
    if not isinstance(job_name, str):
        raise TypeError(f"a job name must be a str, not {type(job_name).__name__}")
    if not job_name:
        raise ValueError("the job name is empty: give the name a module registered")
    if "\0" in job_name:
        raise ValueError(
            f"job name {job_name!r} contains a NUL byte, which the Gearman protocol cannot carry"
        )
    return job_name


def _too_large(what: str, size: int, limit: int) -> PayloadError:
    return PayloadError(
        f"{what} is {size} bytes, more than the maximum of {limit}: send smaller arguments "
        f"(e.g. a file path instead of the content) or raise {ENV_MAX_PAYLOAD}"
    )


# allow_nan=False: NaN and Infinity are not JSON, and other languages reject them. One
# encoder for every payload: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _dumps(value: object) -> bytes:
    return _ENCODER.encode(value).encode()


def encode(job_name: str, args: Sequence[object], *, max_size: int = DEFAULT_MAX_PAYLOAD) -> bytes:
    """Encode a job's payload.

    Raises TypeError when an argument cannot be encoded as JSON (serialize it first),
    ValueError for a bad job name and PayloadError when the payload is over the maximum size.
    """
    check_job_name(job_name)
    try:
        data = _dumps({"func": job_name, "args": list(args)})
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the arguments of job {job_name!r} cannot be encoded as JSON ({exc}): serialize "
            "them to JSON types first (dict, list, str, int, float, bool, None)"
        ) from None
    if len(data) > max_size:
        raise _too_large(f"the payload of job {job_name!r}", len(data), max_size)
    return data


def _load_json(data: bytes, what: str, limit: int) -> object:
    if not data:
        raise PayloadError(f"{what} is empty: expected JSON")
    if len(data) > limit:
        raise _too_large(what, len(data), limit)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"{what} is not UTF-8 text ({exc}): expected JSON") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PayloadError(f"{what} is not JSON ({exc}): {text[:80]!r}") from None


def decode(
    data: bytes, expected_function: str | None, *, max_size: int = DEFAULT_MAX_PAYLOAD
) -> tuple[str, list[object]]:
    """Decode a payload into (job name, args).

    expected_function is the Gearman function the payload arrived on (None: not known).
    Raises PayloadError when the bytes are empty, too large, not UTF-8, not JSON, not
    {"func": str, "args": list}, or name a job other than expected_function.
    """
    obj = _load_json(data, "the payload", max_size)
    shape = 'expected {"func": "job name", "args": [...]}'
    if not isinstance(obj, dict):
        raise PayloadError(f"the payload is a JSON {type(obj).__name__}, not an object: {shape}")
    func, args = obj.get("func"), obj.get("args")
    if not isinstance(func, str) or not func:
        raise PayloadError(f'the payload has no job name in "func": {shape}')
    if not isinstance(args, list):
        raise PayloadError(f'the payload of job {func!r} has no list in "args": {shape}')
    if expected_function is not None and func != expected_function:
        raise PayloadError(
            f"the payload names job {func!r} but was sent on function {expected_function!r}: "
            "submit each job on the function of the same name"
        )
    return func, args


def encode_result(value: object) -> bytes:
    """Encode a job's return value; TypeError when JSON cannot encode it."""
    try:
        return _dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the job returned a value JSON cannot encode ({exc}): return JSON types "
            "(dict, list, str, int, float, bool, None)"
        ) from None


def decode_result(data: bytes, *, max_size: int = DEFAULT_MAX_PAYLOAD) -> object:
    """Decode a job's result; PayloadError when it is not JSON or over ``max_size``."""
    return _load_json(data, "the job's result", max_size)


def encode_failure(exc: BaseException) -> bytes:
    """Encode why a job failed: {"type": exception class name, "message": str(exc)}."""
    return _dumps({"type": type(exc).__name__, "message": str(exc)})


def decode_failure(data: bytes) -> RemoteFailure:
    """Decode a failure; bytes from a foreign worker that are not ours become the message."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except ValueError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("type"), str):
        return RemoteFailure(obj["type"], str(obj.get("message", "")))
    return RemoteFailure("", data.decode("utf-8", errors="replace").strip())
