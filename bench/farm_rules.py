"""Farm rules alone: the kernel CPU a packet costs on a node with the farm's nftables rules, this
tree's layout against an earlier commit's (`--before REV`) and against no farm rules, in one run.

Two scratch network namespaces joined by a veth (addresses in 198.19.250.0/24, nothing routed
out): a "node" holding the VIP 198.19.250.200 with a `vmac_invisible` ruleset of one `<rule>` (TCP
8080, `on_port`) owning node1's third of the buckets of a three-node farm, and a "client" that
writes prebuilt Ethernet frames on its end of the veth (AF_PACKET) in a loop. On a veth the
receiver's path (netdev ingress, IP, the prerouting hooks, conntrack) runs in the sender's
softirq, and this kernel charges softirq time to the task that raised it (no
`CONFIG_IRQ_TIME_ACCOUNTING`), so the sender's system time per frame is that path's cost. Kinds of
frames, as a node of a three-node farm receives them while clients make connections through the
VIP (`vmac_invisible` floods every frame to every node):

- `vip_ack`: TCP ACKs to the VIP of connections the node does not know (another node's: two of
  every three connections' packets at each node), from 4096 client address/port pairs;
- `vip_syn`: SYNs to the VIP from the same pairs (a third owned here: they reach the TCP stack,
  which answers with a reset, no listener);
- `other`: TCP ACKs to the node's own address (traffic that is not the farm's).

Rulesets alternate within each round (none, before, after, and `after` with other nodes' TCP
dropped before conntrack - a bound of what ADR 0062 leaves for later, not a safe ruleset); the
figure is the median system time per frame over the rounds, and the rules' cost is a ruleset's
minus none's.

Writes bench/results/farm_rules.json. Usage: bench/farm_rules.py [--before REV] [--rounds N]
[--frames N] [--no-write]. Needs root.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import ipaddress
import json
import os
import random
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result
from safekit.farm import nft
from safekit.farm.buckets import canonical_map

ROOT = Path(__file__).resolve().parent.parent
NODE_ADDRESS = ipaddress.IPv4Address("198.19.250.2")
CLIENT_ADDRESS = ipaddress.IPv4Address("198.19.250.1")
VIP = ipaddress.IPv4Address("198.19.250.200")
PORT = 8080
CLIENT_IF, NODE_IF = "fr0c", "fr0n"
PAIRS = 4096
KINDS = ("vip_ack", "vip_syn", "other")
DEFAULT_BEFORE = "4f633f6"  # main before ADR 0062's layout


def run(argv: list[str], stdin: str | None = None) -> str:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True, timeout=120).stdout


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def nft_module(rev: str) -> ModuleType:
    """`safekit.farm.nft` as it was at commit `rev` (its imports resolve against this tree)."""
    text = run(["git", "-C", str(ROOT), "show", f"{rev}:src/safekit/farm/nft.py"])
    path = Path(tempfile.mkdtemp(prefix="safekit-farmrules-")) / "nft_before.py"
    path.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("nft_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["nft_before"] = module
    spec.loader.exec_module(module)
    return module


def ruleset_of(module: Any) -> str:
    owned = canonical_map(dict.fromkeys(("node1", "node2", "node3"), 1)).buckets_of("node1")
    spec = module.FarmRules(
        module.table_name("bench"),
        (module.BalancedAddress(VIP, NODE_IF, module.vmac_for(VIP)),),
        (module.TrafficRule("tcp", "on_port", PORT, None, "web"),),
        module.seed_for("bench"),
        "web",
    )
    return json.dumps(module.ruleset(spec, {"web": owned}))


def others_dropped_before_conntrack(payload: str) -> str:
    """`after` plus what ADR 0062 leaves for later, as a bound of its gain: TCP packets that are not
    SYNs, in buckets this node does not own, dropped before conntrack. Not safe as it is (a node's
    connections in a bucket that moved away on a join would be dropped too)."""
    ruleset = json.loads(payload)
    commands = ruleset["nftables"]
    for command in list(commands):
        rule = command.get("add", {}).get("rule")
        if rule is None:
            continue
        if rule["chain"].startswith("vip_") and rule["expr"][-1] == {"accept": None}:
            commands.remove(command)  # the connections' packets go through the buckets too
        elif rule["chain"].startswith("rule_") and rule["expr"][-1] == {"drop": None}:
            syn, *rest = rule["expr"]
            not_syn = {"match": {**syn["match"], "op": "!="}}
            commands.append({"add": {"rule": {**rule, "expr": [not_syn, *rest]}}})
    return json.dumps(ruleset)


def removal() -> str:
    spec = nft.FarmRules(nft.table_name("bench"), (), (), 0)
    return json.dumps(nft.removal(spec))


# ----------------------------------------------------------------------------- frames
def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int(word) for word in struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return 0xFFFF ^ total


def frame(dst_mac: bytes, src_mac: bytes, src: bytes, dst: bytes, *, sport: int, flags: int) -> bytes:
    tcp = struct.pack(
        "!HHIIBBHHH", sport, PORT, 1000, 2000 if flags & 0x10 else 0, 5 << 4, flags, 65535, 0, 0
    )
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + tcp


def frames(kind: str, node_mac: bytes, client_mac: bytes) -> list[bytes]:
    rng = random.Random(62)
    vmac = bytes.fromhex(nft.vmac_for(VIP).replace(":", ""))
    out = []
    for _ in range(PAIRS):
        src = bytes([198, 19, 250, rng.randrange(10, 190)])
        sport = rng.randrange(1024, 65535)
        if kind == "other":
            out.append(frame(node_mac, client_mac, src, NODE_ADDRESS.packed, sport=sport, flags=0x10))
        else:
            out.append(
                frame(
                    vmac, client_mac, src, VIP.packed, sport=sport, flags=0x02 if kind == "vip_syn" else 0x10
                )
            )
    return out


def send(kind: str, count: int) -> None:
    """In the client namespace: write `count` frames of `kind`, print the system time per frame."""
    macs = json.loads(os.environ["FARM_RULES_MACS"])
    batch = frames(kind, bytes.fromhex(macs["node"]), bytes.fromhex(macs["client"]))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((CLIENT_IF, 0))
    for data in batch[:256]:  # warm up
        sock.send(data)
    before = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(count):
        sock.send(batch[i % PAIRS])
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"system_us_per_frame": (after.ru_stime - before.ru_stime) * 1e6 / count}))


# ----------------------------------------------------------------------------- the namespaces
class Pair:
    def __init__(self) -> None:
        self.client, self.node = f"skfarmrules{os.getpid()}c", f"skfarmrules{os.getpid()}n"

    def __enter__(self) -> Pair:
        run(["ip", "netns", "add", self.client])
        run(["ip", "netns", "add", self.node])
        run(["ip", "link", "add", CLIENT_IF, "netns", self.client, "type", "veth", "peer", "name", NODE_IF,
             "netns", self.node])  # fmt: skip
        for ns, interface, address in (
            (self.client, CLIENT_IF, CLIENT_ADDRESS),
            (self.node, NODE_IF, NODE_ADDRESS),
        ):
            run(in_ns(ns, "ip", "link", "set", "lo", "up"))
            run(in_ns(ns, "ip", "addr", "add", f"{address}/24", "dev", interface))
            run(in_ns(ns, "ip", "link", "set", interface, "up"))
        run(in_ns(self.node, "ip", "addr", "add", f"{VIP}/32", "dev", NODE_IF))
        for key in ("net.ipv4.conf.all.rp_filter=0", f"net.ipv4.conf.{NODE_IF}.rp_filter=0"):
            run(in_ns(self.node, "sysctl", "-qw", key))
        return self

    def __exit__(self, *_: object) -> None:
        for ns in (self.client, self.node):
            with contextlib.suppress(subprocess.CalledProcessError):
                run(["ip", "netns", "del", ns])

    def mac(self, ns: str, interface: str) -> str:
        return str(json.loads(run(in_ns(ns, "ip", "-j", "link", "show", interface)))[0]["address"]).replace(
            ":", ""
        )

    def load(self, payload: str | None) -> None:
        run(in_ns(self.node, "nft", "-j", "-f", "-"), stdin=removal())
        if payload is not None:
            run(in_ns(self.node, "nft", "-j", "-f", "-"), stdin=payload)
            # With the farm's rules the engine sets this (ADR 0005); conntrack is there now.
            run(in_ns(self.node, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0"))

    def measure(self, kind: str, count: int) -> float:
        env = {
            **os.environ,
            "FARM_RULES_MACS": json.dumps(
                {"node": self.mac(self.node, NODE_IF), "client": self.mac(self.client, CLIENT_IF)}
            ),
        }
        argv = in_ns(self.client, sys.executable, __file__, "--send", kind, "--frames", str(count))
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300, env=env).stdout
        return float(json.loads(out.strip().splitlines()[-1])["system_us_per_frame"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=DEFAULT_BEFORE, help="the commit whose layout is compared")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--send", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send:
        send(args.send, args.frames)
        return 0
    after = ruleset_of(nft)
    rulesets = {
        "none": None,
        "before": ruleset_of(nft_module(args.before)),
        "after": after,
        "after_others_dropped_before_conntrack": others_dropped_before_conntrack(after),
    }
    samples: dict[str, dict[str, list[float]]] = {k: {r: [] for r in rulesets} for k in KINDS}
    loads: list[float] = []
    started = [round(x, 2) for x in os.getloadavg()]
    with Pair() as pair:
        for index in range(args.rounds):
            names = list(rulesets)
            order = names[index % len(names) :] + names[: index % len(names)]
            for name in order:
                pair.load(rulesets[name])
                for kind in KINDS:
                    samples[kind][name].append(pair.measure(kind, args.frames))
            loads.append(round(os.getloadavg()[0], 2))
            print(
                f"round {index + 1}: "
                + json.dumps({k: {r: round(v[-1], 3) for r, v in s.items()} for k, s in samples.items()}),
                flush=True,
            )
        pair.load(None)
    medians = {k: {r: round(statistics.median(v), 3) for r, v in s.items()} for k, s in samples.items()}
    result: dict[str, Any] = {
        "what": "kernel CPU per frame received by a farm node (sender's system time, veth: the receive "
        "path runs in its softirq), by ruleset; median of the rounds",
        "before": args.before,
        "after": run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]).strip() + " (working tree)",
        "frames_per_run": args.frames,
        "rounds": args.rounds,
        "system_us_per_frame": medians,
        "rules_us_per_frame": {
            k: {r: round(m[r] - m["none"], 3) for r in m if r != "none"} for k, m in medians.items()
        },
        "samples": {k: {r: [round(x, 3) for x in v] for r, v in s.items()} for k, s in samples.items()},
        "loadavg_at_start": started,
        "loads": loads,
    }
    print(json.dumps(result, indent=2))
    if not args.no_write:
        print(f"-> {write_result('farm_rules', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
