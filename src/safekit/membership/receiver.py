"""The receive path of one module's heartbeats: bytes from a LAN in, decisions out.

This module owns the order of the checks that ARCHITECTURE rule 5 requires - authenticate, check
the packet is meant for this node, module and LAN, reject replays - and the bookkeeping that goes
with them (per-LAN counters, round-trip times, the echo to put in our next packet). Only a packet
that passes every check reaches liveness, and only a FRESH one is handed to the state machine;
everything else is dropped and counted. It is pure: the daemon passes bytes, the LAN they arrived
on and the time, and executes what comes back.
"""

from __future__ import annotations

from dataclasses import dataclass

from safekit.membership.counters import Counters, RttStats
from safekit.membership.liveness import Liveness, LivenessEvent
from safekit.membership.replay import ReplayGuard, Verdict
from safekit.membership.wire import BadSignature, Heartbeat, HeartbeatError, decode, to_wire_us

_U32_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class Reception:
    """The outcome of one received packet.

    `heartbeat` is set only when its content must be acted on (a FRESH packet). `verdict` is None
    when the packet never reached the replay check (not authentic, or not meant for us); `reason`
    then says why, for a rate-limited debug log. `events` are liveness transitions to execute.
    """

    heartbeat: Heartbeat | None
    verdict: Verdict | None
    events: tuple[LivenessEvent, ...] = ()
    reason: str | None = None
    stale: bool = False
    """Dropped because its sender had not heard this node since the LAN went down (ADR 0070)."""
    sender: str | None = None
    """Who sent a stale packet (its heartbeat is not handed on): the warning is per peer and LAN."""


@dataclass(slots=True)
class _Echo:
    incarnation: int
    sent_at_us: int
    received_at_us: int


class HeartbeatReceiver:
    """Checks and accounts for every heartbeat packet `local_node` receives for `module`."""

    def __init__(
        self,
        *,
        key: bytes,
        local_node: str,
        module: str,
        liveness: Liveness,
        replay: ReplayGuard | None = None,
    ) -> None:
        self._key = key
        self._local_node = local_node
        self._module = module
        self.liveness = liveness
        self.replay = replay if replay is not None else ReplayGuard()
        self._counters: dict[str, Counters] = {}
        self._rtt: dict[tuple[str, str], RttStats] = {}
        self._echo: dict[tuple[str, str], _Echo] = {}

    def counters(self, lan: str) -> Counters:
        """The live counters of `lan` (created at zero on first use)."""
        return self._counters.setdefault(lan, Counters())

    def all_counters(self) -> dict[str, Counters]:
        return dict(self._counters)

    def rtt(self, peer: str, lan: str) -> RttStats:
        return self._rtt.setdefault((peer, lan), RttStats())

    def receive(self, data: bytes, *, lan: str, now: float) -> Reception:
        """Process one datagram that arrived on `lan` at monotonic time `now` (seconds)."""
        counters = self.counters(lan)
        try:
            hb = decode(data, self._key)
        except BadSignature as exc:
            counters.dropped_bad_signature += 1
            return Reception(None, None, reason=f"{type(exc).__name__}: {exc}")
        except HeartbeatError as exc:
            counters.dropped_malformed += 1
            return Reception(None, None, reason=f"{type(exc).__name__}: {exc}")

        misdirected = self._misdirection(hb, lan)
        if misdirected is not None:
            counters.dropped_misdirected += 1
            return Reception(None, None, reason=misdirected)

        verdict = self.replay.check(
            peer=hb.sender, module=hb.module, lan=lan, incarnation=hb.incarnation, sequence=hb.sequence
        )
        if not verdict.accepted:
            counters.dropped_replay += 1
            return Reception(
                None,
                verdict,
                reason=f"{verdict.value}: incarnation {hb.incarnation} "
                f"sequence {hb.sequence} from {hb.sender} on {lan}",
            )

        now_us = to_wire_us(now)
        self._record_echo(hb, lan, now_us)
        stale = self._stale(hb, lan)
        if stale is not None:
            counters.dropped_stale += 1
            return Reception(None, verdict, reason=stale, stale=True, sender=hb.sender)
        counters.received += 1
        if not verdict.deliver:
            counters.lan_copies += 1
        if hb.echo_sent_at_us:
            self.rtt(hb.sender, lan).add((now_us - hb.echo_sent_at_us - hb.echo_hold_us) / 1_000_000)
        answered = hb.echo_sent_at_us / 1_000_000 if hb.echo_sent_at_us else None
        events = self.liveness.packet_received(hb.sender, lan, now, answered)
        return Reception(hb if verdict.deliver else None, verdict, tuple(events))

    def tick(self, now: float) -> list[LivenessEvent]:
        return self.liveness.tick(now)

    def echo_for(self, peer: str, lan: str, now: float) -> tuple[int, int]:
        """(echo_sent_at_us, echo_hold_us) to put in our next packet to `peer` on `lan`.

        (0, 0) when there is nothing useful to echo; the peer then takes no RTT sample.
        """
        echo = self._echo.get((peer, lan))
        if echo is None:
            return (0, 0)
        hold = to_wire_us(now) - echo.received_at_us
        if hold > _U32_MAX:
            return (0, 0)  # held for over an hour: the peer could not use it
        return (echo.sent_at_us, max(0, hold))

    def _stale(self, hb: Heartbeat, lan: str) -> str | None:
        """Why a packet on a LAN declared down cannot bring it back up, or None.

        While a LAN is down, packets the peer sends may wait in the network or in the peer's
        neighbour table (ARP resolution queues them) and arrive together once the link works
        again: authentic, in order, but written seconds ago - a primary that has stepped down since,
        shown as still serving. A packet proves it was written after the outage when it echoes a
        timestamp of a packet this node sent after it declared the LAN down: its sender heard that
        packet first. Until one such packet arrives the LAN stays down (ADR 0070)."""
        down_at = self.liveness.down_since(hb.sender, lan)
        if down_at is None or hb.echo_sent_at_us >= to_wire_us(down_at):
            return None
        if hb.echo_sent_at_us == 0:
            heard = "it has not heard this node yet (it restarted?)"
        else:
            heard = "it echoes a packet this node sent before then"
        return (
            f"{hb.sender} on {lan}: sequence {hb.sequence} written before {hb.sender} heard this node "
            f"again since the LAN went down ({heard}): a late packet from the outage, or a one-way link"
        )

    def _misdirection(self, hb: Heartbeat, lan: str) -> str | None:
        # An authentic packet can still be the wrong one: a node removed from the cluster that
        # kept the key, a packet redirected from another node or LAN, or a cluster.xml whose LAN
        # addresses are swapped between nodes. None of these may move replay or liveness state.
        if hb.module != self._module:
            return f"for module {hb.module!r}, not {self._module!r}"
        if hb.target != self._local_node:
            return f"addressed to node {hb.target!r}, not to this node {self._local_node!r}"
        if hb.lan != lan:
            return f"names LAN {hb.lan!r} but arrived on LAN {lan!r} (check the LAN addresses in cluster.xml)"
        if hb.sender not in self.liveness.peers():
            return f"from {hb.sender!r}, which is not a peer of module {self._module!r}"
        if lan not in self.liveness.lans_of(hb.sender):
            return f"from {hb.sender!r} on LAN {lan!r}, which that peer is not configured on"
        return None

    def _record_echo(self, hb: Heartbeat, lan: str, now_us: int) -> None:
        previous = self._echo.get((hb.sender, lan))
        # Echo the newest timestamp of the newest incarnation: an older one reordered on the LAN
        # would make the peer's RTT sample include the reordering delay.
        if (
            previous is None
            or hb.incarnation > previous.incarnation
            or (hb.incarnation == previous.incarnation and hb.sent_at_us > previous.sent_at_us)
        ):
            self._echo[(hb.sender, lan)] = _Echo(hb.incarnation, hb.sent_at_us, now_us)
