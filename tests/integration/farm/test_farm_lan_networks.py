"""A farm whose heartbeats do not cross its clients' network is told so at start.

Two lab nodes on two LANs; the farm's `<farm>` lists only `lan1` while its VIP is on the `default`
LAN's network (eth0). The farm still forms (its heartbeats go on lan1) and serves, but a cut of
lan1 alone would make each node take every bucket while the clients reach both: each node's
module log says so, with the fix. The same VIP with `default` listed too draws no such line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from farm_lab import (
    APPCHECK,
    START_BOTH,
    STOP_BOTH,
    USERCONFIG,
    installed,
    lab_name,
    module_dir,
    vip,
    wait_members,
)

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


def _module(lab: Lab, farm_lans: str, name: str) -> Path:
    hosts = "\n".join(f'          <host name="{n}" power="1"/>' for n in NODES)
    userconfig = USERCONFIG.format(vip=vip(lab), port=8080, hosts=hosts)
    userconfig = userconfig.replace('<farm><lan name="default"/></farm>', f"<farm>{farm_lans}</farm>")
    assert farm_lans in userconfig
    scripts = {"start_both": START_BOTH, "stop_both": STOP_BOTH, "appcheck": APPCHECK}
    return module_dir(userconfig, scripts, module=name)


@pytest.mark.parametrize(
    ("farm_lans", "warned"),
    [('<lan name="lan1"/>', True), ('<lan name="default"/><lan name="lan1"/>', False)],
    ids=["lan1-only", "default-and-lan1"],
)
def test_a_vip_off_the_farms_lans_is_warned_about_at_start(lab: Lab, farm_lans: str, warned: bool) -> None:
    plan = lab.plan()
    module = "farmnet" if warned else "farmboth"  # each its own log
    path = _module(lab, farm_lans, module)
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
