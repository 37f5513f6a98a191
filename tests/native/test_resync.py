"""Reintegration on the native data path (native/primary/resync.c, journal.c) against the native
secondary: after the secondary was away while applications wrote, the primary brings its copy in
line in each mode - journal (the dirty-zone journal), checksum (64 KiB block checksums), full -
with a writer still running during the resynchronisation, and both trees end byte-identical (a
checksum walk). A primary killed right after acknowledging a write during a resynchronisation
loses nothing: the secondary is not eligible meanwhile, and the next primary brings it the write.

Mounts only under temporary directories in /tmp, always unmounts. With SAFEKIT_NATIVE_SANITIZE=1
both programs are the AddressSanitizer + UBSan builds (`make -C native asan`): a sanitizer report
in a process's log fails the test.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from native_process import BUILD, NEEDS_FUSE, SANITIZE, CommandedProcess, build_programs

from safekit.rfs import channel
from safekit.rfs.journal import Journal

PRIMARY = BUILD / "safekit-rfs-primary"
SECONDARY = BUILD / "safekit-rfs-secondary"
MODULE, P_NODE, S_NODE = "pgsql", "node1", "node2"
MIB = 1 << 20

pytestmark = NEEDS_FUSE


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    build_programs()


class Proc(CommandedProcess):
    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command("stop")
                self.proc.wait(15)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


class Cluster:
    """A primary and a secondary on 127.0.0.1, each restartable with its state kept."""

    def __init__(self, root: Path) -> None:
        self.root = root
        key = root / "cluster.key"
        key.write_text("safekit-cluster-key-v1:" + base64.b64encode(os.urandom(32)).decode() + "\n")
        key.chmod(0o600)
        self.replica, self.backing, self.mnt = root / "replica", root / "backing", root / "mnt"
        for d in (self.replica, self.backing, self.mnt):
            d.mkdir()
        self.port = 0
        self.secondary: Proc | None = None
        self.primary: Proc | None = None
        self.runs = 0

    def spec(self, role: str) -> Path:
        node, peer = (P_NODE, S_NODE) if role == "primary" else (S_NODE, P_NODE)
        path = self.root / f"{role}.spec.json"
        path.write_text(
            json.dumps(
                {
                    "module": MODULE,
                    "node": node,
                    "peer": peer,
                    "dirs": [
                        {
                            "path": str(self.backing if role == "primary" else self.replica),
                            "notreplicated": [],
                            "notreplicated_regex": [],
                        }
                    ],
                    "local_addr": "127.0.0.1",
                    "peer_addr": "127.0.0.1",
                    "port": self.port,
                    "key_file": str(self.root / "cluster.key"),
                    "state_dir": str(self.root / f"{role}-state"),
                    "async_mode": "second",
                    "sendtimeout": 10,
                    "connect_interval": 0.2,
                    "window_bytes": 16 << 20,
                    "extra": {},
                }
            )
        )
        return path

    def start_secondary(self) -> Proc:
        self.runs += 1
        self.secondary = Proc(
            [str(SECONDARY), str(self.spec("secondary"))], self.root / f"secondary-{self.runs}.log"
        )
        port = int(self.secondary.wait("listening")["port"])
        if not self.port:
            self.port = port
        assert port == self.port
        return self.secondary

    def start_primary(self) -> Proc:
        self.runs += 1
        self.primary = Proc(
            [str(PRIMARY), f"--mountpoint={self.mnt}", str(self.spec("primary"))],
            self.root / f"primary-{self.runs}.log",
        )
        self.primary.wait("mounted")
        self.primary.command("degrade_ok")  # safekitd's leave at start
        return self.primary

    def stop_secondary(self) -> None:
        """The secondary goes away (a clean stop) while in sync: the primary holds fsync until
        safekitd lets it go on alone (degrade_ok)."""
        assert self.secondary is not None and self.primary is not None
        degraded = self.primary.count("degraded")
        self.secondary.stop()
        self.primary.wait("degraded", count=degraded + 1, timeout=10)
        self.primary.command("degrade_ok")

    def kill_primary(self) -> None:
        assert self.primary is not None
        self.primary.proc.kill()
        self.primary.proc.wait()
        subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], check=False)
        assert not os.path.ismount(self.mnt)

    def settle(self, timeout: float = 60.0) -> None:
        """An fsync of the root: every earlier operation is acknowledged (in sync), or local."""
        done = threading.Event()

        def run() -> None:
            fd = os.open(self.mnt, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            done.set()

        threading.Thread(target=run, daemon=True).start()
        assert done.wait(timeout), "fsync held: " + (self.primary.log()[-3000:] if self.primary else "")

    def close(self) -> None:
        for p in (self.primary, self.secondary):
            if p is not None and p.proc.poll() is None:
                os.kill(p.proc.pid, signal.SIGCONT)
        if self.primary is not None:
            self.primary.stop()
        if os.path.ismount(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], check=False)
        if self.secondary is not None:
            self.secondary.stop()
        for log in self.root.glob("*.log"):
            text = log.read_text(errors="replace")
            assert "Sanitizer" not in text and "runtime error" not in text, f"{log.name}:\n{text[-4000:]}"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="skresync-", dir="/tmp"))
    c = Cluster(root)
    try:
        yield c
    finally:
        c.close()
        if os.path.ismount(root / "mnt"):
            subprocess.run(["fusermount3", "-u", "-z", str(root / "mnt")], check=False)
        shutil.rmtree(root, ignore_errors=True)


def walk(root: Path) -> dict[str, Any]:
    """A checksum walk: per path its type, mode, owner, size, SHA-256 of the content (or the
    symlink's target) and user extended attributes; and which names are hard links of one file."""
    out: dict[str, Any] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            entry: dict[str, Any] = {"mode": oct(st.st_mode), "owner": (st.st_uid, st.st_gid)}
            if os.path.islink(p):
                entry["target"] = os.readlink(p)
            else:
                if p.is_file():
                    h = hashlib.sha256()
                    with open(p, "rb") as f:
                        while chunk := f.read(MIB):
                            h.update(chunk)
                    entry["size"] = st.st_size
                    entry["sha256"] = h.hexdigest()
                    inodes.setdefault(st.st_ino, []).append(str(p.relative_to(root)))
                entry["xattrs"] = {
                    n: os.getxattr(p, n).hex() for n in sorted(os.listxattr(p)) if n.startswith("user.")
                }
            out[str(p.relative_to(root))] = entry
    out["#links"] = sorted(sorted(names) for names in inodes.values() if len(names) > 1)
    return out


def differing_pages(a: Path, b: Path) -> list[str]:
    """Where two files differ, by 4 KiB page: each run of differing pages with its offsets and
    64 KiB zones, and whether the secondary's side holds zeros there."""
    da, db = a.read_bytes(), b.read_bytes()
    out = [f"sizes {len(da)} / {len(db)}"]
    pages = [
        k
        for k in range((max(len(da), len(db)) + 4095) // 4096)
        if da[k * 4096 : (k + 1) * 4096] != db[k * 4096 : (k + 1) * 4096]
    ]
    for k in pages[:64]:
        pa, pb = da[k * 4096 : (k + 1) * 4096], db[k * 4096 : (k + 1) * 4096]
        first = next((i for i in range(min(len(pa), len(pb))) if pa[i] != pb[i]), min(len(pa), len(pb)))
        last = max((i for i in range(min(len(pa), len(pb))) if pa[i] != pb[i]), default=first)
        out.append(
            f"page {k} (zone {k * 4096 // (64 << 10)}): bytes {k * 4096 + first}..{k * 4096 + last}"
            f" differ; secondary zeros there: {not any(pb[first : last + 1])}"
        )
    return out


def assert_same_trees(c: Cluster) -> None:
    """walk(replica) == walk(backing), and on a difference what differs, page by page, with the
    event history of both programs (a resync restarted after in_sync shows there)."""
    assert_same_trees_of(c.backing, c.replica, c)


def assert_same_trees_of(
    primary: Path, secondary: Path, c: Cluster, keep: Callable[[dict[str, Any]], dict[str, Any]] | None = None
) -> None:
    """walk(secondary) == keep(walk(primary)) (keep: what is replicated of it), else AssertionError
    saying what differs."""
    backing, replica = walk(primary), walk(secondary)
    if keep is not None:
        backing = keep(backing)
    if replica == backing:
        return
    lines = []
    for name in sorted(set(replica) | set(backing)):
        if replica.get(name) == backing.get(name):
            continue
        lines.append(f"{name}: backing {backing.get(name)} replica {replica.get(name)}")
        if (primary / name).is_file() and (secondary / name).is_file():
            lines += ["  " + x for x in differing_pages(primary / name, secondary / name)]
    for p in (c.primary, c.secondary):
        if p is not None:
            lines.append(f"events: {p.names()}")
    raise AssertionError("the copies differ:\n" + "\n".join(lines))


def populate(m: Path) -> None:
    (m / "db" / "base").mkdir(parents=True)
    (m / "db" / "big").write_bytes(os.urandom(8 * MIB))
    for i in range(20):
        (m / "db" / "base" / f"t{i}").write_bytes(os.urandom(1000 + i * 3000))
    (m / "etc").mkdir()
    (m / "etc" / "conf").write_text("a = 1\n")
    os.setxattr(m / "etc" / "conf", "user.tag", b"v1")
    os.symlink("db/big", m / "link")
    (m / "old").mkdir()
    (m / "old" / "x").write_bytes(b"x" * 5000)
    (m / "gone").write_bytes(b"bye")
    os.link(m / "db" / "base" / "t1", m / "hard1")


def change_while_away(m: Path, tag: str, *, link: bool = False) -> None:
    """What applications do while the secondary is away: every kind of change (`link`: a new hard
    link too, which makes the next reintegration compare checksums)."""
    with open(m / "db" / "big", "r+b") as f:  # in place, same size: a few zones
        f.seek(3 * MIB + 100)
        f.write(os.urandom(70000))
    with open(m / "db" / "base" / "t3", "ab") as f:
        f.write(b"appended " * 100)
    os.truncate(m / "db" / "base" / "t7", 10)
    (m / f"new-{tag}").mkdir()
    for i in range(12):  # enough data that the resync lasts while the writer runs
        (m / f"new-{tag}" / f"f{i}").write_bytes(os.urandom(2 * MIB))
    if (m / "old").exists():
        os.rename(m / "old", m / f"renamed-{tag}")
    if (m / "gone").exists():
        os.unlink(m / "gone")
    os.chmod(m / "etc" / "conf", 0o600)
    os.setxattr(m / "etc" / "conf", "user.tag", f"v-{tag}".encode())
    os.removexattr(m / "etc" / "conf", "user.tag")
    os.setxattr(m / "etc" / "conf", "user.other", b"o")
    os.unlink(m / "link")
    os.symlink(f"new-{tag}/f1", m / "link")
    with open(m / "hard1", "r+b") as f:  # through the second name of a linked file
        f.write(b"through hard1")
    if link:
        os.link(m / f"new-{tag}" / "f2", m / f"new-{tag}" / "hard")


class Writer:
    """Applications that go on writing during the resynchronisation: appends, new files, renames,
    removals, each counted when done."""

    def __init__(self, m: Path) -> None:
        self.m = m
        self.done = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None
        (m / "live").mkdir(exist_ok=True)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            i = 0
            while not self.stop.is_set():
                live = self.m / "live"
                with open(live / "log", "ab") as f:
                    f.write(f"record {i}\n".encode() * 50)
                (live / f"n{i % 30}").write_bytes(os.urandom(3000))
                if i % 7 == 3:
                    os.replace(live / f"n{(i - 1) % 30}", live / f"moved{i % 5}")
                if i % 11 == 5 and (live / f"moved{i % 5}").exists():
                    os.unlink(live / f"moved{i % 5}")
                i += 1
                self.done = i
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert self.error is None, self.error


def resync_with_writer(c: Cluster, mode: str) -> dict[str, Any]:
    """Start the secondary while a writer runs; the resync must overlap the writer. The primary's
    in_sync event."""
    assert c.primary is not None
    resyncs = c.primary.count("resyncing")
    syncs = c.primary.count("in_sync")
    writer = Writer(c.mnt)
    try:
        time.sleep(0.1)
        c.start_secondary()
        started = c.primary.wait("resyncing", count=resyncs + 1, timeout=30)
        at_start = writer.done
        assert started["mode"] == mode, c.primary.log()
        in_sync = c.primary.wait("in_sync", count=syncs + 1, timeout=120)
        at_end = writer.done
        time.sleep(0.3)  # and after it: streamed live
    finally:
        writer.finish()
    assert at_end > at_start, "no write completed during the resynchronisation"
    assert in_sync["mode"] == mode
    return in_sync


@pytest.mark.parametrize("mode", ["journal", "checksum", "full"])
def test_secondary_restart_reintegrates_with_live_writes(cluster: Cluster, mode: str) -> None:
    c = cluster
    c.start_secondary()
    primary = c.start_primary()
    primary.wait("in_sync")
    populate(c.mnt)
    c.settle()
    assert walk(c.replica) == walk(c.backing)

    # the secondary goes away (a clean stop); the primary goes on alone once safekitd says so
    c.stop_secondary()
    change_while_away(c.mnt, "a", link=mode != "journal")
    if mode == "checksum":  # the primary crashes: its journal is not trusted any more
        c.kill_primary()
        primary = c.start_primary()
        change_while_away(c.mnt, "b", link=True)
    elif mode == "full":
        primary.command("fullsync")
    c.settle()

    in_sync = resync_with_writer(c, mode)
    c.settle()
    assert_same_trees(c)
    assert ["db/base/t1", "hard1"] in walk(c.replica)["#links"]
    sizes = {
        f.stat().st_ino: f.stat().st_size for f in c.backing.rglob("*") if f.is_file() and not f.is_symlink()
    }
    total = sum(sizes.values())  # a hard-linked file's data goes once
    if mode == "full":
        assert in_sync["bytes"] >= total - (2 * MIB)  # everything (the writer's files change meanwhile)
    else:
        # only what changed: not the 8 MiB file that got 70 kB in place, not the unchanged files
        assert in_sync["bytes"] < total - 6 * MIB, (in_sync, total)
    assert "error" not in c.secondary.names() if c.secondary else True
    primary.command("status")
    status = primary.wait("status")
    assert status["state"] == "in_sync" and status["journal"] == 0


def beneath_the_bind(c: Cluster) -> Path:
    """The running secondary's copy through the directory fd it opened before its read-only bind."""
    assert c.secondary is not None
    fds = Path(f"/proc/{c.secondary.proc.pid}/fd")
    return next(fd for fd in fds.iterdir() if os.readlink(fd) == str(c.replica))


# Reintegration granularity: a data set of SET_MIB (SKRESYNC_SET_MIB, default 24; the figure in
# ADR 0026 is 200) in 8 files; 1 % of it changed while the secondary is away, either as one file
# rewritten or as scattered 4 KiB writes, each in a zone of its own. SKRESYNC_RESULTS=FILE appends
# the figures as JSON lines.
SET_MIB = int(os.environ.get("SKRESYNC_SET_MIB", "24"))
PAGE = 4096


def _changed_scattered(m: Path, files: list[str], size: int, rng: random.Random) -> int:
    count = SET_MIB * MIB // 100 // PAGE
    zones = rng.sample(range(len(files) * (size // (64 << 10))), count)
    for z in zones:
        name, zone = files[z % len(files)], z // len(files)
        with open(m / name, "r+b") as f:
            f.seek(zone * (64 << 10) + rng.randrange(16) * PAGE)
            f.write(rng.randbytes(PAGE))
    return count * PAGE


def _changed_one_file(m: Path, files: list[str], size: int, rng: random.Random) -> int:
    length = SET_MIB * MIB // 100
    with open(m / files[0], "r+b") as f:
        f.seek(size // 3)
        f.write(rng.randbytes(length))
    return length


@pytest.mark.parametrize("how", ["scattered", "one_file"])
def test_reintegration_after_one_percent_changed_sends_little(cluster: Cluster, how: str) -> None:
    """Journal mode (a clean stop of the secondary) sends at most 3 % of the set for 1 % changed,
    scattered 4 KiB writes included (4 KiB pages in the journal, ADR 0026), and the copies end
    identical; a checksum pass (the primary crashed: journal untrusted) is measured beside it."""
    c = cluster
    rng = random.Random(15)
    c.start_secondary()
    primary = c.start_primary()
    primary.wait("in_sync")
    files = [f"data{i}" for i in range(8)]
    size = SET_MIB * MIB // len(files)
    for name in files:
        (c.mnt / name).write_bytes(rng.randbytes(size))
    c.settle()
    total = size * len(files)
    change = _changed_scattered if how == "scattered" else _changed_one_file
    figures: dict[str, Any] = {"set_mib": SET_MIB, "how": how}
    for mode in ("journal", "checksum"):
        c.stop_secondary()
        changed = change(c.mnt, files, size, rng)
        if mode == "checksum":  # the primary crashes: its journal is not trusted any more
            c.kill_primary()
            primary = c.start_primary()
        c.settle()
        syncs = primary.count("in_sync")
        c.start_secondary()
        in_sync = primary.wait("in_sync", count=syncs + 1, timeout=120)
        assert in_sync["mode"] == mode, primary.log()[-2000:]
        c.settle()
        assert walk(c.replica) == walk(c.backing)
        figures[mode] = {
            "changed_pct": round(100 * changed / total, 2),
            "sent_bytes": in_sync["bytes"],
            "sent_pct": round(100 * in_sync["bytes"] / total, 2),
        }
    print("reintegration:", json.dumps(figures))
    if out := os.environ.get("SKRESYNC_RESULTS"):
        with open(out, "a") as f:
            f.write(json.dumps(figures) + "\n")
    if not os.environ.get("SAFEKIT_NATIVE_BUILD"):  # a before figure is only measured
        assert figures["journal"]["sent_pct"] <= 3.0, figures


def test_full_repairs_what_checksum_cannot_see(cluster: Cluster) -> None:
    """A copy changed behind replication's back with size and time kept: only `full` repairs it."""
    c = cluster
    c.start_secondary()
    primary = c.start_primary()
    primary.wait("in_sync")
    (c.mnt / "f").write_bytes(b"A" * 200000)
    c.settle()
    st = os.stat(c.replica / "f")
    beneath = beneath_the_bind(c)  # the copy is read-only to everyone but the secondary
    with open(beneath / "f", "r+b") as f:
        f.write(b"corrupt")
    os.utime(beneath / "f", ns=(st.st_atime_ns, st.st_mtime_ns))
    primary.command("fullsync")
    primary.wait("degraded", count=2, timeout=10)  # it was in sync: safekitd decides
    primary.command("degrade_ok")
    in_sync = primary.wait("in_sync", count=2, timeout=30)
    assert in_sync["mode"] == "full"
    c.settle()
    assert (c.replica / "f").read_bytes() == b"A" * 200000


def test_checksum_after_an_interrupted_resync_compares_every_file(cluster: Cluster) -> None:
    """An interrupted resynchronisation can leave a file with the primary's size (a TRUNCATE ahead
    of its data) and time (a live SETATTR at an fsync) but blocks never sent: the next checksum
    pass must not trust size and time then (the secondary says it is not in sync)."""
    c = cluster
    c.start_secondary()
    primary = c.start_primary()
    primary.wait("in_sync")
    (c.mnt / "f").write_bytes(b"A" * 300000)
    c.settle()
    c.stop_secondary()
    c.kill_primary()  # its journal is not trusted: checksum next
    st = os.stat(c.replica / "f")
    with open(c.replica / "f", "r+b") as f:  # what the interrupted pass left: a hole, same size/time
        f.write(b"\0" * 70000)
    os.utime(c.replica / "f", ns=(st.st_atime_ns, st.st_mtime_ns))
    state_file = c.root / "secondary-state" / "secondary.json"
    state = json.loads(state_file.read_text())
    state["in_sync"] = False  # as SYNC_BEGIN recorded it
    state_file.write_text(json.dumps(state))
    primary = c.start_primary()
    c.start_secondary()
    assert primary.wait("in_sync", timeout=30)["mode"] == "checksum"
    c.settle()
    assert (c.replica / "f").read_bytes() == b"A" * 300000


def test_acknowledged_write_survives_a_primary_killed_during_resync(cluster: Cluster) -> None:
    c = cluster
    c.start_secondary()
    primary = c.start_primary()
    primary.wait("in_sync")
    c.stop_secondary()
    for i in range(24):  # a resync long enough to kill the primary in the middle of it
        (c.mnt / f"bulk{i}").write_bytes(os.urandom(2 * MIB))
    acked: list[int] = []
    killed = threading.Event()
    resync_seen = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with open(c.mnt / "acked.log", "ab") as f:
                i = 0
                while not killed.is_set():
                    f.write(f"record {i:06d}\n".encode())
                    f.flush()
                    os.fsync(f.fileno())
                    acked.append(i)  # acknowledged to the application
                    if resync_seen.is_set() and len(acked) >= 20 and primary.count("in_sync") < 2:
                        os.kill(primary.proc.pid, signal.SIGKILL)  # right after the acknowledgement
                        killed.set()
                        return
                    i += 1
        except OSError:
            killed.set()  # the mount died under the writer
        except BaseException as exc:
            errors.append(exc)
            killed.set()

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    secondary = c.start_secondary()
    secondary.wait("resyncing", timeout=30)  # SYNC_BEGIN applied: its copy left sync (on disk)
    resync_seen.set()
    assert killed.wait(60)
    t.join(10)
    assert not errors
    primary.proc.wait(10)
    subprocess.run(["fusermount3", "-u", "-z", str(c.mnt)], check=False)
    last = acked[-1]
    state = json.loads((c.root / "secondary-state" / "secondary.json").read_text())
    if state["in_sync"]:
        # the resync ended just before the kill: then the secondary has every acknowledged write
        assert secondary.count("in_sync") == 1
        replica_records = (c.replica / "acked.log").read_bytes().splitlines()
        assert replica_records[: last + 1] == [f"record {i:06d}".encode() for i in range(last + 1)]
    else:
        # still resynchronising: not in sync, so it cannot take over with its copy
        assert secondary.count("in_sync") == 0  # this secondary process never came in sync
    # every acknowledged record is on the primary's disk ...
    records = (c.backing / "acked.log").read_bytes().splitlines()
    assert records[: last + 1] == [f"record {i:06d}".encode() for i in range(last + 1)]
    # ... and the next primary process brings them to the secondary (its journal is not trusted)
    primary = c.start_primary()
    assert primary.wait("in_sync", timeout=120)["mode"] == "checksum"
    c.settle()
    replica_records = (c.replica / "acked.log").read_bytes().splitlines()
    assert replica_records[: last + 1] == records[: last + 1]
    assert walk(c.replica) == walk(c.backing)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_no_leak_per_resync(cluster: Cluster) -> None:
    """Memory and descriptors stay flat over repeated resynchronisations."""
    c = cluster
    c.start_secondary()
    primary = c.start_primary()
    primary.wait("in_sync")
    populate(c.mnt)
    pid = primary.proc.pid

    def round_trip(n: int) -> None:
        c.stop_secondary()
        with open(c.mnt / "db" / "big", "r+b") as f:
            f.write(os.urandom(100000))
        (c.mnt / f"r{n % 3}").write_bytes(os.urandom(50000))
        syncs = primary.count("in_sync")
        c.start_secondary()
        primary.wait("in_sync", count=syncs + 1, timeout=30)

    round_trip(1)
    round_trip(2)
    rss0, fds0 = rss_kib(pid), len(os.listdir(f"/proc/{pid}/fd"))
    for n in range(3, 9):
        round_trip(n)
    rss1, fds1 = rss_kib(pid), len(os.listdir(f"/proc/{pid}/fd"))
    assert fds1 <= fds0 + 1, (fds0, fds1)
    if not SANITIZE:  # its quarantine holds freed memory on purpose
        assert rss1 <= rss0 + 3072, (rss0, rss1)
    c.settle()
    assert walk(c.replica) == walk(c.backing)


# --------------------------------------------------------------------------- the layout safekitd runs
# Two replicated directories, the layout safekitd runs: one FUSE mount at <state_dir>/mnt holding
# 0 and 1, each bound over its directory, where the application writes. Directory 0 has exclusions.

EXCLUDED = ["tmp", "var/run"]
EXCLUDED_RE = ["(.*/)?cache"]


def mountinfo() -> list[tuple[str, str]]:
    """(mount point, fs type) of every mount of this namespace, bottom first."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        point = fields[4].encode().decode("unicode_escape")
        out.append((point, fields[sep + 1]))
    return out


def stacked(path: Path) -> list[str]:
    return [fstype for point, fstype in mountinfo() if point == str(path)]


def detach_all(path: Path) -> None:
    for _ in range(16):
        if not stacked(path):
            return
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


class Layout(Cluster):
    """The primary without --mountpoint: dirs d0 (with exclusions) and d1 served through the binds."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.dirs = [root / "d0", root / "d1"]
        self.replicas = [root / "r0", root / "r1"]
        for d in self.dirs + self.replicas:
            d.mkdir()
        self.mnt = root / "primary-state" / "mnt"

    def spec(self, role: str) -> Path:
        path = super().spec(role)
        obj = json.loads(path.read_text())
        paths = self.dirs if role == "primary" else self.replicas
        obj["dirs"] = [
            {"path": str(paths[0]), "notreplicated": EXCLUDED, "notreplicated_regex": EXCLUDED_RE},
            {"path": str(paths[1]), "notreplicated": [], "notreplicated_regex": []},
        ]
        path.write_text(json.dumps(obj))
        return path

    def start_primary(self) -> Proc:
        self.runs += 1
        self.primary = Proc([str(PRIMARY), str(self.spec("primary"))], self.root / f"primary-{self.runs}.log")
        mounted = self.primary.wait("mounted")
        assert mounted["dirs"] == [str(d) for d in self.dirs]
        self.primary.command("degrade_ok")
        return self.primary

    def settle(self, timeout: float = 60.0) -> None:
        for d in self.dirs:
            done = threading.Event()

            def run(d: Path = d, done: threading.Event = done) -> None:
                fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                done.set()

            threading.Thread(target=run, daemon=True).start()
            assert done.wait(timeout), "fsync held: " + (self.primary.log()[-3000:] if self.primary else "")

    def verify(self) -> dict[str, Any]:
        assert self.primary is not None
        n = self.primary.count("verify")
        self.primary.command("verify")
        return self.primary.wait("verify", count=n + 1, timeout=60)

    def close(self) -> None:
        try:
            super().close()
        finally:
            for d in [*self.dirs, self.mnt]:
                detach_all(d)


@pytest.fixture
def layout() -> Iterator[Layout]:
    root = Path(tempfile.mkdtemp(prefix="sklayout-", dir="/tmp"))
    c = Layout(root)
    try:
        yield c
    finally:
        try:
            c.close()
        finally:
            for d in [*c.dirs, c.mnt]:
                detach_all(d)
            if not os.environ.get("KEEP"):
                shutil.rmtree(root, ignore_errors=True)


def writable_copy(c: Layout, i: int) -> Path:
    """The running secondary's copy of directory i, writable: through the directory fd it holds
    (opened before a read-only bind it may have made over the directory), else the path."""
    assert c.secondary is not None
    fds = Path(f"/proc/{c.secondary.proc.pid}/fd")
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd) == str(c.replicas[i]):
                return fd
    return c.replicas[i]


def replicated(tree: dict[str, Any]) -> dict[str, Any]:
    """The entries of directory 0's walk that are replicated (its exclusions left out)."""

    def excluded(rel: str) -> bool:
        if any(rel == p or rel.startswith(p + "/") for p in EXCLUDED):
            return True
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(re.fullmatch(r, p) for r in EXCLUDED_RE for p in prefixes)

    return {k: v for k, v in tree.items() if k == "#links" or not excluded(k)}


def both_equal(c: Layout) -> None:
    assert replicated(walk(c.dirs[0])) == walk(c.replicas[0])
    assert walk(c.dirs[1]) == walk(c.replicas[1])


def test_layout_binds_exclusions_and_renames_across(layout: Layout) -> None:
    c = layout
    c.start_secondary()
    c.start_primary()
    c.primary.wait("in_sync", timeout=30)
    d0, d1 = c.dirs
    # the application works at the directories themselves: the binds of mnt/0 and mnt/1
    assert stacked(d0) == ["fuse.safekit"] and stacked(d1) == ["fuse.safekit"]
    assert sorted(os.listdir(c.mnt)) == ["0", "1"]
    with pytest.raises(OSError):
        (c.mnt / "new").write_bytes(b"the root holds the directories only")
    populate(d0)
    populate(d1)
    (d0 / "tmp").mkdir()
    (d0 / "tmp" / "scratch").write_bytes(b"local only")
    (d0 / "var" / "run").mkdir(parents=True)
    (d0 / "var" / "run" / "pid").write_text("42\n")
    (d0 / "db" / "cache").mkdir()
    (d0 / "db" / "cache" / "c1").write_bytes(os.urandom(70000))
    (d0 / "tmp" / "tree" / "sub").mkdir(parents=True)
    (d0 / "tmp" / "tree" / "sub" / "f").write_bytes(os.urandom(200000))
    os.setxattr(d0 / "tmp" / "tree" / "sub" / "f", "user.k", b"kept")
    os.symlink("sub/f", d0 / "tmp" / "tree" / "ln")
    c.settle()
    both_equal(c)
    assert not (c.replicas[0] / "tmp").exists()
    assert not (c.replicas[0] / "var" / "run").exists() and (c.replicas[0] / "var").is_dir()
    assert not (c.replicas[0] / "db" / "cache").exists()
    # renames across the exclusion boundary (native/primary/README.md, "Exclusions")
    os.rename(d0 / "tmp" / "tree", d0 / "db" / "tree")  # into the replicated paths: sent whole
    os.rename(d0 / "etc", d0 / "tmp" / "etc")  # out of them: removed there
    os.rename(d0 / "tmp" / "scratch", d0 / "db" / "scratch")
    with pytest.raises(OSError) as exc:
        os.rename(d0 / "db" / "big", d1 / "big")  # two directories: two file systems
    assert exc.value.errno == 18  # EXDEV
    (d1 / "after").write_bytes(b"dir 1")
    c.settle()
    both_equal(c)
    moved = Path("db") / "tree" / "sub" / "f"
    assert (c.replicas[0] / moved).read_bytes() == (d0 / moved).read_bytes()
    assert os.getxattr(c.replicas[0] / "db" / "tree" / "sub" / "f", "user.k") == b"kept"
    assert not (c.replicas[0] / "etc").exists()
    # verify: identical copies, then a difference planted on the secondary's copy
    result = c.verify()
    assert result["ok"] is True and result["checked"] > 40 and result["differences"] == [], result
    (writable_copy(c, 1) / "db" / "base" / "t3").write_bytes(b"planted")
    (writable_copy(c, 0) / "only-there").write_bytes(b"x")
    result = c.verify()
    assert result["ok"] is False, result
    assert f"{d1}/db/base/t3: size 10000 here, 7 there" in result["differences"], result
    assert f"only on the secondary: {d0}/only-there" in result["differences"], result
    for line in c.primary.lines:
        assert channel.encode_event(channel.decode_event(line)) == line
    # a clean stop takes the binds and the mount away
    c.primary.stop()
    assert c.primary.proc.returncode == 0, c.primary.log()[-3000:]
    assert stacked(d0) == [] and stacked(d1) == [] and stacked(c.mnt) == []


def test_layout_kill_then_restart_cleans_up_and_resyncs_both(layout: Layout) -> None:
    c = layout
    c.start_secondary()
    c.start_primary()
    c.primary.wait("in_sync", timeout=30)
    d0, d1 = c.dirs
    populate(d0)
    populate(d1)
    c.settle()
    c.stop_secondary()  # away: both directories change meanwhile (journaled)
    change_while_away(d0, "a")
    change_while_away(d1, "b")
    (d0 / "tmp").mkdir(exist_ok=True)
    (d0 / "tmp" / "while-away").write_bytes(b"local")
    c.settle()
    c.start_secondary()
    assert c.primary.wait("in_sync", count=2, timeout=60)["mode"] == "journal"
    c.settle()
    both_equal(c)
    # kill -9: the dead mounts stay over the directories (ENOTCONN), the restart removes them
    c.primary.proc.kill()
    c.primary.proc.wait()
    assert stacked(d0) == ["fuse.safekit"] and stacked(d1) == ["fuse.safekit"]
    with pytest.raises(OSError) as exc:
        os.listdir(d0)
    assert exc.value.errno == 107  # ENOTCONN
    change_while_away(writable_copy(c, 1), "stale")  # the secondary's copy drifts: checksum repairs it
    started = time.monotonic()
    c.start_primary()
    assert time.monotonic() - started < 10
    assert stacked(d0) == ["fuse.safekit"] and stacked(d1) == ["fuse.safekit"]
    assert stacked(c.mnt) == ["fuse.safekit"]
    assert c.primary.wait("in_sync", timeout=60)["mode"] == "checksum"
    (d1 / "after-restart").write_bytes(b"new")
    c.settle()
    both_equal(c)
    assert c.verify()["ok"] is True


def test_layout_safekitd_gone_leaves_dead_mounts_then_restart(layout: Layout) -> None:
    """stdin closed (safekitd died): the connection is aborted but the mounts stay over the
    directories (ENOTCONN: nothing is written there unreplicated); the next start removes them."""
    c = layout
    c.start_secondary()
    c.start_primary()
    c.primary.wait("in_sync", timeout=30)
    (c.dirs[0] / "kept").write_bytes(b"1")
    c.settle()
    assert c.primary.proc.stdin is not None
    c.primary.proc.stdin.close()
    assert c.primary.proc.wait(15) == 0
    assert stacked(c.dirs[0]) == ["fuse.safekit"] and stacked(c.dirs[1]) == ["fuse.safekit"]
    with pytest.raises(OSError) as exc:
        (c.dirs[1] / "unreplicated").write_bytes(b"must fail")
    assert exc.value.errno == 107  # ENOTCONN
    c.start_primary()
    # the journal was saved (trusted); the secondary saw the stream end without a BYE
    assert c.primary.wait("in_sync", timeout=60)["mode"] in ("journal", "checksum")
    assert stacked(c.dirs[0]) == ["fuse.safekit"] and stacked(c.mnt) == ["fuse.safekit"]
    assert (c.dirs[0] / "kept").read_bytes() == b"1"
    both_equal(c)


def test_layout_no_leak_per_resync_and_verify(layout: Layout) -> None:
    """Memory and descriptors stay flat over resynchronisations of both directories, renames into
    the replicated paths and verify runs."""
    c = layout
    c.start_secondary()
    primary = c.start_primary()
    primary.wait("in_sync", timeout=30)
    populate(c.dirs[0])
    populate(c.dirs[1])
    pid = primary.proc.pid

    def round_trip(n: int) -> None:
        c.stop_secondary()
        for d in c.dirs:
            with open(d / "db" / "big", "r+b") as f:
                f.write(os.urandom(100000))
            (d / f"r{n % 3}").write_bytes(os.urandom(50000))
        (c.dirs[0] / "tmp").mkdir(exist_ok=True)
        (c.dirs[0] / "tmp" / f"t{n}").write_bytes(os.urandom(30000))
        os.replace(c.dirs[0] / "tmp" / f"t{n}", c.dirs[0] / f"moved{n % 3}")
        syncs = primary.count("in_sync")
        c.start_secondary()
        primary.wait("in_sync", count=syncs + 1, timeout=30)
        c.settle()
        assert c.verify()["ok"] is True

    def fds() -> list[str]:
        out = []
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):  # closed meanwhile
                out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        return sorted(out)

    for n in range(3):  # every name the rounds use exists (the kernel keeps their nodes)
        round_trip(n)
    rss0, fds0 = rss_kib(pid), fds()
    for n in range(3, 8):
        round_trip(n)
    rss1, fds1 = rss_kib(pid), fds()
    # one socket may be replaced by another (a new session)
    assert len(fds1) <= len(fds0) + 1, (sorted(set(fds1) - set(fds0)), sorted(set(fds0) - set(fds1)))
    if not SANITIZE:  # its quarantine holds freed memory on purpose
        assert rss1 <= rss0 + 3072, (rss0, rss1)
    both_equal(c)


ONLY_THERE = 1100  # files planted only on the secondary: more differences than a report holds


def test_layout_verify_names_each_difference_in_byte_order(layout: Layout) -> None:
    """`verify` compares both copies object by object. Each kind of difference planted on the
    secondary's copy is named; the report is in byte order of the paths (not the order the
    manifests walk: a directory's entries before its subdirectories'), holds the first 1,000, and
    `checked` counts every object of either copy once."""
    c = layout
    c.start_secondary()
    c.start_primary()
    c.primary.wait("in_sync", timeout=30)
    d1 = c.dirs[1]
    (d1 / "a").mkdir()
    (d1 / "a" / "x").write_bytes(b"one")
    (d1 / "b").write_bytes(b"size")
    big = os.urandom(5 * MIB + 123)
    (d1 / "big").write_bytes(big)
    (d1 / "content").write_bytes(b"A" * 100)
    (d1 / "mode").write_bytes(b"m")
    (d1 / "mtime").write_bytes(b"t")
    os.symlink("a/x", d1 / "link")
    (d1 / "kind").write_bytes(b"a file here")
    (d1 / "gone-there").mkdir()
    (d1 / "gone-there" / "f").write_bytes(b"f")
    c.settle()
    result = c.verify()
    assert result["ok"] is True and result["checked"] == 11 and result["differences"] == [], result
    w = writable_copy(c, 1)

    def rewrite_keeping_time(rel: str, offset: int, data: bytes) -> None:
        st = os.stat(w / rel)
        with open(w / rel, "r+b") as f:
            f.seek(offset)
            f.write(data)
        os.utime(w / rel, ns=(st.st_atime_ns, st.st_mtime_ns))

    (w / "b").write_bytes(b"other size")
    rewrite_keeping_time("big", len(big) - 1, bytes([big[-1] ^ 1]))  # its last 64 KiB block
    rewrite_keeping_time("content", 50, b"B")
    os.chmod(w / "mode", 0o600)
    st = os.stat(w / "mtime")
    os.utime(w / "mtime", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    os.unlink(w / "link")
    os.symlink("b", w / "link")
    os.unlink(w / "kind")
    os.mkdir(w / "kind")
    shutil.rmtree(w / "gone-there")
    (w / "a" / "extra").write_bytes(b"e")
    (w / "a-only").mkdir()
    (w / "a-only" / "z").write_bytes(b"z")
    (w / "zz").mkdir()
    for i in range(ONLY_THERE):
        (w / "zz" / f"f{i:04d}").write_bytes(b"")
    here, there = os.stat(d1 / "mode"), os.stat(w / "mode")
    expected = [
        f"only on the secondary: {d1}/a-only",
        f"only on the secondary: {d1}/a-only/z",
        f"only on the secondary: {d1}/a/extra",
        f"{d1}/b: size 4 here, 10 there",
        f"{d1}/big: content differs",
        f"{d1}/content: content differs",
        f"missing on the secondary: {d1}/gone-there",
        f"missing on the secondary: {d1}/gone-there/f",
        f"{d1}/kind: type f here, d there",
        f"{d1}/link: symlink target differs",
        f"{d1}/mode: mode/owner 0o{here.st_mode:o} {here.st_uid}:{here.st_gid} here, "
        f"0o{there.st_mode:o} {there.st_uid}:{there.st_gid} there",
        f"{d1}/mtime: modification time differs",
        f"only on the secondary: {d1}/zz",
    ]
    expected += [f"only on the secondary: {d1}/zz/f{i:04d}" for i in range(1000 - len(expected))]
    result = c.verify()
    assert result["ok"] is False and result["reason"] == "", result
    assert result["checked"] == 11 + 3 + 1 + ONLY_THERE, result["checked"]
    assert result["differences"] == expected, [
        (i, got, want)
        for i, (got, want) in enumerate(zip(result["differences"], expected, strict=False))
        if got != want
    ][:5] or (len(result["differences"]), len(expected))
    # what is only on the secondary removed: the nine other differences stay
    shutil.rmtree(w / "zz")
    shutil.rmtree(w / "a-only")
    os.unlink(w / "a" / "extra")
    result = c.verify()
    assert result["differences"] == [d for d in expected[:13] if "only on the secondary" not in d], result
    assert result["checked"] == 11, result


def test_layout_journal_names_every_dir_and_no_excluded_path(layout: Layout) -> None:
    """What the secondary missed while away is journal.json's, in the format rfs.journal reads,
    per directory; excluded paths are not in it."""
    c = layout
    c.start_secondary()
    primary = c.start_primary()
    primary.wait("in_sync", timeout=30)
    c.stop_secondary()
    (c.dirs[0] / "a0").write_bytes(b"zero")
    (c.dirs[1] / "a1").write_bytes(b"one")
    (c.dirs[0] / "tmp").mkdir()
    (c.dirs[0] / "tmp" / "x").write_bytes(b"excluded")
    (c.dirs[0] / "cache").write_bytes(b"excluded too")
    (c.dirs[0] / "tmp" / "tree" / "sub").mkdir(parents=True)
    (c.dirs[0] / "tmp" / "tree" / "sub" / "f").write_bytes(os.urandom(300000))
    os.rename(c.dirs[0] / "tmp" / "tree", c.dirs[0] / "tree")  # into the replicated paths, journaled
    c.settle()
    assert c.verify() == {
        "event": "verify",
        "ok": False,
        "checked": 0,
        "differences": [],
        "reason": "the secondary is not in sync (link degraded)",
    }
    primary.stop()
    assert primary.proc.returncode == 0
    journal = Journal.from_json(json.loads((c.root / "primary-state" / "journal.json").read_text()))
    assert journal.trusted
    assert sorted(journal.entries) == [0, 1]
    assert b"a0" in journal.entries[0] and journal.entries[0][b"tree"].whole
    assert not [p for p in journal.entries[0] if p.startswith(b"tmp") or p == b"cache"]
    assert sorted(journal.entries[1]) == [b"a1"]
    # the next start reintegrates both from it
    c.start_secondary()
    c.start_primary()
    assert c.primary.wait("in_sync", timeout=60)["mode"] == "journal"
    c.settle()
    both_equal(c)


def test_layout_start_removes_the_read_only_binds_recorded_as_secondary(layout: Layout) -> None:
    """This node was secondary: its read-only bind over a directory is recorded in secondary.json;
    the primary's start detaches it (and only what is ours), then removes secondary.json."""
    c = layout
    old = c.root / "old-copy"
    old.mkdir()
    (old / "f").write_bytes(b"as the secondary left it")
    subprocess.run(["mount", "--bind", str(old), str(c.dirs[1])], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(c.dirs[1])], check=True)
    fields = [
        line.split()
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4] == str(c.dirs[1])
    ][-1]
    state = c.root / "primary-state"
    state.mkdir()
    (state / "secondary.json").write_text(json.dumps({"mounts": [[int(fields[0]), fields[2], fields[3]]]}))
    below = stacked(c.dirs[1])
    assert len(below) == 1 and below != ["fuse.safekit"]
    c.start_secondary()
    c.start_primary()
    c.primary.wait("in_sync", timeout=30)
    assert stacked(c.dirs[1]) == ["fuse.safekit"]  # the recorded bind is gone, the primary's is there
    assert not (state / "secondary.json").exists()
    assert not (c.dirs[1] / "f").exists()  # the directory itself, not the old copy
    (c.dirs[1] / "new").write_bytes(b"replicated")
    c.settle()
    both_equal(c)


def test_layout_each_program_makes_a_missing_directory_itself(layout: Layout) -> None:
    """A replicated directory that does not exist (nor its parent) is made, empty, by the program
    that serves it - the primary under its FUSE bind, the secondary under its read-only bind -
    with nothing done before the start (safekitd only starts the programs)."""
    c = layout
    for d in (c.dirs[0], c.replicas[0]):
        d.rmdir()
    c.dirs[1] = c.root / "new-p" / "deep" / "d1"
    c.replicas[1] = c.root / "new-s" / "deep" / "r1"
    c.start_secondary()
    c.start_primary()
    c.primary.wait("in_sync", timeout=30)
    for d in c.dirs:
        assert stacked(d) == ["fuse.safekit"]
        assert sorted(os.listdir(d)) == []
    for r in c.replicas:
        assert len(stacked(r)) == 1  # the secondary's read-only bind over the directory it made
        assert os.statvfs(r).f_flag & os.ST_RDONLY
    for r in ("new-p", "new-s", "new-p/deep", "new-s/deep"):
        assert (c.root / r).stat().st_mode & 0o777 == 0o755
    (c.dirs[0] / "f0").write_bytes(b"zero")
    (c.dirs[1] / "f1").write_bytes(b"one")
    c.settle()
    both_equal(c)
    assert c.verify()["ok"] is True


def test_layout_leaves_a_file_system_that_is_not_ours(layout: Layout) -> None:
    """A user's file system mounted at a replicated directory is what gets replicated; start and
    stop detach only safekit's mounts above it."""
    c = layout
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(c.dirs[1])], check=True)
    (c.dirs[1] / "on-tmpfs").write_bytes(b"user data")
    c.start_secondary()
    c.start_primary()
    c.primary.wait("in_sync", timeout=30)
    assert stacked(c.dirs[1]) == ["tmpfs", "fuse.safekit"]
    assert (c.replicas[1] / "on-tmpfs").read_bytes() == b"user data"
    c.primary.stop()
    assert stacked(c.dirs[1]) == ["tmpfs"] and stacked(c.dirs[0]) == []
    subprocess.run(["umount", str(c.dirs[1])], check=True)


def test_layout_fsync_of_an_excluded_file_is_local(layout: Layout) -> None:
    """An excluded file's fsync waits for nobody: the secondary stopped holds a replicated file's
    fsync (in sync: it waits for the acknowledgement), not an excluded one's."""
    c = layout
    c.start_secondary()
    c.start_primary()
    c.primary.wait("in_sync", timeout=30)
    (c.dirs[0] / "tmp").mkdir()
    assert c.secondary is not None
    os.kill(c.secondary.proc.pid, signal.SIGSTOP)
    try:
        results: dict[str, threading.Event] = {}
        for name in ("tmp/local", "replicated"):
            done = results[name] = threading.Event()

            def write(name: str = name, done: threading.Event = done) -> None:
                with open(c.dirs[0] / name, "wb") as f:
                    f.write(b"x" * 1000)
                    f.flush()
                    os.fsync(f.fileno())
                done.set()

            threading.Thread(target=write, daemon=True).start()
        assert results["tmp/local"].wait(5), "an excluded file's fsync waited for the secondary"
        assert not results["replicated"].wait(1.0), "fsync returned while the secondary was stopped"
    finally:
        os.kill(c.secondary.proc.pid, signal.SIGCONT)
    assert results["replicated"].wait(10)
    c.settle()
    both_equal(c)


@pytest.mark.parametrize("change", ["in_place", "appended"])
def test_layout_checksum_manifest_predates_live_changes(layout: Layout, change: str) -> None:
    """A file of directory 1 changed while the secondary was away - rewritten in place (same size),
    or appended to as the writer of the live tests appends to live/log - then written live during
    the checksum resynchronisation before the pass reached directory 1, its handle closed (the
    times follow the writes): the secondary's copy then had the primary's size and modification
    time over content that missed the change made while away (in place: the old zone; appended:
    zeros before the live append). Each directory's manifest is taken as the session found the
    copy (with SYNC_BEGIN), so the quick check (same size and time) does not skip it and the
    copies end identical (the old order failed both, every run)."""
    c = layout
    c.start_secondary()
    c.start_primary()
    assert c.primary is not None
    c.primary.wait("in_sync", timeout=30)
    d0, d1 = c.dirs
    (d1 / "f").write_bytes(os.urandom(256 << 10))
    c.settle()
    c.stop_secondary()
    if change == "in_place":  # while away: zone 1 rewritten in place, same size
        with open(d1 / "f", "r+b") as f:
            f.seek(64 << 10)
            f.write(os.urandom(64 << 10))
    else:  # while away: a new file, appended to as the test's writer does (live/log)
        with open(d1 / "f", "ab") as f:
            for i in range(300):
                f.write(f"record {i}\n".encode() * 50)
    (d0 / "big").write_bytes(os.urandom(64 * MIB))  # directory 0's pass lasts
    c.settle()
    c.primary.proc.kill()  # the journal is not trusted any more: checksum
    c.primary.proc.wait()
    c.start_primary()
    resyncs = c.primary.count("resyncing")
    c.start_secondary()
    assert c.secondary is not None
    assert c.primary.wait("resyncing", count=resyncs + 1, timeout=30)["mode"] == "checksum"
    os.kill(c.secondary.proc.pid, signal.SIGSTOP)  # directory 0's pass cannot end meanwhile

    def live_write() -> None:
        if change == "in_place":
            with open(d1 / "f", "r+b") as f:  # a live write in zone 0; close sends the times
                f.write(b"live")
        else:
            with open(d1 / "f", "ab") as f:
                f.write(b"record live\n" * 50)

    writer = threading.Thread(target=live_write, daemon=True)
    try:
        writer.start()
        writer.join(0.5)
    finally:
        os.kill(c.secondary.proc.pid, signal.SIGCONT)
    writer.join(30)
    assert not writer.is_alive()
    assert c.primary.wait("in_sync", count=1, timeout=120)["mode"] == "checksum"
    c.settle()
    for i in (0, 1):
        assert_same_trees_of(c.dirs[i], c.replicas[i], c, replicated if i == 0 else None)
