"""The in-process pinger against real addresses (needs root for the raw socket).

It runs in a throw-away network namespace holding only loopback, so the probe of an absent
address cannot leave this machine whatever its routes are.
"""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import asyncio
from safekit.checkers.icmp import Pinger

async def probe():
    pinger = Pinger()
    try:
        up = await pinger.ping("127.0.0.1", timeout=1)
        down = await pinger.ping("198.18.255.254", timeout=0.3)
        anyone = await pinger.ping_any(["198.18.255.254", "127.0.0.1"], timeout=1)
        return up, down, anyone
    finally:
        pinger.close()

print(asyncio.run(probe()))
"""


def test_loopback_answers_and_an_unreachable_address_does_not(root_required: None) -> None:
    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1"', sys.executable, PROBE],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(True, False, True)"
