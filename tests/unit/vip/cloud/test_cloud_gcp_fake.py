"""GCP providers with the real google-cloud-compute client (REST) against the local Compute fake
(tests/fakes/gcp_fake.py) and metadata fake: route delete-then-insert, alias IP moves with zone
operations waited for, slow operations, 429/5xx, timeouts, and the metadata server's token."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fakes.gcp_fake import GcpFake
from fakes.metadata_fake import GcpMetadataFake
from safekit.vip import VipError, VipSpec, VipState, create_provider
from safekit.vip.gcp import GcpAliasIpProvider

PROJECT = "safekit-test"
ZONE_A, ZONE_B = "europe-west1-b", "europe-west1-c"
VIP = "10.128.0.100"


@pytest.fixture
def gcp() -> Iterator[GcpFake]:
    fake = GcpFake(PROJECT).start()
    fake.add_instance(ZONE_A, "node-a", "10.128.0.2")
    fake.add_instance(ZONE_B, "node-b", "10.128.0.3")
    yield fake
    fake.stop()


@pytest.fixture
def meta() -> Iterator[GcpMetadataFake]:
    fake = GcpMetadataFake(
        {
            "project/project-id": PROJECT,
            "instance/zone": f"projects/1234/zones/{ZONE_A}",
            "instance/name": "node-a",
            "instance/network-interfaces/0/ip": "10.128.0.2",
        }
    ).start()
    yield fake
    fake.stop()


def _node(provider: str, gcp: GcpFake, meta: GcpMetadataFake, zone: str, name: str, **options: str) -> Any:
    spec = VipSpec(
        ipaddress.IPv4Address(VIP),
        provider=provider,
        options={
            "endpoint": gcp.url,
            "metadata_url": meta.url,
            "project": PROJECT,
            "zone": zone,
            "instance": name,
            "private_ip": "10.128.0.9",
            "os_address": "off",
            **options,
        },
    )
    return create_provider(spec)


def test_route_failover_deletes_then_inserts(gcp: GcpFake, meta: GcpMetadataFake) -> None:
    a = _node("gcp_route", gcp, meta, ZONE_A, "node-a", route_name="safekit-vip")
    b = _node("gcp_route", gcp, meta, ZONE_B, "node-b", route_name="safekit-vip")

    async def scenario() -> None:
        assert (await a.check()).state is VipState.NOT_HELD
        assert await a.acquire() is True
        assert [c.action for c in a.calls if c.mutating] == ["compute.routes.create"]
        assert await a.acquire() is False
        assert (await a.check()).held
        assert await b.acquire() is True
        assert [c.action for c in b.calls if c.mutating] == ["compute.routes.delete", "compute.routes.create"]
        assert (await b.check()).held
        assert (await a.check()).state is VipState.NOT_HELD

    asyncio.run(scenario())
    route = gcp.state.routes["safekit-vip"]
    assert route["destRange"] == f"{VIP}/32"
    assert route["nextHopInstance"].endswith(f"zones/{ZONE_B}/instances/node-b")
    assert route["network"].endswith(f"projects/{PROJECT}/global/networks/default")


def test_route_waits_for_slow_operations(gcp: GcpFake, meta: GcpMetadataFake) -> None:
    gcp.lro_polls = 3  # each operation is read three times before it is done (and applied)
    b = _node("gcp_route", gcp, meta, ZONE_B, "node-b", route_name="safekit-vip")
    asyncio.run(b.acquire())
    assert "safekit-vip" in gcp.state.routes  # applied only because acquire waited for it
    assert len(gcp.calls("GET", "/global/operations/")) == 3


def test_route_operation_that_never_ends_hits_the_time_bound(gcp: GcpFake, meta: GcpMetadataFake) -> None:
    gcp.lro_polls = 10**6
    b = _node("gcp_route", gcp, meta, ZONE_B, "node-b", route_name="safekit-vip")
    started = time.monotonic()
    with pytest.raises(VipError, match=r"still running|did not finish"):
        asyncio.run(b.acquire(timeout=1.5))
    assert time.monotonic() - started < 2.5


def test_throttling_and_5xx_are_retried(gcp: GcpFake, meta: GcpMetadataFake) -> None:
    gcp.inject("GET /compute/v1/projects/safekit-test/global/routes/", status=429)
    gcp.inject("POST /compute/v1/projects/safekit-test/global/routes", status=503)
    a = _node("gcp_route", gcp, meta, ZONE_A, "node-a", route_name="safekit-vip")
    assert asyncio.run(a.acquire()) is True
    attempts = {c.action: c.attempts for c in a.calls}
    assert attempts["compute.routes.get"] == 2 and attempts["compute.routes.create"] == 2


def test_a_request_that_times_out_is_retried(gcp: GcpFake, meta: GcpMetadataFake) -> None:
    gcp.inject("GET /compute/v1/projects/safekit-test/global/routes/", delay=1.0)
    a = _node("gcp_route", gcp, meta, ZONE_A, "node-a", route_name="safekit-vip", attempt_timeout="0.3")
    assert asyncio.run(a.acquire(timeout=5)) is True
    assert a.calls[0].attempts == 2


def test_bad_requests_are_not_retried(gcp: GcpFake, meta: GcpMetadataFake) -> None:
    a = _node("gcp_route", gcp, meta, ZONE_A, "node-a", route_name="Not_A_Valid_Name")
    with pytest.raises(VipError, match=r"Invalid value for field 'resource.name'"):
        asyncio.run(a.acquire())
    assert [c.attempts for c in a.calls if c.action == "compute.routes.create"] == [1]


def test_alias_ip_moves_between_instances(gcp: GcpFake, meta: GcpMetadataFake) -> None:
    gcp.lro_polls = 2
    a = _node("gcp_alias_ip", gcp, meta, ZONE_A, "node-a")
    b = _node("gcp_alias_ip", gcp, meta, ZONE_B, "node-b")

    def aliases(zone: str, name: str) -> list[str]:
        return [
            r["ipCidrRange"]
            for r in gcp.state.instances[(zone, name)]["networkInterfaces"][0]["aliasIpRanges"]
        ]

    async def scenario() -> None:
        assert await a.acquire() is True
        assert aliases(ZONE_A, "node-a") == [f"{VIP}/32"]
        assert await a.acquire() is False
        assert a.mutating_calls() == 1
        # B takes over without A's release (A lost power): B removes it from A first
        assert await b.acquire() is True
        assert [c.action for c in b.calls if c.mutating] == ["compute.instances.updateNetworkInterface"] * 2
        assert (await b.check()).held
        assert (await a.check()).state is VipState.NOT_HELD
        assert await a.release() is False

    asyncio.run(scenario())
    assert aliases(ZONE_A, "node-a") == [] and aliases(ZONE_B, "node-b") == [f"{VIP}/32"]


def test_alias_ip_fake_is_strict_about_overlaps(gcp: GcpFake, meta: GcpMetadataFake) -> None:
    """Adding a range another instance has fails in the operation, as on GCP; the provider reports it."""
    b = _node("gcp_alias_ip", gcp, meta, ZONE_B, "node-b")
    asyncio.run(_node("gcp_alias_ip", gcp, meta, ZONE_A, "node-a").acquire())
    assert isinstance(b, GcpAliasIpProvider)

    async def add_without_removing() -> None:
        own = await b._own_nic()
        await b._update(own, [(f"{VIP}/32", "")])

    with pytest.raises(VipError, match="IP_IN_USE_BY_ANOTHER_RESOURCE"):
        asyncio.run(add_without_removing())


def test_identity_and_token_from_the_metadata_server(gcp: GcpFake, meta: GcpMetadataFake) -> None:
    spec = VipSpec(
        ipaddress.IPv4Address(VIP),
        provider="gcp_route",
        options={
            "endpoint": gcp.url,
            "metadata_url": meta.url,
            "route_name": "safekit-vip",
            "os_address": "off",
        },
    )
    node = create_provider(spec)
    asyncio.run(node.acquire())
    asyncio.run(node.check())
    assert gcp.state.routes["safekit-vip"]["nextHopInstance"].endswith(f"zones/{ZONE_A}/instances/node-a")
    assert meta.token_requests == 1  # cached until it expires
    assert all(r.headers["authorization"] == "Bearer gcp-token-1" for r in gcp.requests)


def test_without_a_token_the_api_refuses(gcp: GcpFake) -> None:
    # metadata at a closed port: no token, and the error says where it looked
    spec = VipSpec(
        ipaddress.IPv4Address(VIP),
        provider="gcp_route",
        options={
            "endpoint": gcp.url,
            "route_name": "r",
            "project": PROJECT,
            "zone": ZONE_A,
            "instance": "node-a",
            "private_ip": "10.128.0.2",
            "os_address": "off",
        },
    )
    with pytest.raises(VipError, match=r"metadata service .* cannot be reached"):
        asyncio.run(create_provider(spec).acquire(timeout=3))
    assert gcp.requests == []


def test_ilb_mode_makes_no_call_and_follows_acquire(gcp: GcpFake, meta: GcpMetadataFake) -> None:
    node = create_provider(
        VipSpec(ipaddress.IPv4Address(VIP), provider="gcp_ilb")
    )  # os_address off by default
    assert asyncio.run(node.check()).state is VipState.NOT_HELD
    asyncio.run(node.acquire())
    assert asyncio.run(node.check()).held
    asyncio.run(node.release())
    assert gcp.requests == [] and meta.requests == []
