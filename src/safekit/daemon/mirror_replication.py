"""A mirror module's replication (`<rfs>`) as the executor runs it: the replication process of the
role the state machine chose (start, stop, restart after it died), its control channel, and the
execution of what `mirror/replica.py` decides from its events and the peer's statuses.

Also what a dead safekitd left of it: the very process it recorded (never one found by name) and
the mounts, removed without looking through them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safekit.aio import within
from safekit.config import ModuleConfig
from safekit.daemon.module_executor import LOG_LEVELS
from safekit.daemon.rfs_figures import ReplicationFigures
from safekit.daemon.rfs_supervisor import RfsError, RfsProcess, forget_process, recorded_process
from safekit.daemon.rfs_supervisor import Role as RfsRole
from safekit.host import mounts, persist, processes
from safekit.mirror import (
    ActionFailed,
    Event,
    MirrorSettings,
    MirrorState,
    NodeStatus,
    PersistedRecord,
    ReplicationExited,
    ReplicationRole,
    StartReplication,
    replica,
)
from safekit.rfs import channel, native
from safekit.rfs.spec import RfsSpec


def cross_check(record: PersistedRecord | None, spec: RfsSpec | None) -> PersistedRecord | None:
    """The replication process records leaving sync itself (before it changes the copy); safekitd
    may have crashed before it recorded it too. The stricter of the two wins."""
    if record is None or spec is None or not record.uptodate:
        return record
    try:
        rfs_state = persist.read_json(Path(spec.state_dir) / "secondary.json")
    except ValueError:
        rfs_state = {"in_sync": False}
    if isinstance(rfs_state, dict) and rfs_state.get("in_sync") is False:
        return dataclasses.replace(record, uptodate=False)
    return record


def detach_mounts(rfs: RfsSpec, log: logging.Logger) -> int:
    """Remove the mounts a replication process left (FUSE, its binds, the secondary's recorded
    read-only binds) without looking through them; returns how many were removed."""
    state_dir = Path(rfs.state_dir)
    try:
        record = persist.read_json(state_dir / "secondary.json")
        recorded = (record.get("mounts") or []) if isinstance(record, dict) else []
    except ValueError:
        recorded = []
    removed = 0
    for path in [*(d.path for d in rfs.dirs), str(state_dir / "mnt")]:
        try:
            removed += mounts.detach_ours(path, recorded)
        except OSError as exc:
            log.error("%s: could not remove a replication mount: %s", path, exc)
    return removed


class ModuleReplication:
    def __init__(
        self,
        spec: RfsSpec | None,
        config: ModuleConfig,
        settings: MirrorSettings,
        *,
        log: logging.Logger,
        resources: dict[str, str],
        submit: Callable[[Event], None],
        state: Callable[[], MirrorState],
    ) -> None:
        self.spec = spec
        self.config = config
        self.settings = settings
        self.log = log
        self.resources = resources
        self.submit = submit
        self.state = state
        self.process: RfsProcess | None = None
        self.restarts = 0
        # what the replication means for the module: decided in mirror/replica.py
        self.book = replica.ReplicaBook(with_rfs=spec is not None)
        self.fullsync = False
        self.split_at: float | None = None  # wall clock: the peer's last heartbeat before a loss
        self._verify: asyncio.Future[channel.VerifyResult] | None = None
        # what the replication looks like (metrics, console, history: daemon/rfs_figures.py)
        self.figures = ReplicationFigures()
        self._last_shown: channel.Event | None = None  # the last event but status answers
        self._poll: asyncio.Task[None] | None = None
        self._poll_now = asyncio.Event()  # a resynchronisation began: ask how far at once
        if spec is not None:
            resources["rfs.uptodate"] = "init"
            resources["rfs.degraded"] = "init"

    # ------------------------------------------------------------------ the machine's actions
    def began(self, role: ReplicationRole) -> None:
        """StartReplication: the role begins (the process, with <rfs>, is started next)."""
        self.book = replica.started(self.book, role, self.state().generation)

    def ended(self) -> None:
        """StopReplication: the role ends (the process is stopped next)."""
        self.book = replica.stopped(self.book)

    def fence(self) -> None:
        self.book, effects = replica.fenced(self.book)
        self._apply(effects)

    def peer_lost(self) -> None:
        self.split_at = time.time() - self.settings.peer_timeout
        self._apply(replica.peer_lost(self.book))  # no need to wait for sendtimeout

    def replication_lan_lost(self, lan: str) -> None:
        self._apply(replica.replication_lan_lost(self.book, self.state(), lan))

    def on_peer_status(self, status: NodeStatus, now: float) -> None:
        self.book, effects = replica.on_peer_status(self.book, status, self.state(), now)
        self._apply(effects)
        self.after_step()

    def after_step(self) -> None:
        """After every machine step and peer status: the generation for the primary's replication
        process, and whether its held writes may now be acknowledged alone (mirror/replica.py)."""
        self.book, effects = replica.after_step(self.book, self.settings, self.state())
        self._apply(effects)

    async def start(self, action: StartReplication) -> None:
        """Start this role's replication process; the primary's serves the replicated directories
        (FUSE) before this returns, so start_prim's application writes through it."""
        assert self.spec is not None
        await self.stop()
        state = self.state()
        role: RfsRole = "primary" if action.role is ReplicationRole.PRIMARY else "secondary"
        extra: dict[str, Any] = {"generation": state.generation, "fullsync": self.fullsync}
        if self.config.rfs is not None:
            extra["splitbrain_keep_free"] = self.config.rfs.splitbrain_keep_free
        if action.diverged:  # a split brain lost: the secondary saves this node's changes first
            extra["diverged"] = {
                "peer": self.settings.peer_node,
                "generation": state.generation,
                "peer_generation": state.peer_generation_seen,
                "split_at": self.split_at,
            }
        spec = dataclasses.replace(self.spec, extra=extra)
        self.fullsync = False
        if (notice := native.environment_notice(os.environ)) is not None:
            self.log.warning("replication: %s", notice)
        process = RfsProcess(role, spec, self.log, self._on_event)
        self.process = process
        self._last_shown = None
        self.figures.started(role)
        try:
            await process.start()
        except RfsError as exc:
            self.process = None
            self.log.error("replication: %s", exc)
            self.submit(ActionFailed(action, str(exc), time.monotonic()))
            self.figures.stopped()
            return
        if role == "primary":
            self._poll = asyncio.get_running_loop().create_task(self._poll_status(process))
        self.log.info(
            "replication %s started (%s engine): %s (peer %s:%d)",
            role,
            process.engine,
            ", ".join(d.path for d in spec.dirs),
            spec.peer_addr,
            spec.port,
        )

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            died = process.proc is not None and process.proc.returncode is not None
            began = time.monotonic()
            await process.stop()
            took = time.monotonic() - began
            self.log.info("replication %s stopped (the process took %.2f s to exit)", process.role, took)
            if process.role == "primary" and died and self.spec is not None:
                # A dead FUSE server leaves dead mounts over the directories: removed now that the
                # application is stopped (the next primary process would do it too).
                removed = await asyncio.to_thread(detach_mounts, self.spec, self.log)
                if removed:
                    self.log.info("dead replication mounts removed: %d", removed)
        self.figures.stopped()
        if self.spec is not None:
            self.resources["rfs.degraded"] = "init"

    async def _poll_status(self, process: RfsProcess) -> None:
        """The primary's counters every POLL_INTERVAL seconds (answered by a `status` event), every
        RESYNC_POLL_INTERVAL while a resynchronisation runs, and at once when one begins: the
        console showed a resync as "how far: not known yet" at 0 B/s until the next poll."""
        while self.process is process:
            self._poll_now.clear()
            process.command(channel.QueryStatus())
            with contextlib.suppress(TimeoutError):
                await within(self._poll_now.wait(), self.figures.poll_interval())

    # ------------------------------------------------------------------ the process's events
    def _on_event(self, event: channel.Event) -> None:
        process = self.process
        if process is None:
            return
        self.figures.on_event(event, time.monotonic())
        if isinstance(event, channel.StatusReport):
            return  # figures only: the state machine has nothing to learn from it
        if isinstance(event, channel.Resyncing) and process.role == "primary":
            self._poll_now.set()
        self._last_shown = event
        if isinstance(event, channel.InSync) and process.role == "secondary":
            self.restarts = 0
        self.book, effects = replica.on_event(self.book, event, self.settings.peer_node, time.monotonic())
        self._apply(effects)
        self.after_step()

    def _apply(self, effects: list[replica.Effect]) -> None:
        """Execute what mirror/replica.py decided."""
        for effect in effects:
            match effect:
                case replica.Submit(event=event):
                    self.submit(event)
                case replica.SendCommand(command=command):
                    if self.process is not None:
                        self.process.command(command)
                case replica.Note(level=level, text=text):
                    self.log.log(LOG_LEVELS[level], "%s", text)
                case replica.ShowResource(name=name, value=None):
                    self.resources.pop(name, None)
                case replica.ShowResource(name=name, value=str(value)):
                    self.resources[name] = value
                case replica.AnswerVerify(result=result):
                    if self._verify is not None and not self._verify.done():
                        self._verify.set_result(result)
                case replica.ReportExit(code=code):
                    if self.process is not None:
                        asyncio.get_running_loop().create_task(self._report_exit(self.process, code))

    async def _report_exit(self, dead: RfsProcess, code: object) -> None:
        """The state machine decides what a dead replication process means (ReplicationExited). A
        primary's is reported at once (its application's files fail); a secondary's after a backoff,
        so that a process that dies at start does not loop fast."""
        role = ReplicationRole.PRIMARY if dead.role == "primary" else ReplicationRole.SECONDARY
        if role is ReplicationRole.SECONDARY:
            await asyncio.sleep(min(5.0, 0.5 * 2**self.restarts))
            self.restarts += 1
        if self.process is not dead:
            return
        self.submit(ReplicationExited(role, time.monotonic(), f"exit code {code}"))

    # ------------------------------------------------------------------ operator commands
    def request_fullsync(self) -> str:
        """`prim fullsync` / `second fullsync`: the next resynchronisation copies everything."""
        if self.spec is None:
            return "no <rfs> in this module: nothing to resynchronise"
        self.fullsync = True
        process = self.process
        if process is not None and process.role == "primary":
            process.command(channel.Fullsync())
            return "full resynchronisation of the secondary started"
        if process is not None:
            asyncio.get_running_loop().create_task(self._restart_now(process))
            return "reconnecting to the primary for a full resynchronisation"
        return "the next resynchronisation copies everything"

    async def _restart_now(self, process: RfsProcess) -> None:
        if self.process is process:
            self.began(self.book.role)
            await self.start(StartReplication(self.book.role))

    async def verify(self, module: str, timeout: float = 600.0) -> dict[str, Any]:
        """`safekit rfs verify`: both copies compared at one point of the operation order."""
        process = self.process
        if self.spec is None:
            return {"ok": False, "error": f"{module}: no <rfs> in this module"}
        if process is None or process.role != "primary":
            return {
                "ok": False,
                "error": f"{module}: run verify on the primary ({self.state().module_state} here)",
            }
        self._verify = asyncio.get_running_loop().create_future()
        process.command(channel.Verify())
        try:
            result = await within(self._verify, timeout)
        except TimeoutError:
            return {"ok": False, "error": f"{module}: verify did not finish within {timeout:g} s"}
        finally:
            self._verify = None
        if result.reason:
            return {"ok": False, "error": f"{module}: {result.reason}"}
        differences = list(result.differences)
        return {
            "ok": True,
            "identical": result.ok,
            "checked": result.checked,
            "differences": differences,
            "message": f"{module}: {result.checked} entries compared, "
            + ("identical" if not differences else f"{len(differences)} differences"),
        }

    # ------------------------------------------------------------------ after a crash, views
    def end_orphan(self) -> None:
        """End the replication process a dead safekitd started (the very one it recorded, never a
        process found by name), then remove the mounts it left (without looking through them)."""
        if self.spec is None:
            return
        state_dir = Path(self.spec.state_dir)
        found = recorded_process(state_dir)
        if found is not None:
            role, identity = found
            outcome = processes.end_process(identity)
            self.log.warning(
                "replication process (%s, pid %d) left by the dead safekitd: %s",
                role,
                identity.pid,
                "already gone" if outcome == "not running" else outcome,
            )
            forget_process(state_dir)
        removed = detach_mounts(self.spec, self.log)
        if removed:
            self.log.warning("replication mounts left by a dead process: %d removed", removed)

    def view(self) -> dict[str, Any] | None:
        """The running process's role, engine and last event, with the figures `safekit state -v`
        prints when the process reports them (link, lag, ack latency, resync; the monitoring view
        has them all), or None."""
        if self.process is None:
            return None
        last = self._last_shown
        figures = self.figures.view(time.monotonic())
        return {
            "role": self.process.role,
            "engine": self.process.engine,
            "last_event": None if last is None else channel.describe(last),
            **{key: figures[key] for key in ("link", "in_sync", "lag_seconds", "ack_latency", "resync")},
        }
