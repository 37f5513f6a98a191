"""What a mirror module keeps across a crash (state.json): today's record, and one written before
the confirmed generation existed (ADR 0045)."""

from __future__ import annotations

import json
from pathlib import Path

from safekit.daemon.mirror_module import _load_record, _record_json
from safekit.mirror import MirrorSettings, PersistedRecord, initial_state
from safekit.mirror.states import ModuleState, ReplicaRank


def test_a_record_round_trips_with_its_confirmed_generations(tmp_path: Path) -> None:
    record = PersistedRecord(
        ModuleState.WAIT,
        "node1",
        6,
        True,
        5,
        generation_confirmed=3,
        peer_confirmed_seen=5,
        forced_base=2,
        shared_generation=3,
    )
    path = tmp_path / "state.json"
    path.write_text(json.dumps(_record_json(record)))
    assert _load_record(path) == record


def test_a_record_written_before_ranks_as_its_generations(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(
        json.dumps(
            {
                "state": "WAIT",
                "last_primary": "node1",
                "generation": 6,
                "uptodate": True,
                "peer_generation_seen": 5,
            }
        )
    )
    record = _load_record(path)
    assert record is not None
    state = initial_state(MirrorSettings(local_node="node1", peer_node="node2"), record)
    # What every comparison used before the confirmed generation existed: the numbers.
    assert state.rank == ReplicaRank(6, 6)
    assert state.peer_rank_seen == ReplicaRank(5, 5)
    assert not state.generation_unconfirmed
