"""An IPv6 farm VIP on a lab built with `--ipv6` (fd00:5afe:0:N::/64 per LAN, unique-local, never
routed outside the lab's namespaces): the module, client hosts with IPv6 addresses, and the
kernel's `jhash` for IPv6 keys, to know which node owns a client's bucket. Shared by
tests/integration/farm/test_farm_ipv6_lab.py and bench/farm.py.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path
from typing import Any

from directed_lab import UNTIL_SERVED_FINE
from farm_lab import farm_map as shared_farm_map
from farm_lab import module_dir
from farm_lab import wait_members as shared_wait_members

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.topology import PREFIX

MODULE = "farm6"
PORT = 8080
NODES = ("node1", "node2", "node3")

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
        <rule virtual_addr="{vip}" port="{port}" proto="tcp" filter="on_port"/>
      </group>
    </loadbalancing_list>
  </vip>
  <user nicestoptimeout="5s" forcestoptimeout="5s" logging="userlog">
    <var name="WEB_PORT" value="{port}"/>
  </user>
</service>
</safe>
"""

# An HTTP/1.1 server on every address, IPv6 included (keep-alive), answering the node's name.
START_BOTH = """#!/bin/sh
mkdir -p /srv/www
hostname > /srv/www/who
cd /srv/www
setsid python3 -c '
import http.server, socket, sys
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    request_queue_size = 512
    allow_reuse_address = True
    daemon_threads = True
S(("::", int(sys.argv[1])), H).serve_forever()
' "$WEB_PORT" >/dev/null 2>&1 < /dev/null &
echo $! > /run/farm6web.pid
up='import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)'
for i in $(seq 50); do python3 -c "$up" "$WEB_PORT" 2>/dev/null && exit 0; sleep 0.1; done
exit 1
"""

STOP_BOTH = """#!/bin/sh
[ -f /run/farm6web.pid ] && kill "$(cat /run/farm6web.pid)" 2>/dev/null
rm -f /run/farm6web.pid
exit 0
"""

# New connections, one request each: prints JSON {"seen": [[sport, who]], "failures": n}.
PROBE = r"""
import json, socket, sys
vip, port, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
seen, failures = [], 0
for i in range(count):
    s = socket.socket(socket.AF_INET6)
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

# Keep-alive connections; on each stdin line asks each who serves it; prints [[who or error, sport]].
HOLDER = r"""
import json, socket, sys
vip, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conns = []
for i in range(count):
    s = socket.socket(socket.AF_INET6)
    s.settimeout(2.0)
    s.connect((vip, port))
    conns.append(s)
def ask(s):
    s.sendall(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
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
    out = []
    for i, s in enumerate(conns):
        if i in dead:
            out.append(["dead", s.getsockname()[1]])
            continue
        try:
            out.append([ask(s), s.getsockname()[1]])
        except OSError as exc:
            dead.add(i)
            out.append([f"error: {exc!r}", s.getsockname()[1]])
    print(json.dumps(out), flush=True)
"""

# The time from an event (read on stdin) to the first answer, a new attempt every 20 ms.
UNTIL_SERVED = UNTIL_SERVED_FINE


# ----------------------------------------------------------------------------- the kernel's jhash
_M = 0xFFFFFFFF


def _rol(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & _M
    a ^= _rol(c, 4)
    c = (c + b) & _M
    b = (b - a) & _M
    b ^= _rol(a, 6)
    a = (a + c) & _M
    c = (c - b) & _M
    c ^= _rol(b, 8)
    b = (b + a) & _M
    a = (a - c) & _M
    a ^= _rol(c, 16)
    c = (c + b) & _M
    b = (b - a) & _M
    b ^= _rol(a, 19)
    a = (a + c) & _M
    c = (c - b) & _M
    c ^= _rol(b, 4)
    b = (b + a) & _M
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c ^= b
    c = (c - _rol(b, 14)) & _M
    a ^= c
    a = (a - _rol(c, 11)) & _M
    b ^= a
    b = (b - _rol(a, 25)) & _M
    c ^= b
    c = (c - _rol(b, 16)) & _M
    a ^= c
    a = (a - _rol(c, 4)) & _M
    b ^= a
    b = (b - _rol(a, 14)) & _M
    c ^= b
    return (c - _rol(b, 24)) & _M


def jhash(key: bytes, seed: int) -> int:
    """linux/jhash.h `jhash(key, len, seed)` for any length (nft_hash.c hashes the key's bytes)."""
    n = len(key)
    a = b = c = (0xDEADBEEF + n + seed) & _M
    i = 0
    while n > 12:
        a = (a + int.from_bytes(key[i : i + 4], "little")) & _M
        b = (b + int.from_bytes(key[i + 4 : i + 8], "little")) & _M
        c = (c + int.from_bytes(key[i + 8 : i + 12], "little")) & _M
        a, b, c = _mix(a, b, c)
        i += 12
        n -= 12
    if n == 0:
        return c
    tail = key[i:] + bytes(12)
    a = (a + int.from_bytes(tail[0:4], "little")) & _M
    if n > 4:
        b = (b + int.from_bytes(tail[4:8], "little")) & _M
    if n > 8:
        c = (c + int.from_bytes(tail[8:12], "little")) & _M
    return _final(a, b, c)


def bucket(key: bytes, seed: int, buckets: int = 256) -> int:
    return (jhash(key, seed) * buckets) >> 32


def address_bucket(address: str, seed: int) -> int:
    """The bucket of `jhash ip6 saddr` (neighbour solicitations are answered by it)."""
    return bucket(ipaddress.IPv6Address(address).packed, seed)


def connection_bucket(address: str, sport: int, seed: int) -> int:
    """The bucket of `jhash ip6 saddr . tcp sport` (the port padded to 4 bytes, as nft does)."""
    return bucket(ipaddress.IPv6Address(address).packed + sport.to_bytes(2, "big") + b"\0\0", seed)


# ----------------------------------------------------------------------------- the lab
def vip6(lab: Lab) -> str:
    return str(lab.plan().vips6[0])


def make_module(lab: Lab, vmac: str) -> Path:
    userconfig = USERCONFIG.format(vip=vip6(lab), port=PORT, vmac=vmac)
    return module_dir(userconfig, {"start_both": START_BOTH, "stop_both": STOP_BOTH}, MODULE)


def set_flooding(lab: Lab, on: bool) -> None:
    """Unknown-unicast flooding on every port of LAN 0's bridge (off: as data-centre switches)."""
    plan = lab.plan()
    switch, bridge = plan.switch_netns, plan.lans[0].bridge
    out = subprocess.run(
        ["ip", "-n", switch, "-j", "link", "show", "master", bridge],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    flood = "on" if on else "off"
    for link in json.loads(out or "[]"):
        bridge_set = ["bridge", "link", "set", "dev", link["ifname"], "flood", flood]
        subprocess.run(["ip", "netns", "exec", switch, *bridge_set], check=True)


class Clients6:
    """Client hosts on LAN 0 with one IPv6 address each (a namespace and a cable on the lab's
    switch, flooding as the switch's other ports)."""

    def __init__(self, lab: Lab, addresses: list[str], *, flood: bool) -> None:
        self.lab = lab
        plan = lab.plan()
        self.switch = plan.switch_netns
        bridge = plan.lans[0].bridge
        self.addresses = addresses
        self.names = [f"{PREFIX}-{lab.name}-six{i}" for i in range(len(addresses))]
        self.down()
        for index, (netns, address) in enumerate(zip(self.names, addresses, strict=True)):
            port = f"six{index}-0"
            subprocess.run(["ip", "netns", "add", netns], check=True)
            cable = ["link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns]
            subprocess.run(["ip", "-n", self.switch, *cable], check=True)
            subprocess.run(["ip", "-n", self.switch, "link", "set", port, "master", bridge, "up"], check=True)
            flooding = ["bridge", "link", "set", "dev", port, "flood", "on" if flood else "off"]
            subprocess.run(["ip", "netns", "exec", self.switch, *flooding], check=True)
            sysctl = ["ip", "netns", "exec", netns, "sysctl", "-qw"]
            subprocess.run([*sysctl, "net.ipv6.conf.eth0.accept_dad=0"], check=True)
            for command in (
                ["link", "set", "lo", "up"],
                ["addr", "add", f"{address}/64", "dev", "eth0", "nodad"],
                ["link", "set", "eth0", "up"],
            ):
                subprocess.run(["ip", "-n", netns, *command], check=True)

    @staticmethod
    def pick(lab: Lab, owners: list[str | None], seed: int, per_node: int = 1) -> list[str]:
        """Client addresses (::a0 and up of LAN 0) whose neighbour discovery bucket is each node's."""
        network = lab.plan().lans[0].network6
        chosen: dict[str, list[str]] = {}
        for host in range(0xA0, 0x200):
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
        return self.run(index, ["ip", "-6", "neigh", "show", address])

    def out_resets(self, index: int) -> int:
        lines = [line.split() for line in self.run(index, ["cat", "/proc/net/snmp"]).splitlines()]
        tcp = [line for line in lines if line[0] == "Tcp:"]
        return int(tcp[1][tcp[0].index("OutRsts")])

    def probe(self, index: int, count: int, timeout: float = 2.0) -> dict[str, Any]:
        out = self.run(
            index,
            ["python3", "-c", PROBE, vip6(self.lab), str(PORT), str(count), str(timeout)],
            timeout=count * timeout + 60,
        )
        result: dict[str, Any] = json.loads(out)
        return result

    def hold(self, index: int, count: int) -> subprocess.Popen[str]:
        argv = self.argv(index, ["python3", "-c", HOLDER, vip6(self.lab), str(PORT), str(count)])
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def until_served(self, index: int) -> subprocess.Popen[str]:
        argv = self.argv(index, ["python3", "-c", UNTIL_SERVED, vip6(self.lab), str(PORT)])
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the probe did not start")
        return process

    def down(self) -> None:
        for index, netns in enumerate(self.names):
            for pid in subprocess.run(
                ["ip", "netns", "pids", netns], check=False, capture_output=True, text=True
            ).stdout.split():
                subprocess.run(["kill", "-9", pid], check=False)
            subprocess.run(
                ["ip", "-n", self.switch, "link", "del", f"six{index}-0"], capture_output=True, check=False
            )
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)


def ask_holder(holder: subprocess.Popen[str]) -> list[tuple[str, int]]:
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    line = holder.stdout.readline()
    assert line, "the holder died"
    return [(who, port) for who, port in json.loads(line)]


def close_holder(holder: subprocess.Popen[str]) -> None:
    if holder.stdin is not None:
        holder.stdin.close()
    try:
        holder.wait(timeout=30)
    except subprocess.TimeoutExpired:
        holder.kill()


def farm_map(cluster: LabCluster, node: str) -> dict[str, Any]:
    return shared_farm_map(cluster, node, MODULE)


def wait_members(cluster: LabCluster, nodes: list[str], timeout: float = 20.0) -> None:
    shared_wait_members(cluster, nodes, nodes, timeout, MODULE)


def relay_counters(lab: Lab, node: str) -> tuple[int, int]:
    """(client packets to the VIP received by `node`, packets it relayed to another node)."""
    out = lab.exec(
        node, ["nft", "-j", "list", "counters", "table", "netdev", f"safekit_farm_{MODULE}"]
    ).stdout
    found = {"clients": 0, "relayed": 0}
    for item in json.loads(out or "{}").get("nftables", []):
        counter = item.get("counter")
        if counter and counter.get("name") in found:
            found[counter["name"]] = int(counter["packets"])
    return found["clients"], found["relayed"]
