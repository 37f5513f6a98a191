"""Split-brain rules: when the witness allows a node to serve without its peer.

This module owns what the machine remembers of the split-brain checker's answers and the rules
built on them (ARCHITECTURE.md, "Rules that protect data", rule 2; docs/adr/0010). There are two
kinds of witness (`<splitbrain exec="ping|arbitrator">`):

**ping** (SafeKit's): a router or any host that answers pings. Every answer is recorded at the
moment its probe was *sent* (a late answer still counts, for the time it proves).

- keep serving: a node that serves while every heartbeat is lost keeps the VIP only while it holds
  a witness *lease*: it must not have been told "unreachable" since the peer was lost, and
  `now < max(peer lost, last reachable answer) + split_brain_bound`;
- take over: a node that does not serve may start only after answers "reachable", no more than
  `split_brain_bound` apart, have covered `takeover_guard = split_brain_bound + detection_skew`
  since the later of "peer lost" and the start of that streak, and while no other node answers
  for the virtual IP (the daemon adds an ARP probe of the VIP to each answer).

Why this prevents two primaries: if the witness answers one side only and its answer for a side
does not flap faster than the takeover guard, the side that lost the witness has released the VIP
(bound) before the other side has seen the witness long enough (guard > bound + skew). When both
sides reach the witness, only the VIP probe can tell the secondary that the primary still
serves: that works while the nodes still share the VIP's LAN (a firewall rule on the heartbeat
ports, a failed dedicated heartbeat LAN), not when every frame between them is lost.

**arbitrator** (`safekit arbiter`, docs/arbiter.md): a service that grants a lease per module to
one node at a time, like corosync-qnetd grants its vote. The primary renews it all the time.

- keep serving: while every heartbeat is lost, a node serves only until
  `sent_at + lease_duration` of its latest granted request, and stops at once when the arbiter
  says another node holds the lease;
- take over: a node that does not serve starts only with a lease granted to a request sent after
  the peer was lost, still valid, not before `peer lost + detection_skew` (a primary that held
  no lease fences when *it* sees the loss, at most detection_skew later), and once a VIP owner
  probe made after the loss saw no other owner (a node whose safekitd died keeps its VIP: the
  lease alone cannot tell that a node no longer serves, only that it no longer renews);
- the peer went on alone: it acknowledges writes alone only once the arbitrator granted its new
  replica generation *confirmed* (docs/adr/0046: a grant of the new number lets the primary
  confirm it; its next request carries the confirmed rank, and the grant of that one lets it
  acknowledge), and the arbitrator then refuses this node's lower-ranked copy as outdated, saying
  which rank it knows (a lease merely held by the peer proves nothing: a candidate waiting to
  take over holds it too).

Both kinds: a node that learns that the peer serves without it (the VIP answered by another MAC,
or the lease renewed by the peer) must not take over later with its copy, which no longer follows
the primary's (rule 1): the machine marks the peer's generation as newer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class WitnessMode(StrEnum):
    PING = "ping"
    ARBITRATOR = "arbitrator"


@dataclass(frozen=True)
class WitnessView:
    """The split-brain checker's answers, as far as the rules need them (times: when sent)."""

    last_reachable_at: float | None = None
    reachable_since: float | None = None  # start of the current streak of "reachable"
    last_unreachable_at: float | None = None
    # arbitrator: the latest request that was granted (its lease runs until + lease_duration)
    last_grant_at: float | None = None
    # who else serves: the node holding the lease (arbitrator) or the MAC answering for the VIP
    # (ping), and when the request or probe that showed it was sent
    other_server: str | None = None
    other_server_at: float | None = None
    # arbitrator: the VIP owner probe (ARP) the daemon makes with each answer while this node does
    # not serve and the peer is lost: the latest probe that saw another owner, and that saw none
    vip_owner: str | None = None
    vip_owner_at: float | None = None
    vip_clear_at: float | None = None
    # arbitrator: the replica generation the latest granted request carried (the arbitrator
    # then refuses any copy older than that: what lets a primary confirm its generation), and the
    # confirmed generation it carried (what lets it acknowledge writes alone: every copy that
    # acknowledged nothing at that generation then ranks below it)
    grant_generation: int | None = None
    grant_confirmed: int | None = None

    def record(
        self,
        reachable: bool,
        now: float,
        bound: float,
        *,
        sent_at: float | None = None,
        other: str | None = None,
        vip_checked: bool = False,
        vip_owner: str | None = None,
        generation: int | None = None,
        confirmed: int | None = None,
    ) -> WitnessView:
        """One answer. `reachable` with arbitrator = the lease was granted to this node.

        `other` names another node serving (lease holder, VIP owner): such an answer breaks the
        streak of "reachable" answers. `sent_at` is when the probe left (default: `now`).
        """
        at = now if sent_at is None else min(sent_at, now)
        view = self._record_vip(at, vip_owner) if vip_checked else self
        if reachable and other is None and (view.last_grant_at is None or at >= view.last_grant_at):
            view = replace(
                view,
                grant_generation=generation,
                grant_confirmed=generation if confirmed is None else confirmed,
            )
        return view._record_answer(reachable, at, bound, other)

    def _record_vip(self, at: float, owner: str | None) -> WitnessView:
        if owner is not None:
            latest = at if self.vip_owner_at is None else max(at, self.vip_owner_at)
            return replace(self, vip_owner=owner, vip_owner_at=latest)
        return replace(self, vip_clear_at=at if self.vip_clear_at is None else max(at, self.vip_clear_at))

    def _record_answer(self, reachable: bool, at: float, bound: float, other: str | None) -> WitnessView:
        if other is not None:
            if self.other_server_at is not None and at < self.other_server_at:
                return replace(self, reachable_since=None)
            return replace(self, reachable_since=None, other_server=other, other_server_at=at)
        if not reachable:
            last_bad = at if self.last_unreachable_at is None else max(at, self.last_unreachable_at)
            broken = self.last_reachable_at is None or at >= self.last_reachable_at
            since = None if broken else self.reachable_since
            return replace(self, reachable_since=since, last_unreachable_at=last_bad)
        streak_broken = (
            self.reachable_since is None
            or self.last_reachable_at is None
            or at - self.last_reachable_at > bound
            or (self.last_unreachable_at is not None and self.last_unreachable_at >= self.last_reachable_at)
            or (self.other_server_at is not None and self.other_server_at >= self.last_reachable_at)
        )
        since = at if streak_broken else self.reachable_since
        last_ok = at if self.last_reachable_at is None else max(at, self.last_reachable_at)
        grant = at if self.last_grant_at is None else max(at, self.last_grant_at)
        return replace(self, last_reachable_at=last_ok, reachable_since=since, last_grant_at=grant)

    def refused_since(self, since: float) -> bool:
        """The latest answer, given at or after `since`, was "unreachable" (no answer)."""
        last_bad = self.last_unreachable_at
        if last_bad is None or last_bad < since:
            return False
        return self.last_reachable_at is None or last_bad >= self.last_reachable_at

    def other_since(self, since: float) -> bool:
        """Another server was seen at or after `since`."""
        return self.other_server_at is not None and self.other_server_at >= since

    def vip_clear_since(self, since: float) -> bool:
        """The latest VIP owner probe, made at or after `since`, saw no other owner."""
        clear = self.vip_clear_at
        if clear is None or clear < since:
            return False
        return self.vip_owner_at is None or clear > self.vip_owner_at

    @property
    def lease_lost(self) -> bool:
        """arbitrator: the latest answer about the lease named another holder."""
        at = self.other_server_at
        return at is not None and (self.last_grant_at is None or at >= self.last_grant_at)


@dataclass(frozen=True)
class WitnessRules:
    """The timing the rules need, from MirrorSettings (kept apart so this module stands alone)."""

    mode: WitnessMode
    bound: float  # split_brain_bound
    skew: float  # detection_skew
    lease: float  # lease_duration (arbitrator)

    @property
    def guard(self) -> float:
        """How long after "peer lost" a node that does not serve waits before it may serve."""
        if self.mode is WitnessMode.ARBITRATOR:
            return self.skew
        return self.bound + self.skew


def fence_deadline(rules: WitnessRules, view: WitnessView, absent_since: float) -> float:
    """When a serving node without heartbeats must have released the VIP at the latest."""
    if rules.mode is WitnessMode.ARBITRATOR:
        if view.last_grant_at is None:
            return absent_since
        return view.last_grant_at + rules.lease
    last_ok = view.last_reachable_at if view.last_reachable_at is not None else absent_since
    return max(absent_since, last_ok) + rules.bound


def may_keep_serving(rules: WitnessRules, view: WitnessView, now: float, absent_since: float) -> bool:
    if rules.mode is WitnessMode.ARBITRATOR:
        # no answer proves nothing: the lease runs out by itself; a refusal ends it at once
        if view.lease_lost:
            return False
    elif view.refused_since(absent_since):
        return False
    return now < fence_deadline(rules, view, absent_since)


def fence_reason(rules: WitnessRules, view: WitnessView, absent_since: float) -> str:
    """Why `may_keep_serving` said no, for the log."""
    if rules.mode is WitnessMode.ARBITRATOR:
        if view.lease_lost:
            return f"the arbitrator gave the lease to {view.other_server}"
        if view.last_grant_at is None:
            return "this node holds no arbitrator lease"
        return f"the arbitrator lease ran out (lease_duration={rules.lease:g}s, not renewed)"
    if view.refused_since(absent_since):
        return "the witness answered unreachable"
    return f"no witness answer for split_brain_bound={rules.bound:g}s"


def takeover_time(rules: WitnessRules, view: WitnessView, absent_since: float) -> float | None:
    """Earliest time a non-serving node may take over, or None while the witness does not allow it."""
    if rules.mode is WitnessMode.ARBITRATOR:
        grant = view.last_grant_at
        if grant is None or grant < absent_since or view.lease_lost:
            return None
        return absent_since + rules.guard
    if view.reachable_since is None:
        return None
    return max(absent_since, view.reachable_since) + rules.guard


def may_take_over(rules: WitnessRules, view: WitnessView, now: float, absent_since: float) -> bool:
    at = takeover_time(rules, view, absent_since)
    if at is None or now < at:
        return False
    if rules.mode is WitnessMode.ARBITRATOR:
        # and the clients see no other owner of the VIP (a node whose safekitd died keeps it)
        assert view.last_grant_at is not None
        return now < view.last_grant_at + rules.lease and view.vip_clear_since(absent_since)
    if view.last_reachable_at is None or view.other_since(absent_since):
        return False
    return now - view.last_reachable_at <= rules.bound


def peer_serving_evidence(rules: WitnessRules, view: WitnessView, absent_since: float) -> str | None:
    """What proves that the peer still serves without this node since it was lost, or None."""
    at = view.other_server_at
    if at is None:
        return None
    if rules.mode is WitnessMode.ARBITRATOR:
        # A lease held by the peer is not proof that it serves (a candidate waits with it, too);
        # a peer that went on alone had its new generation granted, and the arbitrator then says
        # this copy is outdated (WitnessResult.known_generation: the machine marks it stale).
        return None
    if view.other_since(absent_since):
        return f"the virtual IP is still answered by {view.other_server}"
    return None


def _describe_lease(rules: WitnessRules, view: WitnessView, now: float) -> str:
    if view.lease_lost:
        return f"arbitrator lease held by {view.other_server}"
    if view.last_grant_at is not None and now < view.last_grant_at + rules.lease:
        held = f"arbitrator lease held (granted {now - view.last_grant_at:.2f}s ago)"
        owner_at = view.vip_owner_at
        if owner_at is not None and (view.vip_clear_at is None or owner_at >= view.vip_clear_at):
            return f"{held}, but the virtual IP is still answered by {view.vip_owner}"
        return held
    if view.last_unreachable_at is not None:
        return "no answer from the arbitrator"
    return "no arbitrator lease yet"


def may_acknowledge_alone(  # noqa: PLR0911 - one return per rule, each with its reason
    rules: WitnessRules,
    view: WitnessView,
    now: float,
    absent_since: float,
    generation: int,
    *,
    confirming: bool = False,
) -> str | None:
    """Why a primary that lost its peer may acknowledge writes without it, or None (not yet).

    It may once the peer can no longer take over with its copy: ping - the witness answered a
    probe sent after the loss (it answers one side of a split: the peer does not reach it);
    arbitrator - a lease was granted to a request sent after the loss that carried this node's
    new generation as confirmed (the arbitrator refuses the peer's lower-ranked copy from then on,
    whoever holds the lease later). And only while the node may keep serving.

    `confirming`: whether the primary may *confirm* its generation (the step before): with the
    arbitrator, a grant of the number is enough (no other copy can then be granted at that
    number or below); with ping, the same answer as for acknowledging.
    """
    if not may_keep_serving(rules, view, now, absent_since):
        return None
    if rules.mode is WitnessMode.ARBITRATOR:
        grant, carried = view.last_grant_at, view.grant_generation
        if grant is None or grant < absent_since or carried is None or carried < generation:
            return None
        if confirming:
            return f"the arbitrator granted the lease to replica generation {carried} after the loss"
        if view.grant_confirmed is None or view.grant_confirmed < generation:
            return None
        return f"the arbitrator granted the lease to replica generation {carried}, confirmed, after the loss"
    if view.last_reachable_at is None or view.last_reachable_at < absent_since:
        return None
    return "the witness answered after the loss (the peer is on the other side of the split)"


def describe(rules: WitnessRules, view: WitnessView, now: float) -> str:
    if rules.mode is WitnessMode.ARBITRATOR:
        return _describe_lease(rules, view, now)
    if view.last_reachable_at is None and view.last_unreachable_at is None:
        return "no witness answer yet"
    if view.reachable_since is not None and view.last_reachable_at is not None:
        # durations: `now` and the view's times are the daemon's monotonic clock
        return (
            f"witness reachable for {now - view.reachable_since:.1f} s "
            f"(last answer {now - view.last_reachable_at:.1f} s ago)"
        )
    return "witness unreachable"
