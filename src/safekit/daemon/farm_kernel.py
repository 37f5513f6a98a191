"""What a farm module asks of the node's kernel besides the VIP: its nftables rules and sysctls.

The rules themselves are built, pure, by `safekit.farm.nft`; this module loads them (`nft -j -f -`,
one transaction per change, so no packet ever sees half a ruleset), lists them, and writes the
sysctls the rules rely on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

from safekit.farm.nft import Json

NFT = "nft"

SYSCTLS: dict[str, str] = {
    # Never announce the VIP with a real MAC in an ARP request this node sends.
    "net/ipv4/conf/all/arp_announce": "2",
    # A mid-stream TCP packet of a connection this node does not know stays INVALID (dropped by the
    # rules), instead of being picked up as a connection and answered with a reset.
    "net/netfilter/nf_conntrack_tcp_loose": "0",
}


class NftError(Exception):
    """nft refused the rules or could not run; the message carries what nft said."""


async def apply(payload: Json, timeout: float = 10.0) -> None:
    """Load `payload` with `nft -j -f -` (one transaction: all of it or nothing)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            NFT,
            "-j",
            "-f",
            "-",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise NftError(f"cannot run {NFT}: {exc.strerror} (install the nftables package)") from exc
    try:
        _, err = await asyncio.wait_for(proc.communicate(json.dumps(payload).encode()), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise NftError(f"{NFT} did not answer within {timeout:g} s") from None
    if proc.returncode != 0:
        raise NftError(f"{NFT} refused the farm rules: {err.decode(errors='replace').strip()[:500]}")


async def list_table(table: str, family: str = "ip") -> Json:
    """`nft -j list table FAMILY TABLE` (what is loaded now), for `state -v` and tests."""
    proc = await asyncio.create_subprocess_exec(
        NFT,
        "-j",
        "list",
        "table",
        family,
        table,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        return {}
    data: Json = json.loads(out)
    return data


def set_sysctls(interfaces: Sequence[str], root: Path = Path("/proc/sys")) -> list[str]:
    """Write the farm's sysctls in this network namespace; returns the ones that failed."""
    failed: list[str] = []
    wanted = dict(SYSCTLS)
    for interface in interfaces:
        wanted[f"net/ipv4/conf/{interface}/arp_announce"] = "2"
    for key, value in wanted.items():
        try:
            (root / key).write_text(value)
        except OSError:
            failed.append(key.replace("/", "."))
    return failed
