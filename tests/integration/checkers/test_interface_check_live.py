"""The `<intf>` checker an `<interface check="on">` adds, probing a real kernel: a veth pair in a
throw-away network namespace carries the VIP's network; its link is set down (and its peer down: no
carrier), then up again. The named interface and the unnamed one (found from the VIP's network)
follow it; with no interface on the VIP's network the checker reports down and says why once."""

from __future__ import annotations

import ast
import subprocess
import sys
import time

VETH = """
import asyncio, subprocess

def ip(*args):
    subprocess.run(["ip", *args], check=True)

async def veth_with_carrier(probe, address=None):
    # vif0 (with `address`) and its peer vif1, both up, once `probe` sees the carrier
    ip("link", "add", "vif0", "type", "veth", "peer", "name", "vif1")
    if address:
        ip("addr", "add", address, "dev", "vif0")
    ip("link", "set", "vif1", "up")
    ip("link", "set", "vif0", "up")
    for _ in range(100):  # carrier comes a moment after both ends are up
        if await probe():
            return
        await asyncio.sleep(0.02)
"""
"""What both programs below start with: the throw-away veth pair."""

PROBE = (
    VETH
    + """
import asyncio, logging, subprocess
from safekit.checkers.icmp import Pinger
from safekit.config import parse_module
from safekit.daemon.checker_tasks import checker_specs, run_checker

def config(interface):
    return f'''<safe><service mode="mirror"><heart><heartbeat name="default"/></heart>
<vip><interface_list>{interface}<real_interface>
  <virtual_addr addr="198.18.78.10" where="one_side_alias"/>
</real_interface></interface></interface_list></vip></service></safe>'''

def spec(interface):
    parsed, _ = parse_module(config(interface), env={})
    [found] = [s for s in checker_specs(parsed.check, Pinger()) if s.resource.startswith("intf.")]
    return found

async def main():
    named, unnamed = spec('<interface name="vif0" check="on">'), spec('<interface check="on">')
    seen = [named.resource, unnamed.resource]
    # no interface on 198.18.78.0/24 yet: the unnamed probe raises, the checker reports down
    reports, lines = [], []
    class Lines(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())
    log = logging.getLogger("probe")
    log.addHandler(Lines())
    task = asyncio.create_task(run_checker(unnamed, lambda _, v: reports.append(v), log))
    while len(reports) < 1:
        await asyncio.sleep(0.01)
    task.cancel()
    seen += [reports[0], len(lines), "no interface has a network that contains 198.18.78.10" in lines[0]]
    await veth_with_carrier(named.probe, "198.18.78.1/24")
    seen += [await named.probe(), await unnamed.probe()]
    ip("link", "set", "vif0", "down")        # the link carrying the VIP is down
    seen += [await named.probe(), await unnamed.probe()]
    ip("link", "set", "vif0", "up")
    ip("link", "set", "vif1", "down")        # up, but no carrier (the cable, the switch port)
    seen += [await named.probe(), await unnamed.probe()]
    ip("link", "set", "vif1", "up")
    for _ in range(100):
        if await named.probe():
            break
        await asyncio.sleep(0.02)
    seen += [await named.probe(), await unnamed.probe()]
    print(seen)

asyncio.run(main())
"""
)


def in_own_namespace(program: str) -> subprocess.CompletedProcess[str]:
    """`program` run by this Python in a network namespace of its own, with its own sysfs (the
    named probe reads /sys/class/net, which shows the mounting namespace's interfaces)."""
    return subprocess.run(
        [
            "unshare",
            "--net",
            "--mount",
            "sh",
            "-c",
            'mount -t sysfs sysfs /sys && ip link set lo up && exec "$0" -c "$1"',
            sys.executable,
            program,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_interface_checker_follows_the_link_on_a_real_interface(root_required: None) -> None:
    began = time.monotonic()
    result = in_own_namespace(PROBE)
    assert result.returncode == 0, result.stderr
    # names; no interface yet: down, said once; up; link down; no carrier; up again
    assert result.stdout.strip() == (
        "['intf.vif0', 'intf.198.18.78.10', 'down', 1, True, "
        "True, True, False, False, False, False, True, True]"
    )
    assert time.monotonic() - began < 30


WOKEN = (
    VETH
    + """
import asyncio, subprocess, time
from safekit.checkers.icmp import Pinger
from safekit.checkers.link_events import LinkEvents
from safekit.config import parse_module
from safekit.daemon.checker_tasks import checker_specs, run_checker

CONFIG = '''<safe><service mode="mirror"><heart><heartbeat name="default"/></heart>
<vip><interface_list><interface name="vif0" check="on"><real_interface>
  <virtual_addr addr="198.18.78.10" where="one_side_alias"/>
</real_interface></interface></interface_list></vip></service></safe>'''

async def main():
    parsed, _ = parse_module(CONFIG, env={})
    [spec] = [s for s in checker_specs(parsed.check, Pinger()) if s.resource.startswith("intf.")]
    await veth_with_carrier(spec.probe)
    reports = []
    report = lambda _, v: reports.append((time.monotonic(), v))
    task = asyncio.create_task(run_checker(spec, report, None, LinkEvents()))
    while not reports:
        await asyncio.sleep(0.01)
    seen = [spec.interval, reports[-1][1]]
    for change, expected in (("down", "down"), ("up", "up")):
        began = time.monotonic()
        ip("link", "set", "vif1", change)  # the peer's end: this end loses (regains) its carrier
        while reports[-1][1] != expected and time.monotonic() - began < 5:
            await asyncio.sleep(0.005)
        seen += [reports[-1][1], round(reports[-1][0] - began, 3)]
    task.cancel()
    print(seen)

asyncio.run(main())
"""
)


def test_a_pulled_cable_is_reported_at_once_not_at_the_next_poll(root_required: None) -> None:
    """The checker of an `<interface check="on">` at SafeKit's 10 s interval, woken by the kernel's
        link notification (ADR 0079): a carrier lost, then back, is reported in well under the poll's 10 s
    (tens of milliseconds on a quiet machine; the bound leaves room for a loaded one)."""
    result = in_own_namespace(WOKEN)
    assert result.returncode == 0, result.stderr
    interval, first, down, down_after, up, up_after = ast.literal_eval(result.stdout.strip())
    assert (interval, first, down, up) == (10.0, "up", "down", "up")
    assert down_after < 2.0, f"carrier loss reported {down_after} s after it happened"
    assert up_after < 2.0, f"carrier back reported {up_after} s after it happened"
