"""The fault-injection suite's short run (docs/chaos.md): 16 rounds of the nemesis, one of each of
16 fault kinds, on a lab of its own, with both workloads (appends through the append service,
PostgreSQL commits); every invariant must hold in every round.

The seed is fixed (SEED; SAFEKIT_CHAOS_SEED chooses another) so that `make test` plays the same
rounds every time; a failure is replayed with `bench/chaos.py --rounds 15 --seed SEED --kinds K`
(K: the kinds of KINDS, comma-separated). The report and the nodes' logs are kept in
/var/tmp/safekit-chaos-logs/chaos.
"""

from __future__ import annotations

import json
import os

import pytest

from safekit.chaos.harness import log_dir, run_suite
from safekit.chaos.nemesis import FaultKind

# Dealt from these kinds only, each once (the seed chooses the order and the holds), so that a
# kind added to the suite does not change what the short run plays. Replication process kills are
# in tests/integration/rfs/test_rfs_recovery.py; every kind, freeze_rfs_secondary too, in `make chaos`.
KINDS = (
    FaultKind.PARTITION_WITNESS_BOTH,
    FaultKind.PARTITION_WITNESS_PRIMARY_SIDE,
    FaultKind.PARTITION_WITNESS_SECONDARY_SIDE,
    FaultKind.PARTITION_WITNESS_NEITHER,
    FaultKind.CUT_PRIMARY,
    FaultKind.POWER_CUT_PRIMARY,
    FaultKind.CLEAN_RESTART_PRIMARY,
    FaultKind.SAFEKITD_KILL_PRIMARY,
    FaultKind.DISK_FULL_SECONDARY,
    FaultKind.STOPSTART_PRIMARY,
    FaultKind.FREEZE_PRIMARY,  # a paused VM
    FaultKind.FREEZE_SAFEKITD_PRIMARY,  # a hung daemon
    FaultKind.FREEZE_SECONDARY,
    FaultKind.ONE_WAY_FROM_PRIMARY,  # a half-broken link: the secondary hears nothing, the primary does
    FaultKind.LOSSY_LINKS,
    FaultKind.LAN_CUT,  # the primary's first LAN: its clients' and the replication stream's (ADR 0079)
)
ROUNDS = len(KINDS)
SEED = 8132
"""The three freezes held 6.5-7.6 s (past the VIP's lifetime, so the takeover is played), the
one-way cut 7.4 s (past the chaos module's 5 s `sendtimeout`), the lossy links 5.4 s at 55 %, the
LAN cut on the primary's first LAN 5.4 s."""
ONE_WAY_WAIT_BOUND = 4.0
"""Seconds a write may wait during a one-way cut from the primary. Since ADR 0076 the primary
loses a peer that no longer hears it after the heartbeat timeout and a pulse (1.7 s) and goes on
alone: 1.6 s measured on a quiet machine. Before, it held every write for `sendtimeout` (5 s here,
30 s by default)."""


@pytest.mark.timeout(900)
def test_sixteen_rounds_of_faults_lose_nothing_and_never_show_two_vip_owners(root_required: None) -> None:
    seed = int(os.environ.get("SAFEKIT_CHAOS_SEED") or SEED)
    report = run_suite(seed=seed, rounds=ROUNDS, kinds=KINDS, lab_name="chaos", postgres=True)
    logs = log_dir("chaos")
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / "chaos-short.json"
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    failed = [
        f"round {r['round']} {r['kind']}: " + "; ".join(r["violations"])
        for r in report["round_results"]
        if r["violations"]
    ]
    detail = "\n".join(failed) + f"\n(seed {seed}; report {path}; node logs in {logs})"
    assert not report["aborted"], report["aborted"] + detail
    assert report["rounds"] == ROUNDS, detail
    assert sorted(r["kind"] for r in report["round_results"]) == sorted(KINDS), detail
    totals = report["totals"]
    assert totals["acknowledged"] > 0, "the workload was never acknowledged: nothing was tested"
    assert totals["lost"] == 0, detail
    assert totals["pg_acknowledged"] > 0, "no PostgreSQL commit was acknowledged: nothing was tested" + detail
    assert totals["pg_lost"] == 0, detail
    assert totals["two_owner_s"] == 0, detail
    assert totals["rounds_not_recovered"] == [], detail
    assert failed == [], detail
    one_way = [r for r in report["round_results"] if r["kind"] == FaultKind.ONE_WAY_FROM_PRIMARY]
    for r in one_way:
        waits = (r["longest_unavailability_s"], r["pg_longest_unavailability_s"])
        assert max(waits) < ONE_WAY_WAIT_BOUND, (
            f"round {r['round']}: writes waited {waits} s (records, commits) during a one-way cut from "
            f"the primary: it did not lose the peer that no longer heard it (ADR 0076)" + detail
        )
    for r in report["round_results"]:
        if r["kind"] != FaultKind.LAN_CUT:
            continue
        assert (r["fault"]["target"], r["fault"]["lan"]) == ("primary", "default"), r["fault"]
        roles = {node: state for node, (state, _) in r["roles_after"].items()}
        assert roles[r["secondary_before"]] == "PRIM", (
            f"round {r['round']}: the primary lost its clients' LAN, which carries the replication "
            f"stream, and the secondary did not take over ({roles}): the stopping primary degraded "
            "and made the secondary's copy stale instead of failing its held writes (ADR 0079)" + detail
        )
