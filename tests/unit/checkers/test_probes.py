"""Probes against things this machine has: a listening socket, loopback, a closed port."""

from __future__ import annotations

import asyncio
import socket

from safekit.checkers import probes


def test_tcp_probe_up_on_a_listening_port_and_down_on_a_closed_one() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert asyncio.run(probes.tcp("127.0.0.1", port, timeout=1))
    assert not asyncio.run(probes.tcp("127.0.0.1", port, timeout=1))


def test_loopback_interface_and_address() -> None:
    assert probes.interface_up("lo")
    assert not probes.interface_up("no-such-if0")
    assert probes.address_present("127.0.0.1")
    assert not probes.address_present("198.18.255.254")


def test_ip_checker_target_may_be_a_host_name() -> None:
    """SafeKit's `<ip><to addr>` takes an address or a name: the name's addresses are looked for,
    and a name that does not resolve is down (it used to raise and end the checker)."""
    assert probes.address_present("localhost")
    assert not probes.address_present("no-such-host.invalid")


def test_ping_loopback() -> None:
    assert asyncio.run(probes.ping("127.0.0.1", timeout=1))
    assert asyncio.run(probes.ping_any(["127.0.0.1"], timeout=1))
    assert not asyncio.run(probes.ping_any([], timeout=1))
