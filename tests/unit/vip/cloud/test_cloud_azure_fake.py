"""Azure providers with the real azure-mgmt-network client and azure-identity's managed identity
credential, against the local ARM fake (tests/fakes/azure_fake.py) and IMDS fake: route next hop,
NIC IP configuration moves with long-running operations, 429/5xx, the pinned api-version."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from fakes.azure_fake import AzureFake
from fakes.metadata_fake import AzureImdsFake
from safekit.vip import VipError, VipSpec, VipState, create_provider
from safekit.vip.azure import API_VERSION

SUB, RG = "00000000-0000-0000-0000-000000000001", "rg-safekit"
VIP = "10.1.0.100"
MAC_A, MAC_B = "00-0D-3A-00-00-0A", "00-0D-3A-00-00-0B"


@pytest.fixture
def imds(monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureImdsFake]:
    fake = AzureImdsFake(
        {
            "compute": {
                "subscriptionId": SUB,
                "resourceGroupName": RG,
                "name": "vm-a",
                "location": "westeurope",
            },
            "network": {
                "interface": [
                    {
                        "macAddress": MAC_A.replace("-", ""),
                        "ipv4": {"ipAddress": [{"privateIpAddress": "10.1.0.4"}]},
                    }
                ]
            },
        }
    ).start()
    # azure-identity's managed identity asks this host for tokens
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", fake.url)
    yield fake
    fake.stop()


@pytest.fixture
def arm() -> Iterator[AzureFake]:
    fake = AzureFake(SUB, RG, API_VERSION).start()
    fake.add_route_table("rt-app")
    fake.add_nic("nic-a", MAC_A, "10.1.0.4")
    fake.add_nic("nic-b", MAC_B, "10.1.0.5")
    yield fake
    fake.stop()


def _node(
    provider: str, arm: AzureFake, imds: AzureImdsFake, vm: str, *, ip: str, mac: str, **options: str
) -> Any:
    spec = VipSpec(
        ipaddress.IPv4Address(VIP),
        provider=provider,
        options={
            "endpoint": arm.url,
            "metadata_url": imds.url,
            "subscription_id": SUB,
            "resource_group": RG,
            "vm_name": vm,
            "private_ip": ip,
            "mac": mac,
            "os_address": "off",
            **options,
        },
    )
    return create_provider(spec)


def test_route_failover_points_the_next_hop_at_the_new_primary(arm: AzureFake, imds: AzureImdsFake) -> None:
    arm.lro_polls = 2
    a = _node("azure_route", arm, imds, "vm-a", ip="10.1.0.4", mac=MAC_A, route_table="rt-app")
    b = _node("azure_route", arm, imds, "vm-b", ip="10.1.0.5", mac=MAC_B, route_table="rt-app")

    async def scenario() -> None:
        assert (await a.check()).state is VipState.NOT_HELD
        assert await a.acquire() is True
        assert await a.acquire() is False
        assert await b.acquire() is True
        assert (await b.check()).held
        assert (await a.check()).state is VipState.NOT_HELD
        assert [c.action for c in b.calls if c.mutating] == ["Microsoft.Network/routeTables/routes/write"]

    asyncio.run(scenario())
    route = arm.route_tables["rt-app"]["safekit-10-1-0-100"]
    assert route["properties"] == {
        "addressPrefix": f"{VIP}/32",
        "nextHopType": "VirtualAppliance",
        "nextHopIpAddress": "10.1.0.5",
        "provisioningState": "Succeeded",
    }
    assert {tuple(r.query["api-version"]) for r in arm.requests} == {(API_VERSION,)}
    assert imds.token_requests in {1, 2}  # one per node, cached by azure-identity


def test_nic_ip_moves_between_nics(arm: AzureFake, imds: AzureImdsFake) -> None:
    a = _node("azure_nic_ip", arm, imds, "vm-a", ip="10.1.0.4", mac=MAC_A)
    b = _node("azure_nic_ip", arm, imds, "vm-b", ip="10.1.0.5", mac=MAC_B)

    def configs(nic: str) -> list[str]:
        return [c["properties"]["privateIPAddress"] for c in arm.nics[nic]["properties"]["ipConfigurations"]]

    async def scenario() -> None:
        assert await a.acquire() is True
        assert configs("nic-a") == ["10.1.0.4", VIP]
        assert await a.acquire() is False
        # B takes over while A is gone: A's NIC lets go first (ARM refuses the IP on two NICs)
        assert await b.acquire() is True
        assert [c.action for c in b.calls if c.mutating] == ["Microsoft.Network/networkInterfaces/write"] * 2
        assert (await b.check()).held
        verdict = await a.check()
        assert verdict.state is VipState.NOT_HELD and "nic-b" in verdict.reason
        assert await b.release() is True
        assert (await b.check()).state is VipState.NOT_HELD

    asyncio.run(scenario())
    assert configs("nic-a") == ["10.1.0.4"] and configs("nic-b") == ["10.1.0.5"]


def test_identity_from_imds(arm: AzureFake, imds: AzureImdsFake) -> None:
    spec = VipSpec(
        ipaddress.IPv4Address(VIP),
        provider="azure_route",
        options={"endpoint": arm.url, "metadata_url": imds.url, "route_table": "rt-app", "os_address": "off"},
    )
    node = create_provider(spec)
    assert asyncio.run(node.acquire()) is True
    assert arm.route_tables["rt-app"]["safekit-10-1-0-100"]["properties"]["nextHopIpAddress"] == "10.1.0.4"
    assert asyncio.run(node.check()).held


def test_throttling_and_5xx_are_retried(arm: AzureFake, imds: AzureImdsFake) -> None:
    arm.inject("GET /subscriptions/", status=429)
    arm.inject("PUT /subscriptions/", status=500)
    a = _node("azure_route", arm, imds, "vm-a", ip="10.1.0.4", mac=MAC_A, route_table="rt-app")
    assert asyncio.run(a.acquire()) is True
    attempts = {c.action: c.attempts for c in a.calls}
    assert attempts["Microsoft.Network/routeTables/routes/read"] == 2
    assert attempts["Microsoft.Network/routeTables/routes/write"] == 2


def test_slow_operation_beyond_the_bound_fails_in_time(arm: AzureFake, imds: AzureImdsFake) -> None:
    arm.lro_polls = 10**6
    a = _node("azure_route", arm, imds, "vm-a", ip="10.1.0.4", mac=MAC_A, route_table="rt-app")
    with pytest.raises(VipError, match=r"still running|did not finish"):
        asyncio.run(a.acquire(timeout=2))


def test_bad_request_is_not_retried(arm: AzureFake, imds: AzureImdsFake) -> None:
    a = _node("azure_route", arm, imds, "vm-a", ip="10.1.0.4", mac=MAC_A, route_table="no-such-table")
    with pytest.raises(VipError, match="not found"):
        asyncio.run(a.acquire())


def test_lb_probe_port_answers_only_while_serving(imds: AzureImdsFake) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    node = create_provider(
        VipSpec(
            ipaddress.IPv4Address(VIP),
            provider="azure_lb",
            options={"probe_port": str(port), "probe_host": "127.0.0.1"},
        )
    )

    async def connects() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    async def scenario() -> None:
        assert not await connects()
        await node.acquire()
        assert await connects() and (await node.check()).held
        await node.release()
        assert not await connects()

    asyncio.run(scenario())


def test_plain_http_endpoint_only_on_loopback() -> None:
    with pytest.raises(VipError, match="only on loopback"):
        create_provider(
            VipSpec(
                ipaddress.IPv4Address(VIP),
                provider="azure_route",
                options={"endpoint": "http://management.example", "route_table": "t"},
            )
        )
