"""cluster.xml changed through the console's API and taken by the running daemons without a restart
(ADR 0043), on its own lab ("console1": 2 nodes, 3 LANs, no other test shares it).

The cluster starts with two heartbeat networks (default, lan1). Module `rl` (mirror, replicated
directory, heartbeats on default and lan1) runs PRIM/SECOND; module `rl2` names lan2, which
cluster.xml lacks, so it is not loaded. Then, with the same two safekitd processes throughout:
1. lan2 is added with `PUT /api/v1/cluster/config`: both nodes take it live, `rl2` loads, is
   started, and its heartbeats run on lan2 (up, packets counted on both nodes); the API follows
   (ADR 0050): the certificate node1's running server presents names its lan2 address (it did not
   before), and the cluster status lists lan2;
2. lan1 is readdressed (new addresses put on the hosts first): `rl`'s heartbeats move to them while
   it stays PRIM/SECOND, its generation unchanged; each node's certificate names its new address
   and not the one it left;
3. the network carrying `rl`'s replication (default) is readdressed: refused on both nodes with the
   reason, nothing reloaded, safekitd.log says so; the file put back, `safekit cluster reload` and
   SIGHUP find nothing to apply.

About a minute (the lab, two modules, a resync): run with SAFEKIT_CONSOLE_RELOAD=1
(`make test-console-reload`); `make test` leaves it out.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import _wait_file

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster, cluster_xml
from safekit.lab.run_names import run_lab_name
from safekit.membership import clusterkey

# another name: runs beside a console1
LAB = os.environ.get("SAFEKIT_CONSOLE_RELOAD_LAB") or run_lab_name("console1")
pytestmark = pytest.mark.skipif(
    os.environ.get("SAFEKIT_CONSOLE_RELOAD") != "1",
    reason="about a minute: SAFEKIT_CONSOLE_RELOAD=1 (make test-console-reload)",
)
DATA = "/srv/rl"
USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone" failover="on">
  <heart port="{port}">
{heartbeats}
  </heart>
{rfs}
</service>
</safe>
"""


def module(root: Path, name: str, port: int, lans: list[str], rfs: bool) -> Path:
    path = root / name
    (path / "conf").mkdir(parents=True)
    (path / "bin").mkdir()
    beats = "\n".join(f'    <heartbeat name="{lan}"/>' for lan in lans)
    replicated = f'  <rfs><replicated dir="{DATA}"/></rfs>' if rfs else ""
    (path / "conf" / "userconfig.xml").write_text(
        USERCONFIG.format(port=port, heartbeats=beats, rfs=replicated)
    )
    return path


@dataclass
class ReloadLab:
    lab: Lab
    cluster: LabCluster
    ca_pem: str
    admin: str

    def address(self, node: str, lan: str = "default") -> str:
        return str(self.lab.plan().host(node).addresses[lan].ip)

    def call(self, node: str, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.admin}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        url = f"https://{self.address(node)}:9453{path}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        context = ssl.create_default_context(cadata=self.ca_pem)
        try:
            with urllib.request.urlopen(request, timeout=30, context=context) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def form(
        self, moved: dict[str, dict[str, str]] | None = None, lans: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """The cluster form with these LANs, each node at its lab address unless `moved`."""
        out = []
        for lan in lans:
            nodes = [
                {"name": n, "addr": (moved or {}).get(lan, {}).get(n, self.address(n, lan))}
                for n in self.cluster.nodes
            ]
            out.append({"name": lan, "command": True, "nodes": nodes})
        return {"lans": out}

    def heartbeats(self, node: str, mod: str) -> dict[str, dict[str, Any]]:
        # the token is node1's: node2's figures come through node1 (forwarded to its API)
        status, data = self.call("node1", "GET", f"/api/v1/modules/{mod}/monitoring?node={node}")
        assert status == 200, data
        return {h["lan"]: h for h in data["heartbeats"]}

    def certificate(self, client: str, server: str, address: str) -> tuple[bool, str]:
        """From `client`, the TLS handshake with `server`'s API at `address`: whether the certificate
        it presents verifies for that address (cluster CA, IP checked), and its subject alt names."""
        script = (
            f"out=$(openssl s_client -connect {address}:9453 -CAfile /etc/safekit/api/ca.crt "
            f"-verify_ip {address} -verify_return_error </dev/null 2>&1); rc=$?; "
            'printf "%s" "$out" | openssl x509 -noout -ext subjectAltName; exit $rc'
        )
        result = self.lab.exec(client, ["sh", "-c", script], timeout=30)
        return result.returncode == 0, result.stdout

    def networks(self) -> dict[str, dict[str, str]]:
        """The networks node1's API shows (the console's live view has the same list)."""
        status, data = self.call("node1", "GET", "/api/v1/cluster")
        assert status == 200, data
        return {n["name"]: {m["name"]: m["addr"] for m in n["nodes"]} for n in data["networks"]}

    def daemon_log(self, node: str) -> str:
        return self.lab.exec(node, ["cat", "/var/log/safekit/safekitd.log"]).stdout


@pytest.fixture(scope="module")
def reload_lab(root_required: None) -> Iterator[ReloadLab]:
    lab = Lab(LAB)
    lab.down()
    lab.up(nodes=2, lans=3)
    root = Path(tempfile.mkdtemp(prefix="safekit-console1-", dir="/var/tmp"))
    root.chmod(0o755)
    cluster = LabCluster(lab)
    try:
        two = cluster_xml(lab, cluster.nodes, ["default", "lan1"])
        key = clusterkey.generate_key()
        cluster.install(module(root, "rl", 4830, ["default", "lan1"], rfs=True), cluster=two, key=key)
        cluster.install(module(root, "rl2", 4840, ["default", "lan2"], rfs=False), cluster=two, key=key)
        for node in cluster.nodes:
            lab.exec(node, ["mkdir", "-p", DATA], check=True)
        lab.exec("node1", ["sh", "-c", f"head -c 65536 /dev/urandom > {DATA}/f"], check=True)
        admin = cluster.safekit("node1", "api", "token", "create", "--role", "admin", "--name", "reload")
        for node in cluster.nodes:
            cluster.start_daemon(node)
        cluster.safekit("node1", "prim", "-m", "rl")
        cluster.wait_state("node1", "rl", "ALONE", timeout=30)
        cluster.safekit("node2", "start", "-m", "rl")
        cluster.wait_state("node2", "rl", "SECOND", timeout=60)
        cluster.wait_state("node1", "rl", "PRIM", timeout=30)
        ca = _wait_file(lab, "node1", "/etc/safekit/api/ca.crt")
        yield ReloadLab(lab, cluster, ca, admin.stdout.strip())
    finally:
        cluster.keep_logs("rl")
        cluster.stop_daemons()
        lab.down()
        shutil.rmtree(root, ignore_errors=True)


def wait_for(what: str, check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not seen within {timeout:g} s (last: {last})")


def test_heartbeat_networks_added_and_moved_live_and_a_replication_network_refused(
    reload_lab: ReloadLab,
) -> None:
    lab, cluster = reload_lab.lab, reload_lab.cluster
    pids = {n: cluster.daemon_pid(n) for n in cluster.nodes}
    generation = {n: cluster.state(n, "rl")["generation"] for n in cluster.nodes}
    listed = json.loads(cluster.safekit("node1", "module", "list", "--json").stdout)
    assert "lan2" in str(listed), listed  # rl2 not loaded: its network is missing
    lan2 = reload_lab.address("node1", "lan2")
    verified, names = reload_lab.certificate("node2", "node1", lan2)
    assert not verified and lan2 not in names, names  # the API listens there, not certified for it
    assert sorted(reload_lab.networks()) == ["default", "lan1"]

    # 1. lan2 added through the API: taken live on both nodes, rl2 loads and runs on it.
    status, answer = reload_lab.call(
        "node1", "PUT", "/api/v1/cluster/config", {"form": reload_lab.form(lans=("default", "lan1", "lan2"))}
    )
    assert status == 200, answer
    for node in cluster.nodes:
        result = answer["nodes"][node]
        assert result["reload"]["applied"] is True, result
        assert "heartbeat network lan2 added" in result["message"]
        assert result["restart_needed"] is False
    # the API follows (ADR 0050): node1's certificate names its lan2 address, served by the same
    # server; the cluster status (and the console's live view) lists lan2
    verified, names = reload_lab.certificate("node2", "node1", lan2)
    assert verified and lan2 in names, names
    assert reload_lab.networks()["lan2"] == {n: reload_lab.address(n, "lan2") for n in cluster.nodes}
    assert "API certificate for node1 issued again" in reload_lab.daemon_log("node1")
    cluster.safekit("node1", "prim", "-m", "rl2")
    cluster.wait_state("node1", "rl2", "ALONE", timeout=30)
    cluster.safekit("node2", "start", "-m", "rl2")
    cluster.wait_state("node2", "rl2", "SECOND", timeout=30)
    for node in cluster.nodes:
        first = reload_lab.heartbeats(node, "rl2")["lan2"]
        assert first["up"] is True, first
        later = wait_for(
            f"{node}: rl2's heartbeats counted on lan2",
            lambda node=node, first=first: (
                (h := reload_lab.heartbeats(node, "rl2")["lan2"])["received"] > first["received"] and h
            ),
        )
        assert later["up"] is True
        ports = json.loads(cluster.safekit(node, "module", "getports", "-m", "rl2", "--json").stdout)
        assert reload_lab.address(node, "lan2") in ports["lans"]["lan2"]

    # 2. lan1 moved to new addresses (configured on the hosts first): rl's heartbeats follow, rl runs on.
    plan = lab.plan()
    network = plan.lan("lan1").network
    moved = {"lan1": {"node1": str(network[101]), "node2": str(network[102])}}
    for node in cluster.nodes:
        device = plan.host(node).interface(plan.lan("lan1"))
        lab.exec(node, ["ip", "addr", "add", f"{moved['lan1'][node]}/24", "dev", device], check=True)
    before = {n: reload_lab.heartbeats(n, "rl")["lan1"]["received"] for n in cluster.nodes}
    status, answer = reload_lab.call(
        "node1",
        "PUT",
        "/api/v1/cluster/config",
        {"form": reload_lab.form(moved, ("default", "lan1", "lan2"))},
    )
    assert status == 200, answer
    for node in cluster.nodes:
        result = answer["nodes"][node]
        assert result["reload"]["applied"] is True, result
        assert result["reload"]["relinked"] == {"rl": ["lan1"]}
        ports = json.loads(cluster.safekit(node, "module", "getports", "-m", "rl", "--json").stdout)
        assert ports["lans"]["lan1"].startswith(moved["lan1"][node]), ports
    # each node's certificate now names its new lan1 address and no longer the one it left (still
    # configured on the host: the API answers there, with a certificate that does not verify)
    for client, server in (("node2", "node1"), ("node1", "node2")):
        verified, names = reload_lab.certificate(client, server, moved["lan1"][server])
        assert verified, names
        left = reload_lab.address(server, "lan1")
        verified, names = reload_lab.certificate(client, server, left)
        assert not verified and left not in names, names
    assert reload_lab.networks()["lan1"] == moved["lan1"]
    for node in cluster.nodes:
        wait_for(
            f"{node}: rl's heartbeats on lan1 at the new addresses",
            lambda node=node: (
                (h := reload_lab.heartbeats(node, "rl")["lan1"])["up"] is True
                and h["received"] > before[node] + 10
            ),
        )
    states = {n: cluster.state(n, "rl") for n in cluster.nodes}
    assert [states[n]["state"] for n in cluster.nodes] == ["PRIM", "SECOND"]
    assert {n: states[n]["generation"] for n in cluster.nodes} == generation  # no failover, no resync
    assert "cluster.xml reload: applied live: heartbeat network lan1 readdressed" in reload_lab.daemon_log(
        "node2"
    )

    # 3. the network that carries rl's replication: refused on both nodes, nothing reloaded.
    default = plan.lan("default").network
    replication = {**moved, "default": {"node1": str(default[111]), "node2": str(default[112])}}
    status, answer = reload_lab.call(
        "node1",
        "PUT",
        "/api/v1/cluster/config",
        {"form": reload_lab.form(replication, ("default", "lan1", "lan2"))},
    )
    assert status == 200, answer
    for node in cluster.nodes:
        result = answer["nodes"][node]
        assert result["reload"]["applied"] is False
        assert "carries the replication of module rl, which runs" in result["message"]
        assert result["restart_needed"] is True
        assert "cluster.xml reload refused" not in reload_lab.daemon_log(node)  # decided in the dry run
        confinfo = json.loads(cluster.safekit(node, "cluster", "confinfo", "--json").stdout)
        assert confinfo["differs"] is True
    # the CLI says the same, and logs it; then the accepted file is put back
    refused = cluster.safekit("node2", "cluster", "reload", check=False)
    assert refused.returncode == 1 and "carries the replication of module rl" in refused.stderr
    assert "cluster.xml reload refused" in reload_lab.daemon_log("node2")
    status, answer = reload_lab.call(
        "node1",
        "PUT",
        "/api/v1/cluster/config",
        {"form": reload_lab.form(moved, ("default", "lan1", "lan2")), "reload": False},
    )
    assert status == 200, answer
    assert "nothing to apply" in cluster.safekit("node1", "cluster", "reload").stdout
    everywhere = cluster.safekit("node1", "-H", "*", "cluster", "reload").stdout  # through each API
    assert everywhere.count("nothing to apply") == 2, everywhere
    lab.exec("node2", ["sh", "-c", "kill -HUP $(cat /run/safekitd.pid)"], check=True)
    wait_for(
        "node2: the SIGHUP reload logged",
        lambda: "cluster.xml reload: cluster.xml is the one safekitd runs" in reload_lab.daemon_log("node2"),
    )
    for node in cluster.nodes:
        confinfo = json.loads(cluster.safekit(node, "cluster", "confinfo", "--json").stdout)
        assert confinfo["differs"] is False
    assert {n: cluster.daemon_pid(n) for n in cluster.nodes} == pids  # never restarted
    assert [cluster.state(n, "rl")["state"] for n in cluster.nodes] == ["PRIM", "SECOND"]
