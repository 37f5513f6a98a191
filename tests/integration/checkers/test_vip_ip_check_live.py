"""The `<ip>` checker a `<virtual_addr check="on">` adds, probing a real kernel: a veth interface in
a throw-away network namespace holds the VIP, then loses it, then gets it back."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import asyncio, subprocess
from safekit.checkers.icmp import Pinger
from safekit.config import parse_module
from safekit.daemon.checker_tasks import checker_specs

CONFIG = '''<safe><service mode="mirror"><heart><heartbeat name="default"/></heart>
<vip><interface_list><interface><real_interface>
  <virtual_addr addr="198.18.77.10" where="one_side_alias" check="on"/>
  <virtual_addr addr="198.18.77.11" where="one_side_alias" check="off"/>
</real_interface></interface></interface_list></vip></service></safe>'''

FARM = '''<safe><service mode="farm"><farm><lan name="default"/></farm>
<vip><interface_list><interface><virtual_interface>
  <virtual_addr addr="fd00:5afe:0:77:0::10"/>
</virtual_interface></interface></interface_list></vip></service></safe>'''

def ip(*args):
    subprocess.run(["ip", *args], check=True)

async def main():
    config, _ = parse_module(CONFIG, env={})
    [spec] = checker_specs(config.check, Pinger())
    ip("link", "add", "vip0", "type", "veth", "peer", "name", "vip1")
    ip("link", "set", "vip0", "up")
    seen = [spec.resource, await spec.probe()]
    ip("addr", "add", "198.18.77.10/24", "dev", "vip0")
    seen.append(await spec.probe())
    ip("addr", "del", "198.18.77.10/24", "dev", "vip0")
    seen.append(await spec.probe())
    ip("addr", "add", "198.18.77.10/32", "dev", "vip0")
    seen.append(await spec.probe())
    # a farm's IPv6 VIP, added as the farm adds it (/128 nodad)
    farm, _ = parse_module(FARM, env={})
    [spec6] = checker_specs(farm.check, Pinger())
    seen += [spec6.resource, await spec6.probe()]
    ip("-6", "addr", "add", "fd00:5afe:0:77::10/128", "dev", "vip0", "nodad")
    seen.append(await spec6.probe())
    print(seen)

asyncio.run(main())
"""


def test_vip_checker_follows_the_address_on_a_real_interface(root_required: None) -> None:
    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1"', sys.executable, PROBE],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # absent, present, removed (the module would stopstart), back; the IPv6 one absent, present
    assert result.stdout.strip() == (
        "['ip.198.18.77.10', False, True, False, True, 'ip.fd00:5afe:0:77::10', False, True]"
    )
