"""The example's own tests: its jobs run through a real gearmand and a real worker."""

from __future__ import annotations

import hashlib

import islandora_job
from pytest_islandora_job import assert_background_handle, wait_for_job


def test_checksum_in_the_foreground(job_worker, tmp_path):
    page = tmp_path / "page.txt"
    page.write_bytes(b"an object's content")

    result = islandora_job.submit("derivatives_checksum", str(page))

    assert result == {
        "algorithm": "sha256",
        "value": hashlib.sha256(b"an object's content").hexdigest(),
    }


def test_full_text_in_the_background(job_worker, tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<p>Hello <b>repository</b></p>", encoding="utf-8")
    out = tmp_path / "page.txt"

    handle = islandora_job.submit_background("derivatives_full_text", str(page), str(out))

    assert_background_handle(handle)
    wait_for_job(handle, timeout=10)
    assert out.read_text(encoding="utf-8") == "Hello repository"


def test_an_ingest_batch(job_worker):
    job_worker.start(count=2)
    batch = [{"job_name": "derivatives_word_count", "args": [f"word {'x ' * i}"]} for i in range(6)]

    assert islandora_job.submit_batch(batch, timeout=30) is True
