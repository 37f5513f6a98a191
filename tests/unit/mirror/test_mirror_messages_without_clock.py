"""Reasons and log lines say durations, never a value of the daemon's monotonic clock (ADR 0066).

The machine's clock is `time.monotonic()` in the daemon: seconds since the machine booted, a number
that means nothing to the user reading `safekit state`, the console or the module log. Here the
driver's clock starts at EPOCH, as on a machine up for days, and no text may carry a number that
large.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from mirror_driver import Driver, peer_status, prim, record, second, settings

from safekit.mirror import CommandKind, Log, ModuleState, Readiness
from safekit.mirror.witness import WitnessMode, WitnessRules, WitnessView, describe

EPOCH = 412_345.678
"""Seconds since boot: a machine up for almost five days."""
WITNESS = {"witness_configured": True}


@pytest.fixture(autouse=True)
def clock_since_boot(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every Driver starts at EPOCH instead of 0."""
    original = Driver.__init__

    def late(self: Driver, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        self.now = EPOCH

    monkeypatch.setattr(Driver, "__init__", late)
    yield


def clock_values(text: str) -> list[str]:
    return [n for n in re.findall(r"\d+(?:\.\d+)?", text) if float(n) >= EPOCH / 2]


def texts(d: Driver) -> list[str]:
    return [a.reason for a in d.history if isinstance(a, Log)] + [d.state.reason]


def test_witness_reachable_says_for_how_long() -> None:
    rules = WitnessRules(WitnessMode.PING, bound=4.0, skew=2.0, lease=0.0)
    view = WitnessView()
    for at in (EPOCH, EPOCH + 4.0, EPOCH + 8.0, EPOCH + 12.0):
        view = view.record(True, at, rules.bound)
    text = describe(rules, view, EPOCH + 12.3)
    assert text == "witness reachable for 12.3 s (last answer 0.3 s ago)"


def test_looking_for_the_peer_says_for_how_long() -> None:
    d = Driver(persisted=record())
    d.cmd(CommandKind.START)
    d.settle()
    assert d.state.reason == "looking for n2 for up to 5 s"
    assert [t for t in texts(d) if clock_values(t)] == []


def test_waiting_for_the_witness_after_a_loss_counts_from_the_loss() -> None:
    d = second(settings(**WITNESS))
    d.lost()
    d.witness(True, 0.0)
    d.witness(True, 1.0)
    assert d.shown == (ModuleState.SECOND, Readiness.READY)
    assert d.state.reason == (
        "peer absent: waiting for the witness (witness reachable for 1.0 s (last answer 0.0 s ago)); "
        "not before 6.00 s after the loss"
    )
    assert [t for t in texts(d) if clock_values(t)] == []


def test_an_unsettled_election_says_how_long_it_may_wait() -> None:
    d = Driver(persisted=record())
    d.cmd(CommandKind.START)
    d.settle()
    d.peer(peer_status(ModuleState.WAIT, Readiness.TRANSIENT, verdict=None))
    d.peer(peer_status(ModuleState.WAIT, Readiness.TRANSIENT, verdict="n1"))
    assert "may predate n1 competing again" in d.state.reason
    assert "(at most 7.00 s after competing again)" in d.state.reason
    assert [t for t in texts(d) if clock_values(t)] == []


def test_a_stopstart_hand_over_says_for_how_long_it_yields() -> None:
    d = prim()
    d.cmd(CommandKind.STOPSTART)
    for _ in range(5):
        d.settle()
        d.tick(4.0)
    said = "\n".join(texts(d))
    assert "n1 does not compete for the primary role for 7.00 s" in said
    assert "n2 did not take over within 7.00 s" in said
    assert clock_values(said) == []
