"""The reintegration journal: zones, whole/meta/trunc entries, merge, persistence, order, marks."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safekit.rfs.journal import ZONE, Entry, Journal, plan_order

SHORT = settings(max_examples=80, deadline=None)


def zones_of(offset: int, length: int) -> set[int]:
    j = Journal("e")
    j.wrote(0, b"f", offset, length)
    return j.entries[0][b"f"].zones


# --------------------------------------------------------------------------- wrote
@pytest.mark.parametrize(
    ("offset", "length", "zones"),
    [
        (0, 1, {0}),
        (0, ZONE, {0}),
        (0, ZONE + 1, {0, 1}),
        (ZONE - 1, 1, {0}),
        (ZONE - 1, 2, {0, 1}),
        (ZONE, 1, {1}),
        (ZONE, ZONE, {1}),
        (ZONE + 1, ZONE, {1, 2}),
        (ZONE - 1, ZONE + 2, {0, 1, 2}),
        (3 * ZONE - 1, 1, {2}),
        (10 * ZONE + 5, 4096, {10}),
        (2**40, 1, {2**40 // ZONE}),
    ],
)
def test_wrote_dirties_exactly_the_zones_touched(offset: int, length: int, zones: set[int]) -> None:
    assert zones_of(offset, length) == zones


@pytest.mark.parametrize("length", [0, -1])
def test_an_empty_write_dirties_no_zone(length: int) -> None:
    assert zones_of(ZONE, length) == set()


@SHORT
@given(st.integers(0, 2**45), st.integers(1, 5 * ZONE))
def test_wrote_zones_are_those_overlapping_the_range(offset: int, length: int) -> None:
    zones = zones_of(offset, length)
    assert zones == {z for z in range(offset // ZONE, offset // ZONE + 7) if z * ZONE < offset + length}
    assert min(zones) * ZONE <= offset < (min(zones) + 1) * ZONE


def test_writes_accumulate_and_count_changes() -> None:
    j = Journal("e")
    j.wrote(0, b"f", 0, 10)
    j.wrote(0, b"f", 5 * ZONE, 10)
    j.wrote(1, b"f", 0, 10)
    assert j.entries[0][b"f"].zones == {0, 5}
    assert j.entries[1][b"f"].zones == {0}
    assert j.changes == 3
    assert len(j) == 2
    assert j.dirty_bytes_estimate() == 3 * ZONE


def test_a_write_to_a_whole_entry_adds_no_zone() -> None:
    j = Journal("e")
    j.replaced(0, b"f")
    j.wrote(0, b"f", 0, 10)
    assert j.entries[0][b"f"] == Entry(set(), whole=True, meta=True)


# --------------------------------------------------------------------------- truncated, replaced, removed
def test_truncated_keeps_the_minimum_and_marks_meta() -> None:
    j = Journal("e")
    j.truncated(0, b"f", 100)
    assert j.entries[0][b"f"].trunc == 100
    assert j.entries[0][b"f"].meta
    j.truncated(0, b"f", 5000)
    assert j.entries[0][b"f"].trunc == 100
    j.truncated(0, b"f", 0)
    assert j.entries[0][b"f"].trunc == 0
    j.truncated(0, b"f", 7)
    assert j.entries[0][b"f"].trunc == 0


def test_truncated_keeps_the_zones() -> None:
    j = Journal("e")
    j.wrote(0, b"f", 0, 3 * ZONE)
    j.truncated(0, b"f", 10)
    assert j.entries[0][b"f"].zones == {0, 1, 2}


def test_truncating_a_whole_entry_records_no_size() -> None:
    j = Journal("e")
    j.replaced(0, b"f")
    j.truncated(0, b"f", 3)
    assert j.entries[0][b"f"].trunc is None


def test_replaced_clears_zones_and_trunc() -> None:
    j = Journal("e")
    j.wrote(0, b"f", 0, 3 * ZONE)
    j.truncated(0, b"f", 10)
    j.replaced(0, b"f")
    assert j.entries[0][b"f"] == Entry(set(), whole=True, meta=True, trunc=None)


def test_removed_clears_zones_and_marks_meta() -> None:
    j = Journal("e")
    j.wrote(0, b"f", 0, 3 * ZONE)
    j.removed(0, b"f")
    entry = j.entries[0][b"f"]
    assert entry.zones == set()
    assert entry.meta
    assert not entry.whole


def test_removed_after_replaced_stays_whole() -> None:
    # created then removed while away: reintegration removes it (and finds nothing to send)
    j = Journal("e")
    j.replaced(0, b"f")
    j.removed(0, b"f")
    assert j.entries[0][b"f"].whole


def test_changed_meta() -> None:
    j = Journal("e")
    j.changed_meta(0, b"")
    assert j.entries[0][b""] == Entry(meta=True)


def test_clear() -> None:
    j = Journal("e")
    j.wrote(0, b"f", 0, 1)
    before = j.changes
    j.clear()
    assert len(j) == 0
    assert j.changes == before + 1


# --------------------------------------------------------------------------- merge
def test_merge_unions_zones_and_keeps_the_smaller_trunc() -> None:
    a, b = Journal("e"), Journal("e")
    a.wrote(0, b"f", 0, 1)
    a.truncated(0, b"f", 50)
    b.wrote(0, b"f", ZONE, 1)
    b.truncated(0, b"f", 20)
    b.wrote(0, b"g", 0, 1)
    b.wrote(2, b"h", 0, 1)
    a.merge(b)
    assert a.entries[0][b"f"] == Entry({0, 1}, meta=True, trunc=20)
    assert a.entries[0][b"g"] == Entry({0})
    assert a.entries[2][b"h"] == Entry({0})


def test_merge_keeps_a_trunc_the_other_side_lacks() -> None:
    a, b = Journal("e"), Journal("e")
    a.truncated(0, b"f", 50)
    b.wrote(0, b"f", 0, 1)
    a.merge(b)
    assert a.entries[0][b"f"].trunc == 50
    c = Journal("e")
    c.wrote(0, b"f", 0, 1)
    c.merge(Journal("e", entries={0: {b"f": Entry(trunc=9)}}))
    assert c.entries[0][b"f"].trunc == 9


@pytest.mark.parametrize("whole_side", ["mine", "theirs"])
def test_merge_whole_wins_and_clears_zones(whole_side: str) -> None:
    a, b = Journal("e"), Journal("e")
    whole, partial = (a, b) if whole_side == "mine" else (b, a)
    whole.replaced(0, b"f")
    partial.wrote(0, b"f", 0, 3 * ZONE)
    partial.truncated(0, b"f", 1)
    a.merge(b)
    assert a.entries[0][b"f"] == Entry(set(), whole=True, meta=True, trunc=None)


def test_merge_into_an_empty_journal_copies() -> None:
    b = Journal("e")
    b.wrote(0, b"f", 0, 1)
    b.removed(0, b"g")
    a = Journal("e")
    a.merge(b)
    assert a.entries == b.entries
    a.entries[0][b"f"].zones.add(99)
    assert 99 not in b.entries[0][b"f"].zones  # not aliased


# --------------------------------------------------------------------------- persistence
def test_json_round_trip() -> None:
    j = Journal("epoch-1", seq=12345)
    j.wrote(0, b"f", 0, 3 * ZONE)
    j.wrote(0, b"f", 10 * ZONE, 1)
    j.truncated(0, b"f", 0)
    j.replaced(0, b"d")
    j.removed(1, b"\xff\x00x/\x80")
    j.changed_meta(1, b"")
    back = Journal.from_json(json.loads(j.dumps(clean=True)))
    assert back.entries == j.entries
    assert back.epoch == "epoch-1"
    assert back.seq == 12345
    assert back.trusted
    assert back.changes == 0


def test_zones_are_saved_as_ranges() -> None:
    entry = Entry({0, 1, 2, 5, 7, 8})
    assert entry.to_json() == {"z": [[0, 2], [5, 5], [7, 8]]}
    assert Entry.from_json(entry.to_json()) == entry
    assert Entry().to_json() == {}
    assert Entry(trunc=0).to_json() == {"t": 0}


def test_an_unclean_save_loads_untrusted() -> None:
    j = Journal("e", seq=3)
    assert not Journal.from_json(json.loads(j.dumps(clean=False))).trusted
    assert Journal.from_json(json.loads(j.dumps(clean=True))).trusted


def test_an_untrusted_journal_never_saves_clean() -> None:
    j = Journal("e", trusted=False)
    assert j.to_json(clean=True)["clean"] is False
    assert not Journal.from_json(j.to_json(clean=True)).trusted


def test_unknown_journal_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        Journal.from_json({"version": 2, "epoch": "e"})


def test_missing_fields_default() -> None:
    j = Journal.from_json({"version": 1, "epoch": "e"})
    assert (j.trusted, j.entries, j.seq) == (False, {}, 0)


entries = st.builds(
    Entry,
    st.sets(st.integers(0, 200), max_size=12),
    st.booleans(),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 2**50)),
)


@SHORT
@given(
    st.dictionaries(
        st.integers(0, 3), st.dictionaries(st.binary(max_size=10), entries, max_size=4), max_size=3
    ),
    st.integers(0, 2**63),
    st.booleans(),
    st.booleans(),
    st.text(max_size=10),
)
def test_json_round_trip_property(
    per_dir: dict[int, dict[bytes, Entry]], seq: int, clean: bool, trusted: bool, epoch: str
) -> None:
    j = Journal(epoch, trusted=trusted, entries=per_dir, seq=seq)
    back = Journal.from_json(json.loads(j.dumps(clean=clean)))
    assert back.entries == per_dir
    assert back.seq == seq
    assert back.epoch == epoch
    assert back.trusted == (clean and trusted)


# --------------------------------------------------------------------------- plan_order
def test_plan_order_parents_before_children() -> None:
    names = [b"b/c/d", b"a-z", b"a/b", b"", b"b", b"a", b"b/c", b"a.x/y", b"a/b/c"]
    order = [p for p, _ in plan_order({p: Entry(meta=True) for p in names})]
    assert sorted(order) == sorted(names)
    for i, path in enumerate(order):
        for later in order[i + 1 :]:
            assert not path.startswith(later + b"/"), (path, later)
    assert order[0] == b""
    assert order.index(b"a") < order.index(b"a/b") < order.index(b"a/b/c") < order.index(b"a-z")


def test_plan_order_skips_what_lies_under_a_whole_ancestor() -> None:
    es = {
        b"a": Entry(whole=True),
        b"a/f": Entry({1}),
        b"a/g/h": Entry(whole=True),
        b"ab": Entry({0}),
        b"a-b": Entry({0}),
        b"b/c": Entry(whole=True),
        b"b/c/d": Entry(meta=True),
        b"b/cd": Entry(meta=True),
        b"b": Entry(meta=True),
    }
    assert [p for p, _ in plan_order(es)] == [b"a", b"a-b", b"ab", b"b", b"b/c", b"b/cd"]


def test_plan_order_whole_root_does_not_hide_children() -> None:
    order = [p for p, _ in plan_order({b"": Entry(whole=True), b"x": Entry(meta=True)})]
    assert order == [b"", b"x"]


@SHORT
@given(
    st.dictionaries(
        st.lists(st.sampled_from([b"a", b"b", b"a-", b"a.b", b"c"]), min_size=1, max_size=4).map(b"/".join),
        st.booleans(),
        max_size=12,
    )
)
def test_plan_order_property(flags: dict[bytes, bool]) -> None:
    es = {p: Entry(whole=w) for p, w in flags.items()}
    order = [p for p, _ in plan_order(es)]
    wholes = [p for p, w in flags.items() if w]
    expected = {p for p in flags if not any(p.startswith(w + b"/") for w in wholes)}
    assert set(order) == expected
    assert len(order) == len(expected)
    position = {p: i for i, p in enumerate(order)}
    for p in order:
        for q in order:
            if q.startswith(p + b"/"):
                assert position[p] < position[q]
