"""PHP's gearman extension and Perl's Gearman::Client and Gearman::Worker, against gearmand and
against the embedded server (ids process, embedded): the same script, the same answers."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from islandora_job.gearman import GearmanClient, GearmanWorker, WorkFailure
from pytest_islandora_job import factories
from pytest_islandora_job.servers import GearmanServer

PHP = shutil.which("php")
PERL = shutil.which("perl")

peer_server = factories.gearman_server(params=[{"backend": "process"}, {"backend": "embedded"}])

PHP_CLIENT = r"""
$client = new GearmanClient();
$client->addServer($argv[1], (int)$argv[2]);
echo $client->doNormal("php_rev", "abc"), "\n";
echo $client->doHigh("php_rev", "high"), "\n";
echo $client->doLow("php_rev", "low"), "\n";
$handle = $client->doBackground("php_rev", "bg");
echo (strpos($handle, "H:") === 0 ? "handle" : "no handle: $handle"), "\n";
$client->doNormal("php_fail", "x");
echo "fail:", $client->returnCode() == GEARMAN_WORK_FAIL ? "yes" : $client->returnCode(), "\n";
$results = array();
$client->setCompleteCallback(function ($task) use (&$results) { $results[] = $task->data(); });
foreach (array("1", "22", "333") as $data) { $client->addTask("php_rev", $data); }
$client->runTasks();
sort($results);
echo implode(",", $results), "\n";
"""

PHP_WORKER = r"""
$worker = new GearmanWorker();
$worker->addServer($argv[1], (int)$argv[2]);
$worker->addFunction("php_up", function ($job) { return strtoupper($job->workload()); });
$worker->work();
"""

PERL_CLIENT = r"""
use Gearman::Client;
my $client = Gearman::Client->new(job_servers => ["$ARGV[0]:$ARGV[1]"]);
my $result = $client->do_task("perl_rev", "abc");
print $$result, "\n";
my $handle = $client->dispatch_background("perl_rev", "bg");
print(($handle ? "handle" : "no handle"), "\n");
my $failed = $client->do_task("perl_fail", "x");
print(defined($failed) ? "no failure\n" : "fail:yes\n");
"""

PERL_WORKER = r"""
use Gearman::Worker;
my $worker = Gearman::Worker->new(job_servers => ["$ARGV[0]:$ARGV[1]"]);
$worker->register_function(perl_up => sub { return uc($_[0]->arg); });
$worker->work();
"""


@pytest.fixture
def our_worker(peer_server: GearmanServer) -> Iterator[GearmanWorker]:
    """Our worker for text clients (exceptions=False): *_rev reverses, *_fail fails."""
    worker = GearmanWorker([peer_server.address], exceptions=False)
    for prefix in ("php", "perl"):
        worker.register(f"{prefix}_rev", lambda job: job.data[::-1])
        worker.register(f"{prefix}_fail", _fail)
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    while not worker.registered_on():
        time.sleep(0.01)
    yield worker
    worker.request_stop()
    thread.join(10)
    worker.close()


def _fail(job) -> bytes:
    raise WorkFailure(b"no")


def _run(argv: list[str], server: GearmanServer) -> list[str]:
    done = subprocess.run(
        [*argv, server.host, str(server.port)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.skipif(PHP is None, reason="php is not installed")
def test_php_client_against_our_worker(peer_server: GearmanServer, our_worker) -> None:
    assert PHP is not None
    lines = _run([PHP, "-r", PHP_CLIENT], peer_server)
    assert lines == ["cba", "hgih", "wol", "handle", "fail:yes", "1,22,333"]


@pytest.mark.skipif(PERL is None, reason="perl is not installed")
def test_perl_client_against_our_worker(peer_server: GearmanServer, our_worker) -> None:
    assert PERL is not None
    assert _run([PERL, "-e", PERL_CLIENT], peer_server) == ["cba", "handle", "fail:yes"]


@pytest.mark.parametrize(
    ("tool", "script", "function"),
    [(PHP, PHP_WORKER, "php_up"), (PERL, PERL_WORKER, "perl_up")],
    ids=["php", "perl"],
)
def test_php_and_perl_workers_serve_our_client(
    peer_server: GearmanServer, tool: str | None, script: str, function: str
) -> None:
    if tool is None:
        pytest.skip("the interpreter is not installed")
    flag = "-r" if tool == PHP else "-e"
    worker = subprocess.Popen([tool, flag, script, peer_server.host, str(peer_server.port)])
    try:
        deadline = time.monotonic() + 10
        while not any(s.function == function and s.workers for s in peer_server.status()):
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        with GearmanClient([peer_server.address]) as client:
            assert client.submit(function, b"shout", timeout=10).data == b"SHOUT"
    finally:
        worker.terminate()
        worker.wait(10)
