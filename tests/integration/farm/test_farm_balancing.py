"""A farm module on three lab nodes: real daemons, real nftables, real connections from a client.

One lab (3 nodes, a client) and one module for the whole file; the tests run in order.
"""

from __future__ import annotations

import datetime
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from farm_lab import (
    MODULE,
    NODES,
    HalfClosed,
    StreamProbe,
    client_ports,
    client_sources,
    farm_map,
    installed,
    lab_up,
    make_module,
    probe,
    served_count,
    tcp_out_resets,
    vip,
    wait_members,
)

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster

CONNECTIONS = 240


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    with lab_up("farmit") as lab:
        yield lab


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[LabCluster]:
    with installed(lab, make_module(lab), NODES) as cluster:
        yield cluster


def health(lab: Lab, node: str) -> int:
    url = f"http://{lab.plan().host(node).address}:9010/var/modules/{MODULE}/ready.txt"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def reset_served(lab: Lab, nodes: list[str]) -> None:
    for node in nodes:
        lab.exec(node, ["rm", "-f", "/srv/served.log"])


def check_spread(lab: Lab, cluster: LabCluster, serving: list[str]) -> dict[str, int]:
    """Many connections, several sources: all answered, each by exactly one node, no reset."""
    sources = client_sources(lab)
    reset_served(lab, serving)
    resets_before = {h: tcp_out_resets(lab, h) for h in [*serving, "client"]}
    result = probe(lab, CONNECTIONS, sources)
    assert result["failures"] == 0, result
    answers: dict[str, int] = result["answers"]
    assert sum(answers.values()) == CONNECTIONS
    assert set(answers) == set(serving), answers
    # Every request was answered by one node only: the nodes' own logs add up to the client's count.
    assert sum(served_count(lab, n) for n in serving) == CONNECTIONS
    # No duplicate SYN-ACK (the client would reset the second) and no stray reset from a node.
    assert {h: tcp_out_resets(lab, h) - resets_before[h] for h in resets_before} == dict.fromkeys(
        resets_before, 0
    )
    # Shares follow the bucket map loosely (hashes of 240 connections): nobody is starved.
    for node in serving:
        assert answers[node] >= CONNECTIONS / len(serving) / 3, answers
    return answers


def test_three_nodes_come_up_and_agree_on_the_map(lab: Lab, cluster: LabCluster) -> None:
    for node in NODES:
        cluster.safekit(node, "start", "-m", MODULE)
    for node in NODES:
        cluster.wait_state(node, MODULE, "UP")
    wait_members(cluster, list(NODES), list(NODES))
    maps = {n: farm_map(cluster, n) for n in NODES}
    assert len({tuple(m["owners"]) for m in maps.values()}) == 1, "the nodes disagree on the map"
    assert sorted(maps["node1"]["shares"].values()) == [85, 85, 86]
    for node in NODES:
        assert maps[node]["owned_here"] == sorted(b for b, o in enumerate(maps[node]["owners"]) if o == node)
        assert health(lab, node) == 200
        assert cluster.safekit(node, "state", "-m", MODULE, "-lq", check=False).returncode == 2
    state = cluster.state("node1", MODULE)
    assert state["resources"]["farm.rules"] == "up"
    assert state["resources"]["farm.node2"] == "up"
    text = cluster.safekit("node1", "farm", "map", "-m", MODULE).stdout
    assert re.search(r"node2\s+power 1\s+8[56] buckets", text), text


def test_connections_are_spread_and_answered_by_exactly_one_node(lab: Lab, cluster: LabCluster) -> None:
    check_spread(lab, cluster, list(NODES))
    # The client learnt the shared virtual MAC, never a node's own MAC.
    neigh = lab.exec("client", ["ip", "neigh", "show", vip(lab)]).stdout
    assert "02:5a:fe:" in neigh, neigh


def _log_time(line: str) -> float:
    stamp = line.split(" INFO ", maxsplit=1)[0].split(" WARNING ", maxsplit=1)[0]
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def kill_under_probe(lab: Lab, cluster: LabCluster, victim: str) -> float:
    """Kill `victim` while the client opens a new connection every 20 ms from source ports of the
    victim's buckets and from ports of the other nodes' buckets, until 6 s after the kill: the
    other nodes' connections never fail; the victim's are served again by the survivors and, once
    served again, never fail again. Returns the wall time of the kill.

    Issue 20's "re-failures about 4 s after a kill" were the probe's own: a connection from one of
    its fixed ports that the victim had answered and closed just before the kill stays in LAST-ACK
    on the client (its FIN is never acknowledged), and every later connect from that port failed
    with EADDRNOTAVAIL, counted as a farm failure, until the probe ended (4-5 s after the kill in
    bench/farm.py). Such a connection is made on purpose here (`HalfClosed`); the probe must log
    that port as held by the client, not as a failure."""
    fmap = farm_map(cluster, "node1")
    others = {n for n in fmap["members"] if n != victim}
    victim_ports = client_ports(lab, fmap, {victim})
    control_ports = client_ports(lab, fmap, others)
    assert len(victim_ports) >= 10 and len(control_ports) >= 10, (victim_ports, control_ports)
    half_closed = HalfClosed(lab, victim_ports)
    assert half_closed.who == victim, half_closed.who
    probe = StreamProbe(lab, victim_ports, control_ports, duration=7.0)
    time.sleep(1.0)
    killed_at, killed = time.time(), time.monotonic()
    lab.kill(victim)
    half_closed.close()
    attempts = [a for a in probe.attempts() if a[0] >= killed]
    control = [a for a in attempts if a[1] == "control"]
    assert control and all(a[2] for a in control), [a for a in control if not a[2]][:5]
    served = [a for a in attempts if a[1] == "victim"]
    assert served and served[-1][0] - killed > 5.5, "the probe did not run until 5.5 s after the kill"
    first = next((a[0] for a in served if a[2] and a[3] != victim), None)
    timeline = [(round(a[0] - killed, 3), a[2], a[3][:20]) for a in served[:40]]
    assert first is not None, "the victim's clients were never served again"
    print(f"{victim}'s clients served again {first - killed:.3f} s after the kill")
    assert first - killed < 3.0, f"{victim}'s clients served again only {first - killed:.2f} s after the kill"
    again = [(round(a[0] - killed, 3), a[3]) for a in served if a[0] > first and not a[2]]
    assert again == [], f"{victim}'s clients failed again after they were served: {again[:10]}; {timeline}"
    # The condition of the old re-failures did occur: the client's LAST-ACK socket held its port.
    held = [a for a in attempts if a[1] == "victim-held" and a[0] > first]  # this port, or earlier kills
    assert held, "the half-closed connection did not hold its port after the takeover"
    return killed_at


def test_a_killed_nodes_share_moves_within_a_second(lab: Lab, cluster: LabCluster) -> None:
    killed_at = kill_under_probe(lab, cluster, "node2")
    survivors = ["node1", "node3"]
    wait_members(cluster, survivors, survivors, timeout=10)
    for node in survivors:
        lines = cluster.log(node, MODULE).splitlines()
        lost = [
            i for i, line in enumerate(lines) if "node2 lost" in line and _log_time(line) >= killed_at - 0.01
        ]
        assert lost, f"{node} never logged node2 lost"
        taken = next(line for line in lines[lost[-1] :] if "buckets: 128 of 256" in line)
        moved = _log_time(taken) - killed_at
        # The bound is 1 s; bench/farm.py measures it precisely. Generous for a loaded machine.
        print(f"{node} took node2's buckets {moved:.3f} s after the kill")
        assert moved < 1.5, f"{node} took node2's buckets {moved:.2f} s after the kill"
    assert sorted(farm_map(cluster, "node1")["shares"].values()) == [128, 128]
    check_spread(lab, cluster, survivors)


def test_the_node_returns_and_the_map_rebalances(lab: Lab, cluster: LabCluster) -> None:
    lab.start("node2")
    cluster.start_daemon("node2")
    cluster.safekit("node2", "start", "-m", MODULE)
    cluster.wait_state("node2", MODULE, "UP")
    wait_members(cluster, list(NODES), list(NODES))
    maps = {n: farm_map(cluster, n) for n in NODES}
    assert len({tuple(m["owners"]) for m in maps.values()}) == 1
    assert sorted(maps["node1"]["shares"].values()) == [85, 85, 86]
    check_spread(lab, cluster, list(NODES))


def test_a_second_kill_after_the_return_keeps_the_victims_clients_served(
    lab: Lab, cluster: LabCluster
) -> None:
    """The failover again, after the victim's return: the survivors served its ports before (their
    TIME_WAIT sockets and conntrack entries of those connections may still be there)."""
    kill_under_probe(lab, cluster, "node2")
    wait_members(cluster, ["node1", "node3"], ["node1", "node3"], timeout=10)
    lab.start("node2")
    cluster.start_daemon("node2")
    cluster.safekit("node2", "start", "-m", MODULE)
    cluster.wait_state("node2", MODULE, "UP")
    wait_members(cluster, list(NODES), list(NODES))


def test_a_failing_checker_takes_only_that_node_out(lab: Lab, cluster: LabCluster) -> None:
    lab.exec("node3", ["touch", "/srv/app-down"], check=True)
    try:
        cluster.wait_state("node3", MODULE, "WAIT", ready=False)
        wait_members(cluster, ["node1", "node2"], ["node1", "node2"])
        assert health(lab, "node3") == 404
        assert health(lab, "node1") == 200
        held = lab.exec("node3", ["ip", "-4", "-o", "addr", "show"]).stdout
        assert f" {vip(lab)}/" not in held, "a node out of the farm still holds the VIP"
        for node in ("node1", "node2"):
            assert cluster.state(node, MODULE)["state"] == "UP"
        check_spread(lab, cluster, ["node1", "node2"])
    finally:
        lab.exec("node3", ["rm", "-f", "/srv/app-down"])
    cluster.wait_state("node3", MODULE, "UP")
    wait_members(cluster, list(NODES), list(NODES))


def test_stop_removes_the_rules_and_the_vip(lab: Lab, cluster: LabCluster) -> None:
    cluster.safekit("node1", "waitstop", "-m", MODULE, timeout=60)
    tables = lab.exec("node1", ["nft", "list", "tables"]).stdout
    assert "safekit_farm" not in tables, tables
    assert f" {vip(lab)}/" not in lab.exec("node1", ["ip", "-4", "-o", "addr", "show"]).stdout
    wait_members(cluster, ["node2", "node3"], ["node2", "node3"])
    check_spread(lab, cluster, ["node2", "node3"])
