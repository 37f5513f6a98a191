"""The `aws_route` VIP provider driven by a real mirror module on lab hosts, against moto's server.

moto's server runs on the controller, listening on its lab address (LAN 0, .253), so `safekitd` on
the lab hosts reaches it over the lab network; it holds a VPC, a route table and two instances
whose ENIs stand for node1 and node2. Each node learns which instance it is from its own IMDSv2
fake (tests/fakes), also on the controller's lab address: the module is the same on both nodes,
so the per-node part is the daemon's environment (`SAFEKIT_AWS_METADATA_URL`, read by
safekit.vip.cloud.metadata), with fixed test credentials and nothing else of this machine's.

The tests run in order on one cluster: node1 primary (the /32 routes to its ENI, the health
endpoint answers 200 there only) -> power cut of node1 -> node2 ALONE and the route on node2's ENI
within a bound -> `safekit stop` on node2 releases -> with the route table gone, acquire fails:
node2 never reports ready (404), its log says why, and past maxloop the module stops. The last
test checks that the address a failed acquire added on the node is removed again (the state
machine releases after a failed acquire).

Network: only 127.0.0.1 and the lab's 198.18.0.0/15 addresses are used; every SDK call has an
explicit endpoint and fake credentials, and the lab hosts have no route out.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from safekit.lab import Lab
from safekit.lab.cluster import BIN, PIDFILE, LabCluster
from safekit.lab.run_names import run_lab_name
from safekit.membership import clusterkey

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: the fakes package

from fakes.metadata_fake import AwsImdsFake

LAB = run_lab_name("itcloud")
MODULE = "cvip"
REGION = "us-east-1"
NODES = ("node1", "node2")
HEALTH_PORT = 9010
FAILOVER_BOUND = 30.0
"""Seconds from the power cut until the route targets node2's ENI (takeover + one acquire)."""
LOGS = Path("/var/tmp/safekit-itcloud-logs")  # kept for a post-mortem of a failed run

USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone" failover="on" maxloop="2" loop_interval="24h">
  <heart>
    <heartbeat name="default"/>
  </heart>
  <vip>
    <interface_list>
      <interface>
        <real_interface>
          <virtual_addr addr="{vip}" where="one_side_alias" provider="aws_route">
            <option name="route_tables" value="{table}"/>
            <option name="endpoint" value="{endpoint}"/>
            <option name="attempt_timeout" value="3"/>
          </virtual_addr>
        </real_interface>
      </interface>
    </interface_list>
  </vip>
</service>
</safe>
"""


@dataclass
class Instance:
    node: str
    instance_id: str
    eni_id: str
    mac: str
    private_ip: str
    imds: AwsImdsFake | None = None


@dataclass
class World:
    controller: str
    endpoint: str
    vpc: str
    table: str
    vip: str
    instances: dict[str, Instance]

    @property
    def cidr(self) -> str:
        return f"{self.vip}/32"


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    lab = Lab(LAB)
    lab.down()  # leftovers of an interrupted earlier run
    lab.up(nodes=2, lans=1)
    try:
        yield lab
    finally:
        lab.down()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _offline_env() -> dict[str, str]:
    """An environment where boto3 can only use what it is given: fixed credentials, no instance
    role lookup, no shared config, no proxy; nothing inherited from this machine but PATH."""
    return {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": "/root",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "NO_PROXY": "*",
    }


@pytest.fixture(scope="module")
def moto(lab: Lab) -> Iterator[str]:
    """moto's server on the controller's lab address, a process of its own, ended by its PID."""
    host = str(lab.plan().controller_address.ip)
    port = _free_port(host)
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_offline_env(),
    )
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _moto_answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start on {url}")
            time.sleep(0.1)
        yield url
    finally:
        _end(process)


def _end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _moto_answers(url: str) -> bool:
    try:
        with _opener().open(f"{url}/moto-api/", timeout=1):
            return True
    except OSError:
        return False


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _ec2(endpoint: str) -> Any:
    """The test's own client: explicit endpoint, credentials and region; nothing looked up."""
    return boto3.session.Session().client(
        "ec2",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 2}, connect_timeout=2, read_timeout=10),
    )


@pytest.fixture(scope="module")
def world(lab: Lab, moto: str) -> Iterator[World]:
    """A VPC, a subnet, a route table and one instance (with its ENI) per node, each node's
    identity served by its own IMDSv2 fake."""
    ec2 = _ec2(moto)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    controller = str(lab.plan().controller_address.ip)
    instances: dict[str, Instance] = {}
    for node in NODES:
        found = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]
        eni = found["NetworkInterfaces"][0]
        instance = Instance(
            node, found["InstanceId"], eni["NetworkInterfaceId"], eni["MacAddress"], eni["PrivateIpAddress"]
        )
        instance.imds = AwsImdsFake(
            {
                "instance-id": instance.instance_id,
                "placement/region": REGION,
                "mac": instance.mac,
                f"network/interfaces/macs/{instance.mac}/interface-id": instance.eni_id,
                "local-ipv4": instance.private_ip,
            },
            controller,
        ).start()
        # the route provider forwards the VIP's packets: AWS wants source/destination check off
        ec2.modify_network_interface_attribute(
            NetworkInterfaceId=instance.eni_id, SourceDestCheck={"Value": False}
        )
        instances[node] = instance
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    vip = str(lab.plan().vips[0])  # outside the VPC's 10.0.0.0/16: routed as a /32
    try:
        yield World(controller, moto, vpc, table, vip, instances)
    finally:
        for instance in instances.values():
            if instance.imds is not None:
                instance.imds.stop()


@pytest.fixture(scope="module")
def cluster(lab: Lab, world: World) -> Iterator[LabCluster]:
    # Lab hosts have a private /tmp: the module is staged where they all see it.
    root = Path(tempfile.mkdtemp(prefix="safekit-itcloud-", dir="/var/tmp"))
    module = root / MODULE
    (module / "conf").mkdir(parents=True)
    (module / "bin").mkdir()
    (module / "conf" / "userconfig.xml").write_text(
        USERCONFIG.format(vip=world.vip, table=world.table, endpoint=world.endpoint)
    )
    root.chmod(0o755)
    cluster = LabCluster(lab)
    try:
        cluster.install(module, key=clusterkey.generate_key())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for node in NODES:
        imds = world.instances[node].imds
        assert imds is not None
        start_daemon(cluster, node, {**_offline_env(), "SAFEKIT_AWS_METADATA_URL": imds.url})
    try:
        yield cluster
    finally:
        shutil.rmtree(LOGS, ignore_errors=True)
        LOGS.mkdir()
        for node in NODES:
            if node not in lab.require_state().faults.killed:
                (LOGS / f"{node}.log").write_text(cluster.log(node, MODULE))
                cluster.stop_daemon(node, timeout=30)


def start_daemon(cluster: LabCluster, node: str, env: dict[str, str]) -> None:
    """`LabCluster.start_daemon`, with the daemon's environment given whole (per node)."""
    result = cluster.lab.exec(
        node, [str(BIN / "safekitd"), "--daemon", "--pidfile", PIDFILE], timeout=30, env=env
    )
    assert result.returncode == 0, f"{node}: safekitd did not start: {result.stderr.strip()}"
    cluster.wait_socket(node)


# ----------------------------------------------------------------------------- helpers
def route_target(world: World) -> str | None:
    routes = _ec2(world.endpoint).describe_route_tables(RouteTableIds=[world.table])["RouteTables"][0]
    matching = [r for r in routes["Routes"] if r.get("DestinationCidrBlock") == world.cidr]
    assert len(matching) <= 1, matching
    return matching[0].get("NetworkInterfaceId") if matching else None


def wait_route(world: World, eni_id: str, timeout: float) -> float:
    """Seconds until the VIP's route targets `eni_id`."""
    started = time.monotonic()
    current = None
    while time.monotonic() - started < timeout:
        current = route_target(world)
        if current == eni_id:
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"route {world.cidr} targets {current}, not {eni_id}, after {timeout:g} s")


def health(lab: Lab, node: str) -> int:
    """The health endpoint's status for the module, probed from the controller as a cloud LB would."""
    address = lab.plan().host(node).address
    url = f"http://{address}:{HEALTH_PORT}/var/modules/{MODULE}/ready.txt"
    try:
        with _opener().open(url, timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def has_vip(lab: Lab, node: str, vip: str) -> bool:
    out = lab.exec(node, ["ip", "-4", "-o", "addr", "show"], check=True).stdout
    return f" {vip}/" in out


# ----------------------------------------------------------------------------- tests
def test_the_route_targets_the_primarys_eni(lab: Lab, cluster: LabCluster, world: World) -> None:
    node1, node2 = world.instances["node1"], world.instances["node2"]
    assert node1.imds is not None and node2.imds is not None
    assert route_target(world) is None
    cluster.safekit("node1", "prim", "-m", MODULE)
    cluster.wait_state("node1", MODULE, "ALONE", timeout=30)
    cluster.safekit("node2", "second", "-m", MODULE)
    cluster.wait_state("node1", MODULE, "PRIM", timeout=30)
    cluster.wait_state("node2", MODULE, "SECOND", timeout=30)
    assert route_target(world) == node1.eni_id
    assert has_vip(lab, "node1", world.vip) and not has_vip(lab, "node2", world.vip)
    assert (health(lab, "node1"), health(lab, "node2")) == (200, 404)
    # node1 learnt who it is from its metadata service, IMDSv2 style (a token, then GETs with it)
    assert node1.imds.calls("PUT", "/latest/api/token")
    assert node1.imds.calls("GET", "/interface-id")
    assert f"virtual IP {world.vip} acquired" in cluster.log("node1", MODULE)


def test_power_loss_of_the_primary_moves_the_route_to_the_other_eni(
    lab: Lab, cluster: LabCluster, world: World
) -> None:
    node2 = world.instances["node2"]
    assert node2.imds is not None
    lab.kill("node1")  # power cut: its safekitd dies with everything else there, cables pulled
    moved_after = wait_route(world, node2.eni_id, FAILOVER_BOUND)
    state = cluster.wait_state("node2", MODULE, "ALONE", timeout=FAILOVER_BOUND)
    assert state["readiness"] == "Ready"
    assert route_target(world) == node2.eni_id
    assert has_vip(lab, "node2", world.vip)
    assert health(lab, "node2") == 200
    assert node2.imds.calls("GET", f"/macs/{node2.mac}/interface-id")
    print(f"route moved to node2's ENI {moved_after:.1f} s after the power cut")


def test_stop_releases_and_the_node_stops_answering_ready(
    lab: Lab, cluster: LabCluster, world: World
) -> None:
    cluster.safekit("node2", "stop", "-m", MODULE)
    cluster.wait_state("node2", MODULE, "STOP", ready=False, timeout=30)
    assert health(lab, "node2") == 404
    assert not has_vip(lab, "node2", world.vip)
    # release removes the address from the node; the route stays for the next primary to replace
    assert route_target(world) == world.instances["node2"].eni_id
    assert f"virtual IP {world.vip} released" in cluster.log("node2", MODULE)


def test_a_failed_acquire_is_never_ready_and_the_log_says_why(
    lab: Lab, cluster: LabCluster, world: World
) -> None:
    _ec2(world.endpoint).delete_route_table(RouteTableId=world.table)  # the configured id is now wrong
    log_before = len(cluster.log("node2", MODULE))
    cluster.safekit("node2", "prim", "-m", MODULE)
    deadline = time.monotonic() + 30
    seen: set[int] = set()
    why = ""
    while time.monotonic() < deadline:
        for _ in range(5):
            seen.add(health(lab, "node2"))
            time.sleep(0.1)
        log = cluster.log("node2", MODULE)[log_before:]
        failed = [line for line in log.splitlines() if f"virtual IP {world.vip} not acquired" in line]
        if failed:
            why = failed[0]
            break
    assert why, f"no acquire failure in node2's log:\n{cluster.log('node2', MODULE)[log_before:]}"
    assert "InvalidRouteTableID.NotFound" in why and world.table in why, why
    state = cluster.state("node2", MODULE)
    seen.add(health(lab, "node2"))
    assert state["readiness"] != "Ready", state
    # each failure is a stopstart; past maxloop=2 the module stops, never having been ready
    deadline = time.monotonic() + 20
    while (state["state"], state["readiness"]) != ("STOP", "NotReady") and time.monotonic() < deadline:
        seen.add(health(lab, "node2"))
        time.sleep(0.3)
        state = cluster.state("node2", MODULE)
    assert (state["state"], state["readiness"]) == ("STOP", "NotReady"), state
    seen.add(health(lab, "node2"))
    assert seen == {404}, f"health answered {sorted(seen)} while acquire failed"


def test_a_failed_acquire_leaves_no_address_on_the_node(lab: Lab, cluster: LabCluster, world: World) -> None:
    assert cluster.state("node2", MODULE)["state"] == "STOP"  # where the previous test left it
    assert not has_vip(lab, "node2", world.vip), "a stopped node still has the VIP on its interface"
