"""Farm templates on real lab hosts: an nginx farm and an Apache farm, made with `safekit module new`
and installed with `safekit module install` on the same two nodes (one lab for both).

Each node serves a page naming it; clients from several addresses reach the VIP: both nodes must
answer, and when the module stops on one node, its share of the clients goes to the other with no
failed request. The other farm module on the same nodes keeps both nodes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tpl_lab import client_sources, farm_members, probe, save_logs, wait_for

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.modules import install_modules
from safekit.lab.run_names import run_lab_name

NGINX, APACHE = "tplweb", "tplhttpd"
PORTS = {NGINX: 8080, APACHE: 8081}
REQUESTS = 48


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    lab = Lab(run_lab_name("tplfarm"))
    lab.down()  # leftovers of an interrupted earlier run
    lab.up(nodes=2, client=True)
    try:
        yield lab
    finally:
        lab.down()


def vip(lab: Lab, module: str) -> str:
    return str(lab.plan().vips[0 if module == NGINX else 1])


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[LabCluster]:
    cluster = LabCluster(lab)
    common = {"nodes": "node1,node2", "docroot": "/srv/www"}
    modules = install_modules(
        cluster,
        {
            NGINX: (
                "nginx_farm",
                {**common, "virtual_ip": vip(lab, NGINX), "port": "8080", "farm_port": "4910"},
            ),
            APACHE: (
                "apache_farm",
                {**common, "virtual_ip": vip(lab, APACHE), "port": "8081", "farm_port": "4920"},
            ),
        },
    )
    for node in cluster.nodes:
        # the same content on every node, but the page says who served it
        lab.exec(node, ["sh", "-c", f"mkdir -p /srv/www && echo {node} > /srv/www/who"], check=True)
        cluster.start_daemon(node)
    try:
        for node in cluster.nodes:
            for module in modules:
                cluster.safekit(node, "start", "-m", module)
        for node in cluster.nodes:
            for module in modules:
                cluster.wait_state(node, module, "UP", timeout=60)
                wait_for(
                    f"{module} balancing set on {node}",
                    lambda n=node, m=module: farm_members(cluster, n, m) == ["node1", "node2"],
                    timeout=30,
                )
        yield cluster
    finally:
        save_logs(lab, cluster, list(modules), extra=("nginx.log", "apache.log"))


@pytest.fixture(scope="module")
def sources(lab: Lab) -> list[str]:
    return client_sources(lab)


@pytest.mark.parametrize("module", [NGINX, APACHE])
def test_both_nodes_serve_their_share(lab: Lab, cluster: LabCluster, sources: list[str], module: str) -> None:
    result = probe(lab, vip(lab, module), PORTS[module], path="/who", count=REQUESTS, sources=sources)
    assert result["failures"] == 0, result
    assert set(result["answers"]) == {"node1", "node2"}, result
    health = probe(lab, vip(lab, module), PORTS[module], path="/safekit-health", count=4, sources=sources)
    assert health["failures"] == 0 and all(a.startswith("ok") for a in health["answers"]), health


def test_a_stopped_nodes_share_goes_to_the_other(lab: Lab, cluster: LabCluster, sources: list[str]) -> None:
    cluster.safekit("node1", "stop", "-m", NGINX)
    wait_for("node2 alone in the nginx farm", lambda: farm_members(cluster, "node2", NGINX) == ["node2"], 30)
    result = probe(lab, vip(lab, NGINX), PORTS[NGINX], path="/who", count=REQUESTS, sources=sources)
    assert result == {"answers": {"node2": REQUESTS}, "failures": 0}
    # the Apache farm on the same nodes is another module: both nodes still serve it
    other = probe(lab, vip(lab, APACHE), PORTS[APACHE], path="/who", count=REQUESTS, sources=sources)
    assert other["failures"] == 0 and set(other["answers"]) == {"node1", "node2"}, other
    userlog = lab.exec("node1", ["cat", f"/var/log/safekit/modules/{NGINX}.userlog"]).stdout
    assert "stop_both: nginx stopped (graceful" in userlog, userlog

    # back: node1 takes its share again
    cluster.safekit("node1", "start", "-m", NGINX)
    wait_for(
        "node1 back in the nginx farm",
        lambda: farm_members(cluster, "node2", NGINX) == ["node1", "node2"],
        timeout=30,
    )
    again = probe(lab, vip(lab, NGINX), PORTS[NGINX], path="/who", count=REQUESTS, sources=sources)
    assert again["failures"] == 0 and set(again["answers"]) == {"node1", "node2"}, again
