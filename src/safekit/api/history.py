"""The node's monitoring history: one sample of each module every `PERIOD` seconds for the last 24
hours, in a ring file of fixed size per module (`$SAFEVAR/modules/AM/history.bin`), kept across
daemon restarts; the console's charts read it through `GET /api/v1/modules/AM/history`.

File layout (little endian):

- a header of `HEADER_SIZE` bytes: the magic `SKHIST1\\n`, then JSON `{"period", "slots",
  "fields"}` padded with spaces;
- `slots` records of `8 + 8 + 4 * len(fields)` bytes: a sequence number (u64, 0: never written),
  the wall-clock time (f64), then each field as a float32 (NaN: not known then).

The record of sequence number `n` is in slot `n % slots`: the newest record is the one with the
highest sequence number (found by one pass at open), so no head pointer is written and the wall
clock may jump without mixing up the order. A file whose header differs from what the module needs
now (another heartbeat network, another size) is started again: the size stays
`HEADER_SIZE + slots * record`, whatever happens. Records are written without fsync (a power cut
loses at most the samples the kernel had not written yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import struct
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("safekit.api")

PERIOD = 10.0
"""Seconds between two samples."""
SLOTS = 8640
"""Samples kept: 24 hours at one every 10 s (a file of 0.73 MB with one heartbeat network, 0.94 MB
with MAX_LANS or more: test_history.py)."""
HEADER_SIZE = 4096
MAGIC = b"SKHIST1\n"
MAX_LANS = 4
"""Heartbeat networks whose round trip is kept (the first four of the module)."""
FILE_NAME = "history.bin"

STATES = ("STOP", "WAIT", "ALONE", "PRIM", "SECOND", "UP")
BASE_FIELDS = (
    "state",  # index in STATES
    "ready",  # 1: the second word of the state is Ready
    "in_sync",  # 1: the secondary's copy follows (replication)
    "throughput",  # bytes a second sent to the secondary (primary)
    "in_flight_bytes",
    "in_flight_ops",
    "journal_bytes",
    "resync_percent",
    "resync_remaining",
    "resync_rate",  # data bytes a second of the running resynchronisation (native primary)
    "lag_seconds",  # age of the oldest operation the secondary lacks (native primary)
    "ack_p50",  # ack latency percentiles of the last 20 s (native primary)
    "ack_p99",
    "witness_up",  # 1: the split-brain witness answered this node's last probe
    "witness_rtt",
)
AGGREGATE_MAX = {
    "in_flight_bytes",
    "in_flight_ops",
    "journal_bytes",
    "resync_remaining",
    "lag_seconds",
    "ack_p99",
}
"""Fields whose worst value of a step is shown (how far behind); rates and round trips are
averaged; states, flags and the resync's progress keep the step's last value."""
AGGREGATE_MEAN = {"throughput", "resync_rate", "ack_p50", "witness_rtt"}
AGGREGATE_MIN = {"witness_up"}
"""Up/down flags: down at some time in the step shows as down."""


class HistoryError(Exception):
    pass


class HistoryStore:
    """One module's ring file."""

    def __init__(
        self, path: Path, fields: Sequence[str], *, period: float = PERIOD, slots: int = SLOTS
    ) -> None:
        if slots < 1 or not fields:
            raise HistoryError("a history needs at least one slot and one field")
        self.path = path
        self.fields = tuple(fields)
        self.period = period
        self.slots = slots
        self._record = struct.Struct(f"<Qd{len(self.fields)}f")
        header = json.dumps({"period": period, "slots": slots, "fields": list(self.fields)}).encode()
        if len(MAGIC) + len(header) > HEADER_SIZE:
            raise HistoryError(f"{len(self.fields)} fields do not fit in the history header")
        self._header = MAGIC + header.ljust(HEADER_SIZE - len(MAGIC))
        self.size = HEADER_SIZE + slots * self._record.size
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            self.seq = self._open()
        except BaseException:
            os.close(self._fd)
            raise

    def _open(self) -> int:
        """The last sequence number written (0: empty); a file of another layout starts again."""
        if os.fstat(self._fd).st_size == self.size and os.pread(self._fd, HEADER_SIZE, 0) == self._header:
            return max((seq for seq, _t, _v in self._records()), default=0)
        os.ftruncate(self._fd, 0)
        os.ftruncate(self._fd, self.size)
        os.pwrite(self._fd, self._header, 0)
        return 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def append(self, when: float, values: Mapping[str, float | None]) -> None:
        """One sample (a field missing or None is stored as not known)."""
        row = [_f32(values.get(name)) for name in self.fields]
        self.seq += 1
        offset = HEADER_SIZE + (self.seq % self.slots) * self._record.size
        os.pwrite(self._fd, self._record.pack(self.seq, when, *row), offset)

    def _records(self) -> list[tuple[int, float, tuple[float, ...]]]:
        data = os.pread(self._fd, self.size - HEADER_SIZE, HEADER_SIZE)
        out = []
        for seq, when, *row in self._record.iter_unpack(data[: len(data) - len(data) % self._record.size]):
            if seq:
                out.append((seq, when, tuple(row)))
        return out

    def read(self, since: float = 0.0, step: float | None = None) -> list[list[float | None]]:
        """The samples after `since` (wall clock), oldest first: `[time, value of each field]`;
        with `step`, one row per `step` seconds (AGGREGATE_*), for charts of a long range."""
        rows = sorted(r for r in self._records() if r[1] > since)
        samples = [[when, *(None if math.isnan(v) else v for v in row)] for _seq, when, row in rows]
        if step is None or step <= self.period:
            return samples
        return _downsample(samples, self.fields, step)


def _f32(value: float | None) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _downsample(
    samples: list[list[float | None]], fields: Sequence[str], step: float
) -> list[list[float | None]]:
    buckets: dict[int, list[list[float | None]]] = {}
    for sample in samples:
        assert sample[0] is not None
        buckets.setdefault(int(sample[0] // step), []).append(sample)
    out: list[list[float | None]] = []
    for _key, group in sorted(buckets.items()):
        row: list[float | None] = [group[-1][0]]
        for i, name in enumerate(fields, start=1):
            known = [s[i] for s in group if s[i] is not None]
            if not known:
                row.append(None)
            elif name in AGGREGATE_MAX:
                row.append(max(v for v in known if v is not None))
            elif name in AGGREGATE_MEAN or name.startswith("rtt."):
                row.append(sum(v for v in known if v is not None) / len(known))
            elif name.startswith("hb.") or name in AGGREGATE_MIN:
                row.append(min(v for v in known if v is not None))  # down at some time in the step
            else:
                row.append(known[-1])
        out.append(row)
    return out


# ----------------------------------------------------------------------------- what a sample holds
def fields_for(monitoring: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The fields of a module's samples: the base ones, then up/down and round trip of each of its
    (first MAX_LANS) heartbeat networks."""
    lans: list[str] = []
    for hb in (monitoring or {}).get("heartbeats", []):
        if hb["lan"] not in lans:
            lans.append(hb["lan"])
    extra = [f"{kind}.{lan}" for lan in lans[:MAX_LANS] for kind in ("hb", "rtt")]
    return (*BASE_FIELDS, *extra)


def sample_of(module: Mapping[str, Any], monitoring: Mapping[str, Any] | None) -> dict[str, float | None]:
    """A module's sample from `safekit state -v` and Metrics.monitoring()."""
    state = module.get("state")
    values: dict[str, float | None] = {
        "state": float(STATES.index(state)) if state in STATES else None,
        "ready": 1.0 if module.get("readiness") == "Ready" else 0.0,
    }
    rfs = (monitoring or {}).get("replication")
    if rfs:
        values["in_sync"] = None if rfs.get("in_sync") is None else float(bool(rfs["in_sync"]))
        for name in ("throughput", "in_flight_bytes", "in_flight_ops", "journal_bytes"):
            values[name] = rfs.get(name)
        resync = rfs.get("resync") or {}
        values["resync_percent"] = resync.get("percent")
        values["resync_remaining"] = resync.get("remaining")
        values["resync_rate"] = resync.get("rate")
        values["lag_seconds"] = rfs.get("lag_seconds")
        latency = rfs.get("ack_latency") or {}
        values["ack_p50"] = latency.get("p50")
        values["ack_p99"] = latency.get("p99")
    witness = (monitoring or {}).get("witness")
    if isinstance(witness, Mapping):
        reachable = witness.get("reachable")
        values["witness_up"] = None if reachable is None else float(bool(reachable))
        values["witness_rtt"] = witness.get("rtt") if reachable else None
    for hb in (monitoring or {}).get("heartbeats", []):
        values.setdefault(f"hb.{hb['lan']}", None if hb["up"] is None else float(hb["up"]))
        values.setdefault(f"rtt.{hb['lan']}", hb["rtt"])
    return values


ModulesSource = Callable[[], Awaitable[list[dict[str, Any]]]]
MonitorSource = Callable[[str], "dict[str, Any] | None"]


class History:
    """Every module's store on this node, and the task that samples them every PERIOD seconds."""

    def __init__(
        self,
        var: Callable[[str], Path],
        modules: ModulesSource,
        monitor: MonitorSource,
        *,
        period: float = PERIOD,
        slots: int = SLOTS,
    ) -> None:
        """`var(module)`: the module's var directory; `modules`: `safekit state -v`'s modules."""
        self._var = var
        self._modules = modules
        self._monitor = monitor
        self.period = period
        self.slots = slots
        self._stores: dict[str, HistoryStore] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="history")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for store in self._stores.values():
            store.close()
        self._stores.clear()

    async def _run(self) -> None:
        while True:
            # on the period's boundaries of the wall clock: samples of every node line up
            await asyncio.sleep(self.period - time.time() % self.period)
            try:
                await self.sample(time.time())
            except Exception:
                log.exception("history: a sample failed")

    async def sample(self, when: float) -> None:
        modules = await self._modules()
        seen = set()
        for module in modules:
            name = module.get("name")
            if not isinstance(name, str):
                continue
            seen.add(name)
            monitoring = self._monitor(name)
            self._store(name, fields_for(monitoring)).append(when, sample_of(module, monitoring))
        for gone in set(self._stores) - seen:
            self._stores.pop(gone).close()

    def _store(self, module: str, fields: tuple[str, ...]) -> HistoryStore:
        store = self._stores.get(module)
        if store is None or store.fields != fields:
            if store is not None:
                store.close()
            store = HistoryStore(self._var(module) / FILE_NAME, fields, period=self.period, slots=self.slots)
            self._stores[module] = store
        return store

    def read(self, module: str, since: float = 0.0, step: float | None = None) -> dict[str, Any] | None:
        """The module's samples (None: no history of it on this node)."""
        store = self._stores.get(module)
        if store is None:
            path = self._var(module) / FILE_NAME
            if not path.is_file():
                return None
            layout = _layout_in(path)
            if layout is None:
                return None
            fields, period, slots = layout
            store = HistoryStore(path, fields, period=period, slots=slots)
            try:
                samples = store.read(since, step)
            finally:
                store.close()
        else:
            samples = store.read(since, step)
        return {
            "period": store.period,
            "slots": store.slots,
            "fields": list(store.fields),
            "states": list(STATES),
            "samples": samples,
        }


def _layout_in(path: Path) -> tuple[tuple[str, ...], float, int] | None:
    """The fields, period and slots of a history file (None: not a history file), so that reading
    it never starts it again."""
    try:
        with path.open("rb") as f:
            head = f.read(HEADER_SIZE)
        if not head.startswith(MAGIC):
            return None
        layout = json.loads(head[len(MAGIC) :].decode())
        fields, period, slots = layout["fields"], float(layout["period"]), int(layout["slots"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(fields, list) or not fields or slots < 1:
        return None
    return tuple(str(f) for f in fields), period, slots
