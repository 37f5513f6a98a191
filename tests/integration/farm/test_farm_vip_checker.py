"""`<virtual_addr check="on">` on real lab hosts: the VIP removed from a farm node's interface makes
that node stopstart (leave the farm, join again with the VIP), as SafeKit's generated `<ip>` checker
does; the other node keeps serving. (A mirror's primary already reacts through its VIP lifetime
renewal, a second or so after the loss: docs/config.md.)"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.run_names import run_lab_name

MODULE = "vipchk"

USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="farm" boot="off">
  <farm><lan name="default"/></farm>
  <vip>
    <interface_list><interface check="on"><virtual_interface type="vmac_directed">
      <virtual_addr addr="{vip}" where="alias" check="on"/>
    </virtual_interface></interface></interface_list>
    <loadbalancing_list><group name="web">
      <rule virtual_addr="*" port="80" proto="tcp" filter="on_port"/>
    </group></loadbalancing_list>
  </vip>
</service>
</safe>
"""


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    lab = Lab(run_lab_name("ip16"))
    lab.down()
    lab.up(nodes=2)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[LabCluster]:
    # Lab hosts have a private /tmp: the module is staged where they all see it.
    root = Path(tempfile.mkdtemp(prefix="safekit-ip16-", dir="/var/tmp"))
    (root / MODULE / "conf").mkdir(parents=True)
    (root / MODULE / "conf" / "userconfig.xml").write_text(USERCONFIG.format(vip=lab.plan().vips[0]))
    root.chmod(0o755)
    cluster = LabCluster(lab)
    try:
        cluster.install(root / MODULE)
        for node in cluster.nodes:
            cluster.start_daemon(node)
        yield cluster
    finally:
        cluster.keep_logs(MODULE)
        cluster.stop_daemons()
        shutil.rmtree(root, ignore_errors=True)


def wait_resource(cluster: LabCluster, node: str, resource: str, value: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while cluster.state(node, MODULE)["resources"].get(resource) != value:
        assert time.monotonic() < deadline, f"{node}: {resource} not {value} after {timeout:g} s"
        time.sleep(0.2)


def test_vip_removed_from_a_farm_node_makes_it_stopstart(lab: Lab, cluster: LabCluster) -> None:
    vip = str(lab.plan().vips[0])
    resource = f"ip.{vip}"
    for node in cluster.nodes:
        cluster.safekit(node, "start", "-m", MODULE)
    for node in cluster.nodes:
        cluster.wait_state(node, MODULE, "UP")
        wait_resource(cluster, node, resource, "up")
    assert f"virtual IP checked by {resource}" in cluster.log("node1", MODULE)

    shown = lab.exec("node1", ["ip", "-o", "-4", "addr", "show", "to", vip], check=True).stdout.split()
    device, address = shown[1], shown[3]
    lab.exec("node1", ["ip", "addr", "del", address, "dev", device], check=True)

    # Within one probe interval (10 s) node1 sees it, leaves the farm and joins again with the VIP.
    deadline = time.monotonic() + 20
    while f"{resource} down" not in cluster.log("node1", MODULE):
        assert time.monotonic() < deadline, cluster.log("node1", MODULE)[-2000:]
        time.sleep(0.2)
    cluster.wait_state("node1", MODULE, "UP", timeout=30)
    wait_resource(cluster, "node1", resource, "up")
    assert vip in lab.exec("node1", ["ip", "-o", "-4", "addr", "show", "to", vip], check=True).stdout
    assert "stopstart" in cluster.log("node1", MODULE).split(f"{resource} down", 1)[1]
    # The other node was not concerned.
    assert cluster.state("node2", MODULE)["state"] == "UP"
    assert f"{resource} down" not in cluster.log("node2", MODULE)
