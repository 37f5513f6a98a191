"""IPv6 farm VIPs (issue 20) on three lab nodes, real daemons, real nftables, real connections from
three IPv6 client hosts, on the lab's unique-local fd00:5afe:0:N::/64 (`lab up --ipv6`).

- `vmac_directed`, the switch not flooding unknown unicast: a neighbour solicitation for the VIP is
  answered only by the node that serves the client address's bucket (`jhash ip6 saddr`), with its
  own MAC; each client learns its bucket owner's MAC; every new connection is served by the owner
  of its bucket (`on_port`), the neighbour owner relaying the others at layer 2 (Ethernet
  addresses rewritten, `fwd to IF`). A killed node's buckets move to the survivors, its client is
  served again after the takeover announcement (an unsolicited neighbour advertisement), and the
  healthy nodes' keep-alive connections keep their node with no reset.
- `vmac_invisible`, the switch flooding: every client learns the virtual MAC from the nodes'
  advertisements (rewritten in the kernel's output, the checksum kept); new connections are
  balanced by bucket; (`SAFEKIT_FARM_LONG=1`, `make test-farm-directed`) a killed node's buckets
  move and its clients are served again.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import time
from collections.abc import Iterator

import pytest
from farm_lab import installed, lab_up
from ipv6_lab import (
    MODULE,
    NODES,
    Clients6,
    ask_holder,
    close_holder,
    connection_bucket,
    farm_map,
    make_module,
    relay_counters,
    set_flooding,
    vip6,
    wait_members,
)

from safekit.farm.nft import vmac_for
from safekit.lab import Lab

LONG = os.environ.get("SAFEKIT_FARM_LONG") == "1"
CONNECTIONS = 60 if LONG else 30
HELD = 16 if LONG else 8


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    with lab_up("h43v6", ipv6=True) as lab:
        yield lab


class Farm:
    """The IPv6 module running on the three nodes, and one client per node's neighbour bucket."""

    def __init__(self, lab: Lab, vmac: str, *, flood: bool) -> None:
        self.lab = lab
        set_flooding(lab, flood)
        self._stack = contextlib.ExitStack()
        self.cluster = self._stack.enter_context(installed(lab, make_module(lab, vmac), NODES))
        for node in NODES:
            self.cluster.safekit(node, "start", "-m", MODULE)
        for node in NODES:
            self.cluster.wait_state(node, MODULE, "UP")
        wait_members(self.cluster, list(NODES))
        fmap = farm_map(self.cluster, "node1")
        self.clients = Clients6(lab, Clients6.pick(lab, fmap["owners"], fmap["seed"]), flood=flood)
        assert len(self.clients.addresses) == len(NODES), self.clients.addresses

    def close(self) -> None:
        self.clients.down()
        self._stack.close()

    def check_new_connections(self, serving: list[str]) -> None:
        """From every client, new connections: all answered, each by the owner of its bucket."""
        fmap = farm_map(self.cluster, serving[0])
        owners, seed = fmap["owners"], fmap["seed"]
        answered: set[str] = set()
        for index, address in enumerate(self.clients.addresses):
            result = self.clients.probe(index, CONNECTIONS)
            assert result["failures"] == 0, (address, result)
            wrong = [
                (p, who) for p, who in result["seen"] if owners[connection_bucket(address, p, seed)] != who
            ]
            assert wrong == [], f"{address}: answered by a node that does not own the bucket: {wrong[:5]}"
            answered |= {who for _, who in result["seen"]}
        assert answered == set(serving), answered

    def kill_and_measure(self, victim: str, survivors: list[str]) -> float:
        """Kill `victim`; seconds until its neighbour client is answered again; the survivors'
        maps no longer name it."""
        index = sorted(NODES).index(victim)
        probe = self.clients.until_served(index)
        since = time.time()
        self.lab.kill(victim)
        assert probe.stdin is not None
        probe.stdin.write(f"{since!r}\n")
        probe.stdin.flush()
        out, _ = probe.communicate(timeout=60)
        seconds = float(out.strip())
        wait_members(self.cluster, survivors)
        for node in survivors:
            fmap = farm_map(self.cluster, node)
            assert victim not in fmap["owners"], f"{node} still maps buckets to {victim}"
            assert set(fmap["shares"]) == set(survivors)
        return seconds


def node_mac(lab: Lab, node: str) -> str:
    plan = lab.plan()
    return plan.host(node).mac(plan.lans[0])


@pytest.fixture
def directed(lab: Lab) -> Iterator[Farm]:
    farm = Farm(lab, "vmac_directed", flood=False)
    try:
        yield farm
    finally:
        farm.close()
        for node in NODES:
            lab.start(node)


@pytest.fixture
def invisible(lab: Lab) -> Iterator[Farm]:
    farm = Farm(lab, "vmac_invisible", flood=True)
    try:
        yield farm
    finally:
        farm.close()
        for node in NODES:
            lab.start(node)


def test_ipv6_vmac_directed_balances_by_neighbour_discovery_and_survives_a_death(
    lab: Lab, directed: Farm
) -> None:
    farm = directed
    log = farm.cluster.log("node1", MODULE)
    assert f"farm module {MODULE} loaded (vmac_directed)" in log, log[-2000:]
    before = {n: relay_counters(lab, n) for n in NODES}
    farm.check_new_connections(list(NODES))
    # Each client learnt the MAC of the node serving its address's bucket.
    owners = []
    for index, address in enumerate(farm.clients.addresses):
        neigh = farm.clients.neighbour(index, vip6(lab))
        owner = [n for n in NODES if node_mac(lab, n) in neigh]
        assert len(owner) == 1, (address, neigh)
        owners.append(owner[0])
    assert owners == sorted(NODES), owners
    after = {n: relay_counters(lab, n) for n in NODES}
    received = sum(after[n][0] - before[n][0] for n in NODES)
    relayed = sum(after[n][1] - before[n][1] for n in NODES)
    print(f"IPv6 directed: {received} client packets, {relayed} relayed ({relayed / received:.0%})")
    assert 0.4 < relayed / received < 0.9, (before, after)
    # Keep-alive connections of the healthy nodes' clients, held across node3's death.
    holders = [farm.clients.hold(i, HELD) for i in range(2)]
    try:
        first = [ask_holder(h) for h in holders]
        resets = [farm.clients.out_resets(i) for i in range(2)]
        seconds = farm.kill_and_measure("node3", ["node1", "node2"])
        print(f"IPv6 directed: node3's client served again {seconds:.2f} s after the kill")
        farm.check_new_connections(["node1", "node2"])
        for holder, held in zip(holders, first, strict=True):
            now = ask_holder(holder)
            kept = [(a[0], b[0]) for a, b in zip(held, now, strict=True) if a[0] != "node3"]
            assert all(x == y for x, y in kept), f"a healthy connection changed node or broke: {kept}"
        assert [farm.clients.out_resets(i) for i in range(2)] == resets
    finally:
        for holder in holders:
            close_holder(holder)
    assert seconds < 5.0


def test_ipv6_vmac_invisible_balances_behind_the_virtual_mac_and_survives_a_death(
    lab: Lab, invisible: Farm
) -> None:
    farm = invisible
    farm.check_new_connections(list(NODES))
    vmac = vmac_for(ipaddress.ip_address(vip6(lab)))
    for index in range(len(farm.clients.addresses)):
        neigh = farm.clients.neighbour(index, vip6(lab))
        assert vmac in neigh, neigh
    if not LONG:
        return  # a death moves the buckets as for IPv4 (the same map); the long version shows it
    seconds = farm.kill_and_measure("node2", ["node1", "node3"])
    print(f"IPv6 invisible: a client answered again {seconds:.2f} s after node2's kill")
    farm.check_new_connections(["node1", "node3"])
    assert seconds < 5.0
