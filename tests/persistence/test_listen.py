"""--gearman-listen: the default server is reachable on loopback only."""

from __future__ import annotations

import ipaddress
import socket

import psutil
import pytest

from pytest_islandora_job import config
from pytest_islandora_job.servers import GearmanServer


def non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine that is not loopback, if it has one."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if (
                address.family == socket.AF_INET
                and not ipaddress.ip_address(address.address).is_loopback
            ):
                return address.address
    return None


def test_the_default_server_is_not_reachable_through_another_address(
    gearman_server: GearmanServer, pytestconfig: pytest.Config
) -> None:
    if config.get(pytestconfig, "gearman_listen") != "127.0.0.1":
        pytest.skip("--gearman-listen is set for this run: the default is not under test")
    other = non_loopback_ipv4()
    if other is None:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    assert gearman_server.host == "127.0.0.1"
    socket.create_connection(("127.0.0.1", gearman_server.port), timeout=2).close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((other, gearman_server.port), timeout=2)
