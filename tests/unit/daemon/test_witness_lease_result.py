"""What an arbitrator's answer tells the state machine (daemon/witness_probes.lease_result): a
grant for this copy's generation, a refusal naming the holder, the arbitrator's grace after a
restart (no answer yet), and "outdated" (a newer copy was granted: never this node)."""

from __future__ import annotations

from safekit.arbiter.client import LeaseAnswer
from safekit.daemon.witness_probes import lease_result
from safekit.mirror import WitnessResult


def answer(**kw: object) -> LeaseAnswer:
    base: dict[str, object] = {
        "granted": False,
        "holder": None,
        "remaining": 0.0,
        "sent_at": 10.0,
        "detail": "",
    }
    base.update(kw)
    return LeaseAnswer(**base)  # type: ignore[arg-type]


def test_a_grant_is_reachable_for_the_generation_asked_as_of_when_the_request_left() -> None:
    got = lease_result(answer(granted=True, holder="n1", generation=4, confirmed=4), generation=4, now=10.3)
    assert got == WitnessResult(True, 10.3, sent_at=10.0, generation=4, known_generation=4, known_confirmed=4)


def test_a_grant_carries_the_rank_asked_and_the_rank_known() -> None:
    # the request carried generation 7 confirmed up to 5; the arbitrator knows that same rank now
    got = lease_result(answer(granted=True, holder="n1", generation=7, confirmed=5), 7, 10.3, confirmed=5)
    assert (got.generation, got.confirmed) == (7, 5)
    assert got.known == (5, 7)


def test_a_refusal_names_the_holder() -> None:
    got = lease_result(answer(holder="n2", remaining=0.8, generation=4), generation=4, now=10.3)
    assert not got.reachable and got.other == "n2" and got.sent_at == 10.0


def test_the_grace_after_an_arbitrator_restart_is_no_answer_and_no_holder() -> None:
    got = lease_result(answer(detail="arbiter restarted"), generation=4, now=10.3)
    assert not got.reachable and got.other is None


def test_an_outdated_copy_is_told_who_has_the_newer_one() -> None:
    got = lease_result(answer(outdated=True, generation=6, confirmed=6), generation=4, now=10.3)
    assert not got.reachable
    assert got.other == "a copy at generation 6" and got.known == (6, 6)
    # a copy at the same number that acknowledged nothing at it is outdated too, and says why
    got = lease_result(answer(outdated=True, generation=5, confirmed=5), 5, 10.3, confirmed=3)
    assert got.other == "a copy at generation 5" and got.known == (5, 5)
    got = lease_result(answer(outdated=True, holder="n2", generation=6), generation=4, now=10.3)
    assert got.other == "n2"
