"""`vmac_directed` on three lab nodes whose switch does not flood unknown unicast: real daemons,
real nftables, real connections from three client hosts (docs/farm.md, ADR 0018).

A farm module in SafeKit's shape (`vmac_directed`, a `<group>` without `<cluster>`, a `<rule port
proto filter>`) loads; each client learns by ARP the MAC of the node that serves its address's
bucket (one client per node); every new connection is served by the owner of its bucket, the ARP
owner relaying the others at layer 2. Keep-alive connections are held across a node's death and
its return, and across every client forgetting its ARP entries (which sends some of them to
another node than the one that relayed them): the healthy nodes' connections keep their node, no
reset anywhere. A killed node's clients are served again once the takeover announcement is out.

`SAFEKIT_FARM_LONG=1` (make test-farm-directed): more connections and three kill/return rounds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from directed_lab import (
    MODULE,
    NODES,
    Clients,
    Holder,
    address_bucket,
    connection_bucket,
    farm_map,
    flooding_is_off,
    make_module,
    no_flooding,
    node_mac,
    relay_counters,
    vip,
    wait_members,
)
from farm_lab import installed, lab_up, tcp_out_resets

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster

LONG = os.environ.get("SAFEKIT_FARM_LONG") == "1"
CONNECTIONS = 90 if LONG else 30  # new connections per client and probe
HELD = 24 if LONG else 10  # keep-alive connections held per client
ROUNDS = 3 if LONG else 1  # kill / return rounds


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    with lab_up("h24a") as lab:
        no_flooding(lab)
        yield lab


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[LabCluster]:
    with installed(lab, make_module(lab), NODES) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def clients(lab: Lab, cluster: LabCluster) -> Iterator[Clients]:
    for node in NODES:
        cluster.safekit(node, "start", "-m", MODULE)
    for node in NODES:
        cluster.wait_state(node, MODULE, "UP")
    wait_members(cluster, list(NODES))
    fmap = farm_map(cluster, "node1")
    addresses = Clients.pick(lab, fmap["owners"], fmap["seed"])
    assert len(addresses) == len(NODES), addresses
    made = Clients(lab, addresses)
    try:
        yield made
    finally:
        made.down()


def check_new_connections(lab: Lab, cluster: LabCluster, clients: Clients, serving: list[str]) -> None:
    """From every client, new connections: all answered, each by the owner of its bucket."""
    fmap = farm_map(cluster, serving[0])
    owners, seed = fmap["owners"], fmap["seed"]
    answered: set[str] = set()
    for index, address in enumerate(clients.addresses):
        result = clients.probe(index, CONNECTIONS)
        assert result["failures"] == 0, (address, result)
        wrong = [(p, who) for p, who in result["seen"] if owners[connection_bucket(address, p, seed)] != who]
        assert wrong == [], f"{address}: answered by a node that does not own the bucket: {wrong[:5]}"
        answered |= {who for _, who in result["seen"]}
    assert answered == set(serving), answered


def test_a_safekit_shaped_directed_farm_balances_without_flooding(
    lab: Lab, cluster: LabCluster, clients: Clients
) -> None:
    assert flooding_is_off(lab), "the switch still floods unknown unicast"
    log = cluster.log("node1", MODULE)
    assert f"farm module {MODULE} loaded (vmac_directed)" in log, log[-2000:]
    assert "web: node1 (power 1), node2 (power 1), node3 (power 1) - no <cluster>" in log
    fmap = farm_map(cluster, "node1")
    assert sorted(fmap["shares"].values()) == [85, 85, 86]
    before = {n: relay_counters(lab, n) for n in NODES}
    check_new_connections(lab, cluster, clients, list(NODES))
    # Each client learnt the MAC of the node serving its address's bucket: ARP spreads clients.
    arp_owners = []
    for index, address in enumerate(clients.addresses):
        neigh = clients.neighbour(index, vip(lab))
        owner = [n for n in NODES if node_mac(lab, n) in neigh]
        assert len(owner) == 1, (address, neigh)
        arp_owners.append(owner[0])
    assert sorted(arp_owners) == sorted(NODES), arp_owners
    after = {n: relay_counters(lab, n) for n in NODES}
    received = sum(after[n][0] - before[n][0] for n in NODES)
    relayed = sum(after[n][1] - before[n][1] for n in NODES)
    assert relayed > 0 and all(after[n][1] > before[n][1] for n in NODES), (before, after)
    share = relayed / received
    print(
        f"{received} client packets to the VIP, {relayed} relayed between nodes ({share:.0%}); "
        f"ARP owners {arp_owners}"
    )
    # Two thirds of the connections are another node's: about 2/3 of the packets are relayed.
    assert 0.4 < share < 0.9, share


def test_leave_and_join_keep_every_healthy_connection(
    lab: Lab, cluster: LabCluster, clients: Clients
) -> None:
    victim = "node3"
    survivors = [n for n in NODES if n != victim]
    for round_ in range(ROUNDS):
        fmap = farm_map(cluster, "node1")
        seed = fmap["seed"]
        arp_owner = {i: fmap["owners"][address_bucket(a, seed)] for i, a in enumerate(clients.addresses)}
        victims_client = next(i for i, owner in arp_owner.items() if owner == victim)
        holders = [clients.hold(i, HELD) for i in range(len(clients.addresses))]
        away: list[Holder] = []
        try:
            first = [h.ask() for h in holders]
            assert not [w for rows in first for w, _ in rows if w.startswith("error")], first
            assert {w for rows in first for w, _ in rows} == set(NODES), first
            skip = [[i for i, (w, _) in enumerate(rows) if w == victim] for rows in first]
            resets = {h: tcp_out_resets(lab, h) for h in survivors}
            # The clients that do not run the failover probe (its abandoned connects are reset by
            # the client when a late SYN-ACK comes, as any timed-out connect) must send no reset.
            quiet = [i for i in range(len(holders)) if i != victims_client]
            client_resets = {i: clients.out_resets(i) for i in quiet}

            probe = clients.until_served(victims_client)
            killed_at = time.time()
            lab.kill(victim)
            probe.start(killed_at)
            served_s = probe.seconds()
            wait_members(cluster, survivors, timeout=10)
            print(f"round {round_}: {victim}'s ARP client served again {served_s:.3f} s after the kill")
            assert served_s < 3.0, f"{served_s:.2f} s; {_diagnose(lab, clients)}"
            second = [h.ask(s) for h, s in zip(holders, skip, strict=True)]
            broken = _broken(first, second, victim)
            assert broken == [], f"healthy connections broke or moved on the leave: {broken[:5]}"
            check_new_connections(lab, cluster, clients, survivors)
            away = [clients.hold(i, HELD) for i in range(len(clients.addresses))]
            away_map = farm_map(cluster, "node1")["owners"]
            held_away = [h.ask() for h in away]
            assert not [w for rows in held_away for w, _ in rows if w.startswith("error")], held_away

            lab.start(victim)
            no_flooding(lab)  # its cable is new
            cluster.start_daemon(victim)
            cluster.safekit(victim, "start", "-m", MODULE)
            cluster.wait_state(victim, MODULE, "UP")
            wait_members(cluster, list(NODES))
            third = [h.ask(s) for h, s in zip(holders, skip, strict=True)]
            assert _broken(first, third, victim) == [], "a healthy connection broke or moved on the join"
            again = [h.ask() for h in away]
            assert again == held_away, (
                "a connection opened while the node was away broke or moved: "
                f"{_changed(clients, held_away, again, (away_map, _owners(cluster)), seed)}; "
                f"{_diagnose(lab, clients)}"
            )
            # Every client forgets its ARP entry and asks again: some reach another node than the
            # one that relayed their connections (the takeover node, or the node that returned),
            # which must send them on to the node that serves them.
            clients.forget_neighbours()
            fourth = [h.ask(s) for h, s in zip(holders, skip, strict=True)]
            assert _broken(first, fourth, victim) == [], "a healthy connection broke after ARP changed"
            away_again = [h.ask() for h in away]
            assert away_again == held_away, (
                "a connection opened while away broke after ARP changed: "
                f"{_changed(clients, held_away, away_again, (away_map, _owners(cluster)), seed)}; "
                f"{_diagnose(lab, clients)}"
            )
            check_new_connections(lab, cluster, clients, list(NODES))
            assert {h: tcp_out_resets(lab, h) - n for h, n in resets.items()} == dict.fromkeys(survivors, 0)
            assert {i: clients.out_resets(i) for i in quiet} == client_resets
            healthy = sum(len(rows) - len(s) for rows, s in zip(first, skip, strict=True))
            print(
                f"round {round_}: {healthy} healthy connections and {sum(map(len, held_away))} opened while "
                f"{victim} was away held across the leave, the join and ARP changes; 0 resets"
            )
        finally:
            for holder in [*holders, *away]:
                holder.close()


def _broken(
    first: list[list[tuple[str, int]]], later: list[list[tuple[str, int]]], victim: str
) -> list[tuple[int, str, str]]:
    return [
        (client, a[0], b[0])
        for client, (rows_a, rows_b) in enumerate(zip(first, later, strict=True))
        for a, b in zip(rows_a, rows_b, strict=True)
        if a[0] != victim and a != b
    ]


def _changed(
    clients: Clients,
    before: list[list[tuple[str, int]]],
    after: list[list[tuple[str, int]]],
    maps: tuple[list[str | None], list[str | None]],
    seed: int,
) -> list[tuple[str, int, str, str, str | None, str | None]]:
    """(client, port, who answered, now, owner of its bucket when opened, owner now) of each change."""
    return [
        (
            clients.addresses[c],
            a[1],
            a[0],
            b[0],
            maps[0][connection_bucket(clients.addresses[c], a[1], seed)],
            maps[1][connection_bucket(clients.addresses[c], a[1], seed)],
        )
        for c, (rows_a, rows_b) in enumerate(zip(before, after, strict=True))
        for a, b in zip(rows_a, rows_b, strict=True)
        if a != b
    ]


def _owners(cluster: LabCluster) -> list[str | None]:
    owners: list[str | None] = farm_map(cluster, "node1")["owners"]
    return owners


def _diagnose(lab: Lab, clients: Clients) -> str:
    """What each client's ARP says, and each node's relay counters and last farm log lines."""
    facts = [f"client {a}: {clients.neighbour(i, vip(lab)).strip()}" for i, a in enumerate(clients.addresses)]
    for node in NODES:
        if node in lab.require_state().faults.killed:
            continue
        log = lab.exec(
            node, ["sh", "-c", f"grep -i 'announc\\|buckets:' /var/log/safekit/modules/{MODULE}.log"]
        )
        facts.append(f"{node}: counters {relay_counters(lab, node)}; log: {log.stdout.splitlines()[-4:]}")
        listed = lab.exec(node, ["nft", "list", "table", "netdev", f"safekit_farm_{MODULE}"]).stdout
        rules = [" ".join(line.split())[:150] for line in listed.splitlines() if "packets" in line]
        facts.append(f"{node} rules: {[r for r in rules if 'packets 0 ' not in r]}")
    return " | ".join(facts)
