"""What the kernel here can do for `vmac_directed` (issue 20), shown on a bridge whose ports do not
flood unknown unicast (`bridge link set ... flood off`, as data-centre switches do), where
`vmac_invisible` cannot work. The nftables rules are written here by hand, to record the
mechanisms the farm module's `vmac_directed` is built from (docs/adr/0018; the module itself is
tested in test_farm_directed_lab.py):

1. ARP for the VIP is answered by one node per client, the owner of the client address's bucket
   (`arp` input: `jhash arp saddr ip`, the same hash as `jhash ip saddr`); each node answers with
   its own MAC, so the switch learns every MAC and never floods.
2. A node receiving a new connection (SYN) of a bucket it does not own relays the frame at layer 2
   to the owner in `netdev` ingress (`fwd ip to OWNER device IF`: the kernel resolves the owner's
   MAC from its real address, so no MAC needs to travel in the heartbeats), and remembers the
   flow's owner in a dynamic map (`update @flows { saddr . sport : OWNER }`).
3. Later packets of a relayed flow follow the map, not the buckets: when ownership changes (a
   membership change), established connections stay on the node that accepted them - none is
   broken or reset - and only new connections follow the new map. The map survives rule changes
   because a change replaces the chains' rules, not the table.

Two nodes, two clients, 2 buckets (`mod 2`) to keep the arithmetic visible.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
from farm_lab import jhash_bucket

PREFIX = "h20c"  # this helper's lab name: namespaces h20c-br, h20c-n1, ...
NET = "198.19.250"
VIP = f"{NET}.50"
NODES = {"n1": f"{NET}.1", "n2": f"{NET}.2"}
SEED = 0x12345678
HELD = 16

SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = sys.argv[1].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
S(("0.0.0.0", 8080), H).serve_forever()
"""

# Holds keep-alive connections; on each stdin line, asks each who it is; prints one JSON line.
HOLDER = r"""
import json, socket, sys
vip, count = sys.argv[1], int(sys.argv[2])
conns = []
for i in range(count):
    s = socket.socket()
    s.settimeout(2)
    s.connect((vip, 8080))
    conns.append(s)
def ask(s):
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed")
        data += chunk
    body = data.split(b"\r\n\r\n", 1)[1]
    while len(body) < 2:
        body += s.recv(4096)
    return body.decode()
for line in sys.stdin:
    out = []
    for s in conns:
        try:
            out.append([ask(s), s.getsockname()[1]])
        except OSError as exc:
            out.append([f"error: {exc}", s.getsockname()[1]])
    print(json.dumps(out), flush=True)
"""


def ns(name: str) -> str:
    return f"{PREFIX}-{name}"


def run(name: str, *argv: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", ns(name), *argv], input=stdin, capture_output=True, text=True, check=True
    ).stdout


def bucket(address: str, port: int | None = None) -> int:
    key = ipaddress.IPv4Address(address).packed
    if port is not None:
        key += port.to_bytes(2, "big") + b"\0\0"
    return jhash_bucket(key, SEED, 2)


def client_addresses() -> dict[str, str]:
    """Two client addresses whose ARP bucket is 0 (n1 answers) and 1 (n2 answers)."""
    found: dict[int, str] = {}
    for last in range(100, 200):
        found.setdefault(bucket(f"{NET}.{last}"), f"{NET}.{last}")
    return {"c1": found[0], "c2": found[1]}


def rules(owned: int, other: str, *, first: bool) -> str:
    """This node's rules owning bucket `owned` of 2; `other` is the other node's real address.
    The first load creates the tables; later loads replace the chains' rules, keeping @flows."""
    tables = (
        """add table arp h20
delete table arp h20
add table netdev h20
delete table netdev h20
add table ip h20
delete table ip h20
table netdev h20 {
  map flows {
    type ipv4_addr . inet_service : ipv4_addr
    flags dynamic,timeout
    timeout 10m
  }
}
"""
        if first
        else ""
    )
    syn = "tcp flags & (fin|syn|rst|ack) == syn"
    return (
        tables
        + f"""
table arp h20 {{
  chain in {{
    type filter hook input priority 0; policy accept;
  }}
}}
flush chain arp h20 in
add rule arp h20 in arp operation request arp daddr ip {VIP} jhash arp saddr ip mod 2 seed {SEED:#x} \
vmap {{ {owned} : accept, {1 - owned} : drop }}
table netdev h20 {{
  chain in {{
    type filter hook ingress device eth0 priority -500; policy accept;
  }}
  chain relay_flow {{
  }}
  chain to_other {{
  }}
}}
flush chain netdev h20 in
flush chain netdev h20 relay_flow
flush chain netdev h20 to_other
add rule netdev h20 in ip daddr {VIP} tcp flags & (fin|syn|rst|ack) != syn ip saddr . tcp sport @flows \
goto relay_flow
add rule netdev h20 in ip daddr {VIP} {syn} jhash ip saddr . tcp sport mod 2 seed {SEED:#x} \
vmap {{ {owned} : accept, {1 - owned} : goto to_other }}
add rule netdev h20 relay_flow counter fwd ip to ip saddr . tcp sport map @flows device "eth0"
add rule netdev h20 to_other update @flows {{ ip saddr . tcp sport : {other} }}
add rule netdev h20 to_other counter fwd ip to {other} device "eth0"
table ip h20 {{
  chain connections {{
    type filter hook prerouting priority -150; policy accept;
  }}
}}
flush chain ip h20 connections
add rule ip h20 connections ip daddr {VIP} meta l4proto tcp ct state established,related accept
add rule ip h20 connections ip daddr {VIP} {syn} accept
add rule ip h20 connections ip daddr {VIP} meta l4proto tcp counter drop
"""
    )


def relayed(node: str) -> int:
    """Packets this node relayed to the other (new flows and their later packets)."""
    listed = json.loads(run(node, "nft", "-j", "list", "table", "netdev", "h20"))
    total = 0
    for item in listed["nftables"]:
        rule = item.get("rule")
        if rule and rule["chain"] in ("relay_flow", "to_other"):
            total += sum(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
    return total


def out_resets(node: str) -> int:
    lines = [line.split() for line in run(node, "cat", "/proc/net/snmp").splitlines()]
    tcp = [line for line in lines if line[0] == "Tcp:"]
    return int(tcp[1][tcp[0].index("OutRsts")])


@pytest.fixture
def bridge(root_required: None) -> Iterator[dict[str, str]]:
    if shutil.which("nft") is None:
        pytest.fail("nft is needed (the nftables package)")
    names = ["br", *NODES, "c1", "c2"]
    clients = client_addresses()
    processes: list[subprocess.Popen[str]] = []

    def down() -> None:
        for name in names:
            subprocess.run(["ip", "netns", "del", ns(name)], capture_output=True, check=False)

    down()
    try:
        subprocess.run(["ip", "netns", "add", ns("br")], check=True)
        run("br", "ip", "link", "add", "br0", "type", "bridge")
        run("br", "ip", "link", "set", "br0", "up")
        addresses = {**NODES, **clients}
        for index, (name, address) in enumerate(addresses.items(), start=1):
            subprocess.run(["ip", "netns", "add", ns(name)], check=True)
            subprocess.run(
                ["ip", "link", "add", "eth0", "netns", ns(name), "type", "veth", "peer", "name", f"p{index}",
                 "netns", ns("br")],
                check=True,
            )  # fmt: skip
            run("br", "ip", "link", "set", f"p{index}", "master", "br0", "up")
            run("br", "bridge", "link", "set", "dev", f"p{index}", "flood", "off")
            run(name, "ip", "link", "set", "lo", "up")
            run(name, "ip", "link", "set", "eth0", "address", f"02:00:00:00:00:0{index}")
            run(name, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
            run(name, "ip", "link", "set", "eth0", "up")
        for index, name in enumerate(NODES):
            other = NODES["n2" if name == "n1" else "n1"]
            run(name, "ip", "addr", "add", f"{VIP}/32", "dev", "eth0")
            run(name, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0")
            # Never speak for the VIP in an ARP request of one's own (a node resolving a client
            # would otherwise teach it this node's MAC for the VIP, whatever the buckets say).
            for interface in ("all", "eth0"):
                run(name, "sysctl", "-qw", f"net.ipv4.conf.{interface}.arp_announce=2")
            run(name, "nft", "-f", "-", stdin=rules(index, other, first=True))
            processes.append(
                subprocess.Popen(["ip", "netns", "exec", ns(name), "python3", "-c", SERVER, name], text=True)
            )
        time.sleep(1.0)
        yield clients
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        down()


class Holder:
    def __init__(self, client: str) -> None:
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", ns(client), "python3", "-c", HOLDER, VIP, str(HELD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self) -> list[tuple[str, int]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the client died"
        return [(who, port) for who, port in json.loads(line)]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def test_directed_arp_relay_and_sticky_flows_on_a_bridge_without_flooding(
    bridge: dict[str, str],
) -> None:
    holders = {client: Holder(client) for client in bridge}
    try:
        first = {client: holder.ask() for client, holder in holders.items()}
        # 1. Each client learnt the MAC of the node owning its address's bucket, and nobody else's.
        for client, address in bridge.items():
            neigh = run(client, "ip", "neigh", "show", VIP)
            expected = "02:00:00:00:00:01" if bucket(address) == 0 else "02:00:00:00:00:02"
            assert expected in neigh, (client, address, neigh)
        # 2. Every connection answered by the owner of its (address, port) bucket, whichever node
        #    received it: the ARP owner relayed the others at layer 2.
        for client, answers in first.items():
            owner = {0: "n1", 1: "n2"}
            assert [who for who, _ in answers] == [owner[bucket(bridge[client], p)] for _, p in answers]
            assert {who for who, _ in answers} == {"n1", "n2"}, answers
        relayed_before = {n: relayed(n) for n in NODES}
        assert relayed_before["n1"] > 0 and relayed_before["n2"] > 0, relayed_before
        resets = {n: out_resets(n) for n in NODES}
        # 3. Ownership changes (every bucket moves): established connections stay where they are.
        for index, name in enumerate(NODES):
            other = NODES["n2" if name == "n1" else "n1"]
            run(name, "nft", "-f", "-", stdin=rules(1 - index, other, first=False))
        second = {client: holder.ask() for client, holder in holders.items()}
        assert second == first, "an established connection moved or broke when the buckets moved"
        assert {n: out_resets(n) - resets[n] for n in NODES} == dict.fromkeys(NODES, 0)
        total = sum(len(a) for a in first.values())
        share = sum(relayed(n) for n in NODES)
        print(
            f"{total} connections, each answered by its bucket's owner; {share} packets relayed at layer 2; "
            "after every bucket moved, every held connection still answered by the same node, 0 resets"
        )
    finally:
        for holder in holders.values():
            holder.close()
