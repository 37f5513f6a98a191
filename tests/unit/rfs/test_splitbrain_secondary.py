"""Who saves, and when: only the secondary started after a split brain this node lost saves, before
it serves the primary; a save interrupted or done before a crash is finished, never redone over."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from safekit.membership import clusterkey
from safekit.mirror import CommandKind, ModuleState, ReplicationRole, StartReplication
from safekit.rfs import splitbrain
from safekit.rfs.journal import Journal
from safekit.rfs.secondary import Secondary, SecondaryState
from safekit.rfs.spec import DirSpec, RfsSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mirror"))
from mirror_driver import PEER, alone, of_type, peer_status, prim, settings

DIVERGED = {"peer": "node1", "generation": 4, "peer_generation": 5}


@pytest.fixture
def var(tmp_path: Path) -> Path:
    return tmp_path / "var"


def make_secondary(var: Path, data: Path, **extra: object) -> Secondary:
    key_file = var.parent / "cluster.key"
    if not key_file.exists():
        clusterkey.save_key(key_file, clusterkey.generate_key())
    state_dir = var / "modules" / "app" / "rfs"
    state_dir.mkdir(parents=True, exist_ok=True)
    rfs = RfsSpec(
        module="app",
        node="node2",
        peer="node1",
        dirs=(DirSpec(str(data)),),
        local_addr="127.0.0.1",
        peer_addr="127.0.0.2",
        port=1,
        key_file=str(key_file),
        state_dir=str(state_dir),
        extra=dict(extra),
    )
    sec = Secondary(rfs)
    sec.dir_fds.append(os.open(data, os.O_RDONLY | os.O_DIRECTORY))
    return sec


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "data"
    root.mkdir()
    (root / "orders.db").write_bytes(b"written by node2 during the split")
    yield root


def journal_with_changes(var: Path) -> Path:
    journal_file = var / "modules" / "app" / "rfs" / "journal.json"
    journal_file.parent.mkdir(parents=True, exist_ok=True)
    j = Journal("epoch-node2")
    j.wrote(0, b"orders.db", 0, 33)
    journal_file.write_bytes(j.dumps(clean=True))
    return journal_file


def saves(var: Path) -> list[Path]:
    base = var / "modules" / "app" / "splitbrain"
    return sorted(base.iterdir()) if base.is_dir() else []


def close(sec: Secondary) -> None:
    for fd in sec.dir_fds:
        os.close(fd)


def test_a_secondary_started_without_a_split_brain_saves_nothing(var: Path, data: Path) -> None:
    journal_with_changes(var)
    sec = make_secondary(var, data)
    sec._plan_splitbrain()
    close(sec)
    assert sec.state.splitbrain is None
    assert saves(var) == []


def test_after_a_lost_split_brain_the_changes_are_saved_before_serving_and_logged(
    var: Path, data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal_file = journal_with_changes(var)
    sec = make_secondary(var, data, diverged=DIVERGED)
    sec._plan_splitbrain()
    assert sec.state.splitbrain is not None and sec.state.splitbrain["phase"] == "saving"
    sec.state.save(sec.state_file)  # prepare() saves the state with the plan before anything else
    with caplog.at_level(logging.INFO):
        trio.run(sec._save_splitbrain)
    close(sec)

    [target] = saves(var)
    assert (target / str(data).strip("/") / "orders.db").read_bytes() == b"written by node2 during the split"
    manifest = splitbrain.read_manifest(target)
    assert manifest is not None and manifest["winner"] == "node1"
    assert manifest["generations"] == {"node2": 4, "node1": 5}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        w.startswith("split brain: 1 files (0.0 MiB) that node2 changed since ")
        and w.endswith(f"saved under {target} before resynchronising from node1")
        for w in warnings
    ), warnings
    state = SecondaryState.load(sec.state_file)
    assert state.splitbrain is not None and state.splitbrain["phase"] == "saved"
    forgotten = splitbrain.load_journal(journal_file)
    assert forgotten is not None and len(forgotten) == 0  # a later split does not report them again


def test_a_save_finished_before_a_crash_is_not_redone_over(var: Path, data: Path) -> None:
    journal_with_changes(var)
    sec = make_secondary(var, data, diverged=DIVERGED)
    sec._plan_splitbrain()
    sec.state.save(sec.state_file)
    trio.run(sec._save_splitbrain)
    [target] = saves(var)
    before = (target / "manifest.json").read_bytes()
    close(sec)
    # a crash after the manifest, before the state said "saved": the next start finds it pending
    state = SecondaryState.load(sec.state_file)
    assert state.splitbrain is not None
    state.splitbrain["phase"] = "saving"
    state.save(sec.state_file)
    again = make_secondary(var, data)  # a restart by safekitd: no "diverged" this time
    again._plan_splitbrain()
    assert again.state.splitbrain is not None and again.state.splitbrain["dir"] == str(target)
    trio.run(again._save_splitbrain)
    close(again)
    assert saves(var) == [target]
    assert (target / "manifest.json").read_bytes() == before


def test_the_resync_end_completes_the_manifest_once(var: Path, data: Path) -> None:
    journal_with_changes(var)
    sec = make_secondary(var, data, diverged=DIVERGED)
    sec._plan_splitbrain()
    sec.state.save(sec.state_file)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            sec.nursery = nursery
            await sec._save_splitbrain()
            (data / "orders.db").write_bytes(b"node1's version")  # what the resync brought
            sec.splitbrain_resynced()
            assert sec.state.splitbrain is None
            sec.splitbrain_resynced()  # a later SYNC_END: nothing more

    trio.run(scenario)
    close(sec)
    [target] = saves(var)
    manifest = splitbrain.read_manifest(target)
    assert manifest is not None and manifest["resync"] is not None
    [record] = manifest["files"]
    assert record["on_winner"] in ("changed on both", "not changed on the winner")


# --------------------------------------------------------------------------- the machine's flag


def test_the_loser_of_a_split_brain_starts_its_secondary_role_diverged() -> None:
    d = alone(settings(defaultprim=PEER))
    d.peer(peer_status(ModuleState.ALONE, generation=d.state.generation))  # both primary: d loses
    assert d.state.diverged
    d.settle()
    [start] = of_type(d.history, StartReplication)[-1:]
    assert start == StartReplication(ReplicationRole.SECONDARY, diverged=True)
    assert not d.state.diverged  # asked once: the secondary records the save it has to do


def test_a_swap_starts_the_secondary_role_without_saving() -> None:
    d = prim()
    d.cmd(CommandKind.SWAP)
    d.settle()
    starts = [a for a in of_type(d.history, StartReplication) if a.role is ReplicationRole.SECONDARY]
    assert starts == [StartReplication(ReplicationRole.SECONDARY, diverged=False)]
