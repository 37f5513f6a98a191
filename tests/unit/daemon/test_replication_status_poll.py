"""How often safekitd asks the primary replication process for its status (mirror_replication.py):
every POLL_INTERVAL, every RESYNC_POLL_INTERVAL while a resynchronisation runs, and at once when
one begins. Before, the console showed a beginning resync as "how far: not known yet" at 0 B/s
for up to a whole POLL_INTERVAL (2 s) after the `resyncing` event, whatever the process knew."""

from __future__ import annotations

import asyncio
import logging
import time
import typing
from types import SimpleNamespace

from safekit import mirror
from safekit.config import parse_module
from safekit.daemon.mirror_replication import ModuleReplication
from safekit.daemon.rfs_figures import POLL_INTERVAL, RESYNC_POLL_INTERVAL
from safekit.daemon.rfs_supervisor import RfsProcess
from safekit.mirror import MirrorSettings
from safekit.rfs import channel

USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror">
  <heart><heartbeat name="default"/></heart>
</service>
</safe>
"""


SETTINGS = MirrorSettings("n1", "n2")
STATE = mirror.initial_state(SETTINGS, None)


class FakePrimary:
    """The replication process as the poller sees it: its role, and the commands it is sent."""

    role = "primary"
    engine = "native"

    def __init__(self) -> None:
        self.queries: list[float] = []

    def command(self, command: channel.Command) -> None:
        if isinstance(command, channel.QueryStatus):
            self.queries.append(time.monotonic())


def replication() -> ModuleReplication:
    return ModuleReplication(
        None,
        parse_module(USERCONFIG).config,
        SETTINGS,
        log=logging.getLogger("test"),
        resources={},
        submit=lambda event: None,
        state=lambda: STATE,
    )


def test_a_beginning_resync_is_asked_about_at_once_then_twice_a_second() -> None:
    async def scenario() -> tuple[list[float], float]:
        replica = replication()
        process = FakePrimary()
        replica.process = typing.cast("RfsProcess", process)
        replica.figures.started("primary")
        poller = asyncio.create_task(replica._poll_status(replica.process))
        await asyncio.sleep(0.3)
        assert len(process.queries) == 1  # the first at once, the next one POLL_INTERVAL later
        began = time.monotonic()
        replica.figures.on_event(channel.Resyncing("checksum"), began)
        replica._poll_now.set()  # what _on_event does for a primary's `resyncing` (below)
        await asyncio.sleep(RESYNC_POLL_INTERVAL * 2 + 0.2)
        replica.process = None
        await asyncio.wait_for(poller, POLL_INTERVAL + 1)
        return process.queries, began

    queries, began = asyncio.run(scenario())
    after = [t - began for t in queries if t >= began]
    assert after, "no status asked for after the resync began"
    assert after[0] < 0.2, f"the first question came {after[0]:.2f} s after the resync began"
    assert len(after) >= 3, f"{len(after)} questions in {RESYNC_POLL_INTERVAL * 2 + 0.2:.1f} s of resync"


def test_the_resyncing_event_of_a_primary_wakes_the_poller() -> None:
    replica = replication()
    replica.process = typing.cast("RfsProcess", SimpleNamespace(role="primary", engine="native"))
    replica._on_event(channel.Resyncing("full"))
    assert replica._poll_now.is_set()
    assert replica.figures.resync_mode == "full"
