"""Helpers of the farm integration tests and the farm benchmark: a web farm on lab hosts.

The module's start_both runs a small HTTP server on every node that answers with the node's name
and logs every request it answers, so a test can count, per node, the connections it served.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster

MODULE = "farm"
PORT = 8080
NODES = ("node1", "node2", "node3")

USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="farm" boot="off" maxloop="10">
  <farm><lan name="default"/></farm>
  <vip>
    <interface_list>
      <interface check="on">
        <virtual_interface type="vmac_invisible">
          <virtual_addr addr="{vip}" where="alias"/>
        </virtual_interface>
      </interface>
    </interface_list>
    <loadbalancing_list>
      <group name="web">
        <cluster>
{hosts}
        </cluster>
        <rule virtual_addr="*" port="{port}" proto="tcp" filter="on_port"/>
      </group>
    </loadbalancing_list>
  </vip>
  <user nicestoptimeout="5s" forcestoptimeout="5s" logging="userlog">
    <var name="WEB_PORT" value="{port}"/>
  </user>
  <check>
    <custom ident="app" exec="appcheck" action="wait"/>
  </check>
</service>
</safe>
"""

START_BOTH = """#!/bin/sh
# A web server that names the node in its answer and logs each request it answers.
mkdir -p /srv/www
hostname > /srv/www/who
cd /srv/www
setsid python3 -c '
import http.server, socketserver, sys
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        with open("/srv/served.log", "a") as f:
            f.write(self.client_address[0] + " " + str(self.client_address[1]) + "\\n")
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 512
    allow_reuse_address = True
S(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
' "$WEB_PORT" >/dev/null 2>&1 < /dev/null &
echo $! > /run/farmweb.pid
up='import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)'
for i in $(seq 50); do python3 -c "$up" "$WEB_PORT" 2>/dev/null && exit 0; sleep 0.1; done
exit 1
"""

STOP_BOTH = """#!/bin/sh
[ -f /run/farmweb.pid ] && kill "$(cat /run/farmweb.pid)" 2>/dev/null
rm -f /run/farmweb.pid
exit 0
"""

# A custom checker: down while /srv/app-down exists, up otherwise.
APPCHECK = """#!/bin/sh
last=""
while true; do
    if [ -f /srv/app-down ]; then now=down; else now=up; fi
    if [ "$now" != "$last" ]; then safekit set -m farm -r custom.app -v "$now" && last=$now; fi
    sleep 0.2
done
"""

# Run on the client: `connections` HTTP requests to the VIP, each on a new connection, from each
# source address in turn (varied source ports: the kernel picks them). Prints JSON: who answered.
PROBE = r"""
import json, socket, sys, time
vip, port, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
sources = sys.argv[5].split(",")
answers, failures = {}, 0
for i in range(count):
    src = sources[i % len(sources)]
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.bind((src, 0))
        s.connect((vip, port))
        s.sendall(b"GET /who HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        who = data.split(b"\r\n\r\n", 1)[1].decode().strip()
        answers[who] = answers.get(who, 0) + 1
    except OSError:
        failures += 1
    finally:
        s.close()
print(json.dumps({"answers": answers, "failures": failures}))
"""


def make_module(lab: Lab, nodes: tuple[str, ...] = NODES, powers: dict[str, int] | None = None) -> Path:
    """The module directory, staged where every lab host sees it (lab hosts have a private /run)."""
    root = Path(tempfile.mkdtemp(prefix="safekit-farm-", dir="/var/tmp"))
    path = root / MODULE
    (path / "conf").mkdir(parents=True)
    (path / "bin").mkdir()
    hosts = "\n".join(f'          <host name="{n}" power="{(powers or {}).get(n, 1)}"/>' for n in nodes)
    (path / "conf" / "userconfig.xml").write_text(USERCONFIG.format(vip=vip(lab), port=PORT, hosts=hosts))
    for name, body in (("start_both", START_BOTH), ("stop_both", STOP_BOTH), ("appcheck", APPCHECK)):
        (path / "bin" / name).write_text(body)
        (path / "bin" / name).chmod(0o755)
    root.chmod(0o755)
    return path


def remove_module(path: Path) -> None:
    shutil.rmtree(path.parent, ignore_errors=True)


def vip(lab: Lab) -> str:
    return str(lab.plan().vips[0])


def client_sources(lab: Lab, count: int = 4) -> list[str]:
    """Extra source addresses on the client (.150 and up of LAN 0), added once."""
    network = lab.plan().lans[0].network
    sources = [str(network[150 + i]) for i in range(count)]
    have = lab.exec("client", ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
    for address in sources:
        if f" {address}/" not in have:
            lab.exec("client", ["ip", "addr", "add", f"{address}/24", "dev", "eth0"], check=True)
    return sources


def probe(lab: Lab, count: int, sources: list[str], timeout: float = 2.0) -> dict[str, Any]:
    out = lab.exec(
        "client",
        ["python3", "-c", PROBE, vip(lab), str(PORT), str(count), str(timeout), ",".join(sources)],
        timeout=count * timeout + 60,
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def tcp_out_resets(lab: Lab, host: str) -> int:
    """RSTs the host's TCP stack sent (/proc/net/snmp is per network namespace)."""
    lines = [line.split() for line in lab.exec(host, ["cat", "/proc/net/snmp"]).stdout.splitlines()]
    tcp = [line for line in lines if line[0] == "Tcp:"]
    return int(tcp[1][tcp[0].index("OutRsts")])


def served_count(lab: Lab, host: str) -> int:
    out = lab.exec(host, ["sh", "-c", "cat /srv/served.log 2>/dev/null | wc -l"]).stdout
    return int(out.strip() or 0)


def farm_map(cluster: LabCluster, node: str) -> dict[str, Any]:
    out = cluster.safekit(node, "farm", "map", "-m", MODULE, "--json").stdout
    data: dict[str, Any] = json.loads(out)
    return data


def wait_members(cluster: LabCluster, nodes: list[str], members: list[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = {n: farm_map(cluster, n) for n in nodes}
        if all(m["members"] == members and not m["pending_here"] for m in seen.values()):
            return
        time.sleep(0.1)
    summary = {n: (m["members"], m["state"], m["readiness"]) for n, m in seen.items()}
    raise AssertionError(f"balancing set is not {members} after {timeout:g} s: {summary}")


def _rol(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def jhash_bucket(key: bytes, seed: int, buckets: int = 256) -> int:
    """The kernel's `jhash KEY mod 256 seed S` (linux/jhash.h, nft_hash.c), for keys of 4 or 8 bytes:
    what nftables computes for `ip saddr` and `ip saddr . tcp sport` (the port padded to 4 bytes)."""
    m = 0xFFFFFFFF
    a = b = c = (0xDEADBEEF + len(key) + seed) & m
    assert len(key) in (4, 8)
    if len(key) == 8:
        b = (b + int.from_bytes(key[4:8], "little")) & m
    a = (a + int.from_bytes(key[0:4], "little")) & m
    c ^= b
    c = (c - _rol(b, 14)) & m
    a ^= c
    a = (a - _rol(c, 11)) & m
    b ^= a
    b = (b - _rol(a, 25)) & m
    c ^= b
    c = (c - _rol(b, 16)) & m
    a ^= c
    a = (a - _rol(c, 4)) & m
    b ^= a
    b = (b - _rol(a, 14)) & m
    c ^= b
    c = (c - _rol(b, 24)) & m
    return (c * buckets) >> 32
