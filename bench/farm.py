"""Farm module: throughput through the shared VIP against one node directly, spread, the takeover of
a killed node's share, the rebalance when it returns, and the engine's budgets - all in one run.

On a 3-node lab (lab `bnfarm`, with a client) a farm module runs Debian's nginx on every node behind
one VIP (`vmac_invisible`, `filter="on_port"`); a second, idle farm module (membership only) makes
the "two modules" of the budgets. Measured from the client:

- short HTTP requests with wrk (keep-alive off: a new connection per request, and on), through the
  VIP against the same load sent directly to node1's own address (the issue's ratio, target
  >= 0.9; HAProxy in front of three nginx nodes reached 0.43 / 0.50 on this kind of lab), and to
  the three nodes' own addresses (one wrk thread each: the same work spread, without the VIP);
  interleaved rounds, medians;
- spread: requests served per node (nginx stub_status) against its bucket share;
- takeover of a killed node's share: a probe opens a new connection every 20 ms from each of three
  streams: source ports known to hash to the victim, ports known to hash to the survivors (must
  never fail), and kernel-chosen ports (a third of them land on the victim: the probe the HAProxy
  anchor used); 200 ms connect timeout. `lab kill node2` at a random moment; the figure is the time
  from the kill until the victim's ports stop failing, and the failed probes;
- rebalance: node2 boots, `safekit start`; the time until its ports are answered by node2 again,
  and the probes that failed meanwhile;
- budgets: safekitd resident memory, idle CPU (over 20 s; /proc/PID/stat user + system time) and
  open files (before/after) on node1 with the two modules (the "farm module only" figure has the
  idle module stopped, which keeps its heartbeats), heartbeat timing jitter p99 under the wrk load
  (kernel receive timestamps of node3's heartbeats at node1) next to the send lateness p99 that
  node1's safekitd exports, nftables rule-load time (the engine's own `farm_kernel.apply` of a
  3-node ruleset, in a scratch network namespace).

Then, in the same run, `vmac_directed` on its own lab (`--directed-lab`, default `bnfarmd`) whose
bridge ports have unknown-unicast flooding off (`result["vmac_directed"]`): the same wrk
throughput against direct (from the lab's one client host, whose ARP owner receives everything and
relays the other nodes' connections), the share of client packets relayed between nodes (the
farm's `clients` / `relayed` nftables counters; from that client host, and from three client
hosts spread by ARP), and kill/return rounds with keep-alive connections held from the three
client hosts: time from the kill until the victim's ARP client is answered again (probe started
before the kill, a new connection every 50 ms), healthy connections broken on the leave and on the
join (after every client forgets its ARP entry), resets by the survivors and the other clients.

Writes bench/results/farm.json. Usage: bench/farm.py [--runs N] [--quick] [--lab NAME]
[--directed-lab NAME] [--budgets-only] [--directed-only] [--no-write] (`--budgets-only`: install
and the idle budgets only, printed; `--directed-only`: the vmac_directed phase only, printed;
`--no-write`: print the results without writing them).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration" / "farm"))
import directed_lab
import farm_lab

from common import summary, write_result
from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.system import netns_pids
from safekit.membership import clusterkey

LAB = "bnfarm"
MODULE = "farm"
IDLE = "idle"
PORT = 8080
STATUS_PORT = 8081
NODES = ("node1", "node2", "node3")
VICTIM = "node2"
FLOOR_TABLE = "safekit_bench_floor"
HOSTS = (*NODES, "client")
WATCHED = "node1"  # never killed: its daemon runs the whole benchmark (budgets before/after)
PULSE_S = 0.1
PROBE_INTERVAL_S = 0.02
CLASSIFY_PORTS = range(20000, 20240)  # below the ephemeral range: no clash with wrk or the random stream
ANCHORS = {
    "haproxy_3_nginx_ratio_keepalive_off": 0.43,
    "haproxy_3_nginx_ratio_keepalive_on": 0.50,
    "haproxy_check_200ms_rebalance_s": 0.66,
    "haproxy_check_200ms_failed_probes": 11,
    "safekit_farm_detection_s": "1-2",
}
TARGETS = {
    "vip_over_direct_ratio": 0.9,
    "kill_rebalance_p50_s": 0.5,
    "failed_probes_p50_below": 11,
}
LIMITS = {"safekitd_rss_mib": 80, "safekitd_idle_cpu_percent": 1.0, "heartbeat_jitter_p99_ms": 20}

USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="farm" boot="off" maxloop="10">
  <farm><lan name="default"/></farm>
  <vip>
    <interface_list><interface>
      <virtual_interface type="{vmac}"><virtual_addr addr="{vip}" where="alias"/></virtual_interface>
    </interface></interface_list>
    <loadbalancing_list><group name="web">
      <cluster>{hosts}</cluster>
      <rule virtual_addr="*" port="{port}" proto="tcp" filter="on_port"/>
    </group></loadbalancing_list>
  </vip>
  <user nicestoptimeout="10s" forcestoptimeout="10s"/>
</service>
</safe>
"""

# The second module of the budgets: farm membership only (its own port), no VIP, no scripts.
IDLE_USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="farm" boot="off"><farm port="4810"><lan name="default"/></farm></service>
</safe>
"""

NGINX_CONF = f"""user www-data;
worker_processes 2;
pid /run/nginx-farm.pid;
error_log /srv/nginx/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path /srv/nginx/tmp/body;
    proxy_temp_path /srv/nginx/tmp/proxy;
    fastcgi_temp_path /srv/nginx/tmp/fastcgi;
    uwsgi_temp_path /srv/nginx/tmp/uwsgi;
    scgi_temp_path /srv/nginx/tmp/scgi;
    server {{
        listen {PORT} reuseport backlog=4096;
        root /srv/www;
        location / {{ default_type text/plain; }}
    }}
    server {{
        listen 127.0.0.1:{STATUS_PORT};
        location / {{ stub_status; }}
    }}
}}
"""

START_BOTH = f"""#!/bin/sh
mkdir -p /srv/www /srv/nginx/tmp
hostname > /srv/www/index.html
chmod -R a+rX /srv/www
cat > /srv/nginx/nginx.conf <<'CONF'
{NGINX_CONF}CONF
exec /usr/sbin/nginx -c /srv/nginx/nginx.conf
"""

STOP_BOTH = """#!/bin/sh
[ -f /run/nginx-farm.pid ] && /usr/sbin/nginx -c /srv/nginx/nginx.conf -s quit
for i in $(seq 50); do [ -f /run/nginx-farm.pid ] || exit 0; sleep 0.1; done
exit 0
"""

# wrk: one thread per node's own address (the "direct to the three nodes" baseline).
WRK_SPREAD_LUA = """
local hosts = {{{hosts}}}
local n = 0
function setup(thread)
  n = n + 1
  thread.addr = wrk.lookup(hosts[(n - 1) % #hosts + 1], "{port}")[1]
end
"""

# On the client: which node answers a connection from each source port (HTTP/1.0: the server
# closes first, so the client keeps no TIME_WAIT and can reuse the port at once).
CLASSIFY = r"""
import json, socket, sys
vip, port, src, first, last = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
who = {}
for sport in range(first, last):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(2.0)
    try:
        s.bind((src, sport))
        s.connect((vip, port))
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        who[sport] = data.split(b"\r\n\r\n", 1)[1].decode().strip()
    except (OSError, IndexError):
        who[sport] = ""
    finally:
        s.close()
print(json.dumps(who))
"""

# On the client: the failover probe (a new connection every 20 ms per stream): farm_lab.PROBE_STREAMS.
PROBE = farm_lab.PROBE_STREAMS

# On node1: kernel receive timestamps (SO_TIMESTAMPNS) of the farm heartbeats node3 sends it, until
# stdin closes. A classic BPF filter keeps only IPv4 UDP to the farm port, so the load's packets
# never reach user space.
HEARTBEAT_SNIFFER = r"""
import ctypes, json, select, socket, struct, sys
peer, dport = socket.inet_aton(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
code = [(0x28, 0, 0, 12), (0x15, 0, 8, 0x800), (0x30, 0, 0, 23), (0x15, 0, 6, 17), (0x28, 0, 0, 20),
        (0x45, 4, 0, 0x1FFF), (0xB1, 0, 0, 14), (0x48, 0, 0, 16), (0x15, 0, 1, dport),
        (0x06, 0, 0, 0x40000), (0x06, 0, 0, 0)]
blob = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in code))
s.setsockopt(socket.SOL_SOCKET, 26, struct.pack("HL", len(code), ctypes.addressof(blob)))  # SO_ATTACH_FILTER
s.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS
s.bind(("eth0", 0))
print("ready", flush=True)
stamps = []
while True:
    ready, _, _ = select.select([s, sys.stdin], [], [])
    if sys.stdin in ready:
        break
    data, anc, _, _ = s.recvmsg(2048, 64)
    if len(data) < 42 or data[26:30] != peer:  # Ethernet header, then the IP source address
        continue
    for level, kind, value in anc:
        if level == socket.SOL_SOCKET and kind == 35:
            sec, nsec = struct.unpack("qq", value[:16])
            stamps.append(sec + nsec / 1e9)
print(json.dumps(stamps), flush=True)
"""

# In a scratch network namespace: the engine's own farm_kernel.apply of the 3-node ruleset, timed.
NFT_LOAD = r"""
import asyncio, ipaddress, json, sys, time
from safekit.daemon.farm_kernel import apply
from safekit.farm import nft
from safekit.farm.buckets import compute_map
vip, port, runs = ipaddress.IPv4Address(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
spec = nft.FarmRules(nft.table_name("farm"), (nft.BalancedAddress(vip, "eth0", nft.vmac_for(vip)),),
                     (nft.TrafficRule("tcp", "on_port", port),), nft.seed_for("farm"))
powers = {"node1": 1, "node2": 1, "node3": 1}
full = compute_map(powers, powers).buckets_of("node1")
degraded = compute_map(powers, ["node1", "node3"]).buckets_of("node1")
times = []
for i in range(runs):
    payload = nft.ruleset(spec, {"default": full if i % 2 == 0 else degraded})
    t = time.perf_counter()
    asyncio.run(apply(payload))
    times.append(time.perf_counter() - t)
asyncio.run(apply(nft.removal(spec)))
print(json.dumps({"times": times, "commands": len(nft.ruleset(spec, {"default": full})["nftables"])}))
"""


class FarmBench:
    def __init__(self, lab: Lab, staging: Path, vmac: str = "vmac_invisible") -> None:
        self.lab = lab
        self.vmac = vmac
        self.staging = staging
        self.cluster = LabCluster(lab, NODES)
        plan = lab.plan()
        self.vip = str(plan.vips[0])
        self.client = str(plan.host("client").address)
        self.address = {n: str(plan.host(n).address) for n in NODES}
        self.victim_ports: list[int] = []
        self.control_ports: list[int] = []

    # ------------------------------------------------------------------ setup
    def install(self) -> None:
        key = clusterkey.generate_key()
        module = self.staging / MODULE
        (module / "conf").mkdir(parents=True)
        (module / "bin").mkdir()
        hosts = "".join(f'<host name="{n}" power="1"/>' for n in NODES)
        (module / "conf" / "userconfig.xml").write_text(
            USERCONFIG.format(vip=self.vip, hosts=hosts, port=PORT, vmac=self.vmac)
        )
        for name, body in (("start_both", START_BOTH), ("stop_both", STOP_BOTH)):
            (module / "bin" / name).write_text(body)
            (module / "bin" / name).chmod(0o755)
        idle = self.staging / IDLE
        (idle / "conf").mkdir(parents=True)
        (idle / "conf" / "userconfig.xml").write_text(IDLE_USERCONFIG)
        self.staging.chmod(0o755)
        self.cluster.install(module, key=key)
        self.cluster.install(idle, key=key)
        for node in NODES:
            self.cluster.start_daemon(node)
        for node in NODES:
            self.start_modules(node)
        for node in NODES:
            self.cluster.wait_state(node, MODULE, "UP", timeout=60)
            self.cluster.wait_state(node, IDLE, "UP", timeout=60)
        self.wait_members(list(NODES), list(NODES))

    def start_modules(self, node: str) -> None:
        self.cluster.safekit(node, "start", "-m", MODULE)
        self.cluster.safekit(node, "start", "-m", IDLE)

    def farm_map(self, node: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            self.cluster.safekit(node, "farm", "map", "-m", MODULE, "--json").stdout
        )
        return data

    def wait_members(self, nodes: list[str], members: list[str], timeout: float = 30.0) -> float:
        start = time.monotonic()
        while time.monotonic() < start + timeout:
            maps = [self.farm_map(n) for n in nodes]
            if all(m["members"] == members and not m["pending_here"] for m in maps):
                return time.monotonic() - start
            time.sleep(0.05)
        raise RuntimeError(f"the farm did not settle on {members} within {timeout:g} s")

    def classify(self) -> dict[str, int]:
        out = self.lab.exec(
            "client",
            [
                *("python3", "-c", CLASSIFY, self.vip, str(PORT), self.client),
                *(str(CLASSIFY_PORTS.start), str(CLASSIFY_PORTS.stop)),
            ],
            timeout=120,
            check=True,
        ).stdout
        who = {int(p): n for p, n in json.loads(out).items()}
        self.victim_ports = [p for p, n in who.items() if n == VICTIM][:40]
        self.control_ports = [p for p, n in who.items() if n in NODES and n != VICTIM][:40]
        counts = {n: sum(1 for w in who.values() if w == n) for n in (*NODES, "")}
        if len(self.victim_ports) < 10 or len(self.control_ports) < 10:
            raise RuntimeError(f"source ports do not spread over the nodes: {counts}")
        return counts

    # ------------------------------------------------------------------ throughput
    def wrk(
        self, target: str, keepalive: bool, seconds: int, connections: int, cpus: str | None = None
    ) -> dict[str, Any]:
        """wrk from the client host (`cpus`: on those CPUs only, `taskset -c`)."""
        argv = ["wrk", "-t3", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "2s"]
        if not keepalive:
            argv += ["-H", "Connection: close"]
        if target in ("direct3", "floor"):
            lua = self.staging / "spread.lua"
            hosts = ", ".join(f'"{self.address[n]}"' for n in NODES)
            lua.write_text(WRK_SPREAD_LUA.format(hosts=hosts, port=PORT))
            lua.chmod(0o644)
            argv += ["-s", str(lua), f"http://{self.address['node1']}:{PORT}/"]
        else:
            host = self.vip if target == "vip" else self.address["node1"]
            argv.append(f"http://{host}:{PORT}/")
        # wrk's CPU (waited-for descendants: nsenter, then wrk), with the kernel's work on the
        # packets it sends: on veths the receiving side's softirq runs in the sender's context, so
        # this counts the bridge's and the nodes' receive path too.
        if cpus is not None:
            argv = ["taskset", "-c", cpus, *argv]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = parse_wrk(self.lab.exec("client", argv, timeout=seconds + 60, check=True).stdout)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        run["wrk_cpu_s"] = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        run["requests"] = run["requests_per_s"] * seconds
        return run

    def nginx_cpu_s(self) -> float:
        """CPU seconds used so far by every nginx process of the three nodes (user + system)."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        plan = self.lab.plan()
        for node in NODES:
            for pid in netns_pids(plan.host(node).netns):
                with contextlib.suppress(OSError, IndexError):
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "nginx":
                        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                        total += int(fields[11]) + int(fields[12])
        return total / ticks

    def served(self) -> dict[str, int]:
        counts = {}
        for node in NODES:
            out = self.lab.exec(
                node,
                [
                    "python3",
                    "-c",
                    f"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{STATUS_PORT}/').read().decode())",
                ],
            ).stdout
            counts[node] = int(out.splitlines()[2].split()[2])  # "accepts handled requests"
        return counts

    @contextlib.contextmanager
    def lab_floor(self) -> Iterator[None]:
        """The direct path to the three nodes, made to pay on the lab's two shared cores what the
        VIP's path pays for the mode rather than for the farm's rules: for `vmac_invisible`, every
        client frame flooded to every port (the switch learns no node's MAC); for `vmac_directed`,
        the client's frames for node2 and node3 sent to node1's MAC and relayed by node1 at layer 2
        (a netdev ingress `fwd`), as a client's ARP owner relays two thirds of its connections.
        On real hardware both are paid by the switch and by the other nodes' own CPUs."""
        plan = self.lab.plan()
        lan = plan.lans[0]
        if self.vmac == "vmac_invisible":
            switch = plan.switch_netns
            ports = {n: plan.host(n).switch_port(lan) for n in NODES}
            for node, port in ports.items():
                _netns(switch, *f"bridge link set dev {port} learning off".split())
                _netns(
                    switch,
                    *f"bridge fdb del {plan.host(node).mac(lan)} dev {port} master".split(),
                    check=False,
                )
            try:
                yield
            finally:
                for port in ports.values():
                    _netns(switch, *f"bridge link set dev {port} learning on".split())
            return
        relay, others = plan.host(NODES[0]), [plan.host(n) for n in NODES[1:]]
        client, client_if, relay_if = (
            plan.host("client").netns,
            plan.host("client").interface(lan),
            relay.interface(lan),
        )
        table = f"netdev {FLOOR_TABLE}"
        commands = [
            f"add table {table}",
            f"add chain {table} relay {{ type filter hook ingress device {relay_if} priority -400; "
            "policy accept; }",
            *(
                f"add rule {table} relay ip daddr {h.address} fwd ip to {h.address} device {relay_if}"
                for h in others
            ),
        ]
        _netns(relay.netns, "nft", "; ".join(commands))
        try:
            for host in others:
                neighbour = f"{host.address} lladdr {relay.mac(lan)} dev {client_if} nud permanent"
                _netns(client, "ip", "neigh", "replace", *neighbour.split())
            yield
        finally:
            for host in others:
                _netns(client, *f"ip neigh del {host.address} dev {client_if}".split(), check=False)
            _netns(relay.netns, "nft", "delete", "table", "netdev", FLOOR_TABLE, check=False)

    def floor_what(self) -> str:
        if self.vmac == "vmac_invisible":
            return (
                "lab floor: direct to the three nodes (one wrk thread each) with the lab switch "
                "flooding every frame to every port (learning off on the nodes' ports), as it "
                "floods the VIP's virtual MAC: the VIP's extra cost that is the lab's flooding, paid "
                "on the same 2 cores, is in the floor too"
            )
        return (
            "lab floor: direct to the three nodes (one wrk thread each), the client's frames for "
            "node2 and node3 sent to node1's MAC and relayed by node1 at layer 2 (netdev ingress "
            "fwd), as a client's ARP owner relays the 2/3 of its connections it does not serve"
        )

    def out_resets(self, host: str) -> int:
        lines = [line.split() for line in self.lab.exec(host, ["cat", "/proc/net/snmp"]).stdout.splitlines()]
        tcp = [line for line in lines if line[0] == "Tcp:"]
        return int(tcp[1][tcp[0].index("OutRsts")])

    def throughput(self, rounds: int, seconds: int) -> dict[str, Any]:
        runs: dict[str, list[dict[str, Any]]] = {}
        served = dict.fromkeys(NODES, 0)
        resets: dict[str, dict[str, int]] = {}
        for _ in range(rounds):
            for keepalive in (False, True):
                for target in ("direct1", "direct3", "floor", "vip"):
                    label = f"{target}_keepalive_{'on' if keepalive else 'off'}"
                    before, rst = self.served(), {h: self.out_resets(h) for h in HOSTS}
                    nginx_before = self.nginx_cpu_s()
                    with self.lab_floor() if target == "floor" else contextlib.nullcontext():
                        run = self.wrk(target, keepalive, seconds, 30)
                    run["nginx_cpu_s"] = self.nginx_cpu_s() - nginx_before
                    after = self.served()
                    sent = resets.setdefault(label, dict.fromkeys(HOSTS, 0))
                    for h in HOSTS:
                        sent[h] += self.out_resets(h) - rst[h]
                    if target == "vip" and not keepalive:
                        for node in NODES:
                            served[node] += after[node] - before[node]
                    runs.setdefault(label, []).append(run)
                    print(
                        f"{label}: {run['requests_per_s']:.0f} req/s, p50 {run['latency_p50_ms']} ms, "
                        f"p99 {run['latency_p99_ms']} ms, errors {run['errors']}, load "
                        f"{os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
        result: dict[str, Any] = {
            "rounds": rounds,
            "seconds_per_run": seconds,
            "connections": 30,
            "threads": 3,
        }
        for label, samples in runs.items():
            result[label] = {
                "requests_per_s": round(statistics.median(r["requests_per_s"] for r in samples)),
                "latency_p50_ms": round(statistics.median(r["latency_p50_ms"] for r in samples), 3),
                "latency_p99_ms": round(statistics.median(r["latency_p99_ms"] for r in samples), 3),
                "errors": sum(r["errors"] for r in samples),
                "samples_requests_per_s": [round(r["requests_per_s"]) for r in samples],
                # CPU per request (median over rounds): the cost of a request whatever the rate
                "wrk_cpu_us_per_request": round(
                    statistics.median(1e6 * r["wrk_cpu_s"] / max(r["requests"], 1) for r in samples), 1
                ),
                "nginx_cpu_us_per_request": round(
                    statistics.median(1e6 * r["nginx_cpu_s"] / max(r["requests"], 1) for r in samples), 1
                ),
            }
        # The ratios: median over rounds of VIP / direct measured back to back in the same round
        # (the machine is shared: its load drifts between rounds more than within one).
        for ka in ("off", "on"):
            for base, name in (
                ("direct1", "direct_node1"),
                ("direct3", "direct_3_nodes"),
                ("floor", "lab_floor"),
            ):
                per_round = [
                    v["requests_per_s"] / d["requests_per_s"]
                    for v, d in zip(runs[f"vip_keepalive_{ka}"], runs[f"{base}_keepalive_{ka}"], strict=True)
                ]
                result[f"ratio_vip_over_{name}_keepalive_{ka}"] = round(statistics.median(per_round), 3)
                result[f"ratio_vip_over_{name}_keepalive_{ka}_per_round"] = [round(r, 3) for r in per_round]
        result["floor"] = self.floor_what()
        result["tcp_resets_sent"] = resets
        result["_served"] = served
        return result

    # ------------------------------------------------------------------ kill and return
    def probe(self, duration: float) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            self.lab.exec_argv(
                "client",
                [
                    *("python3", "-c", PROBE, self.vip, str(PORT), self.client),
                    *(str(duration), str(PROBE_INTERVAL_S)),
                    *(",".join(map(str, self.victim_ports)), ",".join(map(str, self.control_ports))),
                ],
            ),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the client probe did not start")
        return proc

    @staticmethod
    def attempts(proc: subprocess.Popen[str]) -> list[tuple[float, str, bool, str]]:
        out, _ = proc.communicate(timeout=120)
        return [tuple(a) for a in json.loads(out.strip().splitlines()[-1])]

    def engine_takeover(self, killed_wall: float) -> float | None:
        """From node1's module log: when it took node2's buckets (detection + rule load)."""
        lines = self.cluster.log(WATCHED, MODULE).splitlines()
        for line in lines:
            if "buckets: 128 of 256" in line:
                with contextlib.suppress(ValueError):
                    stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + float(
                        "0." + line[20:23]
                    )
                    if stamp >= killed_wall - 0.01:
                        return round(stamp - killed_wall, 3)
        return None

    def log_moments(self, killed_wall: float, marks: dict[str, str]) -> dict[str, float | None]:
        """From node1's module log: seconds from the kill to the first line after it that contains
        each mark (None when there is none)."""
        found: dict[str, float | None] = dict.fromkeys(marks)
        for line in self.cluster.log(WATCHED, MODULE).splitlines():
            with contextlib.suppress(ValueError):
                stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + float("0." + line[20:23])
                for key, mark in marks.items():
                    if found[key] is None and mark in line and stamp >= killed_wall - 0.01:
                        found[key] = round(stamp - killed_wall, 3)
        return found

    def kill_run(self) -> dict[str, Any]:
        proc = self.probe(6.0)
        time.sleep(random.uniform(1.0, 2.0))
        killed_wall = time.time()
        killed = time.monotonic()
        self.lab.kill(VICTIM)
        kill_call_s = time.monotonic() - killed
        log = self.attempts(proc)
        run = outage(log, killed, lambda ok, who: ok and who != VICTIM)
        run["kill_call_s"] = round(kill_call_s, 3)
        # The cables are pulled somewhere inside `lab kill`: the last connection the victim answered
        # bounds that moment from below.
        answered = [a[0] for a in log if a[0] >= killed and a[2] and a[3] == VICTIM]
        run["victim_last_answer_s"] = round(answered[-1] - killed, 3) if answered else 0.0
        run["engine_takeover_s"] = self.engine_takeover(killed_wall)
        return run

    def return_run(self) -> dict[str, Any]:
        self.lab.start(VICTIM)
        self.cluster.start_daemon(VICTIM)
        proc = self.probe(8.0)
        time.sleep(0.5)
        started = time.monotonic()
        self.cluster.safekit(VICTIM, "start", "-m", MODULE)
        command_s = time.monotonic() - started
        log = self.attempts(proc)
        run = outage(log, started, lambda ok, who: ok and who == VICTIM)
        run["start_command_s"] = round(command_s, 3)
        self.cluster.safekit(VICTIM, "start", "-m", IDLE)
        self.wait_members(list(NODES), list(NODES))
        return run

    # ------------------------------------------------------------------ budgets
    def daemon(self, node: str, seconds: float = 0.0) -> dict[str, float]:
        pid = self.cluster.daemon_pid(node)
        assert pid is not None
        ticks = os.sysconf("SC_CLK_TCK")

        def cpu() -> float:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks

        before = cpu()
        time.sleep(seconds)
        used = cpu() - before
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        facts = {"rss_mib": round(rss / 1024, 1), "open_files": len(os.listdir(f"/proc/{pid}/fd"))}
        if seconds:
            facts["idle_cpu_percent"] = round(100 * used / seconds, 2)
        return facts

    def send_lateness_ms(self) -> dict[str, float]:
        """p99 of how late node1's safekitd sent its periodic heartbeats, per module (its metrics)."""
        fetch = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9010/metrics').read().decode())"
        out = self.lab.exec(WATCHED, ["python3", "-c", fetch]).stdout
        metric = r'^safekit_heartbeat_send_lateness_p99_seconds\{module="([^"]+)"\} (\S+)$'
        return {module: round(1000 * float(value), 2) for module, value in re.findall(metric, out, re.M)}

    def sniffer(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            self.lab.exec_argv(WATCHED, ["python3", "-c", HEARTBEAT_SNIFFER, self.address["node3"], "4800"]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the heartbeat sniffer did not start")
        return proc

    @staticmethod
    def jitter(proc: subprocess.Popen[str]) -> dict[str, Any]:
        out, _ = proc.communicate("stop\n", timeout=30)
        stamps = json.loads(out.strip().splitlines()[-1])
        gaps = sorted(abs(b - a - PULSE_S) for a, b in itertools.pairwise(stamps))
        if not gaps:
            return {"heartbeats": len(stamps)}
        return {
            "heartbeats": len(stamps),
            "p99_ms": round(1000 * gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))], 2),
            "max_ms": round(1000 * gaps[-1], 2),
        }


def nft_load_time(vip: str, runs: int, netns: str) -> dict[str, Any]:
    subprocess.run(["ip", "netns", "delete", netns], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(
            ["ip", "-n", netns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"], check=True
        )
        subprocess.run(["ip", "-n", netns, "link", "set", "eth0", "up"], check=True)
        out = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-c", NFT_LOAD, vip, str(PORT), str(runs)],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
    finally:
        subprocess.run(["ip", "netns", "delete", netns], check=False)
    data = json.loads(out)
    times = sorted(data["times"])
    return {
        "runs": runs,
        "nft_commands": data["commands"],
        "p50_ms": round(1000 * statistics.median(times), 2),
        "max_ms": round(1000 * times[-1], 2),
        "what": (
            "engine farm_kernel.apply (libnftables in-process, ADR 0073; one transaction) of a 3-node "
            "ruleset, scratch netns"
        ),
    }


def _netns(netns: str, *argv: str, check: bool = True) -> None:
    subprocess.run(["ip", "netns", "exec", netns, *argv], check=check, capture_output=True, text=True)


def parse_wrk(out: str) -> dict[str, Any]:
    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.MULTILINE))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "latency_p50_ms": round(ms(latency["50"]), 3),
        "latency_p99_ms": round(ms(latency["99"]), 3),
        "errors": errors + (int(non2xx.group(1)) if non2xx else 0),
    }


def outage(log: list[tuple[float, str, bool, str]], since: float, good: Any) -> dict[str, Any]:
    """Victim-port attempts started after `since`: the time until they stop failing (`good` false)."""
    victim = [a for a in log if a[1] == "victim" and a[0] >= since]
    bad = [a for a in victim if not good(a[2], a[3])]
    first_good = next((a[0] for a in victim if good(a[2], a[3])), None)
    if bad:
        after_bad = next((a[0] for a in victim if a[0] > bad[-1][0] and good(a[2], a[3])), None)
    else:
        after_bad = first_good
    failed = [a[0] for a in victim if not a[2]]
    # Failures after the first good answer (the "re-failures"), with what the client saw.
    again = [a for a in victim if not a[2] and first_good is not None and a[0] > first_good]
    random_after = [a for a in log if a[1] == "random" and a[0] >= since]
    control_after = [a for a in log if a[1] == "control" and a[0] >= since]
    return {
        "until_no_failures_s": None if after_bad is None else round(after_bad - since, 3),
        "first_success_s": None if first_good is None else round(first_good - since, 3),
        "failed_victim_port_probes": len(failed),
        # from the first to the last failed probe of the victim's ports (+ one probe interval)
        "failure_window_s": round(failed[-1] - failed[0] + PROBE_INTERVAL_S, 3) if failed else 0.0,
        "victim_port_probes": len(victim),
        "failed_random_port_probes": sum(1 for a in random_after if not a[2]),
        "random_port_probes": len(random_after),
        "failed_control_port_probes": sum(1 for a in control_after if not a[2]),
        "control_port_probes": len(control_after),
        "failures_after_first_good": [[round(a[0] - since, 3), a[3]] for a in again],
        # ports the client's own kernel still held (a LAST-ACK socket of a connection the victim
        # closed as it died): no SYN was sent, not counted as failures (farm_lab.PROBE_STREAMS)
        "victim_ports_held_by_the_client": sum(1 for a in log if a[1] == "victim-held" and a[0] >= since),
        "failure_kinds": dict(collections.Counter(a[3] for a in victim if not a[2])),
    }


def stats(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    values = [r[key] for r in runs if r[key] is not None]
    if not values:
        return {"p50": None, "max": None}
    return {"p50": round(statistics.median(values), 3), "max": round(max(values), 3)}


DIRECTED_HELD = 10  # keep-alive connections held per client host across each kill and return


def directed_counters(lab: Lab) -> tuple[int, int]:
    """(client packets to the VIP, packets relayed between nodes), summed over the nodes."""
    pairs = [directed_lab.relay_counters(lab, n, MODULE) for n in NODES]
    return sum(p[0] for p in pairs), sum(p[1] for p in pairs)


def directed_phase(lab_name: str, rounds: int, seconds: int, runs: int) -> dict[str, Any]:
    """vmac_directed on a lab whose switch does not flood unknown unicast: throughput from the lab's
    client (one client host: its ARP owner relays the other nodes' connections), the relayed share,
    and kill / return rounds with keep-alive connections held from three client hosts (one per ARP
    owner): time until the victim's clients are served again, healthy connections broken, resets."""
    lab = Lab(lab_name)
    lab.down()
    lab.up(nodes=3, client=True)
    staging = Path(tempfile.mkdtemp(prefix="safekit-bnfarmd-", dir="/var/tmp"))
    clients: directed_lab.Clients | None = None
    result: dict[str, Any] = {"vmac": "vmac_directed", "switch": "bridge, flood off on every port"}
    try:
        directed_lab.no_flooding(lab)
        bench = FarmBench(lab, staging, vmac="vmac_directed")
        bench.install()
        counters = directed_counters(lab)
        result["throughput"] = tp = bench.throughput(rounds, seconds)
        tp.pop("_served")
        after = directed_counters(lab)
        received, relayed = after[0] - counters[0], after[1] - counters[1]
        result["relayed_share_one_client_host"] = {
            "client_packets": received,
            "relayed": relayed,
            "share": round(relayed / received, 4) if received else None,
            "what": "wrk from one client host (its ARP owner receives everything, relays 2/3 by bucket)",
        }
        fmap = bench.farm_map(WATCHED)
        clients = directed_lab.Clients(lab, directed_lab.Clients.pick(lab, fmap["owners"], fmap["seed"]))
        arp_owner = {
            i: fmap["owners"][directed_lab.address_bucket(a, fmap["seed"])]
            for i, a in enumerate(clients.addresses)
        }
        counters = directed_counters(lab)
        for index in range(len(clients.addresses)):
            clients.probe(index, 100)
        after = directed_counters(lab)
        received, relayed = after[0] - counters[0], after[1] - counters[1]
        result["relayed_share_spread_clients"] = {
            "client_packets": received,
            "relayed": relayed,
            "share": round(relayed / received, 4) if received else None,
            "what": "100 new connections from each of 3 client hosts, one per ARP owner (filter on_port)",
        }
        victim_client = next(i for i, n in arp_owner.items() if n == VICTIM)
        kills: list[dict[str, Any]] = []
        for _ in range(runs):
            kills.append(directed_round(lab, bench, clients, victim_client))
            print(f"directed kill/return: {kills[-1]}", flush=True)
        served = [k["victim_clients_served_again_s"] for k in kills]
        sequential = [k["victim_clients_served_again_sequential_probe_s"] for k in kills]
        detected = [k["engine"]["detected_s"] for k in kills if k["engine"]["detected_s"] is not None]
        announced = [k["engine"]["announced_s"] for k in kills if k["engine"]["announced_s"] is not None]
        result["kill"] = {
            "victim": VICTIM,
            "runs": runs,
            "victim_clients_served_again_s": summary(served),
            "probe": "from a client host whose ARP owner is the victim: a new connection attempt every "
            "20 ms, each in its own thread, 200 ms connect timeout, from the kill to the first answer "
            "(the vmac_invisible kill probe's grain)",
            "victim_clients_served_again_sequential_probe_s": summary(sequential),
            "sequential_probe": "the same client, started with it: one attempt at a time, 200 ms connect "
            "timeout then 50 ms pause (the figure before h43: up to 250 ms of it is the probe's grain)",
            "engine_detected_s": summary(detected) if detected else {},
            "engine_rules_loaded_and_announced_s": summary(announced) if announced else {},
            "engine": "node1's log (the announcer): the victim lost (4 pulses of 100 ms without a "
            "heartbeat), then the takeover rules loaded and the announcement started; per sample, "
            "whether the ruleset prepared for the victim's loss was the one loaded",
            "healthy_connections_broken_total": sum(
                k["healthy_broken_on_leave"] + k["healthy_broken_on_join"] for k in kills
            ),
            "tcp_resets_sent_by_survivors_and_clients_total": sum(k["resets"] for k in kills),
            "samples": kills,
        }
        result["targets_met"] = {
            "ratio_keepalive_off": tp["ratio_vip_over_direct_node1_keepalive_off"]
            >= TARGETS["vip_over_direct_ratio"],
            "ratio_keepalive_on": tp["ratio_vip_over_direct_node1_keepalive_on"]
            >= TARGETS["vip_over_direct_ratio"],
            "kill_served_again_p50_s": (result["kill"]["victim_clients_served_again_s"].get("p50_s") or 99)
            <= TARGETS["kill_rebalance_p50_s"],
            "no_healthy_connection_broken_or_reset": result["kill"]["healthy_connections_broken_total"] == 0
            and result["kill"]["tcp_resets_sent_by_survivors_and_clients_total"] == 0,
        }
        for node in NODES:
            with contextlib.suppress(Exception):
                bench.cluster.stop_daemon(node)
    finally:
        if clients is not None:
            clients.down()
        lab.down()
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _broken(first: list[list[tuple[str, int]]], later: list[list[tuple[str, int]]]) -> int:
    """Held connections of healthy nodes that broke or moved."""
    pairs = [(a, b) for ra, rb in zip(first, later, strict=True) for a, b in zip(ra, rb, strict=True)]
    return sum(1 for a, b in pairs if a[0] != VICTIM and a != b)


def directed_round(
    lab: Lab, bench: FarmBench, clients: directed_lab.Clients, victim_client: int
) -> dict[str, Any]:
    survivors = [n for n in NODES if n != VICTIM]
    # nginx answers `/` with the node's name (index.html)
    holders = [clients.hold(i, DIRECTED_HELD, "/") for i in range(len(clients.addresses))]
    try:
        first = [h.ask() for h in holders]
        skip = [[i for i, (w, _) in enumerate(rows) if w == VICTIM] for rows in first]
        # Resets by the survivors, and by the clients that do not run the failover probe (its
        # abandoned connects are reset when a late SYN-ACK comes, as any timed-out connect).
        quiet = [i for i in range(len(clients.addresses)) if i != victim_client]
        resets = sum(bench.out_resets(h) for h in survivors) + sum(clients.out_resets(i) for i in quiet)
        probe = clients.until_served(victim_client)
        fine = clients.until_served_fine(victim_client)
        killed_wall = time.time()
        bench.lab.kill(VICTIM)
        probe.start(killed_wall)
        fine.start(killed_wall)
        served_again_s = probe.seconds()
        served_again_fine_s = fine.seconds()
        # Where the time goes, from the announcer's (node1's) log: the loss detected, the rules
        # loaded and the takeover announced (the line is written when the announcement starts).
        moments = bench.log_moments(
            killed_wall,
            {
                "detected_s": f"{VICTIM} lost: no farm heartbeat",
                "announced_s": "farm members left: announcing",
            },
        )
        prepared = bench.log_moments(
            killed_wall, {"prepared": f"farm rules for {VICTIM}'s loss were prepared"}
        )
        bench.wait_members(survivors, survivors)
        second = [h.ask(s) for h, s in zip(holders, skip, strict=True)]
        broken_leave = _broken(first, second)
        lab.start(VICTIM)
        directed_lab.no_flooding(lab)
        bench.cluster.start_daemon(VICTIM)
        bench.start_modules(VICTIM)
        bench.wait_members(list(NODES), list(NODES))
        clients.forget_neighbours()
        third = [h.ask(s) for h, s in zip(holders, skip, strict=True)]
        broken_join = _broken(first, third)
        resets_after = sum(bench.out_resets(h) for h in survivors) + sum(clients.out_resets(i) for i in quiet)
        return {
            "victim_clients_served_again_s": round(served_again_fine_s, 3),
            "victim_clients_served_again_sequential_probe_s": round(served_again_s, 3),
            "engine": {**moments, "prepared_ruleset_used": prepared["prepared"] is not None},
            "healthy_connections": sum(len(r) - len(s) for r, s in zip(first, skip, strict=True)),
            "healthy_broken_on_leave": broken_leave,
            "healthy_broken_on_join": broken_join,
            "resets": resets_after - resets,
        }
    finally:
        for holder in holders:
            holder.close()


def main() -> int:  # noqa: PLR0915
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="kill/return runs")
    parser.add_argument("--quick", action="store_true", help="2 kill runs, 1 short throughput round")
    parser.add_argument("--lab", default=LAB, help=f"lab name (default {LAB})")
    parser.add_argument(
        "--budgets-only", action="store_true", help="install, measure the idle budgets, print; write nothing"
    )
    parser.add_argument("--no-write", action="store_true", help="print the results, do not write them")
    parser.add_argument(
        "--directed-lab", default=LAB + "d", help=f"lab of the vmac_directed phase (default {LAB}d)"
    )
    parser.add_argument("--directed-only", action="store_true", help="the vmac_directed phase only, printed")
    args = parser.parse_args()
    q = args.quick
    runs = 2 if q else args.runs
    rounds, seconds = (1, 5) if q else (3, 10)
    idle_s = 5 if q else 20
    if args.directed_only:
        print(json.dumps(directed_phase(args.directed_lab, rounds, seconds, min(runs, 3)), indent=2))
        return 0
    lab = Lab(args.lab)
    lab.down()
    lab.up(nodes=3, client=True)
    staging = Path(tempfile.mkdtemp(prefix="safekit-bnfarm-", dir="/var/tmp"))
    result: dict[str, Any] = {"anchors": ANCHORS, "targets": TARGETS, "quick": q}
    result["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    bench = FarmBench(lab, staging)
    try:
        bench.install()
        fmap = bench.farm_map(WATCHED)
        shares = fmap["shares"]
        time.sleep(3)
        budget_before = bench.daemon(WATCHED, idle_s)
        print(f"idle safekitd on {WATCHED}: {budget_before}", flush=True)
        for node in NODES:
            bench.cluster.safekit(node, "stop", "-m", IDLE)
        time.sleep(2)
        farm_only = bench.daemon(WATCHED, idle_s)
        print(f"idle safekitd on {WATCHED}, farm module only: {farm_only}", flush=True)
        if args.budgets_only:
            return 0
        for node in NODES:
            bench.cluster.safekit(node, "start", "-m", IDLE)
        for node in NODES:
            bench.cluster.wait_state(node, IDLE, "UP", timeout=60)
        result["nft_rule_load"] = nft_load_time(bench.vip, 10 if q else 40, f"{args.lab}-nft")

        sniffer = bench.sniffer()
        result["throughput"] = tp = bench.throughput(rounds, seconds)
        jitter = bench.jitter(sniffer)
        lateness = bench.send_lateness_ms()
        served = tp.pop("_served")
        total = sum(served.values()) or 1
        result["spread"] = {
            "filter": "on_port",
            "measured_over": "VIP runs, keep-alive off (nginx stub_status requests per node)",
            "requests": served,
            "share_of_requests": {n: round(served[n] / total, 4) for n in NODES},
            "bucket_share": {n: round(shares[n] / 256, 4) for n in NODES},
            "max_abs_deviation": round(max(abs(served[n] / total - shares[n] / 256) for n in NODES), 4),
        }

        result["source_ports_classified"] = bench.classify()
        kills, returns = [], []
        for i in range(runs):
            kills.append(bench.kill_run())
            print(f"kill {i + 1}: {kills[-1]}", flush=True)
            returns.append(bench.return_run())
            print(f"return {i + 1}: {returns[-1]}", flush=True)
        result["kill"] = {
            "victim": VICTIM,
            "probe": "new connection every 20 ms per stream, 200 ms connect timeout, 1 s for the answer",
            "runs": runs,
            "until_no_failures_s": {
                **summary([r["until_no_failures_s"] for r in kills if r["until_no_failures_s"] is not None])
            },
            "first_success_s": stats(kills, "first_success_s"),
            "failed_random_port_probes": stats(kills, "failed_random_port_probes"),
            "failed_victim_port_probes": stats(kills, "failed_victim_port_probes"),
            "failed_control_port_probes_total": sum(r["failed_control_port_probes"] for r in kills),
            "engine_takeover_s": stats(kills, "engine_takeover_s"),
            "victim_last_answer_s": stats(kills, "victim_last_answer_s"),
            "kill_call_s": stats(kills, "kill_call_s"),
            "samples": kills,
        }
        result["return"] = {
            "what": "from `safekit start` on the booted node to its ports answered by it again",
            "runs": runs,
            "until_no_failures_s": stats(returns, "until_no_failures_s"),
            "first_answer_s": stats(returns, "first_success_s"),
            "failed_random_port_probes": stats(returns, "failed_random_port_probes"),
            "failed_victim_port_probes": stats(returns, "failed_victim_port_probes"),
            "failure_window_s": stats(returns, "failure_window_s"),
            "failed_control_port_probes_total": sum(r["failed_control_port_probes"] for r in returns),
            "samples": returns,
        }
        time.sleep(3)
        budget_after = bench.daemon(WATCHED, idle_s)
        result["budgets"] = {
            "node": WATCHED,
            "modules": [MODULE, IDLE],
            "safekitd_rss_mib": budget_before["rss_mib"],
            "safekitd_idle_cpu_percent": budget_before["idle_cpu_percent"],
            "heartbeat_jitter_p99_ms": jitter.get("p99_ms"),
            "heartbeat_jitter": {**jitter, "measured": "node3 -> node1 farm heartbeats, under the wrk runs"},
            "heartbeat_send_lateness_p99_ms": lateness,
            "safekitd_open_files": {
                "before": budget_before["open_files"],
                "after": budget_after["open_files"],
            },
            "safekitd_rss_mib_after": budget_after["rss_mib"],
            "safekitd_idle_cpu_percent_after": budget_after["idle_cpu_percent"],
            "safekitd_idle_cpu_percent_farm_module_only": farm_only["idle_cpu_percent"],
            "limits": LIMITS,
        }
        result["budgets"]["open_files_flat"] = budget_after["open_files"] <= budget_before["open_files"] + 2
        met = {
            "ratio_keepalive_off": tp["ratio_vip_over_direct_node1_keepalive_off"]
            >= TARGETS["vip_over_direct_ratio"],
            "ratio_keepalive_on": tp["ratio_vip_over_direct_node1_keepalive_on"]
            >= TARGETS["vip_over_direct_ratio"],
            "kill_rebalance_p50_s": result["kill"]["until_no_failures_s"].get("p50_s", 99)
            <= TARGETS["kill_rebalance_p50_s"],
            "failed_probes_below_haproxy": (result["kill"]["failed_random_port_probes"]["p50"] or 0)
            < TARGETS["failed_probes_p50_below"],
        }
        budgets = result["budgets"]
        met_budgets = {
            "safekitd_rss_mib": budgets["safekitd_rss_mib"] <= LIMITS["safekitd_rss_mib"],
            "safekitd_idle_cpu_percent": budgets["safekitd_idle_cpu_percent"]
            <= LIMITS["safekitd_idle_cpu_percent"],
            "heartbeat_jitter_p99_ms": (budgets["heartbeat_jitter_p99_ms"] or 999)
            <= LIMITS["heartbeat_jitter_p99_ms"],
            "open_files_flat": budgets["open_files_flat"],
        }
        result["targets_met"] = met
        result["budgets_met"] = met_budgets
        result["meets_targets"] = all(met.values())
        result["meets_budgets"] = all(met_budgets.values())
        for node in NODES:
            with contextlib.suppress(Exception):
                bench.cluster.stop_daemon(node)
    finally:
        lab.down()
        shutil.rmtree(staging, ignore_errors=True)
    # The same run, the other mode: vmac_directed on a switch that does not flood (its own lab).
    result["vmac_invisible"] = "the figures above (a switch that floods unknown unicast)"
    result["vmac_directed"] = directed_phase(args.directed_lab, rounds, seconds, min(runs, 3))
    print(json.dumps({k: v for k, v in result.items() if k not in ("kill", "return")}, indent=2))
    if not args.no_write:
        print(f"-> {write_result('farm', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
