"""Which checkers and `<errd>` process classes act in which state: decided by the machine
(mirror.checker_applies, mirror.errd_classes), executed by the daemon."""

from __future__ import annotations

from mirror_driver import Driver, alone, prim, second, starting_primary, stopped

from safekit.mirror import checker_applies, errd_classes


def test_checkers_act_by_their_when() -> None:
    p, s, off = prim(), second(), stopped()
    assert [checker_applies(d.state, "prim") for d in (p, s, off)] == [True, False, False]
    assert [checker_applies(d.state, "both") for d in (p, s, off)] == [True, True, False]
    assert [checker_applies(d.state, "pre") for d in (p, s, off)] == [True, True, True]
    assert checker_applies(alone().state, "prim")


def test_errd_watches_only_settled_ready_states() -> None:
    assert errd_classes(prim().state) == {"prim", "both", "pre"}
    assert errd_classes(second().state) == {"second", "sec", "both", "pre"}
    assert errd_classes(second(synced=False).state) == frozenset()  # not Ready: resynchronising
    assert errd_classes(stopped().state) == frozenset()
    d: Driver = starting_primary()
    assert d.state.running is not None
    assert errd_classes(d.state) == frozenset()  # start_prim runs: its processes are not up yet
