"""Live cluster view for the console: this node's modules (from the node, every 0.5 s) and its
peers' (from their APIs, every second), pushed to Server-Sent-Events subscribers when it changes,
with a timeline of the state changes seen. It runs only while a console is watching."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("safekit.api")

LocalSource = Callable[[], Awaitable[list[dict[str, Any]]]]
PeerSource = Callable[[str], Awaitable[dict[str, Any]]]
"""node name -> {"reachable": bool, "modules": [...], "error": str}"""

LOCAL_PERIOD = 0.5
PEER_PERIOD = 1.0
TIMELINE = 200


class ClusterWatcher:
    def __init__(self, node: str, peers: list[str], local: LocalSource, peer: PeerSource) -> None:
        self.node = node
        self.peers = peers
        self._local = local
        self._peer = peer
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._nodes: dict[str, dict[str, Any]] = {}
        self._last_states: dict[tuple[str, str], str] = {}
        self.timeline: deque[dict[str, Any]] = deque(maxlen=TIMELINE)
        self._last_sent = ""
        self._changed = asyncio.Event()

    def snapshot(self) -> dict[str, Any]:
        order = [self.node, *self.peers]
        nodes = [self._nodes.get(n, {"name": n, "reachable": None, "modules": []}) for n in order]
        return {"node": self.node, "time": time.time(), "nodes": nodes, "timeline": list(self.timeline)}

    async def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=4)
        self._subscribers.add(queue)
        if not self._tasks:
            await self._refresh_local()
            self._tasks = [asyncio.create_task(self._local_loop())]
            self._tasks += [asyncio.create_task(self._peer_loop(p)) for p in self.peers]
            self._tasks.append(asyncio.create_task(self._push_loop()))
        queue.put_nowait(self.snapshot())
        return queue

    async def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)
        if not self._subscribers:
            await self.stop()

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _update(self, name: str, entry: dict[str, Any]) -> None:
        entry = {"name": name, **entry}
        for mod in entry.get("modules", []):
            key = (name, str(mod.get("name")))
            state = f"{mod.get('state')}/{mod.get('readiness')}"
            before = self._last_states.get(key)
            if before != state:
                self._last_states[key] = state
                self.timeline.append(
                    {
                        "time": time.time(),
                        "node": name,
                        "module": key[1],
                        "from": before,
                        "to": state,
                        "reason": mod.get("reason", ""),
                    }
                )
        if entry.get("reachable") is False and self._nodes.get(name, {}).get("reachable") is not False:
            self.timeline.append(
                {
                    "time": time.time(),
                    "node": name,
                    "module": "",
                    "from": None,
                    "to": "UNREACHABLE",
                    "reason": entry.get("error", ""),
                }
            )
            for key in [k for k in self._last_states if k[0] == name]:
                del self._last_states[key]
        self._nodes[name] = entry
        self._changed.set()

    async def _refresh_local(self) -> None:
        try:
            modules = await self._local()
            self._update(self.node, {"reachable": True, "modules": modules})
        except Exception:  # the view must go on: the next round tries again
            log.exception("console: local state")

    async def _local_loop(self) -> None:
        while True:
            await asyncio.sleep(LOCAL_PERIOD)
            await self._refresh_local()

    async def _peer_loop(self, peer: str) -> None:
        while True:
            try:
                self._update(peer, await self._peer(peer))
            except Exception as exc:
                self._update(peer, {"reachable": False, "modules": [], "error": str(exc)})
            await asyncio.sleep(PEER_PERIOD)

    async def _push_loop(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            snap = self.snapshot()
            # Time changes every round: compare without it, so an idle cluster sends nothing.
            digest = json.dumps({**snap, "time": 0}, sort_keys=True, default=str)
            if digest == self._last_sent:
                continue
            self._last_sent = digest
            for queue in list(self._subscribers):
                if queue.full():  # a slow client gets the newest view, not a backlog
                    with contextlib.suppress(asyncio.QueueEmpty):
                        queue.get_nowait()
                queue.put_nowait(snap)
