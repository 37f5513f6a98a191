"""The provider contract: spec validation, address parsing, discovery by entry point, and the time
bound / error wrapping / serialisation that the base class gives every provider."""

from __future__ import annotations

import asyncio
import ipaddress
from importlib.metadata import EntryPoint

import pytest

from safekit.vip import (
    VipCheck,
    VipError,
    VipProvider,
    VipSpec,
    VipState,
    available_providers,
    create_provider,
    load_provider,
    parse_prefix,
    parse_vip_address,
)
from safekit.vip import provider as provider_module
from safekit.vip.arp import ArpProvider

VIP = ipaddress.IPv4Address("198.18.0.200")


# ----------------------------------------------------------------------------- spec
def test_spec_defaults() -> None:
    spec = VipSpec(VIP)
    assert (spec.prefixlen, spec.interface, spec.provider) == (None, None, "arp")
    assert (spec.garp_count, spec.garp_interval) == (3, 0.1)
    assert dict(spec.options) == {}
    assert str(VipSpec(VIP, prefixlen=24, interface="eth0")) == "198.18.0.200/24 on eth0 (arp)"


def test_spec_options_are_a_frozen_copy() -> None:
    options = {"garp_form": "reply"}
    spec = VipSpec(VIP, options=options)
    options["garp_form"] = "both"
    assert spec.options["garp_form"] == "reply"
    with pytest.raises(TypeError):
        spec.options["garp_form"] = "both"  # type: ignore[index]
    assert hash(spec) == hash(VipSpec(VIP, options={"garp_form": "both"}))
    assert spec == VipSpec(VIP, options={"garp_form": "reply"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"address": "198.18.0.200"}, "must be an IPv4 or IPv6 address"),
        ({"address": ipaddress.IPv6Address("fe80::1")}, "cannot be a virtual IP"),
        ({"address": ipaddress.IPv4Address("0.0.0.0")}, "cannot be a virtual IP"),
        ({"address": ipaddress.IPv4Address("127.0.0.2")}, "cannot be a virtual IP"),
        ({"address": ipaddress.IPv4Address("224.0.0.18")}, "cannot be a virtual IP"),
        ({"address": ipaddress.IPv4Address("169.254.1.1")}, "cannot be a virtual IP"),
        ({"address": ipaddress.IPv4Address("255.255.255.255")}, "cannot be a virtual IP"),
        ({"prefixlen": 0}, "out of range"),
        ({"prefixlen": 33}, "out of range"),
        ({"prefixlen": True}, "out of range"),
        ({"interface": ""}, "not a Linux interface name"),
        ({"interface": "eth0:sk"}, "not a Linux interface name"),
        ({"interface": "a" * 16}, "not a Linux interface name"),
        ({"interface": "eth 0"}, "not a Linux interface name"),
        ({"provider": "Arp"}, "not a provider name"),
        ({"options": {"garp_form": 1}}, "names and values are strings"),
        ({"garp_count": -1}, "garp_count -1 is out of range"),
        ({"garp_count": 101}, "out of range"),
        ({"garp_count": 2.5}, "must be an integer"),
        ({"garp_interval": -0.1}, "out of range"),
        ({"garp_interval": 11}, "out of range"),
        ({"garp_interval": "0.1"}, "must be a number"),
    ],
)
def test_spec_refuses_what_cannot_work(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"address": VIP, **kwargs}
    with pytest.raises(VipError, match=message):
        VipSpec(**arguments)  # type: ignore[arg-type]


def test_prefix_from_length_or_netmask() -> None:
    assert parse_prefix("24") == 24
    assert parse_prefix("255.255.255.0") == 24
    assert parse_prefix("255.255.255.255") == 32
    for bad in ("0", "33", "255.0.255.0", "abc"):
        with pytest.raises(VipError):
            parse_prefix(bad)


def test_address_text_forms() -> None:
    assert parse_vip_address("198.18.0.200") == (VIP, None)
    assert parse_vip_address("198.18.0.200/24") == (VIP, 24)
    assert parse_vip_address(" 198.18.0.200/255.255.255.128 ") == (VIP, 25)
    assert parse_vip_address("2001:db8::1/64") == (ipaddress.IPv6Address("2001:db8::1"), 64)
    with pytest.raises(VipError, match="not an IP address"):
        parse_vip_address("node1")


# ----------------------------------------------------------------------------- discovery
def test_arp_is_found_through_the_entry_point() -> None:
    assert "arp" in available_providers()
    assert load_provider("arp") is ArpProvider
    assert isinstance(create_provider(VipSpec(VIP)), ArpProvider)


def test_unknown_provider_names_the_known_ones() -> None:
    with pytest.raises(VipError) as info:
        load_provider("nosuch_cloud")
    message = str(info.value)
    assert "unknown VIP provider 'nosuch_cloud'" in message
    assert "known providers are arp" in message
    assert "safekit.vip" in message


def test_an_entry_point_that_is_not_a_provider_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = [
        EntryPoint("broken", "safekit.vip.nonexistent:Nothing", "safekit.vip"),
        EntryPoint("wrong", "safekit.vip.provider:VipSpec", "safekit.vip"),
    ]
    monkeypatch.setattr(provider_module, "_registered", lambda: fake)
    assert available_providers() == ["broken", "wrong"]
    with pytest.raises(VipError, match=r"'broken' .* cannot be loaded"):
        load_provider("broken")
    with pytest.raises(VipError, match=r"'wrong' .* is not a VipProvider subclass"):
        load_provider("wrong")


# ----------------------------------------------------------------------------- base class
class ScriptedProvider(VipProvider):
    """A provider whose operations do what the test says: sleep, fail, or record their order."""

    name = "scripted"

    def __init__(self, spec: VipSpec, delay: float = 0.0, error: Exception | None = None) -> None:
        super().__init__(spec)
        self.delay = delay
        self.error = error
        self.log: list[str] = []
        self.held = False

    async def _step(self, what: str) -> None:
        self.log.append(f"{what} start")
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        self.log.append(f"{what} end")

    async def _acquire(self) -> bool:
        await self._step("acquire")
        changed, self.held = not self.held, True
        return changed

    async def _release(self) -> bool:
        await self._step("release")
        changed, self.held = self.held, False
        return changed

    async def _check(self) -> VipCheck:
        await self._step("check")
        return VipCheck(VipState.HELD if self.held else VipState.NOT_HELD)


def test_operations_report_whether_they_changed_something() -> None:
    async def scenario() -> list[object]:
        p = ScriptedProvider(VipSpec(VIP))
        return [
            await p.acquire(),
            await p.acquire(),
            (await p.check()).held,
            await p.release(),
            await p.release(),
        ]

    assert asyncio.run(scenario()) == [True, False, True, True, False]


def test_an_operation_past_its_timeout_fails_with_a_clear_error() -> None:
    async def scenario() -> None:
        await ScriptedProvider(VipSpec(VIP), delay=5).acquire(timeout=0.05)

    with pytest.raises(VipError, match=r"scripted 198\.18\.0\.200: acquire did not finish within 0\.05 s"):
        asyncio.run(scenario())


def test_a_timeout_inside_the_provider_is_not_reported_as_the_callers() -> None:
    async def scenario() -> None:
        await ScriptedProvider(VipSpec(VIP), error=TimeoutError()).check(timeout=5)

    with pytest.raises(VipError, match="check failed: a timeout inside the provider"):
        asyncio.run(scenario())


def test_foreign_errors_become_vip_errors_with_context() -> None:
    async def scenario() -> None:
        await ScriptedProvider(VipSpec(VIP), error=PermissionError("Operation not permitted")).release()

    with pytest.raises(
        VipError, match=r"scripted 198\.18\.0\.200: release failed: Operation not permitted"
    ) as info:
        asyncio.run(scenario())
    assert isinstance(info.value.__cause__, PermissionError)


def test_a_non_positive_timeout_is_refused() -> None:
    with pytest.raises(VipError, match="timeout must be positive"):
        asyncio.run(ScriptedProvider(VipSpec(VIP)).acquire(timeout=0))


def test_operations_on_one_provider_do_not_interleave() -> None:
    async def scenario() -> list[str]:
        p = ScriptedProvider(VipSpec(VIP), delay=0.02)
        await asyncio.gather(p.acquire(), p.release(), p.check())
        return p.log

    log = asyncio.run(scenario())
    assert log == [
        "acquire start",
        "acquire end",
        "release start",
        "release end",
        "check start",
        "check end",
    ]
