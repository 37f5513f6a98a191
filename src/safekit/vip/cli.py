"""`python -m safekit.vip ACTION --address A[/P]`: one provider operation from the command line, for
operators (move a VIP by hand when the daemon is stopped, look at what a node holds) and for tests.

Exit codes: 0 success (for `check`: held), 1 the operation failed, 2 usage error, 3 `check`: not
held, 4 `check`: degraded. Output is one line on stdout; an error is one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from safekit.vip.provider import (
    DEFAULT_GARP_COUNT,
    DEFAULT_GARP_INTERVAL,
    DEFAULT_PROVIDER,
    DEFAULT_TIMEOUT,
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m safekit.vip",
        description="Acquire, release or check a virtual IP on this node (in the current network namespace).",
        epilog="check exits 0 when held, 3 when not held, 4 when degraded; 1 on failure, 2 on usage errors.",
    )
    parser.add_argument("action", choices=("acquire", "release", "check"))
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
    result = await provider.check(timeout)
    print(result)
    return CHECK_EXIT[result.state]


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
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
