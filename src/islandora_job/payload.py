"""The wire format, as in the original module: JSON in, never pickle.

A job's payload is the JSON object {"func": job_name, "args": [...]} sent on the Gearman
function named after the job (`{site}_{job}` on a multisite install); a failure is
{"type": "ValueError", "message": "..."}. Results: the original's router echoes the job's
return value as text, and so does our worker for any client; our own client adds
`"result": "json"` to the payload, and our worker then answers with the JSON of the value.

The codec is pure: limits and modes are arguments (the size limit is 16 MiB unless given),
never looked up; callers pass those of the settings they were handed.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Sequence
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from json.scanner import make_scanner
from typing import cast

from islandora_job.config import DEFAULT_MAX_PAYLOAD, ENV_MAX_PAYLOAD, ENV_RESULTS
from islandora_job.gearman.protocol import function_name

# The payload key by which our client asks our worker for a JSON result (the original
# module's router ignores keys it does not know).
RESULT_KEY = "result"
RESULT_JSON = "json"


class PayloadError(ValueError):
    """Bytes that are not a valid payload or result; the message says what is wrong."""


@dataclasses.dataclass(frozen=True)
class RemoteFailure:
    """Why a job failed on the worker: the exception type name and its message."""

    type: str
    message: str


def check_job_name(job_name: object) -> str:
    """Return the name when it can be a Gearman function name; ValueError/TypeError if not."""
    function_name(job_name, "job name")  # TypeError unless a str
    return cast(str, job_name)


def gearman_function(job_name: str, site: str | None) -> str:
    """The Gearman function of a job: the job name, prefixed `{site}_` on a multisite install."""
    return f"{site}_{job_name}" if site else job_name


def _too_large(what: str, size: int, limit: int) -> PayloadError:
    return PayloadError(
        f"{what} is {size} bytes, more than the maximum of {limit}: send smaller arguments "
        f"(e.g. a file path instead of the content) or raise {ENV_MAX_PAYLOAD}"
    )


def _not_json(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# allow_nan=False: NaN and Infinity are not JSON, and other languages reject them. One
# encoder for every payload: json.dumps (and JSONEncoder.encode) build a new one per call,
# which is most of the cost of a small payload. Without a table of the containers being
# encoded (markers None, which also keeps it safe to share between threads) a value that
# contains itself raises RecursionError, reported as such below. The C encoder is given
# its indent level by position: through functools.partial, or by keyword, the call costs
# twice as much.
_PY_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).iterencode
_C_ENCODE: Callable[[object, int], Iterable[str]] | None = (
    None
    if c_make_encoder is None
    else c_make_encoder(None, _not_json, encode_basestring, None, ":", ",", False, False, False)
)


def _text(value: object) -> str:
    try:
        if _C_ENCODE is not None:
            return "".join(_C_ENCODE(value, 0))
        return "".join(_PY_ENCODE(value))
    except RecursionError:
        raise ValueError("a value contains itself, or is nested too deeply") from None


def _dumps(value: object) -> bytes:
    return _text(value).encode()


# The start of the payload of each job name found good, '{"func":"name","args":': checking
# and encoding a name cost more than the rest of a small payload. Kept for a few hundred
# names at most (a program submits to a handful).
_HEADS: dict[str, str] = {}
_HEADS_KEPT = 512
# What ends a payload after its arguments.
_TAIL = "}"
_JSON_RESULT_TAIL = f",{encode_basestring(RESULT_KEY)}:{encode_basestring(RESULT_JSON)}}}"
# A tuple, not ``list | tuple``: a union would be built at every call.
_LIST_LIKE = (list, tuple)


def _head(job_name: str) -> str:
    check_job_name(job_name)
    head = f'{{"func":{encode_basestring(job_name)},"args":'
    # Only a plain str is kept: a subclass may compare equal to other names.
    if job_name.__class__ is str:
        if len(_HEADS) >= _HEADS_KEPT:
            _HEADS.clear()
        _HEADS[job_name] = head
    return head


def encode(
    job_name: str,
    args: Sequence[object],
    *,
    max_size: int = DEFAULT_MAX_PAYLOAD,
    json_result: bool = False,
) -> bytes:
    """Encode a job's payload; with json_result, ask our worker for a JSON result.

    Raises TypeError when an argument cannot be encoded as JSON (serialize it first),
    ValueError for a bad job name and PayloadError when the payload is over the maximum size.
    """
    # The object {"func": job_name, "args": args} written as the encoder would write it,
    # from its cached start, the arguments' JSON and its end.
    head = _HEADS.get(job_name) if job_name.__class__ is str else None
    if head is None:
        head = _head(job_name)
    try:
        # A tuple is encoded as a list; any other sequence is made one first.
        if not isinstance(args, _LIST_LIKE):
            args = list(args)
        data = (head + _text(args) + (_JSON_RESULT_TAIL if json_result else _TAIL)).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the arguments of job {job_name!r} cannot be encoded as JSON ({exc}): serialize "
            "them to JSON types first (dict, list, str, int, float, bool, None)"
        ) from None
    if len(data) > max_size:
        raise _too_large(f"the payload of job {job_name!r}", len(data), max_size)
    return data


# The scanner json.loads runs, called directly: a document with no whitespace around it (all
# our encoders write) skips loads' two regular-expression passes. Anything else goes through
# json.loads, which accepts the same documents and words the errors.
# (typeshed types the scanner's context as a scanner: a JSONDecoder is what it reads.)
_SCAN = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


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
        value, end = _SCAN(text, 0)
        if end == len(text):
            return value
    except (StopIteration, ValueError):
        pass
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PayloadError(f"{what} is not JSON ({exc}): {text[:80]!r}") from None


def decode(
    data: bytes, expected_function: str | None, *, max_size: int = DEFAULT_MAX_PAYLOAD
) -> tuple[str, list[object]]:
    """Decode a payload into (job name, args); raises like `decode_job`."""
    name, args, _ = decode_job(data, expected_function, max_size=max_size)
    return name, args


def decode_job(
    data: bytes,
    expected_function: str | None,
    *,
    max_size: int = DEFAULT_MAX_PAYLOAD,
    site: str | None = None,
) -> tuple[str, list[object], bool]:
    """Decode a payload into (job name, args, whether the client wants a JSON result).

    expected_function is the Gearman function the payload arrived on (None: not known);
    with a site it is `{site}_{job}`. Raises PayloadError when the bytes are empty, too
    large, not UTF-8, not JSON, not {"func": str, "args": list}, or name a job other than
    that of expected_function.
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
    if expected_function is not None and gearman_function(func, site) != expected_function:
        where = f"the function {site}_<job> of site {site!r}" if site else "the function"
        raise PayloadError(
            f"the payload names job {func!r} but was sent on function {expected_function!r}: "
            f"submit each job on {where} of the same name"
        )
    return func, args, obj.get(RESULT_KEY) == RESULT_JSON


def encode_result(value: object) -> bytes:
    """Encode a job's return value; TypeError when JSON cannot encode it."""
    try:
        return _dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the job returned a value JSON cannot encode ({exc}): return JSON types "
            "(dict, list, str, int, float, bool, None)"
        ) from None


def php_float(value: float) -> str:
    """A float as PHP's echo prints it (precision 14): 2.5, 100, 0.3, 1.0E+20, 1.5E-7, INF."""
    if math.isnan(value):
        return "NAN"
    if math.isinf(value):
        return "INF" if value > 0 else "-INF"
    # PHP switches to scientific notation where C's %G does: exponent < -4 or >= precision.
    text = f"{value:.14G}"
    mantissa, e, exponent = text.partition("E")
    if not e:
        return text
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}E{exponent[0]}{int(exponent[1:])}"


# A tuple, not ``bytes | bytearray | memoryview``: the union would be built at every call.
_BYTES_LIKE = (bytes, bytearray, memoryview)


def encode_text_result(value: object) -> bytes:
    """Encode a job's return value as the original router echoes it, for clients not ours.

    str as UTF-8, None empty, bytes as they are, bool as PHP prints it ("1" / ""), int and
    float as PHP prints them, lists and dicts (which PHP cannot echo) as JSON text. Raises
    TypeError for a value that is none of these.
    """
    if value is None:
        return b""
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TypeError(f"the job returned text that is not valid Unicode ({exc})") from None
    if isinstance(value, _BYTES_LIKE):
        return bytes(value)
    if isinstance(value, bool):
        return b"1" if value else b""
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return php_float(value).encode()
    return encode_result(value)


_TEXT_HINT = (
    "a worker that is not ours (the original module's router) answers with the text it "
    f"echoes: read it with results='text' ({ENV_RESULTS}=text, islandora-job submit --text)"
)


def decode_result(data: bytes, *, max_size: int = DEFAULT_MAX_PAYLOAD) -> object:
    """Decode a job's JSON result; PayloadError (saying how to read text) when it is not JSON
    or over ``max_size``."""
    try:
        return _load_json(data, "the job's result", max_size)
    except PayloadError as exc:
        if len(data) > max_size:
            raise
        raise PayloadError(f"{exc}; {_TEXT_HINT}") from None


def decode_text_result(data: bytes, *, max_size: int = DEFAULT_MAX_PAYLOAD) -> str:
    """A job's raw result as text, exactly ("" when empty); PayloadError when it is over
    the maximum size or not UTF-8."""
    limit = max_size
    if len(data) > limit:
        raise _too_large("the job's result", len(data), limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(
            f"the job's result is not UTF-8 text ({exc}): read raw bytes with "
            "islandora_job.gearman.GearmanClient"
        ) from None


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
