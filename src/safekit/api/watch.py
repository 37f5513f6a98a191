"""Live cluster view for the console: this node's modules (from the node, every 0.5 s) and its
peers' (from their APIs, a round starting every 0.5 s), pushed to Server-Sent-Events subscribers
when it changes, with a timeline of the state changes seen. It runs only while a console is
watching. A change anywhere in a 2-node cluster reaches the console within one period, a peer's
request and the push: under 1 s (tests/integration/api/test_console_light_and_live.py)."""

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
PEER_PERIOD = 0.5
TIMELINE = 200


class ClusterWatcher:
    def __init__(
        self,
        node: str,
        peers: list[str],
        local: LocalSource,
        peer: PeerSource,
        networks: list[dict[str, Any]] | None = None,
    ) -> None:
        self.node = node
        self.peers = peers
        self.networks = networks or []
        self._local = local
        self._peer = peer
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._peer_tasks: dict[str, asyncio.Task[None]] = {}
        self._nodes: dict[str, dict[str, Any]] = {}
        self._last_states: dict[tuple[str, str], str] = {}
        self.timeline: deque[dict[str, Any]] = deque(maxlen=TIMELINE)
        self._last_sent = ""
        self._changed = asyncio.Event()

    def snapshot(self) -> dict[str, Any]:
        order = [self.node, *self.peers]
        nodes = [self._nodes.get(n, {"name": n, "reachable": None, "modules": []}) for n in order]
        return {
            "node": self.node,
            "time": time.time(),
            "nodes": nodes,
            "networks": self.networks,
            "timeline": list(self.timeline),
        }

    def follow(self, peers: list[str], networks: list[dict[str, Any]]) -> None:
        """A cluster.xml reload (api/server.py): watch the new set of peers (a node added is
        polled from now on, one removed no longer shown) and show the new networks, at once."""
        added = [p for p in peers if p not in self.peers]
        dropped = [p for p in self.peers if p not in peers]
        self.peers = list(peers)
        self.networks = networks
        for name in dropped:
            self._nodes.pop(name, None)
            for key in [k for k in self._last_states if k[0] == name]:
                del self._last_states[key]
            task = self._peer_tasks.pop(name, None)
            if task is not None:
                task.cancel()
        if self._tasks:  # watching: poll the new peers too
            for name in added:
                self._peer_tasks[name] = asyncio.create_task(self._peer_loop(name))
        self._changed.set()

    async def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=4)
        self._subscribers.add(queue)
        if not self._tasks:
            await self._refresh_local()
            self._tasks = [asyncio.create_task(self._local_loop()), asyncio.create_task(self._push_loop())]
            self._peer_tasks = {p: asyncio.create_task(self._peer_loop(p)) for p in self.peers}
        queue.put_nowait(self.snapshot())
        return queue

    async def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)
        if not self._subscribers:
            await self.stop()

    async def stop(self) -> None:
        tasks, self._tasks = [*self._tasks, *self._peer_tasks.values()], []
        self._peer_tasks = {}
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
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            try:
                self._update(peer, await self._peer(peer))
            except Exception as exc:
                self._update(peer, {"reachable": False, "modules": [], "error": str(exc)})
            await asyncio.sleep(next_round_in(PEER_PERIOD, loop.time() - began))

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


def next_round_in(period: float, took: float) -> float:
    """Rounds start every `period` (a slow answer does not add its time to the wait), and a round
    that took longer than the period is followed at once by the next."""
    return max(0.0, period - took)
