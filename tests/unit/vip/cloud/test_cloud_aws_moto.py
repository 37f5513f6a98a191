"""AWS providers against moto's server (a real HTTP server in its own process, reset per test) with
the real boto3: route tables, ENIs, Elastic IPs, target groups, and a failover between two
"instances" that moves the route.

moto is laxer than AWS in two ways that matter here: AssignPrivateIpAddresses with
AllowReassignment leaves the address on the old ENI too (AWS moves it), and target health is
always "healthy". Our code never relies on either: acquire asks for reassignment (asserted on the
request itself) and registration is judged by registration, not health.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber

from safekit.vip import VipError, VipSpec, VipState, create_provider
from safekit.vip.aws import AwsEniIpProvider, AwsLbProvider, AwsRouteProvider
from safekit.vip.cloud import permissions

REGION = "us-east-1"
VIP_ROUTE = "192.0.2.10"  # outside the VPC: routed as a /32


def _ec2(moto: str) -> Any:
    return boto3.client("ec2", region_name=REGION, endpoint_url=moto)


def _world(moto: str) -> dict[str, Any]:
    """A VPC, a subnet, two instances with their ENIs, two route tables."""
    ec2 = _ec2(moto)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    nodes = []
    for _ in range(2):
        instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]
        eni = instance["NetworkInterfaces"][0]
        nodes.append(
            {
                "instance_id": instance["InstanceId"],
                "eni_id": eni["NetworkInterfaceId"],
                "private_ip": eni["PrivateIpAddress"],
            }
        )
    tables = [ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"] for _ in range(2)]
    return {"vpc": vpc, "subnet": subnet, "nodes": nodes, "tables": tables}


def _provider(name: str, address: str, moto: str, node: dict[str, str], **options: str) -> Any:
    spec = VipSpec(
        ipaddress.IPv4Address(address),
        provider=name,
        options={"endpoint": moto, "region": REGION, "os_address": "off", **node, **options},
    )
    return create_provider(spec)


def _route_target(moto: str, table: str, cidr: str) -> str | None:
    routes = _ec2(moto).describe_route_tables(RouteTableIds=[table])["RouteTables"][0]["Routes"]
    return next((r.get("NetworkInterfaceId") for r in routes if r.get("DestinationCidrBlock") == cidr), None)


def test_route_failover_moves_the_route_in_every_table(moto: str) -> None:
    world = _world(moto)
    a, b = world["nodes"]
    tables = ",".join(world["tables"])
    node_a = _provider("aws_route", VIP_ROUTE, moto, a, route_tables=tables)
    node_b = _provider("aws_route", VIP_ROUTE, moto, b, route_tables=tables)
    assert isinstance(node_a, AwsRouteProvider)

    async def scenario() -> None:
        assert (await node_b.check()).state is VipState.NOT_HELD
        assert await node_a.acquire() is True  # no route yet: created in both tables
        assert [c.action for c in node_a.calls if c.mutating] == ["ec2:CreateRoute", "ec2:CreateRoute"]
        assert await node_a.acquire() is False  # idempotent: read, nothing to change
        assert node_a.mutating_calls() == 2
        # failover: node A is gone, node B takes the route over
        await node_a.release()
        started = time.monotonic()
        assert await node_b.acquire() is True
        assert time.monotonic() - started < 5
        assert [c.action for c in node_b.calls if c.mutating] == ["ec2:ReplaceRoute", "ec2:ReplaceRoute"]
        assert (await node_b.check()).held
        verdict = await node_a.check()
        assert verdict.state is VipState.NOT_HELD and b["eni_id"] in verdict.reason

    asyncio.run(scenario())
    for table in world["tables"]:
        assert _route_target(moto, table, f"{VIP_ROUTE}/32") == b["eni_id"]


def test_route_half_moved_is_degraded_and_acquire_fixes_only_that_table(moto: str) -> None:
    world = _world(moto)
    a, b = world["nodes"]
    t1, t2 = world["tables"]
    ec2 = _ec2(moto)
    ec2.create_route(RouteTableId=t1, DestinationCidrBlock=f"{VIP_ROUTE}/32", NetworkInterfaceId=a["eni_id"])
    ec2.create_route(RouteTableId=t2, DestinationCidrBlock=f"{VIP_ROUTE}/32", NetworkInterfaceId=b["eni_id"])
    node_a = _provider("aws_route", VIP_ROUTE, moto, a, route_tables=f"{t1} {t2}")

    async def scenario() -> None:
        verdict = await node_a.check()
        assert verdict.state is VipState.DEGRADED and t2 in verdict.reason
        assert await node_a.acquire() is True
        assert [c.action for c in node_a.calls if c.mutating] == ["ec2:ReplaceRoute"]
        assert (await node_a.check()).held

    asyncio.run(scenario())


def test_eni_ip_reassignment_moves_the_address(moto: str) -> None:
    world = _world(moto)
    a, b = world["nodes"]
    vip = "10.0.1.200"
    node_a = _provider("aws_eni_ip", vip, moto, a)
    node_b = _provider("aws_eni_ip", vip, moto, b)
    assert isinstance(node_b, AwsEniIpProvider)
    seen: list[dict[str, Any]] = []

    async def scenario() -> None:
        assert await node_a.acquire() is True
        assert await node_a.acquire() is False
        assert (await node_a.check()).held
        # record what boto3 really sends for node B (a botocore event on the real client)
        await node_b.identity()
        node_b.client("ec2").meta.events.register(
            "before-parameter-build.ec2.AssignPrivateIpAddresses",
            lambda params, **_: seen.append(dict(params)),
        )
        assert await node_b.acquire() is True
        assert (await node_b.check()).held

    asyncio.run(scenario())
    # AWS semantics: one call, with reassignment, moves the address off the other ENI.
    assert seen == [
        {"NetworkInterfaceId": b["eni_id"], "PrivateIpAddresses": [vip], "AllowReassignment": True}
    ]
    # moto's laxness: the address is still listed on A's ENI (on AWS it would be gone). Our own
    # release on A then removes it, which is what leaves B the only holder in both worlds.
    on_a = _ec2(moto).describe_network_interfaces(NetworkInterfaceIds=[a["eni_id"]])["NetworkInterfaces"][0]
    assert vip in [p["PrivateIpAddress"] for p in on_a["PrivateIpAddresses"]]

    async def release_a() -> None:
        assert await node_a.release() is True
        assert (await node_a.check()).state is VipState.NOT_HELD
        assert await node_a.release() is False
        assert (await node_b.check()).held

    asyncio.run(release_a())


def test_eni_ip_refuses_a_primary_address(moto: str) -> None:
    world = _world(moto)
    a, _ = world["nodes"]
    node = _provider("aws_eni_ip", a["private_ip"], moto, a)
    with pytest.raises(VipError, match="primary IP"):
        asyncio.run(node.acquire())


def test_eip_associates_and_moves(moto: str) -> None:
    world = _world(moto)
    a, b = world["nodes"]
    ec2 = _ec2(moto)
    allocation = ec2.allocate_address(Domain="vpc", Address="198.51.100.7")
    eip, alloc_id = allocation["PublicIp"], allocation["AllocationId"]
    node_a = _provider("aws_eip", eip, moto, a, allocation_id=alloc_id)
    node_b = _provider("aws_eip", eip, moto, b, allocation_id=alloc_id)

    async def scenario() -> None:
        assert await node_a.acquire() is True
        assert await node_a.acquire() is False
        assert await node_b.acquire() is True
        assert (await node_b.check()).held
        assert (await node_a.check()).state is VipState.NOT_HELD
        assert await node_a.release() is False  # not ours: nothing to do
        assert await node_b.release() is True
        assert (await node_b.check()).state is VipState.NOT_HELD

    asyncio.run(scenario())
    assert not ec2.describe_addresses(AllocationIds=[alloc_id])["Addresses"][0].get("NetworkInterfaceId")


def test_eip_refuses_a_mismatched_address(moto: str) -> None:
    world = _world(moto)
    a, _ = world["nodes"]
    alloc_id = _ec2(moto).allocate_address(Domain="vpc")["AllocationId"]
    node = _provider("aws_eip", "203.0.113.9", moto, a, allocation_id=alloc_id)
    with pytest.raises(VipError, match="fix virtual_addr or allocation_id"):
        asyncio.run(node.acquire())


def test_lb_registers_while_serving(moto: str) -> None:
    world = _world(moto)
    a, b = world["nodes"]
    elb = boto3.client("elbv2", region_name=REGION, endpoint_url=moto)
    group = elb.create_target_group(
        Name="safekit",
        Protocol="TCP",
        Port=80,
        VpcId=world["vpc"],
        TargetType="instance",
        HealthCheckPort="9010",
        HealthCheckPath="/var/modules/web/ready.txt",
        HealthCheckProtocol="HTTP",
    )["TargetGroups"][0]["TargetGroupArn"]
    node_a = _provider("aws_lb", "10.0.1.250", moto, a, target_group_arn=group)
    node_b = _provider("aws_lb", "10.0.1.250", moto, b, target_group_arn=group)
    assert isinstance(node_a, AwsLbProvider)

    def registered() -> set[str]:
        described = elb.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
        return {d["Target"]["Id"] for d in described}

    async def scenario() -> None:
        assert (await node_a.check()).state is VipState.NOT_HELD
        assert await node_a.acquire() is True
        assert registered() == {a["instance_id"]}
        assert await node_a.acquire() is False
        assert (await node_a.check()).held
        await node_a.release()
        await node_b.acquire()
        assert registered() == {b["instance_id"]}

    asyncio.run(scenario())


def test_lb_without_target_group_makes_no_call(moto: str) -> None:
    node = _provider(
        "aws_lb", "10.0.1.250", moto, {"instance_id": "i-1", "eni_id": "eni-1", "private_ip": "10.0.1.5"}
    )
    asyncio.run(node.acquire())
    assert node.calls == [] and asyncio.run(node.check()).held


def test_validate_reads_then_dry_runs_the_call_acquire_would_make(moto: str) -> None:
    world = _world(moto)
    a, _ = world["nodes"]
    table = world["tables"][0]
    node = _provider("aws_route", VIP_ROUTE, moto, a, route_tables=table)
    # moto ignores DryRun on route calls (EC2 answers DryRunOperation or UnauthorizedOperation
    # before doing anything): validate notices and says so rather than report "allowed".
    with pytest.raises(VipError, match="ignored DryRun"):
        asyncio.run(node.validate())
    assert [c.action for c in node.calls] == ["ec2:DescribeRouteTables", "ec2:CreateRoute"]
    missing = _provider("aws_route", VIP_ROUTE, moto, a, route_tables="rtb-0123456789abcdef0")
    with pytest.raises(VipError):
        asyncio.run(missing.validate())


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        ("DryRunOperation", "allowed (dry run)"),
        ("UnauthorizedOperation", "is not allowed for this instance's role"),
    ],
)
def test_dry_run_answers_of_ec2(code: str, outcome: str) -> None:
    """What EC2 answers a dry run, given to the real boto3 client by botocore's Stubber."""
    node = _provider(
        "aws_route",
        VIP_ROUTE,
        "http://127.0.0.1:9",
        {"instance_id": "i-1", "eni_id": "eni-1", "private_ip": "10.0.1.5"},
        route_tables="rtb-1",
    )
    asyncio.run(node.identity())
    ec2 = node.client("ec2")
    with Stubber(ec2) as stub:
        stub.add_response("describe_route_tables", {"RouteTables": [{"RouteTableId": "rtb-1", "Routes": []}]})
        stub.add_client_error(
            "create_route",
            service_error_code=code,
            http_status_code=412 if code == "DryRunOperation" else 403,
        )
        if code == "DryRunOperation":
            assert f"rtb-1: ec2:CreateRoute: {outcome}" in asyncio.run(node.validate())
        else:
            with pytest.raises(VipError, match=outcome):
                asyncio.run(node.validate())


def test_identity_from_imdsv2_with_one_cached_token(moto: str, aws_imds: Any) -> None:
    world = _world(moto)
    a, _ = world["nodes"]
    aws_imds.values.update(
        {
            "instance-id": a["instance_id"],
            "placement/region": REGION,
            "mac": "0e:00:00:00:00:01",
            "network/interfaces/macs/0e:00:00:00:00:01/interface-id": a["eni_id"],
            "local-ipv4": a["private_ip"],
        }
    )
    spec = VipSpec(
        ipaddress.IPv4Address("10.0.1.201"),
        provider="aws_eni_ip",
        options={"endpoint": moto, "metadata_url": aws_imds.url, "os_address": "off"},
    )
    node = create_provider(spec)
    asyncio.run(node.acquire())
    assert (asyncio.run(node.check())).held
    assert len(aws_imds.calls("PUT", "/latest/api/token")) == 1  # one session token for every lookup
    assert len(aws_imds.calls("GET")) == 5
    assert all(r.headers.get("x-aws-ec2-metadata-token") for r in aws_imds.calls("GET"))


def test_metadata_unreachable_fails_fast_and_says_why() -> None:
    spec = VipSpec(ipaddress.IPv4Address("10.0.1.201"), provider="aws_eni_ip", options={"os_address": "off"})
    node = create_provider(spec)
    started = time.monotonic()
    with pytest.raises(VipError, match=r"metadata service .* cannot be reached"):
        asyncio.run(node.acquire(timeout=5))
    assert time.monotonic() - started < 2


def test_options_are_checked_at_load_time() -> None:
    with pytest.raises(VipError, match=r"missing option.*route_tables"):
        create_provider(VipSpec(ipaddress.IPv4Address(VIP_ROUTE), provider="aws_route"))
    with pytest.raises(VipError, match=r"unknown option\(s\) route_table;"):
        create_provider(
            VipSpec(ipaddress.IPv4Address(VIP_ROUTE), provider="aws_route", options={"route_table": "x"})
        )


def test_every_call_made_is_declared() -> None:
    # `require` runs on every call; here: the declared lists name real boto3 operations.
    session = botocore.session.get_session()
    for provider in ("aws_route", "aws_eni_ip", "aws_eip", "aws_lb"):
        for permission in permissions.PROVIDERS[provider].permissions:
            service, operation = permission.action.split(":")
            model = session.get_service_model("ec2" if service == "ec2" else "elbv2")
            assert operation in model.operation_names, permission.action
