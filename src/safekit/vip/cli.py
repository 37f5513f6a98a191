"""`python -m safekit.vip ACTION --address A[/P]`: one provider operation from the command line, for
operators (move a VIP by hand when the daemon is stopped, look at what a node holds) and for tests.

Exit codes: 0 success (for `check`: held), 1 the operation failed, 2 usage error, 3 `check` or
`renew`: not held, 4 `check`: degraded. Output is one line on stdout; an error is one line on stderr.

`owner ADDR [--interface IF]` (also `safekit vip owner`, declared by `add_owner_parser`): who answers
for an address on the LAN, by ARP probe or (IPv6) neighbour solicitation (owner.py). Exit code 0
nobody answered, 1 another host answered, 2 the probe could not be made (or a usage error).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from safekit.vip.owner import (
    DEFAULT_ATTEMPTS,
    DEFAULT_INTERVAL,
    DEFAULT_WAIT,
    OwnerProbe,
    ProbeSetupError,
    check_timing,
    normalise_mac,
    probe_vip_owners,
)
from safekit.vip.provider import (
    DEFAULT_GARP_COUNT,
    DEFAULT_GARP_INTERVAL,
    DEFAULT_PROVIDER,
    DEFAULT_TIMEOUT,
    IPAddress,
    VipError,
    VipProvider,
    VipSpec,
    VipState,
    available_providers,
    create_provider,
    parse_vip_address,
)

EXIT_FAILED = 1
EXIT_USAGE = 2
CHECK_EXIT = {VipState.HELD: 0, VipState.NOT_HELD: 3, VipState.DEGRADED: 4}
OWNER_NOBODY = 0
OWNER_ANSWERED = 1
OWNER_ERROR = 2
MAX_OWNER_REPEAT = 10000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m safekit.vip",
        description="Acquire, release or check a virtual IP on this node (in the current network namespace).",
        epilog="check exits 0 when held, 3 when not held, 4 when degraded; 1 on failure, 2 on usage errors. "
        "'python -m safekit.vip owner ADDR [--interface IF]': who answers for ADDR (see owner --help).",
    )
    parser.add_argument("action", choices=("acquire", "release", "check", "renew"))
    parser.add_argument(
        "--address", required=True, help="the VIP: A, A/24 or A/255.255.255.0 (default prefix: the network's)"
    )
    parser.add_argument(
        "--interface", help="interface to hold it on (default: the one whose network contains it)"
    )
    parser.add_argument(
        "--provider", default=DEFAULT_PROVIDER, help=f"provider name (default {DEFAULT_PROVIDER}; see --list)"
    )
    parser.add_argument(
        "--option",
        "-o",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a provider option (repeatable)",
    )
    parser.add_argument(
        "--garp-count", type=int, default=DEFAULT_GARP_COUNT, help="gratuitous ARPs per acquire"
    )
    parser.add_argument(
        "--garp-interval", type=float, default=DEFAULT_GARP_INTERVAL, help="seconds between gratuitous ARPs"
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds the operation may take"
    )
    return parser


async def _run(action: str, provider: VipProvider, timeout: float) -> int:
    spec = provider.spec
    if action == "acquire":
        changed = await provider.acquire(timeout)
        await provider.settle()  # this process exits next: let the announcement burst finish
        print(f"acquired {spec}" if changed else f"already held {spec} (announced again)")
        return 0
    if action == "release":
        changed = await provider.release(timeout)
        print(f"released {spec}" if changed else f"not held {spec}")
        return 0
    if action == "renew":
        renew = getattr(provider, "renew", None)
        if renew is None:
            raise VipError(f"{spec}: the {spec.provider} provider has no lifetime to renew")
        try:
            held = await renew(timeout)
        finally:  # the socket a daemon's renewals keep: this process exits next
            close = getattr(provider, "close_renew_socket", None)
            if close is not None:
                close()
        print(f"renewed {spec}" if held else f"not held {spec} (renew never adds it)")
        return 0 if held else CHECK_EXIT[VipState.NOT_HELD]
    result = await provider.check(timeout)
    print(result)
    return CHECK_EXIT[result.state]


# ----------------------------------------------------------------------------- owner
def add_owner_parser(commands: Any) -> argparse.ArgumentParser:
    """Declare `owner` in a sub-command group (`safekit vip owner`, `python -m safekit.vip owner`)."""
    text = "who answers for an address on the LAN (ARP probe, IPv6 neighbour solicitation; changes no cache)"
    owner: argparse.ArgumentParser = commands.add_parser(
        "owner",
        help=text,
        description="Send RFC 5227 ARP probes for ADDR (sender IP 0.0.0.0: no host learns anything from "
        "them) and list every other host that claims it: replies, gratuitous ARPs, requests sent from it. "
        "An IPv6 ADDR: neighbour solicitations from this host's link-local address (answered to it "
        "alone), and every advertisement for ADDR or solicitation from it counts. "
        "This node's own MAC addresses are not listed. Acts in the current network namespace; needs root.",
        epilog="Exit code 0: nobody answered; 1: another host answered; 2: the probe could not be made. "
        "A host cut off from this one at layer 2 cannot answer: 'nobody' means nobody reachable from here.",
    )
    owner.add_argument("address", metavar="ADDR", help="the IPv4 or IPv6 address (a VIP) to look for")
    owner.add_argument(
        "--interface", "-i", help="interface to probe on (default: the one whose network contains ADDR)"
    )
    owner.add_argument("--attempts", type=int, default=DEFAULT_ATTEMPTS, help="probes sent (default 3)")
    owner.add_argument(
        "--interval", type=float, default=DEFAULT_INTERVAL, help="seconds between probes (default 0.03)"
    )
    owner.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT,
        help="seconds to listen after the last probe (default 0.05)",
    )
    owner.add_argument(
        "--exclude", action="append", default=[], metavar="MAC", help="a MAC not to count (repeatable)"
    )
    owner.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="probe N times in a row and add timing figures"
    )
    owner.add_argument("--json", action="store_true", help="print the result as JSON")
    return owner


def owner_as_dict(probe: OwnerProbe) -> dict[str, object]:
    return {
        "address": str(probe.address),
        "interface": probe.interface,
        "owners": sorted(probe.owners),
        "probers": sorted(probe.probers),
        "local_mac": probe.local_mac,
        "sent": probe.sent,
        "frames": probe.frames,
        "elapsed": round(probe.elapsed, 6),
        "first_owner_after": None if probe.first_owner_after is None else round(probe.first_owner_after, 6),
        "error": probe.error,
    }


def owner_exit_code(probes: Sequence[OwnerProbe]) -> int:
    """2 when any probe failed, else 1 when any saw another holder, else 0."""
    if not probes or any(p.error is not None for p in probes):
        return OWNER_ERROR
    return OWNER_ANSWERED if any(p.owners for p in probes) else OWNER_NOBODY


def timing_figures(elapsed: Sequence[float]) -> dict[str, float]:
    """min, p50, p99 and max of probe durations in seconds (p99 by nearest rank)."""
    ordered = sorted(elapsed)
    rank = max(0, -(-99 * len(ordered) // 100) - 1)
    return {
        "min": ordered[0],
        "p50": statistics.median(ordered),
        "p99": ordered[rank],
        "max": ordered[-1],
    }


async def _interface_for(address: IPAddress) -> str:
    from safekit.vip.arp import ArpProvider  # noqa: PLC0415 - pyroute2 is loaded only to probe

    return (await ArpProvider(VipSpec(address=address)).interface()).name


async def _probe_owners(args: argparse.Namespace, address: IPAddress) -> list[OwnerProbe]:
    interface = args.interface or await _interface_for(address)
    return [
        await probe_vip_owners(
            interface,
            address,
            attempts=args.attempts,
            interval=args.interval,
            wait=args.wait,
            exclude_macs=set(args.exclude),
        )
        for _ in range(args.repeat)
    ]


def run_owner(args: argparse.Namespace) -> int:
    """`owner`: probe, print one line per probe (or JSON), return the exit code."""
    try:
        address = ipaddress.ip_address(args.address)
    except ValueError:
        print(f"safekit vip owner: {args.address!r} is not an IP address", file=sys.stderr)
        return OWNER_ERROR
    try:
        check_timing(args.attempts, args.interval, args.wait)
        for mac in args.exclude:
            normalise_mac(mac)
        if not 1 <= args.repeat <= MAX_OWNER_REPEAT:
            raise ProbeSetupError(f"--repeat must be 1 to {MAX_OWNER_REPEAT}, not {args.repeat}")
        probes = asyncio.run(_probe_owners(args, address))
    except (ProbeSetupError, VipError) as exc:
        print(f"safekit vip owner: {exc}", file=sys.stderr)
        return OWNER_ERROR
    figures = timing_figures([p.elapsed for p in probes])
    if args.json:
        out: dict[str, object] = {"probes": [owner_as_dict(p) for p in probes]}
        if len(probes) > 1:
            out["elapsed"] = {k: round(v, 6) for k, v in figures.items()}
        print(json.dumps(out, indent=2))
    else:
        for probe in probes:
            print(probe.summary(), file=sys.stderr if probe.error else sys.stdout)
        if len(probes) > 1:
            ms = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in figures.items())
            print(f"{len(probes)} probes: {ms}")
    return owner_exit_code(probes)


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["owner"]:
        parser = argparse.ArgumentParser(prog="python -m safekit.vip")
        add_owner_parser(parser.add_subparsers(dest="action", required=True))
        return run_owner(parser.parse_args(argv))
    if "--list" in argv:
        print("\n".join(available_providers()))
        return 0
    args = _parser().parse_args(argv)
    try:
        options: dict[str, str] = {}
        for item in args.option:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise VipError(f"option {item!r}: give KEY=VALUE")
            options[key] = value
        address, prefixlen = parse_vip_address(args.address)
        spec = VipSpec(
            address=address,
            prefixlen=prefixlen,
            interface=args.interface,
            provider=args.provider,
            options=options,
            garp_count=args.garp_count,
            garp_interval=args.garp_interval,
        )
        provider = create_provider(spec)
    except VipError as exc:
        print(f"safekit.vip: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_run(args.action, provider, args.timeout))
    except VipError as exc:
        print(f"safekit.vip: {exc}", file=sys.stderr)
        return EXIT_FAILED
