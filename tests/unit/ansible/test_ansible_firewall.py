"""safekit_manage_firewall's decisions: the ports a node or witness receives on (from the engine's
own defaults), the nftables file that accepts them, and the firewalld rich rules."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from safekit_collection import COLLECTION

# isort: split
from ansible_collections.safekit.ha.plugins.filter.firewall import FilterModule
from ansible_collections.safekit.ha.plugins.module_utils import firewall

from safekit.api.files import DEFAULT_PORT as API_PORT
from safekit.arbiter.wire import DEFAULT_PORT as ENGINE_ARBITER_PORT
from safekit.daemon import farm_module, health, mirror_module

NODES = ["198.18.0.2", "198.18.0.3", "198.18.1.2", "198.18.1.3"]


def test_the_defaults_are_the_engines() -> None:
    assert firewall.DEFAULT_HEARTBEAT_PORT == mirror_module.DEFAULT_HEARTBEAT_PORT
    assert firewall.DEFAULT_HEARTBEAT_PORT == farm_module.DEFAULT_FARM_PORT
    assert firewall.REPLICATION_PORT_OFFSET == mirror_module.REPLICATION_PORT_OFFSET
    assert firewall.DEFAULT_HEALTH_PORT == health.DEFAULT_PORT
    assert firewall.DEFAULT_API_PORT == API_PORT
    assert firewall.DEFAULT_ARBITER_PORT == ENGINE_ARBITER_PORT


def ports(table: list[dict[str, object]]) -> list[tuple[object, object, object]]:
    return [(p["port"], p["proto"], p["purpose"]) for p in table]


def test_a_replicated_mirror_opens_heartbeats_replication_health_and_api() -> None:
    table = firewall.node_ports(kind="mirror", nodes=NODES, replication=True)
    assert ports(table) == [
        (4800, "udp", "mirror heartbeats"),
        (4801, "tcp", "mirror replication"),
        (9010, "tcp", "health and metrics"),
        (9453, "tcp", "API and console"),
    ]
    assert all(p["sources"] == NODES for p in table)


def test_the_heart_port_moves_heartbeats_and_replication_and_wins_over_the_clusters() -> None:
    table = firewall.node_ports(
        kind="mirror", nodes=NODES, heart_port=4810, cluster_port=5000, replication=True
    )
    assert ports(table)[:2] == [(4810, "udp", "mirror heartbeats"), (4811, "tcp", "mirror replication")]
    assert ports(firewall.node_ports(kind="mirror", nodes=NODES, cluster_port=5000))[0][0] == 5000


def test_a_mirror_without_replication_opens_no_replication_port() -> None:
    assert 4801 not in [p["port"] for p in firewall.node_ports(kind="mirror", nodes=NODES)]


def test_a_farm_opens_its_heartbeats_and_clients_reach_health_only_from_their_networks() -> None:
    table = firewall.node_ports(kind="farm", nodes=NODES[:2], client_sources=["203.0.113.0/24"], api_port=0)
    assert ports(table) == [(4800, "udp", "farm heartbeats"), (9010, "tcp", "health and metrics")]
    assert table[0]["sources"] == NODES[:2]
    assert table[1]["sources"] == [*NODES[:2], "203.0.113.0/24"]


def test_two_modules_on_one_port_share_one_rule() -> None:
    merged = firewall.merge(
        firewall.node_ports(kind="mirror", nodes=NODES[:1])
        + firewall.node_ports(kind="farm", nodes=NODES[1:2])
    )
    assert ports(merged)[0] == (4800, "udp", "mirror heartbeats, farm heartbeats")
    assert merged[0]["sources"] == NODES[:2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "mirror", "nodes": []}, "no address"),
        ({"kind": "mirror", "nodes": ["node1"]}, "not an IP address"),
        ({"kind": "mirror", "nodes": NODES, "heart_port": 70000}, "1-65535"),
        ({"kind": "cloud", "nodes": NODES}, "neither mirror nor farm"),
    ],
)
def test_what_cannot_be_a_rule_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(firewall.FirewallError, match=message):
        firewall.node_ports(**kwargs)  # type: ignore[arg-type]


def test_the_witness_opens_the_arbiter_port_to_the_nodes() -> None:
    assert firewall.arbiter_ports(nodes=["fd00:5afe::2", "198.18.0.2"], port=9500) == [
        {"port": 9500, "proto": "udp", "purpose": "arbiter", "sources": ["198.18.0.2", "fd00:5afe::2"]}
    ]


def test_the_nft_file_replaces_only_its_table_and_only_accepts() -> None:
    text = firewall.nft_ruleset(
        firewall.node_ports(kind="mirror", nodes=[*NODES, "fd00:5afe::2"], replication=True)
    )
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[:4] == [
        "table inet safekit",
        "delete table inet safekit",
        "table inet safekit {",
        "chain input {",
    ]
    assert lines[4] == "type filter hook input priority filter - 1; policy accept;"
    rules = [line for line in lines if "dport" in line]
    assert len(rules) == 8  # 4 ports, each from the IPv4 addresses and from the IPv6 one
    assert all(" meta mark set 0x5afe accept comment " in r for r in rules)
    assert not any(word in text for word in ("drop", "reject", "flush ruleset"))
    assert (
        "ip saddr { 198.18.0.2, 198.18.0.3, 198.18.1.2, 198.18.1.3 } tcp dport 4801"
        ' meta mark set 0x5afe accept comment "mirror replication"'
    ) in rules
    assert (
        'ip6 saddr { fd00:5afe::2 } udp dport 4800 meta mark set 0x5afe accept comment "mirror heartbeats"'
        in rules
    )


def test_ipv6_sources_get_ip6_rules_and_the_mark_is_the_users() -> None:
    text = firewall.nft_ruleset(firewall.arbiter_ports(nodes=["198.18.0.2", "fd00:5afe::2"]), mark=0x10)
    assert 'ip saddr { 198.18.0.2 } udp dport 9455 meta mark set 0x10 accept comment "arbiter"' in text
    assert 'ip6 saddr { fd00:5afe::2 } udp dport 9455 meta mark set 0x10 accept comment "arbiter"' in text


def test_the_nft_file_is_stable_so_a_second_run_writes_nothing() -> None:
    a = firewall.nft_ruleset(firewall.node_ports(kind="mirror", nodes=NODES, replication=True))
    b = firewall.nft_ruleset(
        firewall.node_ports(kind="mirror", nodes=list(reversed(NODES)), replication=True)
    )
    assert a == b


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None, reason="needs root (a network namespace) and nft"
)
def test_nft_loads_the_file_twice_in_a_network_namespace(tmp_path: Path) -> None:
    """The kernel's own check: the file loads, and loads again (a reload), in an empty network
    namespace, and leaves exactly the table safekit with its rules."""
    rules = tmp_path / "safekit.nft"
    rules.write_text(
        firewall.nft_ruleset(
            firewall.node_ports(kind="mirror", nodes=[*NODES, "fd00:5afe::3"], replication=True)
        )
    )
    script = f"nft -f {rules} && nft -f {rules} && nft list ruleset"
    done = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("table ") == 1
    assert done.stdout.count(" accept comment ") == 8  # the chain adds nothing, drops nothing


def test_firewalld_rich_rules_one_per_port_and_source() -> None:
    rules = firewall.firewalld_rich_rules(
        firewall.node_ports(kind="farm", nodes=["198.18.0.2", "fd00:5afe::2"])
    )
    assert rules == [
        'rule family="ipv4" source address="198.18.0.2" port port="4800" protocol="udp" accept',
        'rule family="ipv6" source address="fd00:5afe::2" port port="4800" protocol="udp" accept',
        'rule family="ipv4" source address="198.18.0.2" port port="9010" protocol="tcp" accept',
        'rule family="ipv6" source address="fd00:5afe::2" port port="9010" protocol="tcp" accept',
        'rule family="ipv4" source address="198.18.0.2" port port="9453" protocol="tcp" accept',
        'rule family="ipv6" source address="fd00:5afe::2" port port="9453" protocol="tcp" accept',
    ]


def test_firewalld_adds_what_is_missing_and_removes_only_its_own_former_rules() -> None:
    wanted = ["A", "B"]
    present = ["B", "OLD", "USERS"]
    assert firewall.firewalld_changes(wanted, present, owned=["B", "OLD"]) == {
        "add": ["A"],
        "remove": ["OLD"],
    }
    assert firewall.firewalld_changes(wanted, ["A", "B", "USERS"], owned=["A", "B"]) == {
        "add": [],
        "remove": [],
    }


def test_the_filters_are_the_functions_and_say_what_is_wrong() -> None:

    filters = FilterModule().filters()
    assert filters["firewall_node_ports"](NODES, kind="mirror") == firewall.node_ports(
        kind="mirror", nodes=NODES
    )
    with pytest.raises(AnsibleFilterError, match="safekit firewall: nodes: 'x' is not an IP address"):
        filters["firewall_node_ports"](["x"], kind="mirror")
    assert (COLLECTION / "plugins" / "filter" / "firewall.py").is_file()


def test_firewall_cmd_removes_then_adds_in_the_permanent_config_then_reloads_once() -> None:
    rule = 'rule family="ipv4" source address="198.18.0.2" port port="4800" protocol="udp" accept'
    changes = {"add": [rule], "remove": ["OLD"]}
    assert firewall.firewalld_commands(changes, zone="internal") == [
        ["firewall-cmd", "--permanent", "--zone=internal", "--remove-rich-rule=OLD"],
        ["firewall-cmd", "--permanent", "--zone=internal", f"--add-rich-rule={rule}"],
        ["firewall-cmd", "--reload"],
    ]
    assert firewall.firewalld_commands({"add": ["R"], "remove": []})[0] == [
        "firewall-cmd", "--permanent", "--add-rich-rule=R"
    ]  # fmt: skip
    assert firewall.firewalld_commands({"add": [], "remove": []}) == []


def test_the_filters_read_a_templates_none_and_booleans_as_ansible_renders_them() -> None:
    filters = FilterModule().filters()
    got = filters["firewall_node_ports"](
        NODES, kind="mirror", heart_port="None", replication="True", api_port="0"
    )
    assert ports(got) == [(4800, "udp", "mirror heartbeats"), (4801, "tcp", "mirror replication"),
                          (9010, "tcp", "health and metrics")]  # fmt: skip
    got = filters["firewall_node_ports"](NODES, kind="mirror", heart_port="4810", replication="False")
    assert [p["port"] for p in got] == [4810, 9010, 9453]
    assert filters["firewall_arbiter_ports"](NODES, "")[0]["port"] == 9455
