"""The arbiter's lease table: which node may serve a module, and until when (pure; time passed in).

This module owns the rules of the arbitrating witness (docs/arbiter.md). A lease is keyed by
(cluster id, module) and held by at most one node at a time:

- `request` grants it when nobody holds it, when the holder's lease has expired
  (``now >= expires_at``), or when the requester already holds it (a renewal); the holder then
  holds it until ``now + min(duration, MAX_LEASE)``. Otherwise it is refused, with the holder and
  the time its lease still runs.
- `release` gives the lease up before it expires (a clean stop), so the other node need not wait.
  Only the holder, from the same client session that last obtained it, can release it; anyone else
  changes nothing.
- Generations: every request carries the rank of the requester's copy of the module's data,
  `ReplicaRank(confirmed, generation)` (docs/adr/0045, 0046): its replica generation (a primary
  alone starts a new one) and its confirmed generation (the newest at which it holds every write
  acknowledged). Ranks compare confirmed first. The table keeps the highest rank of any *granted*
  request per (cluster, module), and refuses (OUTDATED) a request whose rank is lower, whoever
  holds the lease, even nobody, and without touching the lease: a node whose copy is older than
  one that served alone must never serve (DRBD's "outdate peer"). Confirmed first, because two
  copies that went apart before either heard of the other can carry their numbers in any order:
  a stale epoch at 5 that acknowledged nothing ranks (3, 5), below a taker's (5, 5) that
  acknowledged writes alone. A node acknowledges alone only once a grant recorded its
  confirmation (the mirror machine's rule). A request of wire version 2 carries a number only:
  it ranks (generation, generation), as before. Only grants raise the rank: a refused request
  says nothing trustworthy about the copy the module serves from. The known ranks are the one
  thing the server persists (`generations.py`); `Decision.raised` tells it when to write them.
- Grace: the lease table lives in memory only. A restarted arbiter does not know who held what, and a
  node may still believe it holds a lease granted by the previous process. So for
  `grace` (MAX_LEASE) seconds after `started_at` the table grants nothing: every lease granted
  before the restart has expired (on the arbiter's clock and so on the node's) before anything new
  is granted.

Every change of holder, every expiry noticed and the first refusal of each requester per holder
are returned as `Decision.log` / `sweep()` messages with the reason; the server logs them.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from safekit.mirror.states import ReplicaRank

MAX_LEASE = 10.0
"""Seconds: the longest lease granted, whatever a node asks; also the grace after a restart."""


class Reason(enum.IntEnum):
    """Why the arbiter answered as it did. The values travel on the wire (docs/arbiter.md)."""

    GRANTED = 0
    """The requester is the new holder."""
    RENEWED = 1
    """The requester held the lease already; it runs again from now."""
    HELD = 2
    """Refused: another node holds an unexpired lease."""
    GRACE = 3
    """Refused: the arbiter restarted recently and grants nothing until its grace period ends."""
    RELEASED = 4
    """The holder gave the lease up."""
    NOT_HOLDER = 5
    """A release by a node (or session) that does not hold the lease: nothing changed."""
    STATUS = 6
    """An answer to a status query."""
    OUTDATED = 7
    """Refused: the requester's copy ranks below the highest one granted for the module."""

    @property
    def granted(self) -> bool:
        return self in (Reason.GRANTED, Reason.RENEWED)


@dataclass(frozen=True, slots=True)
class Decision:
    """The arbiter's answer to one request or release.

    `holder` is who holds the lease after the decision (None: nobody); `remaining` how long that
    lease still runs, in seconds (for GRACE: how long the grace period still runs); `generation`
    and `confirmed` the highest rank known for the module after the decision (0: none).
    """

    reason: Reason
    holder: str | None
    remaining: float
    log: str | None = None
    """What to log about this decision (None: nothing worth a line, e.g. a routine renewal)."""
    generation: int = 0
    confirmed: int = 0
    raised_from: ReplicaRank | None = None
    """The known rank before this decision raised it (None: not raised). Persist the new one
    before answering."""

    @property
    def known(self) -> ReplicaRank:
        return ReplicaRank(self.confirmed, self.generation)

    @property
    def raised(self) -> bool:
        return self.raised_from is not None

    @property
    def granted(self) -> bool:
        return self.reason.granted


@dataclass(frozen=True, slots=True)
class LeaseView:
    """One module as a status query shows it: its lease (holder "" when none) and known rank."""

    module: str
    holder: str
    remaining: float
    generation: int = 0
    confirmed: int = 0


@dataclass(slots=True)
class _Lease:
    holder: str
    session: bytes
    expires_at: float
    refusals_logged: set[str] = field(default_factory=set)


class LeaseTable:
    """Every lease an arbiter process has granted, for every cluster it serves."""

    def __init__(
        self,
        started_at: float,
        *,
        max_lease: float = MAX_LEASE,
        grace: float | None = None,
        generations: Mapping[tuple[bytes, str], ReplicaRank | int] | None = None,
    ) -> None:
        """`generations`: the highest rank known per (cluster, module), as persisted (a bare
        number: a rank recorded before confirmed generations, (number, number))."""
        if not math.isfinite(max_lease) or max_lease <= 0:
            raise ValueError(f"max_lease must be a positive number of seconds, got {max_lease!r}")
        self.max_lease = max_lease
        self.grace_until = started_at + (max_lease if grace is None else grace)
        self._leases: dict[tuple[bytes, str], _Lease] = {}
        self._grace_refusals_logged: set[tuple[bytes, str, str]] = set()
        self._generations: dict[tuple[bytes, str], ReplicaRank] = {}
        for key, known in (generations or {}).items():
            rank = ReplicaRank(known, known) if isinstance(known, int) else known
            check_rank(rank)
            if rank > _NONE:
                self._generations[key] = ReplicaRank(*rank)
        self._outdated_logged: set[tuple[bytes, str, str, ReplicaRank]] = set()
        self._last_raise: tuple[tuple[bytes, str], _Lease | None, ReplicaRank] | None = None
        """(key, lease before, rank before) of the last decision that raised a rank."""

    def generation(self, cluster: bytes, module: str) -> int:
        """The replica generation of the highest rank granted for `module` (0: none known)."""
        return self.rank(cluster, module).generation

    def rank(self, cluster: bytes, module: str) -> ReplicaRank:
        """The highest rank granted for `module` ((0, 0): none known)."""
        return self._generations.get((cluster, module), _NONE)

    def generations(self) -> dict[tuple[bytes, str], ReplicaRank]:
        """A copy of every known rank: what the server persists."""
        return dict(self._generations)

    def in_grace(self, now: float) -> bool:
        return now < self.grace_until

    def request(  # noqa: PLR0917 - the rule's inputs, in the order docs/arbiter.md names them
        self,
        cluster: bytes,
        module: str,
        node: str,
        duration: float,
        generation: int,
        now: float,
        *,
        session: bytes = b"",
        confirmed: int | None = None,
    ) -> Decision:
        """Grant or refuse `node`, whose copy is at replica `generation` and holds every write
        acknowledged up to generation `confirmed` (None: a request that carries no confirmed
        generation, ranked (generation, generation)), the lease of `module` for `duration`
        seconds (at most MAX_LEASE)."""
        if not math.isfinite(duration) or duration <= 0:
            raise ValueError(f"a lease duration must be a positive number of seconds, got {duration!r}")
        rank = ReplicaRank(generation if confirmed is None else confirmed, generation)
        check_rank(rank)
        key = (cluster, module)
        known = self._generations.get(key, _NONE)
        if rank < known:
            return self._outdated(key, node, rank, known, now)
        before = self._leases.get(key)
        before = dataclasses.replace(before, refusals_logged=set(before.refusals_logged)) if before else None
        decision = self._lease_rules(key, node, duration, now, session)
        if not decision.granted:
            return _with_known(decision, known)
        if rank > known:
            self._generations[key] = rank
            self._last_raise = (key, before, known)
            raised = f"highest copy now {rank.describe()} (was {known.describe()}), from {node}"
            log = f"{decision.log}; {raised}" if decision.log is not None else f"{_name(*key)}: {raised}"
            return dataclasses.replace(_with_known(decision, rank), raised_from=known, log=log)
        return _with_known(decision, known)

    def _outdated(
        self, key: tuple[bytes, str], node: str, rank: ReplicaRank, known: ReplicaRank, now: float
    ) -> Decision:
        cluster, module = key
        lease = self._leases.get(key)
        holder, left = None, 0.0
        if lease is not None and now < lease.expires_at:
            holder, left = lease.holder, lease.expires_at - now
        log = None
        if (cluster, module, node, known) not in self._outdated_logged:
            self._outdated_logged.add((cluster, module, node, known))
            log = (
                f"{_name(cluster, module)}: refused to {node}: outdated, its copy is at "
                f"{rank.describe()} and a copy at {known.describe()} was granted (a node served "
                "with a newer copy)"
            )
        return _with_known(Decision(Reason.OUTDATED, holder, left, log), known)

    def _lease_rules(
        self, key: tuple[bytes, str], node: str, duration: float, now: float, session: bytes
    ) -> Decision:
        """Holder, renewal, grace and expiry: the rules before generations were known."""
        cluster, module = key
        lease = self._leases.get(key)
        if lease is not None and lease.holder == node and now < lease.expires_at:
            granted = min(duration, self.max_lease)
            lease.expires_at = now + granted
            lease.session = session
            return Decision(Reason.RENEWED, node, granted)
        if self.in_grace(now):
            left = self.grace_until - now
            log = None
            if (cluster, module, node) not in self._grace_refusals_logged:
                self._grace_refusals_logged.add((cluster, module, node))
                log = (
                    f"{_name(cluster, module)}: refused to {node}: arbiter restarted, grants nothing during "
                    f"its grace period (another {left:.1f}s) so that leases of the previous process expire"
                )
            return Decision(Reason.GRACE, None, left, log)
        if lease is not None and now < lease.expires_at:
            left = lease.expires_at - now
            log = None
            if node not in lease.refusals_logged:
                lease.refusals_logged.add(node)
                log = f"{_name(cluster, module)}: refused to {node}: held by {lease.holder} for {left:.1f}s"
            return Decision(Reason.HELD, lease.holder, left, log)
        granted = min(duration, self.max_lease)
        expires_at = now + granted
        if lease is None:
            why = "no holder"
        elif lease.holder == node:
            why = f"its own lease had expired {now - lease.expires_at:.1f}s ago"
        else:
            why = f"lease of {lease.holder} expired {now - lease.expires_at:.1f}s ago"
        self._leases[key] = _Lease(node, session, expires_at)
        log = f"{_name(cluster, module)}: granted to {node} for {granted:.1f}s ({why})"
        return Decision(Reason.GRANTED, node, granted, log)

    def release(
        self, cluster: bytes, module: str, node: str, now: float, *, session: bytes | None = None
    ) -> Decision:
        """`node` gives its lease of `module` up. A non-holder (or another session) changes nothing.

        `session` (the client's boot id) must be the one that last obtained or renewed the lease when
        given: a release recorded from an earlier run of the node's daemon cannot end the current one.
        """
        key = (cluster, module)
        known = self._generations.get(key, _NONE)
        lease = self._leases.get(key)
        if lease is None or now >= lease.expires_at:
            return _with_known(Decision(Reason.NOT_HOLDER, None, 0.0), known)
        if lease.holder != node or (session is not None and session != lease.session):
            who = "another session of " + node if lease.holder == node else node
            return _with_known(
                Decision(
                    Reason.NOT_HOLDER,
                    lease.holder,
                    lease.expires_at - now,
                    f"{_name(cluster, module)}: release by {who} ignored: held by {lease.holder}",
                ),
                known,
            )
        del self._leases[key]
        return _with_known(
            Decision(
                Reason.RELEASED,
                None,
                0.0,
                f"{_name(cluster, module)}: released by {node} ({lease.expires_at - now:.1f}s before expiry)",
            ),
            known,
        )

    def withdraw(self, cluster: bytes, module: str) -> None:
        """Undo the last decision, a grant that raised the generation of `module` and was never
        answered (the server could not persist the generation). The lease is as it was before (a
        holder renewing keeps the lease it held, so no other node can be granted while it still
        believes in it) and so is the known generation: nobody serves with the newer copy on this
        grant's strength, and the next grant at that generation tries to persist it again."""
        if self._last_raise is None or self._last_raise[0] != (cluster, module):
            raise ValueError(f"{_name(cluster, module)}: no grant to withdraw")
        key, before, rank = self._last_raise
        self._last_raise = None
        if before is None:
            self._leases.pop(key, None)
        else:
            self._leases[key] = before
        if rank > _NONE:
            self._generations[key] = rank
        else:
            self._generations.pop(key, None)

    def holder_session(self, cluster: bytes, module: str, now: float) -> tuple[str, bytes] | None:
        """(holder, session) of an unexpired lease, or None."""
        lease = self._leases.get((cluster, module))
        if lease is None or now >= lease.expires_at:
            return None
        return lease.holder, lease.session

    def leases(self, cluster: bytes, now: float, module: str | None = None) -> list[LeaseView]:
        """The modules of `cluster` (one module if given) with an unexpired lease or a known
        generation, sorted by module; holder "" and remaining 0 where nobody holds the lease."""
        views: dict[str, LeaseView] = {
            m: LeaseView(m, "", 0.0, rank.generation, rank.confirmed)
            for (c, m), rank in self._generations.items()
            if c == cluster and (module is None or m == module)
        }
        for (c, m), lease in self._leases.items():
            if c == cluster and (module is None or m == module) and now < lease.expires_at:
                rank = self.rank(c, m)
                views[m] = LeaseView(m, lease.holder, lease.expires_at - now, rank.generation, rank.confirmed)
        return [views[m] for m in sorted(views)]

    def sessions_holding(self, now: float) -> set[tuple[bytes, str, bytes]]:
        """(cluster, holder, session) of every unexpired lease: what the replay guard must not forget."""
        return {
            (c, lease.holder, lease.session)
            for (c, _m), lease in self._leases.items()
            if now < lease.expires_at
        }

    def sweep(self, now: float) -> list[str]:
        """Forget expired leases; one log line per expiry noticed."""
        messages = []
        for key, lease in list(self._leases.items()):
            if now >= lease.expires_at:
                del self._leases[key]
                messages.append(
                    f"{_name(*key)}: lease of {lease.holder} expired ({now - lease.expires_at:.1f}s ago), "
                    "no holder now"
                )
        if not self.in_grace(now):
            self._grace_refusals_logged.clear()
        if len(self._outdated_logged) > _MAX_LOGGED_REFUSALS:
            self._outdated_logged.clear()  # bounded memory; at worst a refusal is logged again
        return messages


_MAX_LOGGED_REFUSALS = 4096

GENERATION_MAX = 2**64 - 1
"""Replica generations travel as unsigned 64-bit integers."""

_NONE = ReplicaRank(0, 0)


def _check_generation(generation: object) -> None:
    if (
        not isinstance(generation, int)
        or isinstance(generation, bool)
        or not 0 <= generation <= GENERATION_MAX
    ):
        raise ValueError(f"a replica generation is an integer in 0..2^64-1, got {generation!r}")


def check_rank(rank: object) -> None:
    """A rank is two generations, the confirmed one never above the other."""
    if not isinstance(rank, tuple) or len(rank) != 2:
        raise ValueError(f"a copy's rank is (confirmed, generation), got {rank!r}")
    confirmed, generation = rank
    _check_generation(confirmed)
    _check_generation(generation)
    if confirmed > generation:
        raise ValueError(f"a confirmed generation ({confirmed}) above the generation ({generation})")


def _with_known(decision: Decision, known: ReplicaRank) -> Decision:
    return dataclasses.replace(decision, generation=known.generation, confirmed=known.confirmed)


def _name(cluster: bytes, module: str) -> str:
    return f"cluster {cluster.hex()} module {module}"
