"""The node's monitoring history (api/history.py): a ring file of fixed size per module that rolls
over, survives a restart, never grows, and is started again (not misread) when its layout changes."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest

from safekit.api.history import (
    BASE_FIELDS,
    FILE_NAME,
    HEADER_SIZE,
    MAX_LANS,
    PERIOD,
    SLOTS,
    History,
    HistoryError,
    HistoryStore,
    fields_for,
    sample_of,
)

FIELDS = ("state", "throughput", "rtt.lan1")


def test_samples_come_back_in_order_with_unknowns(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.bin", FIELDS, slots=10)
    store.append(1000.0, {"state": 3, "throughput": 1.5e6, "rtt.lan1": 0.002})
    store.append(1010.0, {"state": 3, "throughput": None})
    samples = store.read()
    assert samples[0][0] == 1000.0
    assert samples[0][1:3] == [3.0, 1.5e6]
    assert samples[0][3] == pytest.approx(0.002)  # float32
    assert samples[1] == [1010.0, 3.0, None, None]
    assert store.read(since=1000.0) == [samples[1]]


def test_the_ring_rolls_over_and_its_size_never_changes(tmp_path: Path) -> None:
    path = tmp_path / "h.bin"
    store = HistoryStore(path, FIELDS, slots=5)
    size = path.stat().st_size
    assert size == HEADER_SIZE + 5 * (8 + 8 + 4 * len(FIELDS))
    for i in range(23):
        store.append(1000.0 + 10 * i, {"state": i})
        assert path.stat().st_size == size
    samples = store.read()
    assert [s[0] for s in samples] == [1000.0 + 10 * i for i in range(18, 23)]  # the last 5
    assert [s[1] for s in samples] == [18.0, 19.0, 20.0, 21.0, 22.0]


def test_a_restart_keeps_the_history_and_goes_on_after_it(tmp_path: Path) -> None:
    path = tmp_path / "h.bin"
    store = HistoryStore(path, FIELDS, slots=4)
    for i in range(6):
        store.append(100.0 + i, {"state": i})
    store.close()
    again = HistoryStore(path, FIELDS, slots=4)
    assert [s[1] for s in again.read()] == [2.0, 3.0, 4.0, 5.0]
    again.append(200.0, {"state": 6})
    assert [s[1] for s in again.read()] == [3.0, 4.0, 5.0, 6.0]


def test_order_follows_writes_not_the_wall_clock(tmp_path: Path) -> None:
    """A clock set back: a restart still finds the newest sample (by sequence, not time)."""
    path = tmp_path / "h.bin"
    store = HistoryStore(path, FIELDS, slots=4)
    for when in (5000.0, 5010.0, 100.0):  # the clock jumped back before the third sample
        store.append(when, {"state": 1})
    store.close()
    again = HistoryStore(path, FIELDS, slots=4)
    again.append(110.0, {"state": 2})
    again.append(120.0, {"state": 3})
    again.append(130.0, {"state": 4})  # overwrites 5000 only if the head was found right
    assert sorted(s[0] for s in again.read()) == [100.0, 110.0, 120.0, 130.0]


def test_another_layout_starts_the_file_again_at_the_same_size(tmp_path: Path) -> None:
    path = tmp_path / "h.bin"
    store = HistoryStore(path, FIELDS, slots=4)
    store.append(1.0, {"state": 1})
    store.close()
    other = HistoryStore(path, (*FIELDS, "rtt.lan2"), slots=4)
    assert other.read() == []
    assert path.stat().st_size == HEADER_SIZE + 4 * (16 + 4 * 4)
    path.write_bytes(b"garbage")  # not a history file at all
    assert HistoryStore(path, FIELDS, slots=4).read() == []


def test_a_store_needs_fields_and_slots(tmp_path: Path) -> None:
    with pytest.raises(HistoryError):
        HistoryStore(tmp_path / "h.bin", (), slots=4)
    with pytest.raises(HistoryError):
        HistoryStore(tmp_path / "h.bin", FIELDS, slots=0)
    with pytest.raises(HistoryError):
        HistoryStore(tmp_path / "h.bin", tuple(f"rtt.{'x' * 60}{i}" for i in range(100)), slots=4)


def test_a_step_keeps_the_worst_lag_the_mean_rate_and_the_last_state(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.bin", ("state", "throughput", "in_flight_bytes", "hb.lan1"), slots=100)
    for i, (state, rate, lag, hb) in enumerate(
        [(4, 100, 5, 1), (4, 300, 50, 0), (3, 200, 10, 1), (3, 400, 10, 1), (3, 0, 0, 1), (3, 0, 0, 1)]
    ):
        store.append(
            600.0 + 10 * i, {"state": state, "throughput": rate, "in_flight_bytes": lag, "hb.lan1": hb}
        )
    rows = store.read(step=30)
    assert rows == [
        [620.0, 3.0, 200.0, 50.0, 0.0],  # 600-629: a network down once, the worst lag, state at its end
        [650.0, 3.0, 400 / 3, 10.0, 1.0],
    ]


MONITORING: dict[str, Any] = {
    "heartbeats": [
        {"lan": "lan1", "peer": "n2", "up": True, "rtt": 0.001},
        {"lan": "lan2", "peer": "n2", "up": False, "rtt": None},
    ],
    "replication": {
        "role": "primary",
        "in_sync": False,
        "throughput": 2.5e6,
        "in_flight_bytes": 4096,
        "in_flight_ops": 2,
        "journal_bytes": None,
        "resync": {"percent": 40.0, "remaining": 12.0},
    },
}


def test_a_sample_from_the_state_and_the_monitoring_view() -> None:
    fields = fields_for(MONITORING)
    assert fields == (*BASE_FIELDS, "hb.lan1", "rtt.lan1", "hb.lan2", "rtt.lan2")
    sample = sample_of({"state": "PRIM", "readiness": "Ready"}, MONITORING)
    assert sample["state"] == 3.0
    assert sample["ready"] == 1.0
    assert sample["in_sync"] == 0.0
    assert sample["throughput"] == 2.5e6
    assert sample["resync_percent"] == 40.0
    assert sample["resync_remaining"] == 12.0
    assert sample["hb.lan1"] == 1.0
    assert sample["hb.lan2"] == 0.0
    assert sample["rtt.lan2"] is None
    farm = sample_of({"state": "UP", "readiness": "Transient"}, None)
    assert farm == {"state": 5.0, "ready": 0.0}


def test_history_samples_every_module_and_reads_after_a_restart(tmp_path: Path) -> None:
    modules = [{"name": "AM", "state": "SECOND", "readiness": "Ready"}, {"name": "farm", "state": "UP"}]

    async def state() -> list[dict[str, Any]]:
        return modules

    def var(module: str) -> Path:
        return tmp_path / "modules" / module

    def monitor(module: str) -> dict[str, Any] | None:
        return MONITORING if module == "AM" else None

    async def run() -> None:
        history = History(var, state, monitor, slots=100)
        await history.sample(1000.0)
        await history.sample(1010.0)
        found = history.read("AM")
        assert found is not None
        assert found["fields"][:2] == ["state", "ready"]
        assert [s[0] for s in found["samples"]] == [1000.0, 1010.0]
        assert found["samples"][1][1] == 4.0  # SECOND
        modules.pop()  # farm uninstalled: its store is closed, its file stays until the module dir goes
        await history.sample(1020.0)
        await history.stop()
        restarted = History(var, state, monitor, slots=100)
        again = restarted.read("AM")  # before the first sample of the new daemon: from the file
        assert again is not None
        assert [s[0] for s in again["samples"]] == [1000.0, 1010.0, 1020.0]
        farm = restarted.read("farm")
        assert farm is not None
        assert farm["fields"] == list(BASE_FIELDS)
        assert restarted.read("nothing") is None
        await restarted.sample(1030.0)
        latest = restarted.read("AM", since=1020.0)
        assert latest is not None
        assert [s[0] for s in latest["samples"]] == [1030.0]
        await restarted.stop()

    asyncio.run(run())
    assert (tmp_path / "modules" / "AM" / FILE_NAME).is_file()


def test_reading_a_file_of_another_size_does_not_start_it_again(tmp_path: Path) -> None:
    async def state() -> list[dict[str, Any]]:
        return []

    path = tmp_path / "modules" / "AM" / FILE_NAME
    store = HistoryStore(path, BASE_FIELDS, slots=7, period=5.0)
    store.append(1.0, {"state": 0})
    store.close()
    history = History(lambda m: tmp_path / "modules" / m, state, lambda m: None)  # default 8640 slots
    found = history.read("AM")
    assert found is not None
    assert found["slots"] == 7
    assert found["period"] == 5.0
    assert len(found["samples"]) == 1
    assert not math.isnan(found["samples"][0][0])


def test_the_default_store_keeps_24_hours_in_under_1_mib_whatever_the_networks(tmp_path: Path) -> None:
    """The bound as safekitd runs it (History's defaults): a module with six heartbeat networks
    (the round trips of the first MAX_LANS kept) sampled every 10 s for 25 hours. The file has one
    size from the first sample to the last, under 1 MiB; a 24-hour read gives every sample of the
    last 24 hours and nothing older; the first hour is gone."""
    six_lans: dict[str, Any] = {
        "heartbeats": [{"lan": f"lan{i}", "peer": "n2", "up": True, "rtt": 0.001} for i in range(6)],
        "replication": MONITORING["replication"],
    }

    async def state() -> list[dict[str, Any]]:
        return [{"name": "AM", "state": "PRIM", "readiness": "Ready"}]

    path = tmp_path / "modules" / "AM" / FILE_NAME
    day = 24 * 3600
    start = 1_780_000_000.0
    count = int(25 * 3600 / PERIOD)
    sizes = set()

    async def run() -> dict[str, Any] | None:
        history = History(lambda m: tmp_path / "modules" / m, state, lambda m: six_lans)
        for i in range(count):
            await history.sample(start + i * PERIOD)
            if i % 600 == 0:
                sizes.add(path.stat().st_size)
        now = start + (count - 1) * PERIOD
        found = history.read("AM", since=now - day)
        await history.stop()
        return found

    found = asyncio.run(run())
    assert found is not None
    fields = len(BASE_FIELDS) + 2 * MAX_LANS
    assert found["fields"][-2:] == [f"hb.lan{MAX_LANS - 1}", f"rtt.lan{MAX_LANS - 1}"]
    assert len(found["fields"]) == fields
    assert day == SLOTS * PERIOD
    size = HEADER_SIZE + SLOTS * (8 + 8 + 4 * fields)
    assert sizes | {path.stat().st_size} == {size}
    assert size < 1024 * 1024, f"{size} bytes"
    times = [s[0] for s in found["samples"]]
    now = start + (count - 1) * PERIOD
    assert len(times) == SLOTS
    assert times == [now - day + PERIOD * (k + 1) for k in range(SLOTS)]  # every 10 s of the last day
    assert min(times) > now - day and max(times) == now
    assert all(s[1] == 3.0 for s in found["samples"])  # PRIM
    kept = History(lambda m: tmp_path / "modules" / m, state, lambda m: six_lans).read("AM")
    assert kept is not None  # read from the file: the first hour is gone from it
    assert min(s[0] for s in kept["samples"]) == now - day + PERIOD
