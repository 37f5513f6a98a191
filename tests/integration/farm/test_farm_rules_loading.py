"""The farm's rules as the engine loads them (`farm_kernel.apply`, ADR 0073): through libnftables in
the engine's own process, in a scratch network namespace with the real kernel.

- a three-node ruleset is loaded and replaced by the one of a member's loss: the kernel holds the
  new owned buckets (listed back), whichever loader ran;
- a ruleset nftables refuses leaves the loaded one whole (one transaction) and says why;
- a thousand loads leave the process's memory and descriptors where they were (the context lives as
  long as safekitd);
- without libnftables the `nft` program loads the same rules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, nftables)")

LOADER = r"""
import asyncio, ipaddress, json, os, sys
from safekit.daemon import farm_kernel, libnft
from safekit.farm import nft
from safekit.farm.buckets import compute_map

vip = ipaddress.IPv4Address("198.18.250.10")
spec = nft.FarmRules(nft.table_name("web"), (nft.BalancedAddress(vip, "eth0", nft.vmac_for(vip)),),
                     (nft.TrafficRule("tcp", "on_port", 80),), nft.seed_for("web"))
powers = {"node1": 1, "node2": 1, "node3": 1}
full = sorted(compute_map(powers, powers).buckets_of("node1"))
degraded = sorted(compute_map(powers, ["node1", "node3"]).buckets_of("node1"))
if sys.argv[1] == "program":
    libnft._shared_error = "disabled by the test"

def owned_in_kernel():
    listed = asyncio.run(farm_kernel.list_table(spec.table, "ip"))
    for item in listed.get("nftables", []):
        rule = item.get("rule")
        if rule and rule["chain"] == "rule_0":
            for e in rule["expr"]:
                if "match" in e and e["match"]["op"] == "!=":
                    return sorted(e["match"]["right"]["set"])
    return None

def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

out = {"loader": "libnftables" if libnft.shared() is not None else "program"}
asyncio.run(farm_kernel.apply(nft.ruleset(spec, {"default": full})))
out["full"] = owned_in_kernel() == full
asyncio.run(farm_kernel.apply(nft.ruleset(spec, {"default": degraded})))
out["degraded"] = owned_in_kernel() == degraded
bad = nft.ruleset(spec, {"default": full})
bad["nftables"].append({"add": {"rule": {"family": "ip", "table": spec.table, "chain": "no_such_chain",
                                         "expr": [{"accept": None}]}}})
try:
    asyncio.run(farm_kernel.apply(bad))
    out["refused"] = None
except farm_kernel.NftError as exc:
    out["refused"] = str(exc)
out["kept_after_refusal"] = owned_in_kernel() == degraded
if sys.argv[1] == "libnftables":
    texts = [json.dumps(nft.ruleset(spec, {"default": b})) for b in (full, degraded)]
    async def many(n):
        for i in range(n):
            await farm_kernel.apply_text(texts[i % 2])
    asyncio.run(many(200))
    before = (rss_kib(), len(os.listdir("/proc/self/fd")))
    asyncio.run(many(1000))
    out["rss_kib_and_fds"] = [before, (rss_kib(), len(os.listdir("/proc/self/fd")))]
asyncio.run(farm_kernel.apply(nft.removal(spec)))
out["removed"] = asyncio.run(farm_kernel.list_table(spec.table, "ip")) == {}
print(json.dumps(out))
"""


@pytest.fixture
def scratch_netns() -> Iterator[str]:
    name = f"skt-nftload-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(
            ["ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"], check=True
        )
        subprocess.run(["ip", "-n", name, "link", "set", "eth0", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def load_in(netns: str, loader: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", LOADER, loader],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_rules_are_loaded_replaced_and_refused_through_libnftables(scratch_netns: str) -> None:
    out = load_in(scratch_netns, "libnftables")
    assert out["loader"] == "libnftables", out  # Debian's nftables depends on libnftables1
    assert out["full"] and out["degraded"], out
    refused = out["refused"]
    assert isinstance(refused, str) and refused.startswith("nftables refused the farm rules: "), out
    assert "No such file or directory" in refused, out  # what the kernel said of the missing chain
    assert out["kept_after_refusal"], out  # all or nothing
    assert out["removed"], out
    measured = out["rss_kib_and_fds"]
    assert isinstance(measured, list), out
    (rss_before, fds_before), (rss_after, fds_after) = measured
    assert fds_after == fds_before, out
    assert rss_after - rss_before <= 1024, out  # 1,000 loads: within 1 MiB


def test_without_libnftables_the_nft_program_loads_the_same_rules(scratch_netns: str) -> None:
    out = load_in(scratch_netns, "program")
    assert out["loader"] == "program", out
    assert out["full"] and out["degraded"] and out["kept_after_refusal"] and out["removed"], out
    assert isinstance(out["refused"], str), out
