"""Settings of one mirror module as the state machine needs them.

This module owns the small, already-validated view of a module's configuration that the pure
state machine reads. The config package (which parses `userconfig.xml`) builds it; the state
machine never imports the config package, so the two can evolve separately.
"""

from __future__ import annotations

from dataclasses import dataclass

from safekit.mirror.witness import WitnessMode, WitnessRules

DEFAULTPRIM_ALONE = "alone"
DEFAULTPRIM_LASTPRIM = "lastprim"


@dataclass(frozen=True)
class MirrorSettings:
    """What the mirror state machine needs from `<service>`, `<heart>` and `<splitbrain>`.

    Durations are seconds (floats); the config layer converts SafeKit units.
    """

    local_node: str
    peer_node: str
    # "alone" (no automatic failback), "lastprim" (the last primary wins a simultaneous start)
    # or a node name (that node wins a simultaneous start and gets the role back after it
    # has resynchronised: failback).
    defaultprim: str = DEFAULTPRIM_ALONE
    failover: bool = True
    maxloop: int = 3
    loop_interval: float = 24 * 3600.0
    witness_configured: bool = False
    # A node that serves while every heartbeat is lost and that cannot prove it reaches the
    # witness releases the VIP at most this long after the later of "peer lost" and its last
    # successful witness answer. The daemon must poll the witness more often than this.
    split_brain_bound: float = 10.0
    # Upper bound of the difference between the moments the two nodes declare each other lost
    # (about one heartbeat pulse plus scheduling). A node that takes over waits
    # split_brain_bound + detection_skew, so the other side has fenced itself first.
    detection_skew: float = 2.0
    # How long a starting node waits for a first heartbeat before it may go ALONE.
    peer_timeout: float = 30.0
    # `<splitbrain exec="ping|arbitrator">`: a witness that answers pings, or the arbitrating
    # witness (`safekit arbiter`) that leases the right to serve without the peer to one node.
    witness_mode: WitnessMode = WitnessMode.PING
    # arbitrator: how long a granted lease lets a node serve without heartbeats, counted from
    # when its request was sent. The daemon renews it more often than that.
    lease_duration: float = 10.0

    def __post_init__(self) -> None:
        problems = []
        if not self.local_node or not self.peer_node:
            problems.append("local_node and peer_node must be non-empty node names")
        if self.local_node == self.peer_node:
            problems.append(f"local_node and peer_node are both {self.local_node!r}")
        allowed = {DEFAULTPRIM_ALONE, DEFAULTPRIM_LASTPRIM, self.local_node, self.peer_node}
        if self.defaultprim not in allowed:
            problems.append(
                f"defaultprim={self.defaultprim!r}: expected 'alone', 'lastprim' or one of the "
                f"module's nodes ({self.local_node}, {self.peer_node})"
            )
        if self.maxloop < 0:
            problems.append(f"maxloop={self.maxloop} must be >= 0")
        for name in ("loop_interval", "split_brain_bound", "peer_timeout", "lease_duration"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)} must be > 0 seconds")
        if self.detection_skew < 0:
            problems.append(f"detection_skew={self.detection_skew} must be >= 0 seconds")
        if problems:
            raise ValueError("invalid mirror settings: " + "; ".join(problems))

    @property
    def witness_rules(self) -> WitnessRules:
        return WitnessRules(
            self.witness_mode, self.split_brain_bound, self.detection_skew, self.lease_duration
        )

    @property
    def takeover_guard(self) -> float:
        """How long after "peer lost" a non-serving node waits (with the witness's leave) before it serves."""
        return self.witness_rules.guard

    @property
    def default_primary_node(self) -> str | None:
        """The node named by defaultprim, or None for 'alone' / 'lastprim'."""
        if self.defaultprim in (self.local_node, self.peer_node):
            return self.defaultprim
        return None
