"""safekit_manage_firewall on locked-down lab hosts (issue 17, ADR 0068).

Each node and the witness first gets a table of its own, as a locked-down host has: input policy
drop, except loopback, established traffic, ssh, the web service's port 8080 (the user's own
service) and `meta mark 0x5afe accept` (the one rule a host with a drop policy adds for the
cluster's ports, docs/install.md). Then playbooks/deploy-mirror.yml with safekit_manage_firewall=true
and a replicated directory: the mirror is PRIM/SECOND Ready (heartbeats, replication and the
arbiter go through the table inet safekit the roles load), the VIP serves, a port that is not the
cluster's stays closed from the peer, the health port is open from it, and a second run changes
nothing.

Not in make test (a deployment, about 5 minutes): make test-ansible-long (ANSIBLE_LONG_TESTS).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from ansible_lab_runs import fresh_lab, run_playbook

from safekit.lab import Lab

LOCKDOWN = """\
table inet lockdown {
	chain input {
		type filter hook input priority filter; policy drop;
		iif lo accept
		ct state established,related accept
		tcp dport 22 accept
		tcp dport 8080 accept
		meta mark 0x5afe accept
	}
}
"""
EXTRA = [
    "-e",
    "safekit_manage_firewall=true",
    "-e",
    '{"safekit_replication": {"dirs": [{"path": "/srv/www"}]}}',
]

CONNECT = """\
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("open")
except ConnectionRefusedError:
    print("refused")
except OSError:
    print("timeout")
"""


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    for lab in fresh_lab("fwlab"):
        for host in ("node1", "node2", "witness"):
            lab.exec(host, ["nft", "-f", "-"], input=LOCKDOWN, check=True)
        yield lab


def state(lab: Lab, node: str) -> tuple[str, str]:
    out = lab.exec(node, ["/opt/safekit/venv/bin/safekit", "state", "-m", "webmirror", "--json"], check=True)
    module = json.loads(out.stdout)["modules"][0]
    return module["state"], module["readiness"]


def connect(lab: Lab, src: str, dst: str, port: int) -> str:
    addr = str(lab.plan().host(dst).address)
    return lab.exec(src, ["python3", "-c", CONNECT, addr, str(port)], check=True).stdout.strip()


def test_the_locked_down_hosts_drop_the_cluster_ports_before_the_deployment(lab: Lab) -> None:
    # a port where nothing listens: refused if let in, no answer when dropped
    assert connect(lab, "node2", "node1", 4801) == "timeout"
    assert connect(lab, "node2", "node1", 22) == "open"


def test_the_mirror_runs_through_the_firewall_it_opened(lab: Lab) -> None:
    result, _ = run_playbook(lab, "deploy-mirror.yml", *EXTRA)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert {state(lab, "node1"), state(lab, "node2")} == {("PRIM", "Ready"), ("SECOND", "Ready")}
    table = lab.exec("node1", ["nft", "list", "table", "inet", "safekit"], check=True).stdout
    for rule in ("udp dport 4800", "tcp dport 4801", "tcp dport 9010", "tcp dport 9453"):
        assert rule in table, table
    assert "drop" not in table and "reject" not in table
    assert (
        "udp dport 9455"
        in lab.exec("witness", ["nft", "list", "table", "inet", "safekit"], check=True).stdout
    )
    assert "table inet lockdown" in lab.exec("node1", ["nft", "list", "tables"], check=True).stdout
    vip = str(lab.plan().vips[0])
    served = lab.exec("client", ["python3", "-c", CONNECT, vip, "8080"], check=True).stdout.strip()
    assert served == "open"


def test_only_the_cluster_ports_are_let_in(lab: Lab) -> None:
    assert connect(lab, "node2", "node1", 9010) == "open"  # the health endpoint, from the peer
    # 4802 is nobody's: still dropped (no answer, not refused)
    assert connect(lab, "node2", "node1", 4802) == "timeout"
    # the client is not a node: the health port is not opened to it
    assert connect(lab, "client", "node1", 9010) == "timeout"


def test_a_second_run_changes_nothing(lab: Lab) -> None:
    result, recap = run_playbook(lab, "deploy-mirror.yml", *EXTRA)
    assert result.returncode == 0, result.stdout[-5000:]
    assert recap and all(h.get("changed", 0) == 0 for h in recap.values()), result.stdout[-3000:]
