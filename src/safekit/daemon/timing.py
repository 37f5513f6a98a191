"""Failover timing derived from the heartbeat settings (pure).

One knob for users - the heartbeat `pulse` and `timeout` of `<heart>` - and everything else that
the split-brain rules need follows from it, so a faster heartbeat cannot be paired by mistake with
a witness check too slow to fence in time:

- the witness is pinged every `pulse` (at least every 20 ms, at most every 250 ms), each probe
  waiting at most that long for its answer;
- a primary that loses every heartbeat must have released the VIP `split_brain_bound` = 2 probe
  periods + 30 ms after it declared the peer lost, unless the witness answered since: on that
  loss it probes the witness at once (an answer or a time-out within one period), the second
  period and the 30 ms are margin for a probe already in flight and for scheduling on a loaded
  node (the heartbeat jitter budget is 20 ms);
- the two nodes declare each other lost at most `detection_skew` = pulse + 30 ms apart (their
  last packets were at most a pulse apart, plus scheduling);
- a secondary therefore takes over at the earliest `timeout + split_brain_bound + detection_skew`
  after the last heartbeat: 1.5 + 0.43 + 0.23 = 2.16 s with the defaults (200 ms / 1.5 s), and
  0.2 + 0.13 + 0.08 = 0.41 s with the fast profile (50 ms / 200 ms).

While the peer is present nothing depends on a fresh witness answer, so the witness is probed
only every `witness_idle_interval` (1 s) then: the cluster sends about one ping a second per node
instead of five.

With the arbitrating witness (`exec="arbitrator"`, docs/adr/0010), the primary renews its lease
every probe period, and a lease lasts `lease_duration` = max(split_brain_bound, timeout -
detection_skew) from when the request was sent: long enough to ride out several lost or late
answers on a busy host (1.27 s with the defaults), short enough that a dead primary's lease has
run out when its peer notices the loss. The peer then takes over `timeout + detection_skew` after
the last heartbeat: 1.73 s with the defaults, 0.28 s with the fast profile.
"""

from __future__ import annotations

from dataclasses import dataclass

FAST_PROFILE = {"pulse": 0.05, "timeout": 0.2}
"""For LANs with low jitter: `<heart pulse="50ms" timeout="200ms">`."""


@dataclass(frozen=True)
class Timing:
    pulse: float
    timeout: float
    witness_interval: float
    witness_timeout: float
    split_brain_bound: float
    detection_skew: float
    witness_idle_interval: float = 1.0
    lease_duration: float = 1.0

    @classmethod
    def from_heartbeat(cls, pulse: float, timeout: float) -> Timing:
        probe = min(0.25, max(0.02, pulse))
        return cls(
            pulse=pulse,
            timeout=timeout,
            witness_interval=probe,
            witness_timeout=probe,
            split_brain_bound=round(2 * probe + 0.03, 3),
            detection_skew=round(pulse + 0.03, 3),
            lease_duration=round(max(2 * probe + 0.03, timeout - pulse - 0.03), 3),
        )

    @property
    def takeover_after(self) -> float:
        """Earliest takeover after the last heartbeat from a lost primary (with a ping witness)."""
        return self.timeout + self.split_brain_bound + self.detection_skew

    @property
    def arbitrated_takeover_after(self) -> float:
        """Earliest takeover after the last heartbeat from a lost primary (with the arbitrator)."""
        return self.timeout + self.detection_skew
