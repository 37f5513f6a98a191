"""Pieces every kind of module (mirror, farm) builds the same way from its configuration."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from safekit.config import ModuleConfig
from safekit.daemon.checker_tasks import CheckerSpec
from safekit.host.paths import Paths
from safekit.scripts import ScriptEnvironment, ScriptRunner


def script_runner(name: str, config: ModuleConfig, paths: Paths) -> ScriptRunner | None:
    """The module's restart scripts; None without `<user>` (then no script runs)."""
    if config.user is None:
        return None
    return ScriptRunner(
        ScriptEnvironment(
            safe=paths.safe,
            module=name,
            safevar=paths.var,
            userbin=paths.module_dir(name) / "bin",
            userconf=paths.module_dir(name) / "conf",
            uservar=paths.module_var(name),
            user_vars={v.name: v.value for v in config.user.vars},
        ),
        paths.user_log(name),
        nicestoptimeout=config.user.nicestoptimeout,
        forcestoptimeout=config.user.forcestoptimeout,
    )


def check_actions(config: ModuleConfig, specs: list[CheckerSpec]) -> dict[str, tuple[str, str]]:
    """Each checker resource's (when, action): the probe checkers' and the custom ones'."""
    checks = {spec.resource: (spec.when, spec.action) for spec in specs}
    for custom in config.check.custom:
        checks[f"custom.{custom.ident}"] = (custom.when, custom.action)
    return checks


T = TypeVar("T")


async def next_item(queue: asyncio.Queue[T], deadline: float | None, tick: Callable[[float], T]) -> T:
    """The next thing a module's single task handles: what has already arrived first, else what
    arrives before `deadline` (monotonic), else `tick(now)` at the deadline.

    Events that arrived while a long step ran (a lease renewal answered while the replication
    process started) must be handled before the deadline they may have moved: a tick taken first
    would judge their absence (`asyncio.wait_for` with a deadline already past times out even when
    the queue holds items).
    """
    try:
        return queue.get_nowait()
    except asyncio.QueueEmpty:
        pass
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        return await asyncio.wait_for(queue.get(), timeout)
    except TimeoutError:
        return tick(time.monotonic())
