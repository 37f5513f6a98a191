"""The VIP owner probe on real lab hosts: a node sees who else holds an address on its LAN (and
stops seeing it once it is gone), the probe teaches no host a neighbour entry, a client sees two
holders at once, full layer-2 isolation hides the holder (why the arbitrating witness exists), and
the probe stays well under the 0.2 s a takeover may spend on it.

And the kernel as a safety net: an arp VIP with a lifetime stays while it is renewed, and the
kernel deletes it by itself soon after renewals stop (a dead safekitd's VIP does not linger)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from safekit.lab import Lab
from safekit.lab.run_names import run_lab_name

LAB = run_lab_name("vipown")
NOBODY, ANSWERED = 0, 1
# A VIP with a lifetime, renewed every RENEW s for HOLD s (it must stay all along), then left alone:
# prints how long after the last renewal the kernel deleted it, once per round.
LIFETIME = """
import asyncio, ipaddress, json, sys, time
from safekit.vip.provider import VipSpec
from safekit.vip.arp import ArpProvider
address, lifetime, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
RENEW, HOLD = 0.5, 2.5
provider = ArpProvider(VipSpec(ipaddress.IPv4Address(address), garp_count=0,
                               options={"lifetime": str(lifetime)}))
async def present():
    return (await provider.check(1)).held
async def main():
    out = []
    for r in range(rounds):
        await provider.acquire(5)
        start = time.monotonic()
        while time.monotonic() - start < HOLD:
            assert await provider.renew(), "renewed VIP vanished"
            last = time.monotonic()
            while time.monotonic() - last < RENEW:
                assert await present(), f"renewed VIP expired {time.monotonic() - last:.2f} s after a renewal"
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.173 * r % 1)  # vary the phase against the kernel's lifetime timer
        assert await provider.renew()
        last = time.monotonic()
        while await present():
            await asyncio.sleep(0.005)
            assert time.monotonic() - last < lifetime + 10, "never expired"
        gone = time.monotonic() - last
        again = await provider.renew()
        out.append({"gone": gone, "renew_after_expiry": again, "present_after": await present()})
    print(json.dumps(out))
asyncio.run(main())
"""
# A stand-in for safekitd on the primary: acquires the VIP with a lifetime and renews it every second.
RENEWER = """
import asyncio, ipaddress, sys
from safekit.vip.provider import VipSpec
from safekit.vip.arp import ArpProvider
provider = ArpProvider(VipSpec(ipaddress.IPv4Address(sys.argv[1]), options={"lifetime": sys.argv[2]}))
async def main():
    await provider.acquire(5)
    print("held", flush=True)
    while True:
        await asyncio.sleep(1)
        await provider.renew()
asyncio.run(main())
"""
# What the secondary would see: owner probes back to back for a while, one JSON line each.
WATCHER = """
import asyncio, ipaddress, json, sys, time
from safekit.vip.owner import probe_vip_owners
async def main():
    end = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        probe = await probe_vip_owners("eth0", ipaddress.IPv4Address(sys.argv[1]))
        line = {"at": time.monotonic(), "owners": sorted(probe.owners), "error": probe.error}
        print(json.dumps(line), flush=True)
asyncio.run(main())
"""
# The arp provider's own view, as the daemon would ask it before a takeover.
OTHER_OWNERS = """
import asyncio, ipaddress, sys
from safekit.vip.provider import VipSpec
from safekit.vip.arp import ArpProvider
view = asyncio.run(ArpProvider(VipSpec(ipaddress.IPv4Address(sys.argv[1]))).other_owners(1.0))
print(view.known, ",".join(sorted(view.owners)), view.detail, sep="|")
"""


@pytest.fixture(scope="module")
def olab(root_required: None) -> Iterator[Lab]:
    lab = Lab(LAB)
    lab.down()  # leftovers of an interrupted earlier run
    lab.up(nodes=2, client=True)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def vip(olab: Lab) -> Iterator[str]:
    """A free VIP of the lab, removed from every host after the test whatever happened."""
    address = str(olab.plan().vips[0])
    remove_everywhere(olab, address)
    try:
        yield address
    finally:
        olab.heal()
        remove_everywhere(olab, address)


def prefix(lab: Lab) -> int:
    return lab.plan().lans[0].network.prefixlen


def remove_everywhere(lab: Lab, address: str) -> None:
    for host in ("node1", "node2", "client"):
        lab.exec(host, ["ip", "addr", "del", f"{address}/{prefix(lab)}", "dev", "eth0"])  # absent is fine


def hold(lab: Lab, host: str, address: str) -> None:
    lab.exec(host, ["ip", "addr", "add", f"{address}/{prefix(lab)}", "dev", "eth0"], check=True)


def mac_of(lab: Lab, host: str) -> str:
    plan = lab.plan()
    return plan.host(host).mac(plan.lans[0])


def owner(lab: Lab, host: str, address: str, *extra: str) -> tuple[int, dict[str, Any]]:
    """`safekit vip owner` on a host: (exit code, its JSON)."""
    argv = [sys.executable, "-m", "safekit.vip", "owner", address, "--json", *extra]
    result = lab.exec(host, argv, timeout=120)
    assert result.returncode in (NOBODY, ANSWERED), result.stderr
    return result.returncode, json.loads(result.stdout)


def owners_seen(lab: Lab, host: str, address: str) -> tuple[int, set[str]]:
    code, out = owner(lab, host, address)
    ((probe,),) = [out["probes"]]
    assert probe["error"] is None
    return code, set(probe["owners"])


def neighbours(lab: Lab, host: str) -> str:
    return lab.exec(host, ["ip", "-4", "neigh", "show", "dev", "eth0"], check=True).stdout


def test_a_node_sees_the_holder_and_then_nobody(olab: Lab, vip: str) -> None:
    assert owners_seen(olab, "node2", vip) == (NOBODY, set())
    hold(olab, "node1", vip)
    assert owners_seen(olab, "node2", vip) == (ANSWERED, {mac_of(olab, "node1")})
    remove_everywhere(olab, vip)
    assert owners_seen(olab, "node2", vip) == (NOBODY, set())


def test_the_holder_does_not_see_itself(olab: Lab, vip: str) -> None:
    hold(olab, "node1", vip)
    assert owners_seen(olab, "node1", vip) == (NOBODY, set())


def test_a_client_sees_two_holders_at_once(olab: Lab, vip: str) -> None:
    # What the chaos suite must detect: two nodes answering for the VIP, seen from the client.
    hold(olab, "node1", vip)
    hold(olab, "node2", vip)
    assert owners_seen(olab, "client", vip) == (ANSWERED, {mac_of(olab, "node1"), mac_of(olab, "node2")})


def test_probing_teaches_no_host_a_neighbour_entry(olab: Lab, vip: str) -> None:
    hold(olab, "node1", vip)
    for host in ("node1", "client"):
        olab.exec(host, ["ip", "-4", "neigh", "flush", "dev", "eth0"], check=True)
    node2 = str(olab.plan().host("node2").address)
    assert owners_seen(olab, "node2", vip)[0] == ANSWERED
    for host in ("node1", "client"):
        table = neighbours(olab, host)
        assert node2 not in table.split(), f"{host} learnt node2 from a probe:\n{table}"
        assert "0.0.0.0" not in table, f"{host} learnt the probe's sender IP:\n{table}"


def test_the_arp_provider_reports_the_other_holder(olab: Lab, vip: str) -> None:
    def other_owners(host: str) -> list[str]:
        result = olab.exec(host, [sys.executable, "-c", OTHER_OWNERS, vip], check=True, timeout=60)
        return result.stdout.strip().split("|")

    known, owners, detail = other_owners("node2")
    assert (known, owners) == ("True", ""), detail
    hold(olab, "node1", vip)
    known, owners, detail = other_owners("node2")
    assert (known, owners) == ("True", mac_of(olab, "node1")), detail
    assert "answered by" in detail
    # The holder itself: its own MAC is not "another holder".
    known, owners, detail = other_owners("node1")
    assert (known, owners) == ("True", ""), detail


def test_full_isolation_hides_the_holder_from_the_node_but_not_from_the_client(olab: Lab, vip: str) -> None:
    """The limit of the probe: with node1 and node2 cut from each other at layer 2 (both still reach
    the client), node2 sees nobody although node1 still serves the client. "Nobody answered" only
    means nobody reachable from here: an ARP probe alone cannot make a takeover safe in that
    partition; the arbitrating witness (a lease) is what decides there."""
    hold(olab, "node1", vip)
    olab.isolate("node1", "node2")
    assert owners_seen(olab, "node2", vip) == (NOBODY, set())
    assert owners_seen(olab, "client", vip) == (ANSWERED, {mac_of(olab, "node1")})
    olab.heal()
    assert owners_seen(olab, "node2", vip) == (ANSWERED, {mac_of(olab, "node1")})


def test_a_cut_cable_is_an_error_not_nobody(olab: Lab, vip: str) -> None:
    olab.cut("node2")
    try:
        argv = [sys.executable, "-m", "safekit.vip", "owner", vip, "--interface", "eth0"]
        result = olab.exec("node2", argv, timeout=60)
    finally:
        olab.heal("node2")
    # A cut veth leaves the interface down (no carrier): the probe fails, it does not say "nobody".
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "probe failed" in result.stderr


@pytest.mark.parametrize("held", [False, True], ids=["nobody", "holder"])
def test_probe_duration_stays_under_the_takeover_budget(olab: Lab, vip: str, held: bool) -> None:
    """50 probes in a row, timed inside the probing process (what a takeover would wait)."""
    if held:
        hold(olab, "node1", vip)
    _, out = owner(olab, "node2", vip, "--repeat", "50")
    probes = out["probes"]
    assert len(probes) == 50
    assert all(p["error"] is None for p in probes)
    # Every probe of the 50 agrees: a holder is never missed, nobody is never invented.
    assert all(bool(p["owners"]) == held for p in probes)
    elapsed = sorted(p["elapsed"] for p in probes)
    p50, p99 = statistics.median(elapsed), elapsed[-1 if len(elapsed) < 100 else 98]
    first = [p["first_owner_after"] for p in probes if p["first_owner_after"] is not None]
    print(
        f"\nowner probe ({'holder' if held else 'nobody'}), 50 probes: p50 {p50 * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {elapsed[-1] * 1000:.1f} ms"
        + (
            f"; first answer p50 {statistics.median(first) * 1000:.2f} ms, max {max(first) * 1000:.2f} ms"
            if first
            else ""
        )
    )
    # 0.11 s planned; the budget for a probe on the takeover path is 0.2 s. The p99 bound is
    # loose for a loaded machine; the median shows the plan is kept.
    assert p50 < 0.15
    assert p99 < 0.3


def test_a_vip_with_a_lifetime_lives_while_renewed_and_expires_by_itself(olab: Lab, vip: str) -> None:
    lifetime, rounds = 2, 8
    result = olab.exec(
        "node1", [sys.executable, "-c", LIFETIME, vip, str(lifetime), str(rounds)], timeout=300
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    gone = sorted(r["gone"] for r in out)
    print(
        f"\nvalid_lft {lifetime}: deleted {', '.join(f'{g:.2f}' for g in gone)} s after the last renewal "
        f"(p50 {statistics.median(gone):.2f} s, max {gone[-1]:.2f} s)"
    )
    # Never early (the kernel may round 20 ms down), and late by at most its timer's rounding: the
    # IPv4 lifetime worker is scheduled with round_jiffies_up (to the next whole second) and, when
    # the next expiry is close, ADDRCONF_TIMER_FUZZ_MAX (0.25 s) later; a busy machine adds to it
    # (3.62 s seen once for a 2 s lifetime on a loaded machine).
    assert gone[0] >= lifetime - 0.1
    assert gone[-1] < lifetime + 2.0
    # renew never brings back an expired VIP: a frozen daemon that wakes up does not hold it again.
    assert all(r["renew_after_expiry"] is False and r["present_after"] is False for r in out)


def test_a_dead_daemons_vip_is_seen_then_expires_by_itself(olab: Lab, vip: str) -> None:
    """Issue 13's "safekitd killed -9 on the primary": its VIP stays on the interface. The owner
    probe of the secondary sees it (so a takeover would wait, not make two holders), and with a
    lifetime the kernel removes it by itself: the probe then sees nobody, with no one cleaning up."""
    lifetime = 3
    daemon = subprocess.Popen(
        olab.exec_argv("node1", [sys.executable, "-c", RENEWER, vip, str(lifetime)]),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert daemon.stdout is not None
        assert daemon.stdout.readline().strip() == "held"
        time.sleep(2.5)  # a few renewals: the VIP outlives its first lifetime only by being renewed
        assert owners_seen(olab, "node2", vip) == (ANSWERED, {mac_of(olab, "node1")})
        watcher = subprocess.Popen(
            olab.exec_argv("node2", [sys.executable, "-c", WATCHER, vip, str(lifetime + 4)]),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        time.sleep(1.0)  # the watcher is probing
        daemon.kill()  # only the process this test started, by its own handle
        killed = time.monotonic()
        out, _ = watcher.communicate(timeout=60)
    finally:
        daemon.kill()
        daemon.wait(timeout=10)
    probes = [json.loads(line) for line in out.splitlines()]
    assert probes and all(p["error"] is None for p in probes)
    after = [p for p in probes if p["at"] > killed]
    assert after[0]["owners"] == [mac_of(olab, "node1")], "the dead daemon's VIP should still answer at first"
    gone = next(p["at"] - killed for p in after if not p["owners"])
    # Every probe after that agrees: it does not come back.
    assert all(not p["owners"] for p in after if p["at"] - killed >= gone)
    print(f"\nlifetime {lifetime}: the killed holder's VIP stopped answering {gone:.2f} s after the kill")
    # The last renewal was at most 1 s before the kill: gone between lifetime - 1 and lifetime + 0.4 s,
    # plus one probe (0.11 s); loose for a loaded machine.
    assert lifetime - 1.2 <= gone <= lifetime + 1.5
