"""Helpers of the farm integration tests and the farm benchmark: a web farm on lab hosts.

The module's start_both runs a small HTTP server on every node that answers with the node's name
and logs every request it answers, so a test can count, per node, the connections it served.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.run_names import run_lab_name
from safekit.membership import clusterkey

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


# On the client, the failover probe (bench/farm.py and the kill tests): every 20 ms, one new
# connection per stream (victim ports, control ports, and a kernel-chosen port), each with a 200 ms
# connect timeout and 1 s for the answer; a port still in use by an earlier attempt is skipped.
# Prints "ready", then every attempt as JSON: [start (monotonic), stream, answered, who answered or
# what failed]; a port the client's kernel still holds (EADDRNOTAVAIL) is no attempt: stream
# "victim-held" (or "control-held"). Arguments: VIP PORT SOURCE DURATION INTERVAL VICTIM_PORTS
# CONTROL_PORTS [PATH] (the page that names the node: / by default).
PROBE_STREAMS = r"""
import asyncio, errno, itertools, json, socket, sys, time
vip, port, src = sys.argv[1], int(sys.argv[2]), sys.argv[3]
duration, interval = float(sys.argv[4]), float(sys.argv[5])
pools = {"victim": [int(p) for p in sys.argv[6].split(",")]}
pools["control"] = [int(p) for p in sys.argv[7].split(",")]
path = (sys.argv[8] if len(sys.argv) > 8 else "/").encode()
busy, log, tasks = set(), [], set()

async def attempt(stream, sport):
    loop = asyncio.get_running_loop()
    t = time.monotonic()
    s = socket.socket()
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ok, who = False, ""
    try:
        s.bind((src, sport))
        await asyncio.wait_for(loop.sock_connect(s, (vip, port)), 0.2)
        await loop.sock_sendall(s, b"GET " + path + b" HTTP/1.0\r\n\r\n")
        async def read():
            data = b""
            while chunk := await loop.sock_recv(s, 4096):
                data += chunk
            return data
        data = await asyncio.wait_for(read(), 1.0)
        who = data.split(b"\r\n\r\n", 1)[1].decode().strip()
        ok = True
    except (asyncio.TimeoutError, IndexError) as exc:
        who = type(exc).__name__
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            # The client's own kernel still holds a connection from this port to the VIP (one whose
            # server died while it closed: LAST-ACK, retransmitting its FIN for minutes). Nothing
            # was sent; a client that lets the kernel choose its port never meets this. Not an
            # attempt: logged under "STREAM-held".
            stream = stream + "-held"
        who = f"{type(exc).__name__} errno {exc.errno}"
    finally:
        s.close()
        busy.discard(sport)
    log.append([round(t, 4), stream, ok, who])

def launch(stream, sport):
    if sport:
        busy.add(sport)
    task = asyncio.ensure_future(attempt(stream, sport))
    tasks.add(task)
    task.add_done_callback(tasks.discard)

async def main():
    cycles = {name: itertools.cycle(ports) for name, ports in pools.items()}
    print("ready", flush=True)
    start = time.monotonic()
    tick = start
    while tick < start + duration:
        for name, ports in pools.items():
            for _ in range(len(ports)):
                sport = next(cycles[name])
                if sport not in busy:
                    launch(name, sport)
                    break
        launch("random", 0)
        tick += interval
        await asyncio.sleep(max(0.0, tick - time.monotonic()))
    if tasks:
        await asyncio.wait(set(tasks), timeout=2.0)
    print(json.dumps(sorted(log)), flush=True)

asyncio.run(main())
"""


# ----------------------------------------------------------------------------- the farm lab skeleton
# Shared by every farm lab test (and bench/farm.py): the lab, the module directory, the cluster.
def lab_name(default: str) -> str:
    """The lab of a farm lab test: its own name, or SAFEKIT_FARM_LAB (one name for every file: each
    file's lab is taken down before the next file's is built)."""
    return os.environ.get("SAFEKIT_FARM_LAB") or run_lab_name(default)


@contextlib.contextmanager
def lab_up(default: str, *, ipv6: bool = False) -> Iterator[Lab]:
    """Three nodes and a client (`lab_name(default)`), taken down afterwards, also on failure."""
    lab = Lab(lab_name(default))
    lab.down()
    lab.up(nodes=3, client=True, ipv6=ipv6)
    try:
        yield lab
    finally:
        lab.down()


def module_dir(userconfig: str, scripts: Mapping[str, str], module: str = MODULE) -> Path:
    """A module directory `module` (conf/userconfig.xml, executable bin/ scripts), staged where every
    lab host sees it (lab hosts have a private /run); `remove_module` removes it."""
    root = Path(tempfile.mkdtemp(prefix=f"safekit-{module}-", dir="/var/tmp"))
    path = root / module
    (path / "conf").mkdir(parents=True)
    (path / "bin").mkdir()
    (path / "conf" / "userconfig.xml").write_text(userconfig)
    for name, body in scripts.items():
        (path / "bin" / name).write_text(body)
        (path / "bin" / name).chmod(0o755)
    root.chmod(0o755)
    return path


def remove_module(path: Path) -> None:
    shutil.rmtree(path.parent, ignore_errors=True)


@contextlib.contextmanager
def installed(lab: Lab, path: Path, nodes: Sequence[str] = NODES) -> Iterator[LabCluster]:
    """The module at `path` installed on `nodes` with a new cluster key, their daemons running;
    afterwards the daemons are stopped and the staged directory removed."""
    cluster = LabCluster(lab, tuple(nodes))
    try:
        cluster.install(path, key=clusterkey.generate_key())
        for node in nodes:
            cluster.start_daemon(node)
        yield cluster
    finally:
        cluster.stop_daemons()
        remove_module(path)


DEFAULT_FARM_LANS = '<lan name="default"/>'


def make_module(
    lab: Lab,
    nodes: tuple[str, ...] = NODES,
    powers: dict[str, int] | None = None,
    *,
    farm_lans: str = DEFAULT_FARM_LANS,
    module: str = MODULE,
) -> Path:
    """This file's web farm module (vmac_invisible, one group of `nodes` with `powers`, heartbeats
    on the `<farm>` LANs `farm_lans`), staged as `module`."""
    hosts = "\n".join(f'          <host name="{n}" power="{(powers or {}).get(n, 1)}"/>' for n in nodes)
    userconfig = USERCONFIG.format(vip=vip(lab), port=PORT, hosts=hosts)
    userconfig = userconfig.replace(f"<farm>{DEFAULT_FARM_LANS}</farm>", f"<farm>{farm_lans}</farm>")
    if f"<farm>{farm_lans}</farm>" not in userconfig:
        raise ValueError(f"USERCONFIG has no <farm>{DEFAULT_FARM_LANS}</farm> to replace")
    scripts = {"start_both": START_BOTH, "stop_both": STOP_BOTH, "appcheck": APPCHECK}
    return module_dir(userconfig, scripts, module=module)


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


def farm_map(cluster: LabCluster, node: str, module: str = MODULE) -> dict[str, Any]:
    out = cluster.safekit(node, "farm", "map", "-m", module, "--json").stdout
    data: dict[str, Any] = json.loads(out)
    return data


def wait_members(
    cluster: LabCluster, nodes: list[str], members: list[str], timeout: float = 20.0, module: str = MODULE
) -> None:
    """Until every node of `nodes` sees the balancing set `members` with no bucket pending."""
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = {n: farm_map(cluster, n, module) for n in nodes}
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


PROBE_PORTS = range(20000, 20240)  # below the ephemeral range: no clash with kernel-chosen ports
PROBE_INTERVAL_S = 0.02


def client_ports(lab: Lab, fmap: dict[str, Any], owners: set[str], count: int = 40) -> list[int]:
    """Source ports of PROBE_PORTS whose connections from the client (`on_port`: the client's address
    and the port) fall into a bucket of `owners` in the map `fmap` (`farm map --json`)."""
    key = ipaddress.IPv4Address(str(lab.plan().host("client").address)).packed
    return [
        p
        for p in PROBE_PORTS
        if fmap["owners"][jhash_bucket(key + p.to_bytes(2, "big") + b"\0\0", fmap["seed"])] in owners
    ][:count]


Attempt = tuple[float, str, bool, str]


class StreamProbe:
    """PROBE_STREAMS running on the client for `duration` seconds (started when built)."""

    def __init__(self, lab: Lab, victim_ports: list[int], control_ports: list[int], duration: float) -> None:
        client = str(lab.plan().host("client").address)
        argv = ["python3", "-c", PROBE_STREAMS, vip(lab), str(PORT), client, str(duration)]
        argv += [str(PROBE_INTERVAL_S), ",".join(map(str, victim_ports)), ",".join(map(str, control_ports))]
        argv.append("/who")  # this file's web server names the node there
        self.proc = subprocess.Popen(lab.exec_argv("client", argv), stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            raise AssertionError("the client probe did not start")

    def attempts(self) -> list[Attempt]:
        out, _ = self.proc.communicate(timeout=120)
        return [
            (float(a[0]), str(a[1]), bool(a[2]), str(a[3])) for a in json.loads(out.strip().splitlines()[-1])
        ]


# On the client: one connection from the first given source port it can use, answered to the end
# (the server has closed its side), kept open until a line comes on stdin, then closed. If the server died
# meanwhile, the client's socket stays in LAST-ACK (its FIN is never acknowledged: the survivors
# drop what belongs to no connection of theirs, they never reset it) and holds the port for minutes.
HALF_CLOSED = r"""
import errno, socket, sys
vip, port, src = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for sport in map(int, sys.argv[4].split(",")):  # the first port the client does not hold already
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((src, sport))
    try:
        s.connect((vip, port))
        break
    except OSError as exc:
        s.close()
        if exc.errno != errno.EADDRNOTAVAIL:
            raise
s.sendall(b"GET /who HTTP/1.0\r\n\r\n")
data = b""
while chunk := s.recv(4096):
    data += chunk
print(sport, data.split(b"\r\n\r\n", 1)[1].decode().strip(), flush=True)
sys.stdin.readline()
s.close()
"""


class HalfClosed:
    """HALF_CLOSED on the client from the first of `ports` it does not hold yet (`port`), answered
    by `who`; `close()` closes the client's side."""

    def __init__(self, lab: Lab, ports: list[int]) -> None:
        client = str(lab.plan().host("client").address)
        argv = ["python3", "-c", HALF_CLOSED, vip(lab), str(PORT), client, ",".join(map(str, ports))]
        self.proc = subprocess.Popen(
            lab.exec_argv("client", argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        port, _, self.who = self.proc.stdout.readline().strip().partition(" ")
        self.port = int(port)

    def close(self) -> None:
        self.proc.communicate("close\n", timeout=30)
