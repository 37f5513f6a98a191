"""A mirror module's IPv6 VIP (the arp provider by neighbour discovery, ADR 0059) on real lab hosts:
two nodes and a client on the lab's unique-local /64 (`lab up --ipv6`), real daemons.

- The primary holds fd00:5afe:0:N::c8 (deprecated, no duplicate address detection) and the client
  reaches the web service there over IPv6; the client's neighbour entry and a neighbour
  solicitation probe from the client (`safekit vip owner`) name the primary's MAC, and no one else.
- A swap moves the VIP: the client, whose entry was fresh (REACHABLE, on the old primary's MAC),
  is served by the new primary within 2 s of it becoming PRIM - the unsolicited neighbour
  advertisement moved it (neighbour unreachability detection alone takes 5 s and more); the old
  primary no longer answers the probe.
- The primary powered off: the secondary takes the VIP (its owner probe saw nobody) and the client
  is served by it; the probe names it alone. The node boots again and rejoins as secondary.
- The primary's safekitd killed (SIGKILL): its VIP stays until its lifetime runs out, and the
  secondary's owner probe (a neighbour solicitation) sees the old primary's MAC and does not take
  the VIP; the kernel deletes it within the lifetime; the client's probe then sees nobody.

`make test` runs the first and the last (about 30 s at load 11) and deselects the swap and the power
cut (another 30 s: a swap, a takeover, a boot and a rejoin; the Makefile's VIP_IPV6_LONG); `make
test-vip-ipv6` runs the whole file (63 s at load 11). The last one finds node1 primary either way.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.run_names import run_lab_name
from safekit.membership import clusterkey

LAB = run_lab_name("vipv6")
MODULE = "web6"
PORT = 8080

USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone" failover="on" maxloop="3" loop_interval="24h">
  <heart><heartbeat name="default"/></heart>
  <vip>
    <interface_list>
      <interface check="on">
        <real_interface>
          <virtual_addr addr="{vip}" where="one_side_alias"/>
        </real_interface>
      </interface>
    </interface_list>
  </vip>
  <user nicestoptimeout="3s" forcestoptimeout="5s" logging="userlog">
    <var name="WEB_PORT" value="{port}"/>
  </user>
  <check>
    <splitbrain ident="witness" exec="ping" arg="{witness}"/>
  </check>
</service>
</safe>
"""

# An HTTP server on every IPv6 address of the node (the VIP included), answering its host name.
START_PRIM = """#!/bin/sh
mkdir -p /srv/www6 && hostname > /srv/www6/who && cd /srv/www6
setsid python3 -c '
import http.server, socket, sys
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass
S(("::", int(sys.argv[1])), H).serve_forever()
' "$WEB_PORT" >/dev/null 2>&1 < /dev/null &
echo $! > /run/web6.pid
up='import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)'
for i in $(seq 50); do python3 -c "$up" "$WEB_PORT" 2>/dev/null && exit 0; sleep 0.1; done
exit 1
"""

STOP_PRIM = """#!/bin/sh
[ -f /run/web6.pid ] && kill "$(cat /run/web6.pid)" 2>/dev/null
rm -f /run/web6.pid
exit 0
"""

# Who serves [VIP]:PORT, asked every 20 ms until someone does (or the timeout): prints JSON
# {"who": name or null, "after": seconds from the start to that answer}.
ASK = r"""
import json, socket, sys, time
vip, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
start = time.monotonic()
who = None
while time.monotonic() - start < timeout:
    try:
        with socket.create_connection((vip, port), 0.5) as s:
            s.sendall(b"GET /who HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        who = data.split(b"\r\n\r\n", 1)[1].decode().strip()
        break
    except OSError:
        time.sleep(0.02)
print(json.dumps({"who": who, "after": time.monotonic() - start}))
"""


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    lab = Lab(LAB)
    lab.down()
    lab.up(nodes=2, lans=1, witness=True, client=True, ipv6=True)
    try:
        yield lab
    finally:
        lab.down()


def vip(lab: Lab) -> str:
    return str(lab.plan().vips6[0])


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[LabCluster]:
    root = Path(tempfile.mkdtemp(prefix="safekit-vipv6-", dir="/var/tmp"))
    path = root / MODULE
    (path / "conf").mkdir(parents=True)
    (path / "bin").mkdir()
    witness = lab.plan().host("witness").address
    (path / "conf" / "userconfig.xml").write_text(USERCONFIG.format(vip=vip(lab), port=PORT, witness=witness))
    for name, body in (("start_prim", START_PRIM), ("stop_prim", STOP_PRIM)):
        (path / "bin" / name).write_text(body)
        (path / "bin" / name).chmod(0o755)
    root.chmod(0o755)
    cluster = LabCluster(lab)
    cluster.install(path, key=clusterkey.generate_key())
    for node in cluster.nodes:
        cluster.start_daemon(node)
    try:
        yield cluster
    finally:
        cluster.keep_logs(MODULE)
        cluster.stop_daemons()
        shutil.rmtree(root, ignore_errors=True)


def ask(lab: Lab, timeout: float = 10.0) -> tuple[str | None, float]:
    """(the node that serves the VIP as the client sees it, seconds until it answered)."""
    out = lab.exec("client", ["python3", "-c", ASK, vip(lab), str(PORT), str(timeout)], check=True)
    answer = json.loads(out.stdout)
    return answer["who"], float(answer["after"])


def mac(lab: Lab, node: str) -> str:
    plan = lab.plan()
    return plan.host(node).mac(plan.lans[0])


def client_entry(lab: Lab) -> tuple[str | None, str]:
    """(MAC, state) of the client's neighbour entry for the VIP (`ip -6 neigh`)."""
    out = lab.exec("client", ["ip", "-6", "-j", "neigh", "show", vip(lab)], check=True).stdout
    entries = json.loads(out or "[]")
    if not entries:
        return None, "none"
    return entries[0].get("lladdr"), " ".join(entries[0].get("state", []))


def owners_seen_from_client(lab: Lab) -> list[str]:
    """Who answers a neighbour solicitation for the VIP, from the client (`safekit vip owner`)."""
    result = lab.exec("client", [sys.executable, "-m", "safekit.vip", "owner", vip(lab), "--json"])
    probe = json.loads(result.stdout)["probes"][0]
    assert probe["error"] is None, probe
    owners: list[str] = probe["owners"]
    return owners


def holds(lab: Lab, node: str) -> str:
    """The VIP's line in the node's `ip -6 addr` ('' when it does not hold it)."""
    out = lab.exec(node, ["ip", "-6", "-o", "addr", "show"], check=True).stdout
    return next((line for line in out.splitlines() if f" {vip(lab)}/" in line), "")


def test_the_primary_holds_the_ipv6_vip_and_the_client_reaches_it(lab: Lab, cluster: LabCluster) -> None:
    cluster.safekit("node1", "prim", "-m", MODULE)
    cluster.safekit("node2", "second", "-m", MODULE)
    cluster.wait_state("node1", MODULE, "PRIM")
    cluster.wait_state("node2", MODULE, "SECOND")
    line = holds(lab, "node1")
    assert "deprecated" in line and "nodad" in line, line
    assert holds(lab, "node2") == ""
    assert ask(lab)[0] == "node1"
    assert client_entry(lab)[0] == mac(lab, "node1")
    assert owners_seen_from_client(lab) == [mac(lab, "node1")]


def test_a_swap_moves_the_client_by_neighbour_advertisement(lab: Lab, cluster: LabCluster) -> None:
    assert ask(lab)[0] == "node1"  # the client's entry is fresh: REACHABLE on node1's MAC
    entry = client_entry(lab)
    assert entry[0] == mac(lab, "node1") and "REACHABLE" in entry[1], entry
    cluster.safekit("node1", "swap", "-m", MODULE)
    cluster.wait_state("node2", MODULE, "PRIM", timeout=30)
    who, after = ask(lab)
    assert who == "node2"
    # Without the advertisement the client would keep node1's MAC until its entry went stale and
    # was probed (5 s and more); the state poll above already took part of this time.
    assert after < 2.0, f"served by node2 {after:.2f} s after it became PRIM"
    assert client_entry(lab)[0] == mac(lab, "node2")
    assert holds(lab, "node1") == ""
    assert owners_seen_from_client(lab) == [mac(lab, "node2")]
    cluster.wait_state("node1", MODULE, "SECOND", timeout=30)


def test_the_secondary_takes_the_vip_when_the_primary_is_powered_off(lab: Lab, cluster: LabCluster) -> None:
    assert ask(lab)[0] == "node2"
    killed = time.monotonic()
    lab.kill("node2")
    who, _ = ask(lab, timeout=30.0)
    served = time.monotonic() - killed
    assert who == "node1", f"not served by node1 {served:.1f} s after node2 was powered off"
    print(f"IPv6 VIP served by node1 {served:.2f} s after node2 was powered off")
    assert cluster.state("node1", MODULE)["state"] == "ALONE"
    assert client_entry(lab)[0] == mac(lab, "node1")
    assert owners_seen_from_client(lab) == [mac(lab, "node1")]
    lab.start("node2")
    cluster.start_daemon("node2")  # boot="auto": the module starts again, as secondary
    cluster.wait_state("node2", MODULE, "SECOND", timeout=30)
    cluster.wait_state("node1", MODULE, "PRIM", timeout=30)


def test_a_dead_daemons_vip_is_seen_by_the_secondary_and_expires(lab: Lab, cluster: LabCluster) -> None:
    pid = cluster.daemon_pid("node1")
    assert pid is not None
    killed = time.monotonic()
    lab.exec("node1", ["kill", "-KILL", str(pid)], check=True)
    # node1's VIP stays until its lifetime runs out (its web server too): node2's owner probe
    # sees it, and node2 does not take the VIP while a client can still reach node1 there.
    answered = f"the virtual IP is answered by {mac(lab, 'node1')} for {vip(lab)}"
    deadline = killed + 20
    while answered not in cluster.log("node2", MODULE):
        assert time.monotonic() < deadline, cluster.log("node2", MODULE)[-3000:]
        time.sleep(0.2)
    assert holds(lab, "node2") == ""
    # ... and the kernel deletes it a lifetime after the last renewal (max(3 s, 2 x the heartbeat
    # timeout) = 3 s here, renewed every second).
    while holds(lab, "node1"):
        assert time.monotonic() - killed < 3 + 1 + 1, "node1's VIP outlived its lifetime"
        time.sleep(0.05)
    print(f"node1's IPv6 VIP gone {time.monotonic() - killed:.2f} s after its safekitd was killed")
    assert cluster.state("node2", MODULE)["state"] not in ("PRIM", "ALONE")
    assert owners_seen_from_client(lab) == []
