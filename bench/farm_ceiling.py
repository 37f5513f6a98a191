"""Farm, `vmac_directed`, keep-alive off: how much of the VIP's throughput gap its own rules can
explain on this lab - the rules as built against the same rules stripped down, and the lab floor.

bench/farm.py measures the VIP against direct and against a lab floor (ADR 0084): the three nodes'
own addresses, the client's frames for node2 and node3 relayed by node1 at layer 2, as the VIP's
ARP owner relays them. Whatever the VIP costs beyond the floor is the farm's own path - its netdev
rules - or the way the traffic differs. This benchmark tells the two apart: in alternated rounds
on one lab (bench/farm.py's module, flooding off), wrk (-t3 -c30, `Connection: close`) runs
through the VIP with each node's netdev rules replaced by:

- `as_built`: the rules the daemon loaded (`farm/directed.py`);
- `no_flow_tables`: the same without `@mine` and `@flows_*` (no lookup, no update, no delete) and
  with a node's own buckets' strangers accepted: what the rules would cost if a membership change
  did not have to keep live connections on their node. NOT a usable farm: it shows what the flow
  tables cost;
- `one_lookup`: one `jhash` verdict map per frame (own bucket: accept; another's: relay with
  `fwd`), no flow tables, no relay mark, no counters: the least any bucket-steering relay can do;

and against the floor (the as-built rules loaded, bench/farm.py's `lab_floor`). `--pin CPU` runs
wrk and every nginx on one CPU (the kernel's work on the packets runs in their contexts on veths),
which takes the scheduler's placement out of the comparison.

The rules are read back from each node (`nft -j list table netdev ...`), changed, and loaded as
chain flushes and rules in one transaction; the flow tables are left as they are. The daemons
keep running and load nothing meanwhile (the farm does not change).

Writes bench/results/farm_ceiling.json (`--name` to write another name). Usage:
bench/farm_ceiling.py [--rounds N] [--seconds S] [--pin CPU] [--lab NAME] [--name NAME] [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration" / "farm"))
import directed_lab

from common import write_result
from farm import MODULE, NODES, WATCHED, FarmBench
from safekit.lab import Lab
from safekit.lab.system import netns_pids

Rule = dict[str, Any]
VARIANTS = ("as_built", "no_flow_tables", "one_lookup")
FLOOR = "floor"
TABLE = f"safekit_farm_{MODULE}"
"""The benchmark module's nftables tables (the idle module has its own)."""


# ----------------------------------------------------------------------------- the variants (pure)
def _flow_lookup(expr: Rule) -> bool:
    """`ip saddr . tcp sport @mine` (a match against a named set)."""
    match = expr.get("match")
    return isinstance(match, dict) and isinstance(match.get("right"), str) and match["right"].startswith("@")


def _anonymous_counter(expr: Rule) -> bool:
    return "counter" in expr and not isinstance(expr["counter"], str)


def _vmap(rule: Rule) -> Rule | None:
    for expr in rule["expr"]:
        if "vmap" in expr:
            found: Rule = expr["vmap"]
            return found
    return None


def _syn_rule(rule: Rule) -> bool:
    """A rule that decides new connections (`tcp flags & (fin|syn|rst|ack) == syn ... vmap`)."""
    return _vmap(rule) is not None and any(
        isinstance(e.get("match"), dict) and e["match"].get("op") == "==" and e["match"].get("right") == "syn"
        for e in rule["expr"]
    )


def _as_stranger_verdicts(data: Any) -> Any:
    """A SYN verdict map's entries as the same bucket's verdicts for a connection's later packets:
    served here (`serve_syn` -> accept), relayed to the owner (`open_X` -> `pass_X`), dropped."""
    text = json.dumps(data)
    for syn_chain in ("serve_syn6", "serve_syn"):
        text = text.replace(json.dumps({"goto": {"target": syn_chain}}), json.dumps({"accept": None}))
    return json.loads(text.replace('"target": "open', '"target": "pass'))


def without_flow_tables(rules: Sequence[Rule]) -> list[Rule]:
    """The rules without `@mine`/`@flows_*`: no rule that looks a flow up, no set statement, no
    second hop for relayed frames (every relayed frame is this node's), and a connection's later
    packets steered by their bucket as its SYN was (own buckets accepted, not sent to the node
    that had them before)."""
    kept: list[Rule] = []
    syn_verdicts: Any = None
    for original in rules:
        rule = copy.deepcopy(original)
        if any(_flow_lookup(e) for e in rule["expr"]):
            continue
        rule["expr"] = [e for e in rule["expr"] if "set" not in e]
        vmap = _vmap(rule)
        if rule["chain"].startswith("relayed") and vmap is not None:
            continue
        if _syn_rule(rule):
            syn_verdicts = vmap["data"] if vmap is not None else None
        elif vmap is not None and syn_verdicts is not None and rule["chain"].startswith("vip"):
            vmap["data"] = _as_stranger_verdicts(syn_verdicts)
            syn_verdicts = None
        if rule["expr"]:
            kept.append(rule)
    return kept


def one_lookup(rules: Sequence[Rule]) -> list[Rule]:
    """`without_flow_tables`, then no relay mark, no counter, no SYN rule and no relayed-frame
    test: a frame to the VIP meets one verdict map of its bucket (accept here, `fwd` to the owner)."""
    kept: list[Rule] = []
    for rule in without_flow_tables(rules):
        if rule["chain"].startswith("vip") and _syn_rule(rule):
            continue
        expr = [e for e in rule["expr"] if "mangle" not in e and not _anonymous_counter(e)]
        if rule["chain"].startswith("vip"):
            if any("goto" in e for e in expr) and not any("vmap" in e for e in expr):
                continue  # the relayed-frame test: nothing is marked any more
            if all("counter" in e for e in expr):
                continue  # the `clients` counter
        if expr:
            kept.append({**rule, "expr": expr})
    return kept


def variant(rules: Sequence[Rule], name: str) -> list[Rule]:
    if name == "as_built":
        return [copy.deepcopy(r) for r in rules]
    if name == "no_flow_tables":
        return without_flow_tables(rules)
    if name == "one_lookup":
        return one_lookup(rules)
    raise ValueError(f"no variant {name!r}: {', '.join(VARIANTS)}")


def reload_commands(table: str, chains: Sequence[str], rules: Sequence[Rule]) -> dict[str, Any]:
    """One transaction: every chain of the netdev table flushed, then `rules` added (without the
    handles and counter values the listing carried)."""
    commands: list[Rule] = [
        {"flush": {"chain": {"family": "netdev", "table": table, "name": chain}}} for chain in chains
    ]
    for rule in rules:
        body = {k: v for k, v in rule.items() if k != "handle"}
        body["expr"] = [{"counter": None} if _anonymous_counter(e) else e for e in rule["expr"]]
        commands.append({"add": {"rule": body}})
    return {"nftables": commands}


def ratios(rates: dict[str, list[float]]) -> dict[str, Any]:
    medians = {name: statistics.median(values) for name, values in rates.items() if values}
    floor = medians.get(FLOOR)
    return {
        "requests_per_s_median": {name: round(value) for name, value in medians.items()},
        "over_floor": {name: round(value / floor, 3) for name, value in medians.items()} if floor else {},
    }


# ----------------------------------------------------------------------------- on the lab
class Netdev:
    """Each node's farm netdev table, as the daemon loaded it, and loads of its variants."""

    def __init__(self, bench: FarmBench) -> None:
        self.bench = bench
        self.loaded: dict[str, tuple[list[str], list[Rule]]] = {}
        for node in NODES:
            listed = self._nft(node, "list", "table", "netdev", TABLE)
            chains = [item["chain"]["name"] for item in listed if "chain" in item]
            rules = [item["rule"] for item in listed if "rule" in item]
            if not rules:
                raise RuntimeError(f"{node}: the farm module's netdev table {TABLE} has no rules")
            self.loaded[node] = (chains, rules)

    def _netns(self, node: str) -> str:
        return self.bench.lab.plan().host(node).netns

    def _nft(self, node: str, *argv: str) -> list[Rule]:
        out = subprocess.run(
            ["ip", "netns", "exec", self._netns(node), "nft", "-j", *argv],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        listed: list[Rule] = json.loads(out)["nftables"]
        return listed

    def load(self, name: str) -> None:
        for node, (chains, rules) in self.loaded.items():
            subprocess.run(
                ["ip", "netns", "exec", self._netns(node), "nft", "-j", "-f", "-"],
                input=json.dumps(reload_commands(TABLE, chains, variant(rules, name))),
                check=True,
                text=True,
            )


@contextlib.contextmanager
def nginx_on(lab: Lab, cpu: int | None) -> Iterator[None]:
    """Every node's nginx processes on one CPU (their affinity put back afterwards)."""
    if cpu is None:
        yield
        return
    before: dict[int, set[int]] = {}
    for node in NODES:
        for pid in netns_pids(lab.plan().host(node).netns):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "nginx":
                    before[pid] = os.sched_getaffinity(pid)
                    os.sched_setaffinity(pid, {cpu})
    if not before:
        raise RuntimeError("no nginx process found on the nodes")
    try:
        yield
    finally:
        for pid, cpus in before.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(pid, cpus)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--pin", type=int, metavar="CPU", help="run wrk and every nginx on this CPU")
    parser.add_argument("--lab", default="fceil")
    parser.add_argument("--name", default="farm_ceiling")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    lab = Lab(args.lab)
    lab.down()
    lab.up(nodes=3, client=True)
    staging = Path(tempfile.mkdtemp(prefix="safekit-fceil-", dir="/var/tmp"))
    directed_lab.no_flooding(lab)
    bench = FarmBench(lab, staging, vmac="vmac_directed")
    cpus = None if args.pin is None else str(args.pin)
    rates: dict[str, list[float]] = {name: [] for name in (*VARIANTS, FLOOR)}
    result: dict[str, Any] = {"loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        bench.install()
        time.sleep(2)
        netdev = Netdev(bench)
        result["budgets"] = bench.daemon(WATCHED, 10)
        with nginx_on(lab, args.pin):
            for index in range(args.rounds):
                order = [*VARIANTS, FLOOR]
                order = order[index % len(order) :] + order[: index % len(order)]
                for name in order:
                    netdev.load("as_built" if name == FLOOR else name)
                    target = FLOOR if name == FLOOR else "vip"
                    with bench.lab_floor() if name == FLOOR else contextlib.nullcontext():
                        rate = bench.wrk(target, False, args.seconds, 30, cpus=cpus)["requests_per_s"]
                    rates[name].append(rate)
                    print(f"{name}: {rate:.0f} requests/s, load {os.getloadavg()[0]:.1f}", flush=True)
        netdev.load("as_built")
        result["budgets"]["open_files_after"] = bench.daemon(WATCHED)["open_files"]
    finally:
        bench.cluster.stop_daemons()
        lab.down()
        shutil.rmtree(staging, ignore_errors=True)
    result.update(ratios(rates))
    result.update(
        {
            "requests_per_s": {name: [round(x) for x in values] for name, values in rates.items()},
            "rounds": args.rounds,
            "seconds_per_run": args.seconds,
            "pinned_cpu": args.pin,
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
            "note": (
                "vmac_directed, keep-alive off, wrk -t3 -c30 from one client host (node1 its ARP "
                "owner, relaying 2/3). over_floor: median requests/s over the lab floor's (the as-built "
                "rules loaded, the three nodes' own addresses, node1 relaying node2's and node3's "
                "frames). no_flow_tables and one_lookup are NOT usable farms: they show what the "
                "farm's rules cost, against what the traffic's shape costs on this lab."
            ),
        }
    )
    print(json.dumps(result, indent=2))
    if not args.no_write:
        write_result(args.name, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
