"""The fault-injection suite's long run (issue 13, item 5; docs/chaos.md): `make chaos`.

Builds a lab (2 nodes on 2 LANs, witness, client), deploys examples/modules/chaosapp (its append
service and PostgreSQL), and plays ROUNDS rounds of the nemesis from SEED: each round injects one
fault, heals it and checks, from the client's side, that at most one node answered for the VIP at
any instant, that every acknowledged record and every acknowledged PostgreSQL commit is on the
primary, that the cluster came back to PRIM/SECOND in sync within the bound and that replication
processes stopped within 5 s of a role change.

Writes bench/results/chaos.json; exits 1 when a round broke an invariant (the report says which).
Usage: bench/chaos.py [--rounds 100] [--seed N] [--witness ping|arbitrator|none] [--kinds a,b]
                      [--no-postgres]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result
from safekit.chaos.harness import WITNESS_MODES, default_witness_mode, run_suite
from safekit.chaos.nemesis import parse_kinds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, help="the nemesis's seed (default: a random one, recorded)")
    parser.add_argument(
        "--witness",
        choices=WITNESS_MODES,
        default=default_witness_mode(),
        help="split-brain witness of the module (default: the arbitrator when this checkout has it)",
    )
    parser.add_argument("--kinds", help="comma-separated fault kinds (default: all)")
    parser.add_argument("--bound", type=float, default=60.0, help="recovery bound in seconds (60)")
    parser.add_argument(
        "--no-postgres",
        dest="postgres",
        action="store_false",
        help="the append workload only: no PostgreSQL in the module, no commits from the client",
    )
    parser.add_argument("--lab", default="chaos", help="lab name (chaos)")
    parser.add_argument("--output", default="chaos", help="result name under bench/results (chaos)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    try:
        kinds = parse_kinds(args.kinds) if args.kinds else None
    except ValueError as exc:
        parser.error(str(exc))
    result = run_suite(
        seed=seed,
        rounds=args.rounds,
        kinds=kinds,
        witness_mode=args.witness,
        lab_name=args.lab,
        bound=args.bound,
        postgres=args.postgres,
    )
    path = write_result(args.output, result)
    totals = result["totals"]
    print(
        f"{path}: seed {seed}, {result['rounds']} rounds, lost {totals['lost']} of "
        f"{totals['acknowledged']} acknowledged records"
        + (
            f", lost {totals['pg_lost']} of {totals['pg_acknowledged']} acknowledged PostgreSQL commits"
            if result["postgres"]
            else ""
        )
        + f", {totals['two_owner_s']} s with two VIP owners, "
        f"not recovered: {totals['rounds_not_recovered']}, failed rounds: {totals['rounds_failed']}"
        + (f", aborted: {result['aborted']}" if result["aborted"] else "")
    )
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
