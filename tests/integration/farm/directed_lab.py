"""A `vmac_directed` farm on a lab whose switch does not flood unknown unicast (`bridge link set
... flood off` on every port, as data-centre switches do), with several client hosts: each client
learns by ARP the MAC of the node that serves its address's bucket, so clients spread over the
nodes. Shared by tests/integration/farm/test_farm_directed_lab.py and bench/farm.py.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path
from typing import Any

from farm_lab import farm_map as shared_farm_map
from farm_lab import jhash_bucket, module_dir
from farm_lab import wait_members as shared_wait_members

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.topology import PREFIX

MODULE = "directed"
PORT = 8080
NODES = ("node1", "node2", "node3")

# SafeKit's shape: vmac_directed, a <group> without <cluster>, a <rule port proto filter>.
USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="farm" boot="off" maxloop="10">
  <farm><lan name="default"/></farm>
  <vip>
    <interface_list>
      <interface check="on">
        <virtual_interface type="{vmac}">
          <virtual_addr addr="{vip}" where="alias"/>
        </virtual_interface>
      </interface>
    </interface_list>
    <loadbalancing_list>
      <group name="web">
        <rule virtual_addr="*" port="{port}" proto="tcp" filter="on_port"/>
      </group>
    </loadbalancing_list>
  </vip>
  <user nicestoptimeout="5s" forcestoptimeout="5s" logging="userlog">
    <var name="WEB_PORT" value="{port}"/>
  </user>
</service>
</safe>
"""

# An HTTP/1.1 server (keep-alive: a connection lives across requests) answering the node's name.
START_BOTH = """#!/bin/sh
mkdir -p /srv/www
hostname > /srv/www/who
cd /srv/www
setsid python3 -c '
import http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 512
    allow_reuse_address = True
    daemon_threads = True
S(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
' "$WEB_PORT" >/dev/null 2>&1 < /dev/null &
echo $! > /run/directedweb.pid
up='import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)'
for i in $(seq 50); do python3 -c "$up" "$WEB_PORT" 2>/dev/null && exit 0; sleep 0.1; done
exit 1
"""

STOP_BOTH = """#!/bin/sh
[ -f /run/directedweb.pid ] && kill "$(cat /run/directedweb.pid)" 2>/dev/null
rm -f /run/directedweb.pid
exit 0
"""

# Keep-alive connections held by one client; on each stdin line (JSON: indexes not to ask), asks
# every connection who serves it; prints one JSON line: [who or "error: ...", source port].
HOLDER = r"""
import json, socket, sys
vip, port, count, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode()
conns = []
for i in range(count):
    s = socket.socket()
    s.settimeout(2.0)
    s.connect((vip, port))
    conns.append(s)
def ask(s):
    s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed by the server")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    fields = {l.split(b":", 1)[0].lower(): l.split(b":", 1)[1] for l in head.split(b"\r\n")[1:]}
    while len(body) < int(fields[b"content-length"]):
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed by the server")
        body += chunk
    return body.decode().strip()
dead = set()
for line in sys.stdin:
    dead.update(json.loads(line))
    out = []
    for i, s in enumerate(conns):
        if i in dead:
            out.append(["skipped", s.getsockname()[1]])
            continue
        try:
            out.append([ask(s), s.getsockname()[1]])
        except OSError as exc:
            dead.add(i)
            out.append([f"error: {exc!r}", s.getsockname()[1]])
    print(json.dumps(out), flush=True)
"""

# New connections, one request each: prints JSON {"seen": [[sport, who or null]], "failures": n}.
PROBE = r"""
import json, socket, sys
vip, port, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
seen, failures = [], 0
for i in range(count):
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect((vip, port))
        s.sendall(b"GET /who HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        seen.append([s.getsockname()[1], data.split(b"\r\n\r\n", 1)[1].decode().strip()])
    except OSError:
        failures += 1
    finally:
        s.close()
print(json.dumps({"seen": seen, "failures": failures}))
"""

# Until the first answer: started before the measured event, prints "ready", reads the event's
# time (time.time()) on stdin, then opens a new connection every 50 ms (200 ms connect timeout) and
# prints the seconds from the event to the first answer.
UNTIL_SERVED = r"""
import socket, sys, time
vip, port = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
since = float(sys.stdin.readline())
while True:
    s = socket.socket()
    s.settimeout(0.2)
    try:
        s.connect((vip, port))
        s.sendall(b"GET /who HTTP/1.0\r\n\r\n")
        if s.recv(4096):
            print(time.time() - since, flush=True)
            break
    except OSError:
        time.sleep(0.05)
    finally:
        s.close()
"""

# The same event at a finer grain (as the vmac_invisible kill probe of bench/farm.py): a new
# connection attempt every 20 ms, each in its own thread (200 ms connect timeout), so an attempt
# whose SYN went to the dead node does not hide the next 200 ms; prints the seconds from the event
# to the first answer. (UNTIL_SERVED above waits out each failed attempt: its figure carries up to
# 250 ms of the probe's own granularity.)
UNTIL_SERVED_FINE = r"""
import socket, sys, threading, time
vip, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in vip else socket.AF_INET
print("ready", flush=True)
since = float(sys.stdin.readline())
done, first = threading.Event(), []
def attempt():
    s = socket.socket(family)
    s.settimeout(0.2)
    try:
        s.connect((vip, port))
        s.settimeout(1.0)
        s.sendall(b"GET /who HTTP/1.0\r\n\r\n")
        if s.recv(4096):
            first.append(time.time() - since)
            done.set()
    except OSError:
        pass
    finally:
        s.close()
while not done.is_set():
    threading.Thread(target=attempt, daemon=True).start()
    done.wait(0.02)
print(min(first), flush=True)
"""


def vip(lab: Lab) -> str:
    return str(lab.plan().vips[0])


def no_flooding(lab: Lab) -> list[str]:
    """Switch off unknown-unicast flooding on every port of LAN 0's bridge (again after a host
    boots: its cable is new). Returns the ports."""
    plan = lab.plan()
    switch, bridge = plan.switch_netns, plan.lans[0].bridge
    out = subprocess.run(
        ["ip", "-n", switch, "-j", "link", "show", "master", bridge],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ports = [link["ifname"] for link in json.loads(out or "[]")]
    for port in ports:
        subprocess.run(
            ["ip", "netns", "exec", switch, "bridge", "link", "set", "dev", port, "flood", "off"], check=True
        )
    return ports


def flooding_is_off(lab: Lab) -> bool:
    plan = lab.plan()
    out = subprocess.run(
        ["ip", "netns", "exec", plan.switch_netns, "bridge", "-d", "-j", "link", "show"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    links = [link for link in json.loads(out or "[]") if link.get("master") == plan.lans[0].bridge]
    return bool(links) and all(link.get("flood") is False for link in links)


def make_module(lab: Lab, vmac: str = "vmac_directed") -> Path:
    userconfig = USERCONFIG.format(vip=vip(lab), port=PORT, vmac=vmac)
    return module_dir(userconfig, {"start_both": START_BOTH, "stop_both": STOP_BOTH}, MODULE)


def farm_map(cluster: LabCluster, node: str) -> dict[str, Any]:
    return shared_farm_map(cluster, node, MODULE)


def wait_members(cluster: LabCluster, nodes: list[str], timeout: float = 20.0) -> None:
    shared_wait_members(cluster, nodes, nodes, timeout, MODULE)


def address_bucket(address: str, seed: int) -> int:
    """The ARP bucket of a client address (`jhash arp saddr ip`, the same as `jhash ip saddr`)."""
    return jhash_bucket(ipaddress.IPv4Address(address).packed, seed)


def connection_bucket(address: str, sport: int, seed: int) -> int:
    key = ipaddress.IPv4Address(address).packed + sport.to_bytes(2, "big") + b"\0\0"
    return jhash_bucket(key, seed)


def node_mac(lab: Lab, node: str) -> str:
    plan = lab.plan()
    return plan.host(node).mac(plan.lans[0])


def relay_counters(lab: Lab, node: str, module: str = MODULE) -> tuple[int, int]:
    """(client packets to the VIP received by `node`, packets it relayed to another node)."""
    out = lab.exec(
        node, ["nft", "-j", "list", "counters", "table", "netdev", f"safekit_farm_{module}"]
    ).stdout
    found = {"clients": 0, "relayed": 0}
    for item in json.loads(out or "{}").get("nftables", []):
        counter = item.get("counter")
        if counter and counter.get("name") in found:
            found[counter["name"]] = int(counter["packets"])
    return found["clients"], found["relayed"]


class Clients:
    """Client hosts on LAN 0 besides the lab's own: one network namespace each, one address each,
    a cable on the lab's switch with flooding off. `pick` chooses addresses so that each node
    answers ARP for at least one client."""

    def __init__(self, lab: Lab, addresses: list[str]) -> None:
        self.lab = lab
        plan = lab.plan()
        self.lan = plan.lans[0]
        self.switch = plan.switch_netns
        self.addresses = addresses
        self.names = [f"{PREFIX}-{lab.name}-cli{i}" for i in range(len(addresses))]
        self.down()
        for index, (netns, address) in enumerate(zip(self.names, addresses, strict=True)):
            port = f"cli{index}-0"
            subprocess.run(["ip", "netns", "add", netns], check=True)
            subprocess.run(
                [
                    "ip",
                    "-n",
                    self.switch,
                    "link",
                    "add",
                    port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    netns,
                ],
                check=True,
            )
            subprocess.run(
                ["ip", "-n", self.switch, "link", "set", port, "master", self.lan.bridge, "up"], check=True
            )
            subprocess.run(
                ["ip", "netns", "exec", self.switch, "bridge", "link", "set", "dev", port, "flood", "off"],
                check=True,
            )
            prefix = self.lan.network.prefixlen
            for command in (
                ["link", "set", "lo", "up"],
                ["addr", "add", f"{address}/{prefix}", "dev", "eth0"],
                ["link", "set", "eth0", "up"],
            ):
                subprocess.run(["ip", "-n", netns, *command], check=True)
            # As the lab's hosts: a gratuitous ARP updates the cache.
            subprocess.run(
                ["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.conf.all.arp_accept=1"], check=True
            )

    @staticmethod
    def pick(lab: Lab, owners: list[str | None], seed: int, per_node: int = 1) -> list[str]:
        """Client addresses (.160 and up of LAN 0) whose ARP bucket is each node's, `per_node` each."""
        network = lab.plan().lans[0].network
        chosen: dict[str, list[str]] = {}
        for host in range(160, 250):
            address = str(network[host])
            owner = owners[address_bucket(address, seed)]
            if owner is not None and len(chosen.setdefault(owner, [])) < per_node:
                chosen[owner].append(address)
        return [a for node in sorted(chosen) for a in chosen[node]]

    def argv(self, index: int, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.names[index], *argv]

    def run(self, index: int, argv: list[str], timeout: float = 120) -> str:
        return subprocess.run(
            self.argv(index, argv), capture_output=True, text=True, check=True, timeout=timeout
        ).stdout

    def neighbour(self, index: int, address: str) -> str:
        return self.run(index, ["ip", "neigh", "show", address])

    def forget_neighbours(self) -> None:
        """Every client forgets its ARP entries (as when they age): they ask again by broadcast."""
        for index in range(len(self.names)):
            self.run(index, ["ip", "neigh", "flush", "dev", "eth0"])

    def out_resets(self, index: int) -> int:
        lines = [line.split() for line in self.run(index, ["cat", "/proc/net/snmp"]).splitlines()]
        tcp = [line for line in lines if line[0] == "Tcp:"]
        return int(tcp[1][tcp[0].index("OutRsts")])

    def probe(self, index: int, count: int, timeout: float = 2.0) -> dict[str, Any]:
        out = self.run(
            index,
            ["python3", "-c", PROBE, vip(self.lab), str(PORT), str(count), str(timeout)],
            timeout=count * timeout + 60,
        )
        result: dict[str, Any] = json.loads(out)
        return result

    def hold(self, index: int, count: int, path: str = "/who") -> Holder:
        """`count` keep-alive connections; each answer is the body of `GET path` (the node's name)."""
        return Holder(self.argv(index, ["python3", "-c", HOLDER, vip(self.lab), str(PORT), str(count), path]))

    def until_served(self, index: int) -> ServedAgain:
        """A probe from client `index`, ready before the event it measures from (`start`)."""
        return ServedAgain(self.argv(index, ["python3", "-c", UNTIL_SERVED, vip(self.lab), str(PORT)]))

    def until_served_fine(self, index: int) -> ServedAgain:
        """As `until_served`, a new attempt every 20 ms whatever the earlier ones became."""
        return ServedAgain(self.argv(index, ["python3", "-c", UNTIL_SERVED_FINE, vip(self.lab), str(PORT)]))

    def down(self) -> None:
        for index, netns in enumerate(self.names):
            for pid in subprocess.run(
                ["ip", "netns", "pids", netns], check=False, capture_output=True, text=True
            ).stdout.split():
                subprocess.run(["kill", "-9", pid], check=False)
            subprocess.run(
                ["ip", "-n", self.switch, "link", "del", f"cli{index}-0"], capture_output=True, check=False
            )
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)


class ServedAgain:
    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the probe did not start")

    def start(self, since: float) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{since!r}\n")
        self.process.stdin.flush()

    def seconds(self, timeout: float = 60) -> float:
        out, _ = self.process.communicate(timeout=timeout)
        return float(out.strip())


class Holder:
    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, skip: list[int] | None = None) -> list[tuple[str, int]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(skip or []) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the holder died"
        return [(who, port) for who, port in json.loads(line)]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
