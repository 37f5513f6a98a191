"""Split-brain rules: when the witness allows a node to serve without its peer.

This module owns what the machine remembers of the split-brain checker's answers and the two
rules built on them (ARCHITECTURE.md, "Rules that protect data", rule 2):

- keep serving: a node that serves while every heartbeat is lost keeps the VIP only while it
  holds a witness *lease*: it must not have been told "unreachable" since the peer was lost,
  and `now < max(peer lost, last reachable answer) + split_brain_bound`;
- take over: a node that does not serve may start only after answers "reachable", no more than
  `split_brain_bound` apart, have covered `takeover_guard = split_brain_bound + detection_skew`
  since the later of "peer lost" and the start of that streak.

Why this prevents two primaries: if the witness answers one side only and its answer for a
side does not flap faster than the takeover guard, the side that lost the witness has released
the VIP (bound) before the other side has seen the witness long enough (guard > bound + skew).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WitnessView:
    """The split-brain checker's answers, as far as the rules need them."""

    last_reachable_at: float | None = None
    reachable_since: float | None = None  # start of the current streak of "reachable"
    last_unreachable_at: float | None = None

    def record(self, reachable: bool, now: float, bound: float) -> WitnessView:
        if not reachable:
            return WitnessView(self.last_reachable_at, None, now)
        streak_broken = (
            self.reachable_since is None
            or self.last_reachable_at is None
            or now - self.last_reachable_at > bound
            or (self.last_unreachable_at is not None and self.last_unreachable_at >= self.last_reachable_at)
        )
        since = now if streak_broken else self.reachable_since
        return WitnessView(now, since, self.last_unreachable_at)

    def refused_since(self, since: float) -> bool:
        """The latest answer, given at or after `since`, was "unreachable"."""
        last_bad = self.last_unreachable_at
        if last_bad is None or last_bad < since:
            return False
        return self.last_reachable_at is None or last_bad >= self.last_reachable_at


def fence_deadline(view: WitnessView, absent_since: float, bound: float) -> float:
    """When a serving node without heartbeats must have released the VIP at the latest."""
    last_ok = view.last_reachable_at if view.last_reachable_at is not None else absent_since
    return max(absent_since, last_ok) + bound


def may_keep_serving(view: WitnessView, now: float, absent_since: float, bound: float) -> bool:
    if view.refused_since(absent_since):
        return False
    return now < fence_deadline(view, absent_since, bound)


def takeover_time(view: WitnessView, absent_since: float, guard: float) -> float | None:
    """Earliest time a non-serving node may take over, or None while no streak runs."""
    if view.reachable_since is None:
        return None
    return max(absent_since, view.reachable_since) + guard


def may_take_over(view: WitnessView, now: float, absent_since: float, bound: float, guard: float) -> bool:
    at = takeover_time(view, absent_since, guard)
    if at is None or view.last_reachable_at is None:
        return False
    lease_valid = now - view.last_reachable_at <= bound
    return lease_valid and now >= at


def describe(view: WitnessView, now: float) -> str:
    if view.last_reachable_at is None and view.last_unreachable_at is None:
        return "no witness answer yet"
    if view.reachable_since is not None and view.last_reachable_at is not None:
        return (
            f"witness reachable since {view.reachable_since:.3f} "
            f"(last answer {now - view.last_reachable_at:.1f}s ago)"
        )
    return "witness unreachable"
