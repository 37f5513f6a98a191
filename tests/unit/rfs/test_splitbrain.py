"""Saving what a node that lost a split brain wrote since the split (rule 4): which files, the
space cap, the copies and their manifest, what the winner has afterwards, list and remove."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from safekit import splitbrain_cli
from safekit.host import persist
from safekit.host.paths import Paths
from safekit.rfs import splitbrain
from safekit.rfs.journal import Entry, Journal
from safekit.rfs.splitbrain import Change, KeepFree, OnWinner, Record, Replicated
from safekit.rfs.tree import Exclusions

CTX = splitbrain.Context("app", "node2", "node1", generation=4, peer_generation=5)
PLENTY = (1 << 40, 1 << 41)  # free, size of the file system: the cap never applies


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def data(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    root = tmp_path / "data"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield root, fd
    finally:
        os.close(fd)


def replicated(root: Path, fd: int, *excluded: str) -> list[Replicated]:
    return [Replicated(str(root), fd, Exclusions.build(list(excluded), []))]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def by_path(manifest: dict[str, object]) -> dict[str, dict[str, object]]:
    files = manifest["files"]
    assert isinstance(files, list)
    return {f["path"]: f for f in files}


# --------------------------------------------------------------------------- the journal's times


def test_the_journal_remembers_when_the_secondary_stopped_having_everything() -> None:
    clock = Clock(100.0)
    j = Journal("e", clock=clock)
    assert j.since is None
    j.wrote(0, b"a", 0, 10)
    clock.t = 200.0
    j.replaced(0, b"b")
    assert j.since == 100.0  # the first change, not the latest
    j.clear()
    assert j.since is None
    clock.t = 300.0
    j.removed(0, b"c")
    assert j.since == 300.0


def test_a_journal_saved_at_a_clean_stop_has_no_gap_and_keeps_its_times() -> None:
    j = Journal("e", clock=Clock(100.0))
    j.wrote(0, b"a", 0, 1)
    loaded = Journal.from_json(json.loads(j.dumps(clean=True)), clock=Clock(500.0))
    assert loaded.since == 100.0
    assert loaded.gap is None
    assert loaded.entries[0][b"a"].zones == {0}


def test_a_journal_not_saved_by_a_clean_stop_has_a_gap_until_it_is_loaded_again() -> None:
    j = Journal("e", clock=Clock(100.0))
    saved = json.loads(j.dumps(clean=False))  # the save at the primary's start; then a crash
    loaded = Journal.from_json(saved, clock=Clock(400.0))
    assert loaded.gap == (100.0, 400.0)
    assert not loaded.complete_since(350.0)
    assert loaded.complete_since(401.0)
    # the gap survives the next clean stop: the changes in it are still unknown
    again = Journal.from_json(json.loads(loaded.dumps(clean=True)), clock=Clock(900.0))
    assert again.gap == (100.0, 400.0)


def test_merging_journals_keeps_the_earliest_change_and_the_widest_gap() -> None:
    a = Journal("e", clock=Clock(300.0), gap=(50.0, 60.0))
    a.wrote(0, b"a", 0, 1)
    b = Journal("e", clock=Clock(200.0), gap=(40.0, 55.0))
    b.wrote(0, b"b", 0, 1)
    a.merge(b)
    assert a.since == 200.0
    assert a.gap == (40.0, 60.0)


# --------------------------------------------------------------------------- pure rules


def test_classify_journal_entries() -> None:
    assert splitbrain.classify(Entry(whole=True, meta=True), exists=True) is Change.CREATED
    assert splitbrain.classify(Entry(zones={3}), exists=True) is Change.MODIFIED
    assert splitbrain.classify(Entry(trunc=0, meta=True), exists=True) is Change.MODIFIED
    assert splitbrain.classify(Entry(meta=True), exists=True) is Change.ATTRIBUTES
    assert splitbrain.classify(Entry(whole=True), exists=False) is Change.DELETED


@pytest.mark.parametrize(
    ("text", "fs_size", "minimum"),
    [
        ("10%", 1000, 100),
        ("25 %", 1000, 250),
        ("0%", 1000, 0),
        ("2G", 1 << 40, 2 << 30),
        ("512m", 1, 512 << 20),
        ("1048576", 1, 1 << 20),
        ("1.5K", 1, 1536),
    ],
)
def test_keep_free_is_a_percentage_or_a_size(text: str, fs_size: int, minimum: int) -> None:
    assert KeepFree.parse(text).minimum(fs_size) == minimum


@pytest.mark.parametrize("text", ["", "ten", "100%", "-5%", "-1G", "5X"])
def test_keep_free_refuses_what_is_not_a_percentage_or_a_size(text: str) -> None:
    with pytest.raises(ValueError, match="percentage"):
        KeepFree.parse(text)


def test_the_default_cap_keeps_ten_percent_of_the_file_system_free() -> None:
    keep = KeepFree.parse(splitbrain.DEFAULT_KEEP_FREE)
    fs = 100 << 30  # 100 GiB, 10 GiB must stay free
    overhead = splitbrain.BLOCK_OVERHEAD
    assert splitbrain.admits((5 << 30) - overhead, 15 << 30, fs, keep)  # leaves exactly 10 GiB
    assert not splitbrain.admits((5 << 30) - overhead + 1, 15 << 30, fs, keep)
    assert not splitbrain.admits(0, 9 << 30, fs, keep)  # already below the floor: nothing more


def test_save_directory_names_are_utc_times_and_unique() -> None:
    now = datetime(2025, 3, 14, 10, 15, 2, tzinfo=UTC)
    assert splitbrain.dir_name(now, []) == "20250314T101502Z"
    assert splitbrain.dir_name(now, ["20250314T101502Z"]) == "20250314T101502Z-2"
    assert splitbrain.valid_name("20250314T101502Z-2")
    assert not splitbrain.valid_name("../etc")


@pytest.mark.parametrize(
    ("change", "now", "expected"),
    [
        (Change.MODIFIED, ("file", sha(b"mine"), 50), OnWinner.SAME),
        (Change.MODIFIED, ("file", sha(b"theirs"), 150), OnWinner.CHANGED_ON_BOTH),
        (Change.MODIFIED, ("file", sha(b"old"), 50), OnWinner.OLDER),
        (Change.CREATED, None, OnWinner.ABSENT),
        (Change.DELETED, None, OnWinner.ABSENT),
        (Change.DELETED, ("file", None, 10), OnWinner.RESTORED),
    ],
)
def test_what_the_winner_has_for_a_saved_path(
    change: Change, now: tuple[str, str | None, int] | None, expected: OnWinner
) -> None:
    record = Record("/d", "f", change, "file" if change is not Change.DELETED else "", sha256=sha(b"mine"))
    assert splitbrain.verdict(record, now, since_ns=100) is expected


# --------------------------------------------------------------------------- selection and copy


def test_what_the_journal_names_is_saved_with_its_bytes_and_a_manifest(
    tmp_path: Path, data: tuple[Path, int]
) -> None:
    root, fd = data
    (root / "orders.db").write_bytes(b"x" * 200_000)
    (root / "new").mkdir()
    (root / "new" / "a.txt").write_bytes(b"created here")
    (root / "new" / "deep").mkdir()
    (root / "new" / "deep" / "b.txt").write_bytes(b"deep")
    (root / "mode.txt").write_text("only chmod")
    (root / "untouched.txt").write_text("not in the journal")
    (root / "scratch").mkdir()
    (root / "scratch" / "x").write_text("excluded")
    os.symlink("orders.db", root / "link")
    os.chmod(root / "orders.db", 0o640)
    clock = Clock(1_700_000_000.0)
    j = Journal("e", clock=clock)
    j.wrote(0, b"orders.db", 65536, 10)
    j.replaced(0, b"new")
    j.changed_meta(0, b"mode.txt")
    j.removed(0, b"gone.txt")
    j.replaced(0, b"link")
    j.replaced(0, b"scratch/x")
    target = tmp_path / "sb" / "20250314T101502Z"

    manifest = splitbrain.save(
        CTX, replicated(root, fd, "scratch"), j, target, keep=KeepFree(), space=lambda: PLENTY
    )

    files = by_path(manifest)
    assert set(files) == {"orders.db", "new/a.txt", "new/deep/b.txt", "mode.txt", "gone.txt", "link"}
    saved = target / str(root).strip("/")
    assert (saved / "orders.db").read_bytes() == b"x" * 200_000
    assert (saved / "new" / "deep" / "b.txt").read_bytes() == b"deep"
    assert os.readlink(saved / "link") == "orders.db"
    assert (saved / "orders.db").stat().st_mode & 0o777 == 0o640
    assert files["orders.db"]["sha256"] == sha(b"x" * 200_000)
    assert files["orders.db"]["change"] == "modified"
    assert files["orders.db"]["size"] == 200_000
    assert files["orders.db"]["mode"] == "0640"
    assert files["orders.db"]["saved_as"] == f"{str(root).strip('/')}/orders.db"
    assert files["new/a.txt"]["change"] == "created"
    assert files["mode.txt"]["change"] == "attributes"
    assert files["gone.txt"] == files["gone.txt"] | {"deleted": True, "saved": False, "change": "deleted"}
    assert manifest["module"] == "app"
    assert manifest["node"] == "node2"
    assert manifest["winner"] == "node1"
    assert manifest["generations"] == {"node2": 4, "node1": 5}
    assert manifest["since"] == "2023-11-14T22:13:20Z"
    assert manifest["source"] == "journal"
    assert manifest["complete"] is True
    assert manifest["totals"] == {
        "files": 5,
        "bytes": 200_000 + 12 + 4 + len("only chmod") + len("orders.db"),
        "not_saved": 0,
        "not_saved_bytes": 0,
        "deleted": 1,
    }
    assert json.loads((target / "manifest.json").read_text()) == manifest
    line = splitbrain.summary_line(manifest, target)
    assert line == (
        f"split brain: 5 files (0.2 MiB) that node2 changed since 2023-11-14 22:13:20 UTC saved under "
        f"{target} before resynchronising from node1"
    )


def test_files_that_would_eat_into_the_free_space_floor_are_listed_not_saved(
    tmp_path: Path, data: tuple[Path, int]
) -> None:
    root, fd = data
    (root / "small").write_bytes(b"s" * 1000)
    (root / "big").write_bytes(b"b" * 300_000)
    j = Journal("e")
    j.replaced(0, b"small")
    j.replaced(0, b"big")
    fs_size = 10 << 20  # 10 % = 1 MiB must stay free
    free = (1 << 20) + splitbrain.BLOCK_OVERHEAD + 200_000  # room for the small file only
    target = tmp_path / "sb" / "x"

    manifest = splitbrain.save(
        CTX, replicated(root, fd), j, target, keep=KeepFree(), space=lambda: (free, fs_size)
    )

    files = by_path(manifest)
    assert files["small"]["saved"] is True
    assert files["big"]["saved"] is False
    assert "10% of the file system free" in str(files["big"]["note"])
    assert not (target / str(root).strip("/") / "big").exists()
    assert manifest["complete"] is False
    assert manifest["totals"]["not_saved"] == 1
    assert manifest["totals"]["not_saved_bytes"] == 300_000
    details = " ".join(splitbrain.detail_lines(manifest))
    assert "1 files (0.3 MiB) NOT saved" in details
    assert f"{root}/big" in details


def test_after_a_crash_gap_files_changed_since_the_gap_are_found_by_their_ctime(
    tmp_path: Path, data: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(splitbrain, "CTIME_SLACK_NS", 0)
    root, fd = data
    (root / "before.txt").write_text("changed before the gap")
    time.sleep(0.05)
    gap_start = time.time()
    time.sleep(0.05)
    (root / "during.txt").write_text("changed in the gap: not in the journal")
    (root / "journaled.txt").write_text("j")
    j = Journal("e", gap=(gap_start, gap_start + 1))
    j.replaced(0, b"journaled.txt")

    manifest = splitbrain.save(
        CTX, replicated(root, fd), j, tmp_path / "sb" / "x", keep=KeepFree(), space=lambda: PLENTY
    )

    files = by_path(manifest)
    assert set(files) == {"during.txt", "journaled.txt"}
    assert files["during.txt"]["change"] == "changed"
    assert files["journaled.txt"]["change"] == "created"
    assert "change-time scan" in str(manifest["source"])


def test_without_a_readable_journal_every_file_is_taken(tmp_path: Path, data: tuple[Path, int]) -> None:
    root, fd = data
    (root / "a").write_text("a")
    (root / "d").mkdir()
    (root / "d" / "b").write_text("b")
    journal_file = tmp_path / "journal.json"
    journal_file.write_text("{not json")
    manifest = splitbrain.save(
        CTX,
        replicated(root, fd),
        splitbrain.load_journal(journal_file),
        tmp_path / "sb" / "x",
        keep=KeepFree(),
        space=lambda: PLENTY,
    )
    assert set(by_path(manifest)) == {"a", "d/b"}


def test_a_stop_interrupts_the_save(tmp_path: Path, data: tuple[Path, int]) -> None:
    root, fd = data
    (root / "a").write_bytes(b"a" * (3 * splitbrain.CHUNK))
    j = Journal("e")
    j.replaced(0, b"a")
    target = tmp_path / "sb" / "x"
    with pytest.raises(splitbrain.Interrupted):
        splitbrain.save(
            CTX,
            replicated(root, fd),
            j,
            target,
            keep=KeepFree(),
            space=lambda: PLENTY,
            should_stop=lambda: True,
        )
    assert splitbrain.read_manifest(target) is None  # never looks complete


def test_a_partial_save_is_replaced_when_done_again(tmp_path: Path, data: tuple[Path, int]) -> None:
    root, fd = data
    (root / "a").write_text("a")
    target = tmp_path / "sb" / "x"
    (target / "leftover").mkdir(parents=True)
    j = Journal("e")
    j.replaced(0, b"a")
    splitbrain.save(CTX, replicated(root, fd), j, target, keep=KeepFree(), space=lambda: PLENTY)
    assert not (target / "leftover").exists()
    assert (target / str(root).strip("/") / "a").read_text() == "a"


def test_forgetting_the_journal_after_a_save(tmp_path: Path) -> None:
    journal_file = tmp_path / "journal.json"
    j = Journal("epoch1", gap=(1.0, 2.0), seq=77)
    j.wrote(0, b"a", 0, 1)
    journal_file.write_bytes(j.dumps(clean=True))
    splitbrain.forget_journal(journal_file, persist.write_bytes)
    again = splitbrain.load_journal(journal_file)
    assert again is not None
    assert (len(again), again.since, again.gap, again.trusted) == (0, None, None, False)
    assert (again.epoch, again.seq) == ("epoch1", 77)


def test_after_the_resync_the_manifest_says_what_the_winner_has(
    tmp_path: Path, data: tuple[Path, int]
) -> None:
    root, fd = data
    for name in ("same", "both", "older", "mine-only"):
        (root / name).write_text(f"node2's {name}")
    j = Journal("e", clock=Clock(time.time() - 60))
    for name in ("same", "both", "older", "mine-only"):
        j.wrote(0, name.encode(), 0, 5)
    j.removed(0, b"deleted-here")
    target = tmp_path / "sb" / "x"
    splitbrain.save(CTX, replicated(root, fd), j, target, keep=KeepFree(), space=lambda: PLENTY)
    # the resynchronisation from the winner:
    (root / "both").write_text("node1's version, written after the split")
    (root / "older").write_text("node1's version from before the split")
    os.utime(root / "older", (1_000_000_000, 1_000_000_000))
    (root / "mine-only").unlink()
    (root / "deleted-here").write_text("node1 still has it")

    manifest = splitbrain.annotate(target, replicated(root, fd), finished_at=time.time())

    assert manifest is not None
    files = by_path(manifest)
    assert files["same"]["on_winner"] == "same"
    assert files["both"]["on_winner"] == "changed on both"
    assert files["older"]["on_winner"] == "not changed on the winner"
    assert files["mine-only"]["on_winner"] == "absent on the winner"
    assert files["deleted-here"]["on_winner"] == "present on the winner"
    assert manifest["resync"]["on_winner"]["changed on both"] == 1
    assert json.loads((target / "manifest.json").read_text()) == manifest
    # the saved copies are untouched by it
    assert (target / str(root).strip("/") / "both").read_text() == "node2's both"


# --------------------------------------------------------------------------- list and remove


def make_save(var: Path, module: str, name: str, files: int = 1) -> Path:
    target = splitbrain.splitbrain_dir(var, module) / name
    target.mkdir(parents=True)
    records = [
        Record("/srv/data", f"f{i}", Change.MODIFIED, "file", size=1 << 20, saved=True, sha256="0" * 64)
        for i in range(files)
    ]
    manifest = splitbrain.build_manifest(
        splitbrain.Context(module, "node2", "node1", 3, 4),
        records,
        saved_at=1e9,
        since=9e8,
        source="journal",
        keep=KeepFree(),
    )
    splitbrain.write_manifest(target, manifest)
    return target


def cli(var: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command")
    splitbrain_cli.add_parser(commands)
    return splitbrain_cli.run(parser.parse_args(["splitbrain", *argv]), Paths(var=var))


def test_list_shows_every_save_with_its_size_and_where_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_save(tmp_path, "app", "20250314T101502Z", files=3)
    make_save(tmp_path, "db", "20250101T000000Z")
    (splitbrain.splitbrain_dir(tmp_path, "db") / "20250102T000000Z").mkdir()  # interrupted
    (splitbrain.splitbrain_dir(tmp_path, "db") / "notes").mkdir()  # not a save

    assert cli(tmp_path, "list") == 0
    out = capsys.readouterr().out
    assert (
        "app  20250314T101502Z  3 files (3.0 MiB) that node2 changed since 1998-07-09T16:00:00Z; winner node1"
        in out
    )
    assert str(a) in out
    assert "20250102T000000Z  incomplete" in out
    assert "notes" not in out

    assert cli(tmp_path, "list", "-m", "app", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(s["module"], s["time"], s["totals"]["files"]) for s in listed] == [
        ("app", "20250314T101502Z", 3)
    ]
    assert listed[0]["files"][0]["path"] == "f0"


def test_remove_one_save_or_all_of_a_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = make_save(tmp_path, "app", "20250314T101502Z")
    second = make_save(tmp_path, "app", "20250315T000000Z")
    other = make_save(tmp_path, "db", "20250315T000000Z")

    assert cli(tmp_path, "remove", "-m", "app", "20250314T101502Z") == 0
    assert not first.exists() and second.exists()
    assert f"removed {first}" in capsys.readouterr().out

    assert cli(tmp_path, "remove", "-m", "app", "--all") == 0
    assert not second.exists() and other.exists()

    assert cli(tmp_path, "remove", "-m", "app", "--all") == 1
    assert "has no split-brain save" in capsys.readouterr().err
    assert cli(tmp_path, "remove", "-m", "db", "../../etc") == 1
    assert "is not a save's name" in capsys.readouterr().err
    assert cli(tmp_path, "remove", "-m", "db", "20990101T000000Z") == 1
    assert other.exists()


def test_the_split_as_safekitd_saw_it_dates_the_save_and_tells_changes_on_both(
    tmp_path: Path, data: tuple[Path, int]
) -> None:
    root, fd = data
    (root / "shared.txt").write_text("node2's version")
    split = time.time() - 30
    j = Journal("e", clock=Clock(split + 20))  # node2 wrote 20 s after the split
    j.wrote(0, b"shared.txt", 0, 15)
    ctx = splitbrain.Context("app", "node2", "node1", 4, 5, split_at=split)
    target = tmp_path / "sb" / "x"
    manifest = splitbrain.save(ctx, replicated(root, fd), j, target, keep=KeepFree(), space=lambda: PLENTY)
    assert manifest["since"] == splitbrain.iso(split)
    assert manifest["first_change"] == splitbrain.iso(split + 20)
    # the winner wrote it 10 s after the split, before node2 did: still a change on both sides
    (root / "shared.txt").write_text("node1's version")
    os.utime(root / "shared.txt", (split + 10, split + 10))
    annotated = splitbrain.annotate(target, replicated(root, fd), finished_at=time.time())
    assert annotated is not None
    assert by_path(annotated)["shared.txt"]["on_winner"] == "changed on both"
