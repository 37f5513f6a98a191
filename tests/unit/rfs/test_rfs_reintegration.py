"""The reintegration contract, on an in-memory model of a replicated directory.

While the secondary is away, the primary's operations change its tree and are recorded in the journal
(`marks_of` -> `apply_marks`). When the secondary returns with its old copy, the journal resync of
primary.py (`_sync_journal`, `_sync_journal_entry`, `_send_tree`, `_sync_entry`, `_sync_attrs`,
`_send_file_data`) sends, per journal entry and reading the primary's *current* tree, the operations
modelled by `resync_ops`; the secondary applies them leniently (apply.py, modelled by `apply_lenient`).
The contract: the old copy then equals the primary's tree - nothing the journal forgot stays stale.

The model covers files (data, mode, user xattrs), directories (mode, xattrs) and symlinks; what it
leaves out: owners and times (sent with every entry the resync visits), exclusions, operations that
arrive during the resync (their marks go to a new journal), and fallocate (the FUSE front has none).
"""

from __future__ import annotations

import dataclasses
import stat
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safekit.rfs import ops, wire
from safekit.rfs.journal import ZONE, Entry, Journal, apply_marks, marks_of, plan_order
from safekit.rfs.wire import ATTR_MODE, ATTR_SIZE

# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Node:
    kind: str  # f d l
    mode: int = 0o644
    data: bytes = b""  # a file's content, a symlink's target
    xattrs: tuple[tuple[bytes, bytes], ...] = ()

    def set_xattr(self, name: bytes, value: bytes) -> Node:
        return dataclasses.replace(self, xattrs=tuple(sorted({**dict(self.xattrs), name: value}.items())))

    def remove_xattr(self, name: bytes) -> Node:
        return dataclasses.replace(self, xattrs=tuple(kv for kv in self.xattrs if kv[0] != name))


Tree = dict[bytes, Node]


class ReplicaRefused(Exception):
    """The real Replica would raise here (the secondary would leave sync)."""


def parent_of(path: bytes) -> bytes:
    return path.rpartition(b"/")[0]


def subtree(tree: Tree, top: bytes) -> list[bytes]:
    return [p for p in tree if p == top or p.startswith(top + b"/")]


def walk(tree: Tree, top: bytes) -> Iterator[bytes]:
    """Everything under `top` (not itself), parents first, like tree.walk."""
    below = [p for p in tree if (p.startswith(top + b"/") if top else p)]
    yield from sorted(below, key=lambda p: p.split(b"/"))


def write_at(data: bytes, offset: int, chunk: bytes) -> bytes:
    if offset > len(data):
        data += bytes(offset - len(data))
    return data[:offset] + chunk + data[offset + len(chunk) :]


def resize(data: bytes, size: int) -> bytes:
    return data[:size] + bytes(max(0, size - len(data)))


def do_rename(tree: Tree, old: bytes, new: bytes, flags: int) -> None:
    moving = {p[len(old) :]: tree.pop(p) for p in subtree(tree, old)}
    if flags & 2:
        back = {p[len(new) :]: tree.pop(p) for p in subtree(tree, new)}
        tree.update({old + suffix: node for suffix, node in back.items()})
    else:
        for p in subtree(tree, new):
            del tree[p]
    tree.update({new + suffix: node for suffix, node in moving.items()})


# --------------------------------------------------------------------------- the primary, away


NAMES = [b"a", b"b", b"c"]
OFFSETS = [0, 1, 100, ZONE - 1, ZONE, ZONE + 1, 2 * ZONE - 1, 2 * ZONE, 2 * ZONE + 7]
LENGTHS = [1, 2, 100, ZONE - 1, ZONE, ZONE + 1]
SIZES = [0, 1, 50, ZONE - 1, ZONE, ZONE + 1, 2 * ZONE + 5, 3 * ZONE]
MODES = [0o600, 0o644, 0o755, 0o4750, 0o1777]
XATTRS = [b"user.a", b"user.b"]
ACTIONS = [
    "create",
    "otrunc",
    "write",
    "write",
    "write",
    "truncate",
    "truncate_setattr",
    "chmod",
    "setxattr",
    "removexattr",
    "mkdir",
    "unlink",
    "rmdir",
    "rename",
    "symlink",
]


class Primary:
    def __init__(self, journal: Journal | None = None) -> None:
        self.tree: Tree = {b"": Node("d", 0o755)}
        self.journal = journal
        self.fill = 0
        self.sent: list[ops.Operation] = []

    def run(self, op: ops.Operation) -> None:
        self.apply(op)
        self.sent.append(op)
        if self.journal is not None:
            apply_marks(self.journal, 0, marks_of(op))

    def apply(self, op: ops.Operation) -> None:
        t = self.tree
        match op:
            case ops.Create(path=p, mode=mode):
                t[p] = Node("f", stat.S_IMODE(mode))
            case ops.Write(path=p, offset=offset, data=data):
                t[p] = dataclasses.replace(t[p], data=write_at(t[p].data, offset, data))
            case ops.Truncate(path=p, size=size) | ops.SetAttr(path=p, mask=wire.ATTR_SIZE, size=size):
                t[p] = dataclasses.replace(t[p], data=resize(t[p].data, size))
            case ops.SetAttr(path=p, mask=wire.ATTR_MODE, mode=mode):
                t[p] = dataclasses.replace(t[p], mode=stat.S_IMODE(mode))
            case ops.SetXattr(path=p, name=name, value=value):
                t[p] = t[p].set_xattr(name, value)
            case ops.RemoveXattr(path=p, name=name):
                t[p] = t[p].remove_xattr(name)
            case ops.Mkdir(path=p, mode=mode):
                t[p] = Node("d", stat.S_IMODE(mode))
            case ops.Unlink(path=p) | ops.Rmdir(path=p):
                del t[p]
            case ops.Rename(old=old, new=new, flags=flags):
                do_rename(t, old, new, flags)
            case ops.Symlink(path=p, target=target):
                t[p] = Node("l", 0o777, target)
            case _:
                raise AssertionError(op)

    def candidates(self, action: str) -> list[ops.Operation]:  # noqa: PLR0911
        t = self.tree
        dirs = [p for p, n in t.items() if n.kind == "d"]
        files = [p for p, n in t.items() if n.kind == "f"]
        free = [
            (d + b"/" + n if d else n) for d in dirs for n in NAMES if (d + b"/" + n if d else n) not in t
        ]
        free = [p for p in free if p.count(b"/") < 3]
        self.fill = self.fill % 250 + 1
        match action:
            case "create":
                return [ops.Create(p, stat.S_IFREG | m, 0, 0) for p in free for m in MODES[:2]]
            case "otrunc":  # open(O_TRUNC) of an existing file arrives as a truncate to 0
                return [ops.Truncate(p, 0) for p in files]
            case "write":  # the data is made by `play` (a list of every write would be large)
                return [
                    ops.Write(p, o, bytes(n)) for p in files for o in OFFSETS for n in range(len(LENGTHS))
                ]
            case "truncate":
                return [ops.Truncate(p, s) for p in files for s in SIZES]
            case "truncate_setattr":
                return [ops.SetAttr(p, ATTR_SIZE, size=s) for p in files for s in SIZES]
            case "chmod":
                return [
                    ops.SetAttr(p, ATTR_MODE, mode=m) for p, n in t.items() if n.kind != "l" for m in MODES
                ]
            case "setxattr":
                return [
                    ops.SetXattr(p, x, bytes([self.fill]))
                    for p, n in t.items()
                    if n.kind != "l" and p  # user xattrs: not on symlinks; the root: see apply tests
                    for x in XATTRS
                ]
            case "removexattr":
                return [ops.RemoveXattr(p, x) for p, n in t.items() for x, _ in n.xattrs]
            case "mkdir":
                return [ops.Mkdir(p, stat.S_IFDIR | m, 0, 0) for p in free for m in (0o755, 0o700)]
            case "unlink":
                return [ops.Unlink(p) for p, n in t.items() if n.kind in "fl"]
            case "rmdir":
                return [ops.Rmdir(p) for p in dirs if p and not any(q.startswith(p + b"/") for q in t)]
            case "symlink":
                return [ops.Symlink(p, b"../" + p, 0, 0) for p in free]
            case "rename":
                return [
                    ops.Rename(old, new, flags)
                    for old in t
                    if old
                    for new in [*t, *free]
                    if new
                    for flags in (0, 1, 2)
                    if self.can_rename(old, new, flags)
                ]
        raise AssertionError(action)

    def can_rename(self, old: bytes, new: bytes, flags: int) -> bool:
        t = self.tree
        if old == new or new.startswith(old + b"/") or t.get(parent_of(new), Node("f")).kind != "d":
            return False
        if flags == 2:
            return new in t and not old.startswith(new + b"/")
        if new not in t:
            return True
        if flags == 1:
            return False
        if t[old].kind == "d":
            return t[new].kind == "d" and not any(q.startswith(new + b"/") for q in t)
        return t[new].kind != "d"


# --------------------------------------------------------------------------- the resync, modelled


def resync_ops(current: Tree, entries: dict[bytes, Entry]) -> Iterator[ops.Operation]:
    """primary.py `_sync_journal` for one directory (nothing excluded)."""
    for path, entry in plan_order(entries):
        if entry.whole:
            if path:
                yield ops.RemoveTree(path)
            yield from send_tree(current, path)
        else:
            yield from sync_journal_entry(current, path, entry)


def sync_journal_entry(current: Tree, path: bytes, entry: Entry) -> Iterator[ops.Operation]:
    node = current.get(path)
    if node is None:
        if path:
            yield ops.RemoveTree(path)
        return
    if node.kind == "d":
        if path:
            yield ops.Mkdir(path, stat.S_IFDIR | node.mode, 0, 0)
        yield from sync_attrs(current, path)
    elif node.kind != "f":
        yield ops.RemoveTree(path)
        yield from send_object_now_flat(current, path)
    else:
        if entry.trunc is not None:
            yield ops.Truncate(path, entry.trunc)
        yield ops.Truncate(path, len(node.data))
        yield from send_file_data(current, path, sorted(entry.zones))
        yield from sync_attrs(current, path)


def send_tree(current: Tree, path: bytes) -> Iterator[ops.Operation]:
    node = current.get(path)
    if node is None:
        return
    yield from (send_object_now_flat(current, path) if path else sync_attrs(current, b""))
    if node.kind != "d":
        return
    for child in walk(current, path):
        yield from sync_entry_new(current, child)


def sync_entry_new(current: Tree, path: bytes) -> Iterator[ops.Operation]:
    """`_sync_entry(path, remote=None)`: the secondary has nothing there."""
    node = current[path]
    if node.kind == "d":
        if path:
            yield ops.Mkdir(path, stat.S_IFDIR | node.mode, 0, 0)
        yield from sync_attrs(current, path)
    elif node.kind != "f":
        yield from send_object_now_flat(current, path)
    else:
        yield ops.Create(path, stat.S_IFREG | node.mode, 0, 0)
        yield from send_file_data(current, path, None)
        yield from sync_attrs(current, path)


def send_object_now_flat(current: Tree, path: bytes) -> Iterator[ops.Operation]:
    node = current[path]
    if node.kind == "d":
        yield ops.Mkdir(path, stat.S_IFDIR | node.mode, 0, 0)
    elif node.kind == "l":
        yield ops.Symlink(path, node.data, 0, 0)
    else:
        yield ops.Create(path, stat.S_IFREG | node.mode, 0, 0)
        for offset in range(0, len(node.data), ZONE * 16):
            yield ops.Write(path, offset, node.data[offset : offset + ZONE * 16])
    yield from sync_attrs(current, path)


def sync_attrs(current: Tree, path: bytes) -> Iterator[ops.Operation]:
    node = current[path]
    if node.kind != "l":
        yield ops.SetAttr(path, ATTR_MODE, mode=node.mode)
    yield ops.ClearXattrs(path)  # `_sync_xattrs`: the copy's xattrs go, the primary's are set
    for name, value in node.xattrs:
        yield ops.SetXattr(path, name, value)


def send_file_data(current: Tree, path: bytes, zones: list[int] | None) -> Iterator[ops.Operation]:
    data = current[path].data
    wanted = range((len(data) + ZONE - 1) // ZONE) if zones is None else zones
    for zone in wanted:
        chunk = data[zone * ZONE : (zone + 1) * ZONE]
        if not chunk:
            break
        yield ops.Write(path, zone * ZONE, chunk)


def ensure_parents(rep: Tree, path: bytes) -> None:
    """Replica._parents: os.makedirs(parent, 0o755, exist_ok=True) (the secondary's umask is 0)."""
    parts = path.split(b"/")[:-1]
    for i in range(1, len(parts) + 1):
        p = b"/".join(parts[:i])
        node = rep.get(p)
        if node is None:
            rep[p] = Node("d", 0o755)
        elif node.kind != "d":
            raise ReplicaRefused(f"makedirs through a non-directory {p!r}")


def open_rdwr(rep: Tree, path: bytes) -> Node:
    """Replica._fd in lenient mode: O_RDWR|O_NOFOLLOW, created (0600) with its parents if missing."""
    node = rep.get(path)
    if node is None:
        ensure_parents(rep, path)
        node = rep[path] = Node("f", 0o600)
    if node.kind != "f":
        raise ReplicaRefused(f"open O_RDWR of a {node.kind} at {path!r}")
    return node


def remove_tree(rep: Tree, path: bytes) -> None:
    assert path, "RemoveTree of the root"
    for p in subtree(rep, path):
        del rep[p]


def apply_lenient(rep: Tree, op: ops.Operation) -> None:
    """apply.Replica.apply with lenient=True, for the operations a resync sends."""
    match op:
        case ops.RemoveTree(path=p):
            remove_tree(rep, p)
        case ops.Create(path=p, mode=mode):
            ensure_parents(rep, p)
            if p in rep and rep[p].kind != "f":
                remove_tree(rep, p)
            old = rep.get(p)  # O_TRUNC: an existing file keeps its xattrs
            rep[p] = Node("f", stat.S_IMODE(mode), b"", old.xattrs if old else ())
        case ops.Write(path=p, offset=offset, data=data):
            node = open_rdwr(rep, p)
            rep[p] = dataclasses.replace(node, data=write_at(node.data, offset, data))
        case ops.Truncate(path=p, size=size):
            node = open_rdwr(rep, p)
            rep[p] = dataclasses.replace(node, data=resize(node.data, size))
        case ops.SetAttr(path=p, mask=mask, mode=mode):
            assert mask == ATTR_MODE
            if p not in rep:
                raise ReplicaRefused(f"setattr of a missing {p!r}")
            if rep[p].kind != "l":
                rep[p] = dataclasses.replace(rep[p], mode=stat.S_IMODE(mode))
        case ops.SetXattr(path=p, name=name, value=value):
            if p not in rep:
                raise ReplicaRefused(f"setxattr of a missing {p!r}")
            rep[p] = rep[p].set_xattr(name, value)
        case ops.ClearXattrs(path=p):
            if p not in rep:
                raise ReplicaRefused(f"clearxattrs of a missing {p!r}")
            rep[p] = dataclasses.replace(rep[p], xattrs=type(rep[p].xattrs)())
        case ops.Mkdir(path=p, mode=mode):
            ensure_parents(rep, p)
            if p in rep and rep[p].kind != "d":
                remove_tree(rep, p)
            rep[p] = dataclasses.replace(rep.get(p, Node("d")), mode=stat.S_IMODE(mode))
        case ops.Symlink(path=p, target=target):
            ensure_parents(rep, p)
            if p in rep:
                remove_tree(rep, p)
            rep[p] = Node("l", 0o777, target)
        case _:
            raise AssertionError(f"a resync does not send {op}")


def reintegrate(old_copy: Tree, current: Tree, journal: Journal) -> Tree:
    rep = dict(old_copy)
    for op in resync_ops(current, journal.entries.get(0, {})):
        apply_lenient(rep, op)
    return rep


def brief(sent: list[ops.Operation]) -> list[ops.Operation]:
    """The operations, with the data of writes cut short (for assertion messages)."""
    return [
        ops.Write(op.path, op.offset, op.data[:4] + f"...<{len(op.data)}>".encode())
        if isinstance(op, ops.Write) and len(op.data) > 8
        else op
        for op in sent
    ]


def diff(a: Tree, b: Tree) -> dict[bytes, tuple[Node | None, Node | None]]:
    def short(n: Node | None) -> Node | None:
        if n is None or len(n.data) < 40:
            return n
        return dataclasses.replace(n, data=n.data[:8] + f"...<{len(n.data)}>".encode())

    return {
        p: (short(a.get(p)), short(b.get(p))) for p in sorted(a.keys() | b.keys()) if a.get(p) != b.get(p)
    }


# --------------------------------------------------------------------------- the property


def play(primary: Primary, data: st.DataObject, steps: int, actions: list[str]) -> None:
    for _ in range(steps):
        action = data.draw(st.sampled_from(actions))
        choices = primary.candidates(action)
        if choices:
            op = data.draw(st.sampled_from(choices))
            if isinstance(op, ops.Write):
                op = ops.Write(op.path, op.offset, bytes([primary.fill]) * LENGTHS[len(op.data)])
            primary.run(op)


def check_contract(primary: Primary, old_copy: Tree) -> None:
    assert primary.journal is not None
    # the journal goes through its saved form, as after a clean stop and restart
    journal = Journal.from_json(primary.journal.to_json(clean=True))
    replica = reintegrate(old_copy, primary.tree, journal)
    assert replica == primary.tree, (brief(primary.sent), diff(replica, primary.tree))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_reintegration_from_the_journal_restores_the_primary_tree(data: st.DataObject) -> None:
    primary = Primary()
    play(primary, data, data.draw(st.integers(0, 10), label="steps before"), ACTIONS)
    old_copy = dict(primary.tree)
    primary.journal = Journal("epoch")
    primary.sent = []
    play(primary, data, data.draw(st.integers(1, 14), label="steps away"), ACTIONS)
    check_contract(primary, old_copy)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_reintegration_of_file_data_changes(data: st.DataObject) -> None:
    """Writes and truncations only, on files that have data in the old copy: the zones and `trunc`."""
    primary = Primary()
    for n, name in enumerate(NAMES):
        primary.run(ops.Create(name, stat.S_IFREG | 0o644, 0, 0))
        primary.run(ops.Write(name, 0, bytes([n + 1]) * data.draw(st.sampled_from(SIZES), label="size")))
    old_copy = dict(primary.tree)
    primary.journal = Journal("epoch")
    primary.sent = []
    play(
        primary,
        data,
        data.draw(st.integers(1, 8), label="steps away"),
        ["write", "truncate", "truncate_setattr", "otrunc"],
    )
    check_contract(primary, old_copy)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_an_interrupted_resync_then_the_merged_journal_restores_the_primary_tree(data: st.DataObject) -> None:
    """primary.py `_disconnected` during a journal resync: `journal.merge(j0)`. The secondary got a prefix
    of the first resync's operations (applied and acknowledged: they are in no journal), then the
    primary went on changing its tree into the new journal; the next resync uses the merged one."""
    away = [a for a in ACTIONS if a != "removexattr"]
    primary = Primary()
    play(primary, data, data.draw(st.integers(0, 8), label="steps before"), away)
    old_copy = dict(primary.tree)
    j0 = primary.journal = Journal("epoch")
    play(primary, data, data.draw(st.integers(1, 8), label="steps away"), away)
    first = list(resync_ops(primary.tree, j0.entries.get(0, {})))
    done = data.draw(st.integers(0, len(first)), label="resync operations applied")
    replica = dict(old_copy)
    for op in first[:done]:
        apply_lenient(replica, op)
    primary.journal = Journal("epoch")
    play(primary, data, data.draw(st.integers(0, 8), label="steps after"), away)
    primary.journal.merge(j0)
    check_contract(primary, replica)


def scenario(before: list[ops.Operation], away: list[ops.Operation]) -> tuple[Primary, Tree]:
    primary = Primary()
    for op in before:
        primary.run(op)
    old_copy = dict(primary.tree)
    primary.journal = Journal("epoch")
    for op in away:
        primary.run(op)
    return primary, old_copy


F = stat.S_IFREG | 0o644
D = stat.S_IFDIR | 0o755


@pytest.mark.parametrize(
    ("before", "away"),
    [
        pytest.param(
            [ops.Create(b"f", F, 0, 0), ops.Write(b"f", 0, b"A" * (3 * ZONE))],
            [ops.Truncate(b"f", 10), ops.Truncate(b"f", 3 * ZONE), ops.Write(b"f", ZONE, b"B")],
            id="shrink-then-grow",
        ),
        pytest.param(
            [ops.Mkdir(b"a", D, 0, 0), ops.Create(b"a/f", F, 0, 0), ops.Write(b"a/f", 0, b"old")],
            [
                ops.Write(b"a/f", 0, b"new"),
                ops.Rename(b"a", b"b"),
                ops.Mkdir(b"a", D, 0, 0),
                ops.Create(b"a/f", F, 0, 0),
            ],
            id="directory-renamed-and-recreated",
        ),
        pytest.param(
            [ops.Mkdir(b"a", D, 0, 0), ops.Mkdir(b"b", D, 0, 0), ops.Create(b"a/f", F, 0, 0)],
            [ops.Rename(b"a", b"b", 2), ops.Write(b"b/f", 5, b"x"), ops.Create(b"a/g", F, 0, 0)],
            id="exchange-then-write",
        ),
        pytest.param(
            [ops.Create(b"f", F, 0, 0), ops.Write(b"f", 0, b"data")],
            [ops.Unlink(b"f"), ops.Mkdir(b"f", D, 0, 0), ops.Symlink(b"f/l", b"x", 0, 0)],
            id="file-becomes-directory",
        ),
        pytest.param(
            [ops.Mkdir(b"d", D, 0, 0), ops.Create(b"d/f", F, 0, 0)],
            [ops.Rename(b"d/f", b"g"), ops.Rmdir(b"d"), ops.Rename(b"g", b"d")],
            id="directory-becomes-file",
        ),
        pytest.param(
            [ops.Create(b"f", F, 0, 0)],
            [ops.Write(b"f", 2 * ZONE, b"x"), ops.SetAttr(b"f", ATTR_SIZE, size=1), ops.Write(b"f", 0, b"y")],
            id="sparse-then-truncated",
        ),
        pytest.param(
            [ops.Create(b"f", F, 0, 0), ops.Write(b"f", 0, b"A" * (2 * ZONE))],
            [ops.SetAttr(b"f", ATTR_SIZE, size=3), ops.SetAttr(b"f", ATTR_SIZE, size=2 * ZONE)],
            id="setattr-size-shrink-then-grow",
        ),
        pytest.param(
            [ops.Create(b"f", F, 0, 0), ops.Write(b"f", 0, b"A" * (2 * ZONE))],
            [ops.Truncate(b"f", 0), ops.Write(b"f", 2 * ZONE, b"B")],
            id="otrunc-then-write-beyond",
        ),
        pytest.param(
            [ops.Mkdir(b"d", D, 0, 0), ops.SetXattr(b"d", b"user.a", b"1")],
            [ops.SetAttr(b"", ATTR_MODE, mode=0o700), ops.SetAttr(b"d", ATTR_MODE, mode=0o711)],
            id="modes-of-root-and-directory",
        ),
        pytest.param(
            [],
            [ops.Create(b"t", F, 0, 0), ops.Write(b"t", 0, b"tmp"), ops.Rename(b"t", b"f"), ops.Unlink(b"f")],
            id="created-and-removed-while-away",
        ),
    ],
)
def test_reintegration_examples(before: list[ops.Operation], away: list[ops.Operation]) -> None:
    primary, old_copy = scenario(before, away)
    check_contract(primary, old_copy)


def test_a_removed_xattr_is_reintegrated() -> None:
    primary, old_copy = scenario(
        [ops.Create(b"f", F, 0, 0), ops.SetXattr(b"f", b"user.a", b"1")],
        [ops.RemoveXattr(b"f", b"user.a")],
    )
    assert primary.journal is not None
    assert primary.journal.entries[0][b"f"] == Entry(meta=True)  # the journal does know
    check_contract(primary, old_copy)
