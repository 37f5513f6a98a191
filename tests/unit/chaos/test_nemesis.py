"""The nemesis's schedule: reproducible from the seed, every kind dealt before any repeats."""

from __future__ import annotations

import pytest

from safekit.chaos.nemesis import ALL_KINDS, CUT_HOLD, LOSS, FaultKind, parse_kinds, schedule


def test_the_same_seed_gives_the_same_rounds_and_another_seed_other_rounds() -> None:
    assert schedule(42, 30) == schedule(42, 30)
    assert schedule(42, 30) != schedule(43, 30)


def test_a_short_run_covers_as_many_kinds_as_it_has_rounds() -> None:
    faults = schedule(7, 10)
    assert len({f.kind for f in faults}) == 10
    assert [f.round for f in faults] == list(range(1, 11))


def test_a_long_run_deals_every_kind_evenly() -> None:
    faults = schedule(3, 100)
    counts = {kind: sum(1 for f in faults if f.kind is kind) for kind in ALL_KINDS}
    assert min(counts.values()) >= 100 // len(ALL_KINDS)
    assert max(counts.values()) <= 100 // len(ALL_KINDS) + 1


def test_holds_and_targets_stay_in_their_ranges() -> None:
    for fault in schedule(5, 60, hold=(3.0, 8.0), settle=(1.0, 3.0)):
        if fault.kind is FaultKind.CUT_PRIMARY:
            assert CUT_HOLD[0] <= fault.hold <= CUT_HOLD[1]  # around the takeover
        else:
            assert 3.0 <= fault.hold <= 8.0
        assert 1.0 <= fault.settle <= 3.0
        if fault.kind is FaultKind.LAN_CUT:
            assert fault.target in ("primary", "secondary") and fault.lan in ("default", "lan1")
        else:
            assert fault.target == "" and fault.lan == ""
        if fault.kind is FaultKind.LOSSY_LINKS:
            assert LOSS[0] <= fault.loss <= LOSS[1]
            assert fault.to_json()["loss_percent"] == fault.loss
        else:
            assert fault.loss == 0 and "loss_percent" not in fault.to_json()


def test_a_chosen_subset_of_kinds_is_all_that_is_dealt() -> None:
    kinds = (FaultKind.POWER_CUT_PRIMARY, FaultKind.PARTITION_WITNESS_BOTH)
    assert {f.kind for f in schedule(1, 9, kinds=kinds)} == set(kinds)


def test_kind_names_are_checked() -> None:
    assert parse_kinds("lan_cut, power_cut_primary") == (FaultKind.LAN_CUT, FaultKind.POWER_CUT_PRIMARY)
    with pytest.raises(ValueError, match="unknown fault kind 'power_cut'"):
        parse_kinds("power_cut")
    with pytest.raises(ValueError, match="rounds"):
        schedule(1, -1)
