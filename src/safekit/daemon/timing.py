"""Failover timing derived from the heartbeat settings (pure).

One knob for users - the heartbeat `pulse` and `timeout` of `<heart>` - and everything else that
the split-brain rules need follows from it, so a faster heartbeat cannot be paired by mistake with
a witness check too slow to fence in time:

- the witness is pinged every `pulse` (at least every 20 ms, at most every 250 ms), each probe
  waiting at most that long for its answer;
- a primary that loses every heartbeat and the witness must release the VIP within
  `split_brain_bound` = 3 probe periods + 50 ms: one period for the loss to show, one for the
  probe to time out, one for scheduling;
- the two nodes declare each other lost at most `detection_skew` = pulse + 50 ms apart;
- a secondary therefore takes over at the earliest `timeout + split_brain_bound + detection_skew`
  after the last heartbeat: 1.5 + 0.65 + 0.25 = 2.4 s with the defaults (200 ms / 1.5 s), and
  0.2 + 0.2 + 0.1 = 0.5 s with the fast profile (50 ms / 200 ms).
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

    @classmethod
    def from_heartbeat(cls, pulse: float, timeout: float) -> Timing:
        probe = min(0.25, max(0.02, pulse))
        return cls(
            pulse=pulse,
            timeout=timeout,
            witness_interval=probe,
            witness_timeout=probe,
            split_brain_bound=round(3 * probe + 0.05, 3),
            detection_skew=round(pulse + 0.05, 3),
        )

    @property
    def takeover_after(self) -> float:
        """Earliest takeover after the last heartbeat from a lost primary (with a witness)."""
        return self.timeout + self.split_brain_bound + self.detection_skew
