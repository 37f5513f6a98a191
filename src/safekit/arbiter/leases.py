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
- Grace: the table lives in memory only. A restarted arbiter does not know who held what, and a
  node may still believe it holds a lease granted by the previous process. So for
  `grace` (MAX_LEASE) seconds after `started_at` the table grants nothing: every lease granted
  before the restart has expired (on the arbiter's clock and so on the node's) before anything new
  is granted.

Every change of holder, every expiry noticed and the first refusal of each requester per holder
are returned as `Decision.log` / `sweep()` messages with the reason; the server logs them.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

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

    @property
    def granted(self) -> bool:
        return self in (Reason.GRANTED, Reason.RENEWED)


@dataclass(frozen=True, slots=True)
class Decision:
    """The arbiter's answer to one request or release.

    `holder` is who holds the lease after the decision (None: nobody); `remaining` how long that
    lease still runs, in seconds (for GRACE: how long the grace period still runs).
    """

    reason: Reason
    holder: str | None
    remaining: float
    log: str | None = None
    """What to log about this decision (None: nothing worth a line, e.g. a routine renewal)."""

    @property
    def granted(self) -> bool:
        return self.reason.granted


@dataclass(frozen=True, slots=True)
class LeaseView:
    """One lease as a status query shows it."""

    module: str
    holder: str
    remaining: float


@dataclass(slots=True)
class _Lease:
    holder: str
    session: bytes
    expires_at: float
    refusals_logged: set[str] = field(default_factory=set)


class LeaseTable:
    """Every lease an arbiter process has granted, for every cluster it serves."""

    def __init__(
        self, started_at: float, *, max_lease: float = MAX_LEASE, grace: float | None = None
    ) -> None:
        if not math.isfinite(max_lease) or max_lease <= 0:
            raise ValueError(f"max_lease must be a positive number of seconds, got {max_lease!r}")
        self.max_lease = max_lease
        self.grace_until = started_at + (max_lease if grace is None else grace)
        self._leases: dict[tuple[bytes, str], _Lease] = {}
        self._grace_refusals_logged: set[tuple[bytes, str, str]] = set()

    def in_grace(self, now: float) -> bool:
        return now < self.grace_until

    def request(
        self, cluster: bytes, module: str, node: str, duration: float, now: float, *, session: bytes = b""
    ) -> Decision:
        """Grant or refuse `node` the lease of `module` for `duration` seconds (at most MAX_LEASE)."""
        if not math.isfinite(duration) or duration <= 0:
            raise ValueError(f"a lease duration must be a positive number of seconds, got {duration!r}")
        key = (cluster, module)
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
        lease = self._leases.get(key)
        if lease is None or now >= lease.expires_at:
            return Decision(Reason.NOT_HOLDER, None, 0.0)
        if lease.holder != node or (session is not None and session != lease.session):
            who = "another session of " + node if lease.holder == node else node
            return Decision(
                Reason.NOT_HOLDER,
                lease.holder,
                lease.expires_at - now,
                f"{_name(cluster, module)}: release by {who} ignored: held by {lease.holder}",
            )
        del self._leases[key]
        return Decision(
            Reason.RELEASED,
            None,
            0.0,
            f"{_name(cluster, module)}: released by {node} ({lease.expires_at - now:.1f}s before expiry)",
        )

    def holder_session(self, cluster: bytes, module: str, now: float) -> tuple[str, bytes] | None:
        """(holder, session) of an unexpired lease, or None."""
        lease = self._leases.get((cluster, module))
        if lease is None or now >= lease.expires_at:
            return None
        return lease.holder, lease.session

    def leases(self, cluster: bytes, now: float, module: str | None = None) -> list[LeaseView]:
        """The unexpired leases of `cluster` (of one module if given), sorted by module."""
        return sorted(
            (
                LeaseView(m, lease.holder, lease.expires_at - now)
                for (c, m), lease in self._leases.items()
                if c == cluster and (module is None or m == module) and now < lease.expires_at
            ),
            key=lambda view: view.module,
        )

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
        return messages


def _name(cluster: bytes, module: str) -> str:
    return f"cluster {cluster.hex()} module {module}"
