"""The `<check>` checkers of a module as tasks: each probes on its interval and reports a resource.

`tcp.X`, `ping.X`, `intf.X`, `ip.X`, `module.X` are probed here; `custom.X` is a long-running program
of the user's that reports with `safekit set -r custom.X -v up|down` (it is started here, with the
module's environment, and started again if it exits). What a resource going down does is decided
by the module (the checker's `action`, its `when`) and the state machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from safekit.checkers import probes
from safekit.checkers.bounded import BoundedProbe
from safekit.checkers.icmp import Pinger
from safekit.checkers.link_events import LinkEvents, pause
from safekit.config import Check
from safekit.host.priority import at_normal_priority

Report = Callable[[str, str], None]
"""(resource, "up"|"down")"""


@dataclass(frozen=True)
class CheckerSpec:
    resource: str
    when: str
    action: str
    interval: float
    probe: Callable[[], Awaitable[bool]]
    on_link_change: bool = False
    """Probe again at once when a link of this host changes (`<intf>`: checkers.link_events)."""


def checker_specs(check: Check, pinger: Pinger) -> list[CheckerSpec]:
    """One spec per probed target of `<tcp>`, `<ping>`, `<intf>`, `<ip>` and `<module>`, each probe
    bounded by its target's timeout (checkers.bounded: a probe that hangs is a down round)."""
    specs: list[CheckerSpec] = []
    for tcp in check.tcp:
        for t in tcp.targets:
            probe = BoundedProbe(
                partial(probes.tcp, t.addr or "127.0.0.1", t.port or 0, t.timeout), t.timeout
            )
            specs.append(CheckerSpec(f"tcp.{tcp.ident}", tcp.when, tcp.action, t.interval, probe))
    for ping in check.ping:
        for t in ping.targets:
            probe = BoundedProbe(partial(pinger.ping, t.addr or "", t.timeout), t.timeout)
            specs.append(CheckerSpec(f"ping.{ping.ident}", ping.when, ping.action, t.interval, probe))
    for intf in check.intf:
        for t in intf.targets:
            if t.interface is None:  # <interface check="on"> without a name: the VIP's interface
                probe = BoundedProbe(partial(_sync, probes.interface_carrying_up, t.addr or ""), t.timeout)
            else:
                probe = BoundedProbe(partial(_sync, probes.interface_up, t.interface), t.timeout)
            specs.append(
                CheckerSpec(
                    f"intf.{intf.ident}", intf.when, intf.action, t.interval, probe, on_link_change=True
                )
            )
    for ip in check.ip:
        for t in ip.targets:
            probe = BoundedProbe(partial(_sync, probes.address_present, t.addr or ""), t.timeout)
            specs.append(CheckerSpec(f"ip.{ip.ident}", ip.when, ip.action, t.interval, probe))
    for module in check.module:
        for t in module.targets:
            url = f"http://{t.addr}:{t.port or 9010}/var/modules/{module.name}/ready.txt"
            probe = BoundedProbe(partial(_http_ok, url, t.timeout), t.timeout)
            specs.append(CheckerSpec(f"module.{module.name}", module.when, module.action, t.interval, probe))
    return specs


async def _sync(fn: Callable[[str], bool], arg: str) -> bool:
    return await asyncio.to_thread(fn, arg)


async def _http_ok(url: str, timeout: float) -> bool:
    def get() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http:// built above
                return bool(response.status == 200)
        except OSError:
            return False

    return await asyncio.to_thread(get)


async def run_checker(
    spec: CheckerSpec, report: Report, log: logging.Logger, link_events: LinkEvents | None = None
) -> None:
    """Probe every `spec.interval` and report the resource, for as long as the module runs; a
    checker `on_link_change` also probes as soon as `link_events` says a link of this host changed.

    A probe that raises is a failed probe: the resource is reported down and the checker goes on
    (an unexpected error - a name that no longer resolves, a netlink error - must not end the
    checker and leave the resource at its last value for good). The error is logged when it
    appears or changes, and once when the probe answers again, not at every round.
    """
    wake = link_events.subscribe() if link_events is not None and spec.on_link_change else None
    try:
        failing: str | None = None
        while True:
            if wake is not None:
                wake.clear()  # a change from now on is seen by this probe or wakes the next one
            try:
                up = await spec.probe()
            except Exception as exc:  # any error of a probe is a failed probe
                why = f"{type(exc).__name__}: {exc}"
                if why != failing:
                    log.warning("checker %s: the probe failed (%s): counted as down", spec.resource, why)
                failing, up = why, False
            else:
                if failing is not None:
                    log.info(
                        "checker %s: the probe answers again (it failed with %s)", spec.resource, failing
                    )
                    failing = None
            report(spec.resource, "up" if up else "down")
            await pause(spec.interval, wake)
    finally:
        if link_events is not None:
            link_events.unsubscribe(wake)


class CheckerVerdicts:
    """Which checker "down"s have been given their verdict (the checker's action) - pure logic.

    A checker reports every round; its action is asked once per down, not at every round. It is
    asked again for a resource still down once the module has moved on from the verdict: a script
    ran (the stopstart or restart it asked for, or another that made the machine ignore it), or
    the checker stopped counting for a while (`when`, the VIP not held, the module in WAIT). That
    is SafeKit's behaviour, whose checkers restart with the role: a VIP that did not come back
    after a stopstart, or an application still not answering after a restart, gets another
    reaction, and maxloop bounds the repetitions.
    """

    def __init__(self) -> None:
        self._given: set[str] = set()

    def on_report(self, resource: str, value: str, counts: bool) -> bool:
        """Whether `resource`'s report of `value` asks for the checker's action now. `counts`:
        whether a down of this checker counts in the module's current state."""
        if value != "down":
            self._given.discard(resource)
            return False
        if not counts or resource in self._given:
            return False
        self._given.add(resource)
        return True

    def given(self, resource: str) -> None:
        """The action was asked for `resource` by other means (`safekit checker on`)."""
        self._given.add(resource)

    def rearm(self, keeps: Callable[[str], bool]) -> None:
        """After a step of the module: a verdict stays given only for the resources `keeps`
        (no script runs and the checker still counts); the others act on their next down."""
        self._given = {resource for resource in self._given if keeps(resource)}


async def run_custom(
    resource: str,
    command: str,
    *,
    env: dict[str, str],
    cwd: Path,
    log: logging.Logger,
    restart_delay: float = 5.0,
) -> None:
    """Keep the user's custom checker running; it reports through `safekit set`."""
    argv = shlex.split(command)
    while True:
        try:
            proc = await asyncio.create_subprocess_exec(
                *at_normal_priority(argv),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                env={**os.environ, **env},
                cwd=str(cwd),
                start_new_session=True,
            )
        except OSError as exc:
            log.error("custom checker %s: cannot start %s: %s", resource, argv[0], exc.strerror)
            await asyncio.sleep(restart_delay)
            continue
        log.info("custom checker %s started (pid %d): %s", resource, proc.pid, command)
        try:
            code = await proc.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            raise
        log.warning(
            "custom checker %s exited with %s; starting it again in %g s", resource, code, restart_delay
        )
        await asyncio.sleep(restart_delay)
