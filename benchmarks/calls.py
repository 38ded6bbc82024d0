"""1b. What the high-level API does per call besides the round trip, in microseconds:
settings(), payload.encode and decode_result, each next to the bare json call it wraps
(json.dumps / json.loads of the same value), measured in the same run.
"""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable

from benchmarks.common import Row, Stats
from islandora_job import payload
from islandora_job.config import settings

SECTION = "1b calls"
CALLS = 20000
ARGS = [1, "two", {"three": 3.0}]
ENCODED = payload.encode("echo", ARGS, json_result=True)
RESULT = payload.encode_result(ARGS)


def per_call(action: Callable[[], object], runs: int) -> Stats:
    """Microseconds per call of action(), one sample per run of CALLS calls."""
    return Stats.of([1e6 * t / CALLS for t in timeit.repeat(action, number=CALLS, repeat=runs)])


def run(runs: int) -> list[Row]:
    """settings(), payload.encode and decode_result per call, next to their json calls."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    obj = {"func": "echo", "args": ARGS, "result": "json"}
    return [
        Row(SECTION, "settings(), per call", "us", per_call(settings, runs)),
        Row(
            SECTION,
            "payload.encode, per call",
            "us",
            per_call(lambda: payload.encode("echo", ARGS, json_result=True), runs),
            "json encode of the same object",
            per_call(lambda: dumps(obj), runs),
        ),
        Row(
            SECTION,
            "payload.decode_result, per call",
            "us",
            per_call(lambda: payload.decode_result(RESULT), runs),
            "json.loads of the same bytes",
            per_call(lambda: json.loads(RESULT), runs),
        ),
    ]
