"""Derivative jobs: what an ingest queues for every new object."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path


def register_jobs() -> dict[str, str]:
    """The jobs this package offers, by name (islandora_job's register_jobs hook)."""
    return {
        "derivatives_checksum": "islandora_derivatives.jobs:checksum",
        "derivatives_full_text": "islandora_derivatives.jobs:full_text",
        "derivatives_word_count": "islandora_derivatives.jobs:word_count",
    }


def checksum(path: str, algorithm: str = "sha256") -> dict[str, str]:
    """Checksum of a file: the fixity value stored with the object."""
    digest = hashlib.new(algorithm)
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return {"algorithm": algorithm, "value": digest.hexdigest()}


def full_text(path: str, out_path: str) -> int:
    """Write the searchable text of a file next to it; returns its length in characters."""
    text = Path(path).read_text(encoding="utf-8")
    plain = re.sub(r"<[^>]+>", " ", text)
    plain = re.sub(r"\s+", " ", plain).strip()
    Path(out_path).write_text(plain, encoding="utf-8")
    return len(plain)


def word_count(text: str) -> int:
    """Number of words in a text."""
    return len(text.split())
