"""The `cloud_lb_farm` template on lab hosts: a stateless service on two farm nodes behind an AWS
load balancer, whose target group is moto's (the cloud is not reachable here; moto's server and an
IMDSv2 fake per node stand in for it, as in tests/integration/vip/test_cloud_failover_lab.py).

The module is made with `safekit module new` and installed with `safekit module install`, as a
user would, with `lb_kind=aws_lb` and a `target_group_arn`. The load balancer's view is what the
test looks at, from the controller: each node's health endpoint
(`http://NODE:9010/var/modules/MODULE/ready.txt`, what the target group's health check asks) and
the target group's registered instances. While the service works both nodes answer 200 and both
instances are registered; when the service is killed on node1, node1 answers 404 and is
deregistered while node2 keeps answering 200, registered; once the module has restarted the
service, node1 answers 200 and is registered again. The provider calls are those the docs give for
aws_lb (RegisterTargets while serving, DeregisterTargets on release), made by the engine's own
provider code from the template's scripts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from tpl_lab import save_logs, wait_for

from safekit.lab import Lab
from safekit.lab.cluster import BIN, PIDFILE, LabCluster
from safekit.lab.modules import install_modules
from safekit.lab.run_names import run_lab_name

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: the fakes package

from fakes.metadata_fake import AwsImdsFake

LAB = run_lab_name("h36lb")
MODULE = "lbfarm"
NODES = ("node1", "node2")
REGION = "us-east-1"
SERVICE_PORT = 8090
HEALTH_PORT = 9010


@dataclass
class World:
    endpoint: str
    target_group: str
    instances: dict[str, str]
    """node -> instance id"""
    imds: dict[str, AwsImdsFake] = field(default_factory=dict)


def _test_credentials() -> dict[str, str]:
    """Fixed test credentials and nothing of this machine's: no instance role, no shared config."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "NO_PROXY": "*",
    }


def _client(service: str, endpoint: str) -> Any:
    return boto3.session.Session().client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 2}, connect_timeout=2, read_timeout=10),
    )


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    lab = Lab(LAB)
    lab.down()  # leftovers of an interrupted earlier run
    lab.up(nodes=len(NODES))
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def moto(lab: Lab) -> Iterator[str]:
    """moto's server on the controller's lab address, a process of its own, ended by its PID."""
    host = str(lab.plan().controller_address.ip)
    with socket.socket() as s:
        s.bind((host, 0))
        port = int(s.getsockname()[1])
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/root", **_test_credentials()}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://{host}:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        wait_for("moto's server", lambda: process.poll() is None and _answers(opener, f"{url}/moto-api/"), 30)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(opener: urllib.request.OpenerDirector, url: str) -> bool:
    try:
        with opener.open(url, timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def world(lab: Lab, moto: str) -> Iterator[World]:
    """A VPC, one instance per node (its identity served by its own IMDSv2 fake), and the load
    balancer's target group, whose health check is the engine's health endpoint."""
    ec2 = _client("ec2", moto)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    group = _client("elbv2", moto).create_target_group(
        Name="lbfarm",
        Protocol="TCP",
        Port=SERVICE_PORT,
        VpcId=vpc,
        TargetType="instance",
        HealthCheckProtocol="HTTP",
        HealthCheckPort=str(HEALTH_PORT),
        HealthCheckPath=f"/var/modules/{MODULE}/ready.txt",
    )["TargetGroups"][0]["TargetGroupArn"]
    world = World(moto, group, {})
    controller = str(lab.plan().controller_address.ip)
    try:
        for node in NODES:
            found = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]
            eni = found["NetworkInterfaces"][0]
            world.instances[node] = found["InstanceId"]
            world.imds[node] = AwsImdsFake(
                {
                    "instance-id": found["InstanceId"],
                    "placement/region": REGION,
                    "mac": eni["MacAddress"],
                    f"network/interfaces/macs/{eni['MacAddress']}/interface-id": eni["NetworkInterfaceId"],
                    "local-ipv4": eni["PrivateIpAddress"],
                },
                controller,
            ).start()
        yield world
    finally:
        for imds in world.imds.values():
            imds.stop()


@pytest.fixture(scope="module")
def cluster(lab: Lab, world: World) -> Iterator[LabCluster]:
    cluster = LabCluster(lab)
    values = {
        "lb_kind": "aws_lb",
        "target_group_arn": world.target_group,
        "port": str(SERVICE_PORT),
        "health_path": "/health",
        "app_command": f"python3 -m http.server {SERVICE_PORT} --directory /srv/lbsvc",
    }
    install_modules(cluster, {MODULE: ("cloud_lb_farm", values)})
    for node in NODES:
        # the service's content and health page, which names the node
        lab.exec(node, ["sh", "-c", f"mkdir -p /srv/lbsvc && echo {node} > /srv/lbsvc/health"], check=True)
        env = {
            "PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": "/root",
            **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
            **_test_credentials(),
            # the node's AWS: its identity from its IMDS fake, the API calls to moto
            "SAFEKIT_AWS_METADATA_URL": world.imds[node].url,
            "AWS_ENDPOINT_URL": world.endpoint,
        }
        result = lab.exec(
            node, [str(BIN / "safekitd"), "--daemon", "--pidfile", PIDFILE], timeout=30, env=env
        )
        assert result.returncode == 0, f"{node}: safekitd did not start: {result.stderr.strip()}"
        cluster.wait_socket(node)
    try:
        for node in NODES:
            cluster.safekit(node, "start", "-m", MODULE)
        for node in NODES:
            cluster.wait_state(node, MODULE, "UP", timeout=60)
        yield cluster
    finally:
        save_logs(lab, cluster, [MODULE], extra=("app.log",))
        cluster.stop_daemons()


# ----------------------------------------------------------------------------- what the LB sees
def health(lab: Lab, node: str) -> int:
    """The health endpoint's answer for the module, asked from the controller as the LB does."""
    url = f"http://{lab.plan().host(node).address}:{HEALTH_PORT}/var/modules/{MODULE}/ready.txt"
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=2) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def registered(world: World) -> set[str]:
    """The nodes whose instance is in the target group."""
    described = _client("elbv2", world.endpoint).describe_target_health(TargetGroupArn=world.target_group)
    ids = {d["Target"]["Id"] for d in described["TargetHealthDescriptions"]}
    return {node for node, instance in world.instances.items() if instance in ids}


def userlog(lab: Lab, node: str) -> str:
    return lab.exec(node, ["cat", f"/var/log/safekit/modules/{MODULE}.userlog"]).stdout


# ----------------------------------------------------------------------------- tests
def test_both_nodes_serve_and_are_registered(lab: Lab, cluster: LabCluster, world: World) -> None:
    wait_for("both instances registered", lambda: registered(world) == set(NODES), 20)
    assert {node: health(lab, node) for node in NODES} == {"node1": 200, "node2": 200}
    for node in NODES:
        served = lab.exec(node, ["python3", "-c", _GET, f"http://127.0.0.1:{SERVICE_PORT}/health"]).stdout
        assert served.strip() == node
        assert f"aws_lb: registered in {world.target_group}" in userlog(lab, node)


_GET = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())"


def test_a_failed_service_takes_its_node_out_until_it_is_restarted(
    lab: Lab, cluster: LabCluster, world: World
) -> None:
    """Killed service on node1: its health endpoint answers 404 and it is deregistered (the LB
    sends it nothing), node2 stays 200 and registered throughout; the module restarts the service,
    and node1 is 200 and registered again."""
    seen: list[tuple[float, int, int, frozenset[str]]] = []
    done = threading.Event()

    def watch() -> None:  # the load balancer's view, every 0.1 s
        while not done.is_set():
            seen.append(
                (time.monotonic(), health(lab, "node1"), health(lab, "node2"), frozenset(registered(world)))
            )
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        pid = lab.exec("node1", ["cat", f"/run/safekit-{MODULE}/app.pid"], check=True).stdout.strip()
        killed = time.monotonic()
        lab.exec(
            "node1", ["kill", "-s", "KILL", "--", f"-{pid}"], check=True
        )  # the service's whole process group
        wait_for("node1 out (404)", lambda: seen and seen[-1][1] == 404, 20, interval=0.05)
        out = time.monotonic() - killed
        wait_for(
            "node1 back: 200 and registered",
            lambda: seen and seen[-1][1] == 200 and "node1" in seen[-1][3] and seen[-1][0] > killed + out,
            40,
        )
    finally:
        done.set()
        watcher.join(timeout=5)
    after = [s for s in seen if s[0] >= killed]
    assert any(h1 == 404 and "node1" not in reg for _, h1, _, reg in after), after
    assert all(h2 == 200 and "node2" in reg for _, _, h2, reg in seen), [s for s in seen if s[2] != 200]
    assert out < 10, f"node1 answered 200 for {out:.1f} s after its service died (checker: 3 x 2 s)"
    log = userlog(lab, "node1")
    assert f"stop_both: aws_lb: deregistered from {world.target_group}" in log, log
    assert log.count(f"aws_lb: registered in {world.target_group}") >= 2, log
    state = cluster.wait_state("node1", MODULE, "UP", timeout=10)
    assert state["readiness"] == "Ready"
