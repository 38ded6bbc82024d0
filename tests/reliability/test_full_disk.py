"""gearmand's SQLite queue on a full disk (gearmand 1.1.20's behaviour, pinned, not ours).

A background submit on a full disk is refused with QUEUE_ERROR, and a job a worker finishes
there stays in the table and in the queue: it runs again. (Whether a refused submit was
stored anyway depends on the filesystem and how full it is: on this tmpfs none was; treat
QUEUE_ERROR as "unknown", and send unique ids so a resubmit cannot double a job.) The test
makes a small tmpfs of its own in a private mount namespace (`unshare -m`), fills it, submits,
drains, and restarts gearmand on a disk with room again to read the table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = """
import json, os, subprocess, sys, uuid
from pathlib import Path

from islandora_job.gearman.client import GearmanClient, ServerError
from pytest_islandora_job.config import ServerSettings
from pytest_islandora_job.databases.sqlite import SQLiteQueue
from pytest_islandora_job.servers.process import ProcessGearmanServer

disk, workdir = Path(sys.argv[1]), Path(sys.argv[2])
server = ProcessGearmanServer(ServerSettings(queue="sqlite"), workdir, SQLiteQueue(disk))
server.start()


def submit(client, count):
    accepted, refused = [], []
    for _ in range(count):
        unique = str(uuid.uuid4())
        try:
            client.submit_background("full_disk_probe", b"x" * 2048, unique=unique)
            accepted.append(unique)
        except ServerError as exc:
            refused.append([unique, exc.code])
    return accepted, refused


with GearmanClient([server.address]) as client:
    before, _ = submit(client, 8)
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, bytes(4096))
    except OSError:  # the disk is full
        os.close(fd)
    accepted, refused = submit(client, 64)
# A worker finishes 8 jobs on the full disk (the C tool: 8 jobs, then it exits).
subprocess.run(["gearman", "-h", "127.0.0.1", "-p", str(server.port), "-w", "-c", "8",
                "-f", "full_disk_probe", "--", "cat"], capture_output=True, timeout=60)
queued = {s.function: s.queued for s in server.status()}.get("full_disk_probe", 0)
server.kill()
filler.unlink()
server.start()
stored = sorted(job.unique_key for job in server.persisted_jobs())
server.close()
print(json.dumps({"before": before, "accepted": accepted, "refused": refused,
                  "queued_after_drain": queued, "stored": stored}))
"""


def test_sqlite_on_a_full_disk_refuses_submits_and_keeps_finished_jobs(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for a full disk needs root (CI is root)")
    if shutil.which("unshare") is None or shutil.which("gearman") is None:
        pytest.skip("unshare (util-linux) and gearman (gearman-tools) are needed")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = tmp_path / "scenario.py"
    script.write_text(SCENARIO)
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         'mount -t tmpfs -o size=256k tmpfs "$1" && exec "$2" "$3" "$1" "$4"', "sh",
         str(disk), sys.executable, str(script), str(tmp_path / "work")],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    if done.returncode != 0 and "mount" in done.stderr and "permission" in done.stderr.lower():
        pytest.skip(f"no tmpfs mount allowed here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["refused"], "the full disk refused no submit"
    assert {code for _, code in outcome["refused"]} == {"QUEUE_ERROR"}
    stored = set(outcome["stored"])
    assert set(outcome["before"] + outcome["accepted"]) <= stored
    # Finished on the full disk, yet neither deleted from the table nor from gearmand's
    # queue: those jobs run again (at once, and after a restart).
    assert outcome["queued_after_drain"] >= len(outcome["before"])
    assert set(outcome["before"]) <= stored
