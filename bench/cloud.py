"""API calls per failover and time to acquire of each cloud VIP provider, against the fakes.

For every provider (src/safekit/vip/aws.py, azure.py, gcp.py) two nodes A and B share one VIP;
after a warm-up the VIP moves back and forth RUNS times. Two scenarios:

- `after_release`: the old primary releases (a switchover, or a stop), then the new one acquires;
- `old_node_lost`: the new primary acquires while the old one still holds the VIP (power cut).
  The old node's release afterwards (it coming back) is not counted.

Counted per failover: the API calls each provider records (`CloudVipProvider.calls`: one per
API operation, which is also what the cloud's audit log and permissions see), of them the
mutating ones (target, issue 18: <= 3 per acquire), and the HTTP requests that reached the
endpoint (retries, polls of long-running operations). Timed: the new node's `acquire()`, p50/max.

These are NOT real clouds: AWS is moto's server (a separate process, reset at start), Azure and
GCP are the strict local fakes of the unit tests (tests/fakes/azure_fake.py, gcp_fake.py), all on
127.0.0.1, with every credential and identity given explicitly and no metadata service or
endpoint of a real cloud reachable. The call counts are the providers' own and hold on a real
cloud; the times only measure our code, the SDKs and a local HTTP server - a real control plane
takes seconds (docs/vip.md). The route providers use one route table (AWS: one call per table).

Writes bench/results/cloud.json. Usage: bench/cloud.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the unit tests' fakes
from common import summary, write_result
from fakes.azure_fake import AzureFake
from fakes.gcp_fake import GcpFake
from fakes.metadata_fake import AzureImdsFake, GcpMetadataFake

RUNS = 20
TARGET_MUTATING_MAX = 3
CLOSED = "http://127.0.0.1:9"  # nothing listens: a connection is refused at once
AWS_REGION = "us-east-1"
AZ_SUB, AZ_RG = "00000000-0000-0000-0000-000000000001", "rg-safekit"
AZ_MAC_A, AZ_MAC_B = "00-0D-3A-00-00-0A", "00-0D-3A-00-00-0B"
GCP_PROJECT = "safekit-bench"
GCP_ZONE_A, GCP_ZONE_B = "europe-west1-b", "europe-west1-c"
# The fakes' default (lro_polls=0): a long-running operation is done at its first status read
# (Azure) or at once (GCP). A real control plane needs more polls: more read requests, the same
# calls and mutating calls.
AZ_LRO = "ARM operations succeed at the first status read (fake lro_polls=0)"
GCP_LRO = "Compute operations are done at once (fake lro_polls=0)"


def offline_environment() -> None:
    """As the unit tests' conftest: no SDK can find a real cloud, its credentials or a proxy."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "AZURE_", "GOOGLE_", "GCE_", "MSI_", "IDENTITY_")) or name.lower() in (
            "http_proxy",
            "https_proxy",
        ):
            del os.environ[name]
    os.environ.update(
        SAFEKIT_AWS_METADATA_URL=CLOSED,
        SAFEKIT_AZURE_METADATA_URL=CLOSED,
        SAFEKIT_GCP_METADATA_URL=CLOSED,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - moto accepts any key
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AZURE_POD_IDENTITY_AUTHORITY_HOST=CLOSED,
        NO_PROXY="127.0.0.1,localhost",
    )


# ----------------------------------------------------------------------------- the stand-ins
@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server in its own process, ended by its PID."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):  # noqa: S310 - loopback
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")  # noqa: S310 - loopback
        with urllib.request.urlopen(reset, timeout=5):  # noqa: S310 - loopback
            pass
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Case:
    """One provider's two nodes, and how to count the HTTP requests a node's calls made."""

    provider: str
    stand_in: str
    nodes: tuple[Any, Any]
    http_requests: Callable[[], int]
    setup: str


def _spec(address: str, provider: str, **options: str) -> Any:
    from safekit.vip import VipSpec, create_provider  # noqa: PLC0415 - after the environment is set

    return create_provider(VipSpec(ipaddress.IPv4Address(address), provider=provider, options=options))


def aws_cases(moto: str) -> list[Case]:
    import boto3  # noqa: PLC0415 - after the environment is set

    ec2 = boto3.client("ec2", region_name=AWS_REGION, endpoint_url=moto)
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
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    allocation = ec2.allocate_address(Domain="vpc", Address="198.51.100.7")
    elb = boto3.client("elbv2", region_name=AWS_REGION, endpoint_url=moto)
    group = elb.create_target_group(
        Name="safekit",
        Protocol="TCP",
        Port=80,
        VpcId=vpc,
        TargetType="instance",
        HealthCheckPort="9010",
        HealthCheckPath="/var/modules/web/ready.txt",
        HealthCheckProtocol="HTTP",
    )["TargetGroups"][0]["TargetGroupArn"]
    common = {"endpoint": moto, "region": AWS_REGION, "os_address": "off"}
    sent = [0]

    def count(**_: Any) -> None:
        sent[0] += 1

    def pair(provider: str, address: str, service: str, **options: str) -> tuple[Any, Any]:
        made = tuple(_spec(address, provider, **common, **node, **options) for node in nodes)
        for node in made:
            # identity from the options (no metadata call); one client per service, counted
            asyncio.run(node.identity())
            node.client(service).meta.events.register("before-send", count)
        return made[0], made[1]

    def http() -> int:
        return sent[0]

    stand_in = "moto server (moto[server] 5, a local process), not AWS"
    return [
        Case(
            "aws_route",
            stand_in,
            pair("aws_route", "192.0.2.10", "ec2", route_tables=table),
            http,
            "1 route table",
        ),
        Case(
            "aws_eni_ip",
            stand_in,
            pair("aws_eni_ip", "10.0.1.200", "ec2"),
            http,
            "secondary IP, reassignment",
        ),
        Case(
            "aws_eip",
            stand_in,
            pair("aws_eip", allocation["PublicIp"], "ec2", allocation_id=allocation["AllocationId"]),
            http,
            "Elastic IP, reassociation",
        ),
        Case(
            "aws_lb",
            stand_in,
            pair("aws_lb", "10.0.1.250", "elbv2", target_group_arn=group),
            http,
            "target group registration (without target_group_arn: no call)",
        ),
    ]


def azure_cases(stack: ExitStack) -> list[Case]:
    from safekit.vip.azure import API_VERSION  # noqa: PLC0415 - after the environment is set

    imds = AzureImdsFake(
        {
            "compute": {
                "subscriptionId": AZ_SUB,
                "resourceGroupName": AZ_RG,
                "name": "vm-a",
                "location": "westeurope",
            },
            "network": {
                "interface": [
                    {
                        "macAddress": AZ_MAC_A.replace("-", ""),
                        "ipv4": {"ipAddress": [{"privateIpAddress": "10.1.0.4"}]},
                    }
                ]
            },
        }
    ).start()
    stack.callback(imds.stop)
    os.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = imds.url  # managed identity's tokens
    arm = AzureFake(AZ_SUB, AZ_RG, API_VERSION).start()
    stack.callback(arm.stop)
    arm.add_route_table("rt-app")
    arm.add_nic("nic-a", AZ_MAC_A, "10.1.0.4")
    arm.add_nic("nic-b", AZ_MAC_B, "10.1.0.5")
    hosts = [("vm-a", "10.1.0.4", AZ_MAC_A), ("vm-b", "10.1.0.5", AZ_MAC_B)]

    def pair(provider: str, **options: str) -> tuple[Any, Any]:
        made = [
            _spec(
                "10.1.0.100",
                provider,
                endpoint=arm.url,
                metadata_url=imds.url,
                subscription_id=AZ_SUB,
                resource_group=AZ_RG,
                vm_name=vm,
                private_ip=ip,
                mac=mac,
                os_address="off",
                **options,
            )
            for vm, ip, mac in hosts
        ]
        return made[0], made[1]

    def http() -> int:
        return len(arm.requests)

    stand_in = "strict local fake of ARM (tests/fakes/azure_fake.py, azure-mgmt-network client), not Azure"
    lb = (_spec("10.1.0.100", "azure_lb"), _spec("10.1.0.100", "azure_lb"))
    return [
        Case(
            "azure_route",
            stand_in,
            pair("azure_route", route_table="rt-app"),
            http,
            f"1 route table; {AZ_LRO}",
        ),
        Case("azure_nic_ip", stand_in, pair("azure_nic_ip"), http, f"secondary IP configuration; {AZ_LRO}"),
        Case("azure_lb", "none: no cloud call", lb, lambda: 0, "load-balancer probe mode"),
    ]


def gcp_cases(stack: ExitStack) -> list[Case]:
    meta = GcpMetadataFake(
        {
            "project/project-id": GCP_PROJECT,
            "instance/zone": f"projects/1234/zones/{GCP_ZONE_A}",
            "instance/name": "node-a",
            "instance/network-interfaces/0/ip": "10.128.0.2",
        }
    ).start()
    stack.callback(meta.stop)
    gcp = GcpFake(GCP_PROJECT).start()
    stack.callback(gcp.stop)
    gcp.add_instance(GCP_ZONE_A, "node-a", "10.128.0.2")
    gcp.add_instance(GCP_ZONE_B, "node-b", "10.128.0.3")
    hosts = [(GCP_ZONE_A, "node-a", "10.128.0.2"), (GCP_ZONE_B, "node-b", "10.128.0.3")]

    def pair(provider: str, **options: str) -> tuple[Any, Any]:
        made = [
            _spec(
                "10.128.0.100",
                provider,
                endpoint=gcp.url,
                metadata_url=meta.url,
                project=GCP_PROJECT,
                zone=zone,
                instance=name,
                private_ip=ip,
                os_address="off",
                **options,
            )
            for zone, name, ip in hosts
        ]
        return made[0], made[1]

    def http() -> int:
        return len(gcp.requests)

    stand_in = (
        "strict local fake of Compute Engine (tests/fakes/gcp_fake.py, google-cloud-compute REST), not GCP"
    )
    ilb = (_spec("10.128.0.100", "gcp_ilb"), _spec("10.128.0.100", "gcp_ilb"))
    return [
        Case(
            "gcp_route",
            stand_in,
            pair("gcp_route", route_name="safekit-vip"),
            http,
            f"custom route; {GCP_LRO}",
        ),
        Case("gcp_alias_ip", stand_in, pair("gcp_alias_ip"), http, f"alias IP range /32; {GCP_LRO}"),
        Case("gcp_ilb", "none: no cloud call", ilb, lambda: 0, "internal load balancer probe mode"),
    ]


# ----------------------------------------------------------------------------- the measure
@dataclass
class Counted:
    calls: int
    mutating: int
    actions: tuple[str, ...]
    http: int
    retries: int


async def counted(node: Any, http: Callable[[], int], operation: Callable[[], Awaitable[bool]]) -> Counted:
    before, sent = len(node.calls), http()
    await operation()
    made = node.calls[before:]
    return Counted(
        calls=len(made),
        mutating=sum(1 for c in made if c.mutating),
        actions=tuple(c.action for c in made),
        http=http() - sent,
        retries=sum(c.attempts for c in made) - len(made),
    )


def _figures(samples: list[Counted]) -> dict[str, Any]:
    sequences = sorted({" ".join(s.actions) or "(none)" for s in samples})
    return {
        "calls": _range([s.calls for s in samples]),
        "mutating_calls": _range([s.mutating for s in samples]),
        "http_requests": _range([s.http for s in samples]),
        "retries": sum(s.retries for s in samples),
        "actions": sequences,
    }


def _range(values: list[int]) -> int | dict[str, int]:
    """One number when every run agrees (the usual case), else its min and max."""
    return values[0] if len(set(values)) == 1 else {"min": min(values), "max": max(values)}


async def failovers(case: Case, runs: int, *, release_first: bool) -> dict[str, Any]:
    a, b = case.nodes
    # warm-up: A then B acquire once each (clients, tokens), and A holds the VIP again
    for node in (a, b, a):
        await node.acquire()
    await b.release()
    releases: list[Counted] = []
    acquires: list[Counted] = []
    times: list[float] = []
    for run in range(runs):
        old, new = (a, b) if run % 2 == 0 else (b, a)
        if release_first:
            releases.append(await counted(old, case.http_requests, old.release))
        started = time.perf_counter()
        acquires.append(await counted(new, case.http_requests, new.acquire))
        times.append(time.perf_counter() - started)
        if not release_first:
            await old.release()  # the old node coming back: not counted
        if not (await new.check()).held or (await old.check()).held:
            raise RuntimeError(f"{case.provider}: run {run}: the VIP did not move to the new node")
    result = {"acquire": _figures(acquires), "acquire_time": summary(times)}
    if release_first:
        result["release_on_old_node"] = _figures(releases)
    worst = max(s.mutating for s in acquires)
    result["acquire"]["meets_target"] = worst <= TARGET_MUTATING_MAX
    return result


def measure(case: Case, runs: int) -> dict[str, Any]:
    async def both() -> dict[str, Any]:
        return {
            "after_release": await failovers(case, runs, release_first=True),
            "old_node_lost": await failovers(case, runs, release_first=False),
        }

    return {"stand_in": case.stand_in, "setup": case.setup, **asyncio.run(both())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS, help=f"failovers per scenario (default {RUNS})")
    args = parser.parse_args()
    offline_environment()
    providers: dict[str, Any] = {}
    with ExitStack() as stack:
        moto = stack.enter_context(moto_server())
        cases = [*aws_cases(moto), *azure_cases(stack), *gcp_cases(stack)]
        for case in cases:
            providers[case.provider] = measure(case, args.runs)
    worst = {
        name: max(
            _max(figures[scenario]["acquire"]["mutating_calls"])
            for scenario in ("after_release", "old_node_lost")
        )
        for name, figures in providers.items()
    }
    result = {
        "note": (
            "Measured against stand-ins, not real clouds: moto's server for AWS, the strict local "
            "fakes of tests/fakes for Azure and GCP, on 127.0.0.1. Call counts are the providers' "
            "own and carry over; times measure our code, the SDKs and a local server only (a real "
            "control plane takes seconds)."
        ),
        "runs_per_scenario": args.runs,
        "target": {"mutating_calls_per_acquire_max": TARGET_MUTATING_MAX},
        "worst_mutating_calls_per_acquire": worst,
        "meets_target": all(n <= TARGET_MUTATING_MAX for n in worst.values()),
        "providers": providers,
    }
    path = write_result("cloud", result)
    for name, figures in providers.items():
        after, lost = figures["after_release"], figures["old_node_lost"]
        print(
            f"{name:13} acquire after release: {after['acquire']['calls']} calls "
            f"({after['acquire']['mutating_calls']} mutating), p50 {after['acquire_time']['p50_s']} s; "
            f"old node lost: {lost['acquire']['calls']} calls ({lost['acquire']['mutating_calls']} mutating)"
        )
    print(f"wrote {path}")
    return 0 if result["meets_target"] else 1


def _max(value: int | dict[str, int]) -> int:
    return value if isinstance(value, int) else value["max"]


if __name__ == "__main__":
    sys.exit(main())
