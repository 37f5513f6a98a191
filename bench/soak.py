"""The soak (issue 13, item 7; docs/chaos.md): `make soak`, not in CI.

Writes through the VIP for MINUTES minutes (30 by default) with a swap every minute, on a lab of
2 nodes with chaosapp (examples/modules/chaosapp), while safekitd's and the replication processes'
resident memory and open files are sampled every 10 s. Each series gets a least-squares slope
after a warm-up, and a verdict: flat when the growth it projects over an hour stays under the
limits of safekit.chaos.soak. Also checked: no acknowledged record lost, every swap recovered.

Writes bench/results/soak.json; exits 1 when a series is not flat or a record was lost.
Usage: bench/soak.py [--minutes 30] [--swap-every 60] [--witness ping|arbitrator|none]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result
from safekit.chaos.harness import WITNESS_MODES, default_witness_mode
from safekit.chaos.soak import soak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to write (30)")
    parser.add_argument("--swap-every", type=float, default=60.0, help="seconds between swaps (60)")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds between samples (10)")
    parser.add_argument("--witness", choices=WITNESS_MODES, default=default_witness_mode())
    parser.add_argument("--lab", default="chaos", help="lab name (chaos)")
    parser.add_argument("--output", default="soak", help="result name under bench/results (soak)")
    args = parser.parse_args()
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    result = soak(
        minutes=args.minutes,
        swap_every=args.swap_every,
        sample_every=args.sample_every,
        witness_mode=args.witness,
        lab_name=args.lab,
    )
    path = write_result(args.output, result)
    slopes = ", ".join(
        f"{name}: {v['rss_slope_kib_per_hour']:+.0f} KiB/h, {v['fds_slope_per_hour']:+.1f} fds/h"
        for name, v in result["verdicts"].items()
    )
    print(
        f"{path}: {result['minutes']:g} min, {result['swaps']} swaps, lost {result['lost']} of "
        f"{result['acknowledged']}; {'flat' if result['flat'] else 'NOT FLAT'}: {slopes}"
    )
    return 0 if result["flat"] and result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
