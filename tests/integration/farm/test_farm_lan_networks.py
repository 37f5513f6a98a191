"""A farm whose heartbeats do not cross its clients' network is told so at start.

Two lab nodes on two LANs; the farm's `<farm>` lists only `lan1` while its VIP is on the `default`
LAN's network (eth0). The farm still forms (its heartbeats go on lan1) and serves, but a cut of
lan1 alone would make each node take every bucket while the clients reach both: each node's
module log says so, with the fix. The same VIP with `default` listed too draws no such line.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from farm_lab import installed, lab_name, make_module, vip, wait_members

from safekit.lab import Lab

NODES = ("node1", "node2")
WARNING = "where this node has no address of the farm's LANs"


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    lab = Lab(lab_name("farmnet"))
    lab.down()
    lab.up(nodes=2, lans=2)
    try:
        yield lab
    finally:
        lab.down()


@pytest.mark.parametrize(
    ("farm_lans", "warned"),
    [('<lan name="lan1"/>', True), ('<lan name="default"/><lan name="lan1"/>', False)],
    ids=["lan1-only", "default-and-lan1"],
)
def test_a_vip_off_the_farms_lans_is_warned_about_at_start(lab: Lab, farm_lans: str, warned: bool) -> None:
    plan = lab.plan()
    module = "farmnet" if warned else "farmboth"  # each its own log
    path = make_module(lab, NODES, farm_lans=farm_lans, module=module)
    with installed(lab, path, NODES) as cluster:
        for node in NODES:
            cluster.safekit(node, "start", "-m", module)
        for node in NODES:
            cluster.wait_state(node, module, "UP")
        wait_members(cluster, list(NODES), list(NODES), module=module)
        for node in NODES:
            log = cluster.log(node, module)
            lines = [line for line in log.splitlines() if WARNING in line]
            if not warned:
                assert not lines, lines
                continue
            address = plan.host(node).addresses["lan1"].ip
            assert len(lines) == 1, log
            assert f"virtual IP {vip(lab)} is on eth0" in lines[0]
            assert f"lan1 ({address})" in lines[0]
            assert "add the LAN of eth0 to <farm>" in lines[0]
