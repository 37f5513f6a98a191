"""Replay protection for authenticated arbiter requests (pure).

This module owns one decision: is this authentic request newer than the last one accepted from the
same sender session? Each client numbers its requests with a sequence that only grows, per session
(a random 16-byte boot id drawn when the client starts). The guard keeps, per (cluster, node,
session), the highest sequence accepted, and rejects anything not above it: a recorded request
replayed later is dropped, never acted on.

Memory is bounded: past `capacity` sessions the least recently used one is forgotten, except
sessions that hold a lease (the caller says which). Forgetting a session is safe otherwise: a
replayed REQUEST can only ask for a lease for its own node (availability, never a second holder),
a replayed STATUS reveals nothing new, and a replayed RELEASE acts only for the session that holds
the lease, which is never forgotten. A restarted arbiter forgets every session; its grace period
(see leases.py) covers that, and a release replayed then finds no lease to end.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection

DEFAULT_CAPACITY = 4096

Session = tuple[bytes, str, bytes]
"""(cluster id, node name, boot id)."""


class SequenceGuard:
    """Highest accepted sequence per sender session."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._last: OrderedDict[Session, int] = OrderedDict()

    def accept(self, session: Session, sequence: int, *, keep: Collection[Session] = ()) -> bool:
        """Record `sequence` for `session` and return True if it is above the last one accepted.

        Call only for requests whose MAC has been verified. `keep`: sessions never to forget.
        """
        last = self._last.get(session)
        if last is not None and sequence <= last:
            return False
        self._last[session] = sequence
        self._last.move_to_end(session)
        if len(self._last) > self._capacity:
            for old in list(self._last):
                if len(self._last) <= self._capacity:
                    break
                if old != session and old not in keep:
                    del self._last[old]
        return True

    def __len__(self) -> int:
        return len(self._last)
