"""The external backend: addresses through the one parser, IPv6 included, end to end."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_islandora_job import processes
from pytest_islandora_job.config import ServerSettings
from pytest_islandora_job.servers.external import ExternalGearmanServer
from pytest_islandora_job.servers.process import ProcessGearmanServer


def _ipv6_loopback_missing() -> str | None:
    """Why ::1 cannot be used on this machine, or None when it can."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        return f"this machine has no IPv6 loopback (::1): {exc}"
    return None


@pytest.mark.parametrize(
    ("given", "host", "port", "address"),
    [
        ("127.0.0.1:4731", "127.0.0.1", 4731, "127.0.0.1:4731"),
        ("localhost", "localhost", 4730, "localhost:4730"),
        ("[::1]:4732", "::1", 4732, "[::1]:4732"),
        ("[fe80::1]", "fe80::1", 4730, "[fe80::1]:4730"),
    ],
)
def test_external_addresses_go_through_the_one_parser(given, host, port, address) -> None:
    server = ExternalGearmanServer(ServerSettings(backend="external"), given)
    assert (server.host, server.port, server.address) == (host, port, address)


@pytest.mark.parametrize("given", ["127.0.0.1:http", "[::1:4730", ":4730", "host:70000"])
def test_a_malformed_external_address_names_the_option_and_the_fix(given) -> None:
    with pytest.raises(ValueError, match=r"--gearman-servers: .*host:port"):
        ExternalGearmanServer(ServerSettings(backend="external"), given)


def test_a_malformed_gearman_servers_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_it(): pass")
    result = pytester.runpytest("--gearman-backend=external", "--gearman-servers=[::1:4730")
    result.stderr.fnmatch_lines(["*--gearman-servers / ini gearman_servers: bad server address*"])


@pytest.fixture
def gearmand_on_ipv6_loopback(tmp_path: Path) -> Iterator[str]:
    """A gearmand of our own listening on ::1 only; yields its "[::1]:port" address."""
    missing = _ipv6_loopback_missing()
    if missing is not None:
        pytest.skip(missing)
    server = ProcessGearmanServer(ServerSettings(listen="::1"), tmp_path / "gearmand")
    proc = processes.spawn(server.command(), server.log_path)
    address = f"[::1]:{server.port}"
    try:
        probe = ExternalGearmanServer(ServerSettings(backend="external"), address)
        probe.wait_ready(10.0, lambda: proc.poll() is None)
        yield address
    finally:
        processes.stop(proc)
        server.close()


@pytest.mark.usefixtures("project")
def test_a_job_runs_through_an_external_gearmand_on_ipv6_loopback(
    pytester: pytest.Pytester, gearmand_on_ipv6_loopback: str
) -> None:
    pytester.makepyfile(
        """
        import islandora_job
        from islandora_job.gearman.admin import GearmanAdmin

        def test_it(gearman_server, job_worker):
            assert gearman_server.host == "::1"
            assert islandora_job.settings().servers == (gearman_server.address,)
            assert islandora_job.submit("ping", timeout=10) == "pong"
            with GearmanAdmin(gearman_server.address) as admin:
                workers = admin.workers()
            # gearmand listens on ::1 alone: the worker reached it over IPv6. (Its `workers`
            # reply garbles IPv6 peer addresses, so the ip column proves nothing here.)
            assert any("ping" in w.functions for w in workers), workers
        """
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "no:xdist",
        "--gearman-backend=external",
        f"--gearman-servers={gearmand_on_ipv6_loopback}",
    )
    result.assert_outcomes(passed=1)
