"""The arp provider's address lifetime (the kernel as a safety net): the `lifetime` option, the
netlink calls acquire and renew make with it, and renew's promise never to bring back a VIP that
expired. The kernel's own expiry is measured on lab hosts (test_vip_owner_probe.py)."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
from typing import Any

import pytest
from pyroute2 import NetlinkError

from safekit.vip import VipError, VipSpec
from safekit.vip import arp as arp_module
from safekit.vip.arp import Address, ArpProvider, Link, lifetime_arguments, lifetime_option

VIP = ipaddress.IPv4Address("198.18.0.200")
ETH0 = Link(2, "eth0", "02:5b:c6:12:00:02", True, True)
REAL = Address(2, ipaddress.IPv4Interface("198.18.0.2/24"), "eth0")
HELD = Address(2, ipaddress.IPv4Interface("198.18.0.200/24"), "eth0:sk", valid_lft=3)


@pytest.mark.parametrize(
    ("options", "lifetime"),
    [({}, None), ({"lifetime": "forever"}, None), ({"lifetime": " 5 "}, 5), ({"lifetime": "2"}, 2)],
)
def test_lifetime_option(options: dict[str, str], lifetime: int | None) -> None:
    assert lifetime_option(options) == lifetime
    assert ArpProvider(VipSpec(VIP, options=options)).lifetime == lifetime


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1", "give 2 to 86400 seconds"),
        ("86401", "give 2 to 86400"),
        ("2.5", "whole seconds"),
        ("soon", "whole"),
    ],
)
def test_a_lifetime_that_cannot_protect_is_refused_at_load(value: str, message: str) -> None:
    with pytest.raises(VipError, match=message):
        ArpProvider(VipSpec(VIP, options={"lifetime": value}))


def test_unknown_options_name_the_known_ones() -> None:
    with pytest.raises(VipError, match="known options are garp_form, lifetime"):
        ArpProvider(VipSpec(VIP, options={"ttl": "5"}))


def test_lifetime_arguments() -> None:
    assert lifetime_arguments(None) == {}
    assert lifetime_arguments(5) == {"valid_lft": 5, "preferred_lft": 5}


class FakeIPRoute:
    """Records the netlink writes; the node's addresses are the test's."""

    def __init__(self, node: dict[str, Any]) -> None:
        self.node = node
        self.closed = False
        node.setdefault("sockets", []).append(self)

    async def __aenter__(self) -> FakeIPRoute:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True

    async def addr(self, command: str, **kwargs: Any) -> None:
        if self.node.get("refuse"):
            raise NetlinkError(errno.EPERM)
        self.node["calls"].append((command, kwargs))


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {"addresses": [REAL], "calls": []}

    async def snapshot(ipr: object, family: int = 2) -> tuple[list[Link], list[Address]]:
        return [ETH0], state["addresses"]

    monkeypatch.setattr(arp_module, "AsyncIPRoute", lambda: FakeIPRoute(state))
    monkeypatch.setattr(arp_module, "_snapshot", snapshot)
    return state


def provider(lifetime: str | None = "3") -> ArpProvider:
    options = {"lifetime": lifetime} if lifetime else {}
    return ArpProvider(VipSpec(VIP, garp_count=0, options=options))


def test_acquire_adds_the_vip_with_its_lifetime(node: dict[str, Any]) -> None:
    assert asyncio.run(provider().acquire(1.0)) is True
    ((command, kwargs),) = node["calls"]
    assert command == "add"
    assert (kwargs["address"], kwargs["prefixlen"], kwargs["label"]) == ("198.18.0.200", 24, "eth0:sk")
    assert (kwargs["valid_lft"], kwargs["preferred_lft"]) == (3, 3)


def test_acquire_without_lifetime_adds_a_permanent_vip(node: dict[str, Any]) -> None:
    asyncio.run(provider(None).acquire(1.0))
    ((command, kwargs),) = node["calls"]
    assert command == "add"
    assert "valid_lft" not in kwargs and "preferred_lft" not in kwargs


def test_acquire_on_a_held_vip_renews_its_lifetime(node: dict[str, Any]) -> None:
    node["addresses"] = [REAL, HELD]
    assert asyncio.run(provider("5").acquire(1.0)) is False  # nothing changed: it was held
    assert node["calls"] == [
        (
            "replace",
            {"index": 2, "address": "198.18.0.200", "prefixlen": 24, "valid_lft": 5, "preferred_lft": 5},
        )
    ]


def test_renew_sets_a_held_vip_back_to_its_full_lifetime(node: dict[str, Any]) -> None:
    node["addresses"] = [REAL, HELD]
    assert asyncio.run(provider("4").renew()) is True
    assert node["calls"] == [
        (
            "replace",
            {"index": 2, "address": "198.18.0.200", "prefixlen": 24, "valid_lft": 4, "preferred_lft": 4},
        )
    ]


def test_renew_never_brings_back_an_expired_vip(node: dict[str, Any]) -> None:
    # The daemon froze longer than the lifetime; the kernel deleted the VIP, the peer may have
    # taken it. Waking up, renew must not add it again: that is acquire's decision.
    assert asyncio.run(provider().renew()) is False
    assert node["calls"] == []


def test_renew_without_lifetime_only_says_whether_held(node: dict[str, Any]) -> None:
    assert asyncio.run(provider(None).renew()) is False
    node["addresses"] = [REAL, HELD]
    assert asyncio.run(provider(None).renew()) is True
    assert node["calls"] == []


def test_renew_keeps_one_socket_not_after_a_failure_and_release_closes_it(node: dict[str, Any]) -> None:
    """Renew runs every second while a VIP is held: it keeps its netlink socket between runs, never
    reuses one a failed or abandoned run leaves, and release closes it."""
    node["addresses"] = [REAL, HELD]
    vip = provider("3")

    async def scenario() -> None:
        for _ in range(3):
            assert await vip.renew() is True
        assert len(node["sockets"]) == 1 and not node["sockets"][0].closed
        node["refuse"] = True
        with pytest.raises(VipError, match="renewing its lifetime"):
            await vip.renew()
        assert node["sockets"][0].closed
        node["refuse"] = False
        assert await vip.renew() is True
        assert len(node["sockets"]) == 2 and not node["sockets"][1].closed
        await vip.release(1.0)
        assert all(socket.closed for socket in node["sockets"])

    asyncio.run(scenario())
    assert [command for command, _ in node["calls"]].count("replace") == 4


def test_the_renew_command_closes_the_socket_before_it_exits(node: dict[str, Any]) -> None:
    """`python -m safekit.vip renew` renews once and exits: the socket a daemon's renewals keep is
    closed first (it was left to the interpreter's exit: a ResourceWarning under -X dev)."""
    from safekit.vip import cli  # noqa: PLC0415 - the command's module, as the command loads it

    node["addresses"] = [REAL, HELD]
    assert asyncio.run(cli._run("renew", provider("3"), 1.0)) == 0
    assert len(node["sockets"]) == 1 and node["sockets"][0].closed
    node["addresses"] = [REAL]
    assert asyncio.run(cli._run("renew", provider("3"), 1.0)) == 3  # not held: renew never adds it
    assert all(socket.closed for socket in node["sockets"])
