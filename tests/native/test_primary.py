"""The native primary (native/primary, `safekit-rfs-primary`): the FUSE front with the network
sink, replicating to the native secondary (`safekit-rfs-secondary`) over 127.0.0.1.

Checks the replica equals the backing directory after fsync for every kind of operation, that an
fsync returns only once the secondary acknowledged (a SIGSTOPped secondary holds it until
`degrade_ok`; `fence` makes it fail with EIO), that a dead secondary is reported, and that memory
and descriptors stay flat. Mounts only under temporary directories in /tmp, always unmounts.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from native_process import BUILD, SANITIZE, EventProcess, build_programs

from safekit.rfs import channel

REPO = Path(__file__).resolve().parents[2]
PRIMARY = BUILD / "safekit-rfs-primary"
SECONDARY = BUILD / "safekit-rfs-secondary"
MODULE, P_NODE, S_NODE = "pgsql", "node1", "node2"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
    reason="needs root, /dev/fuse and fusermount3",
)


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    """The programs (their sanitizer builds with SAFEKIT_NATIVE_SANITIZE=1)."""
    build_programs()


def spec(
    root: Path,
    role: str,
    rep: Path,
    port: int,
    *,
    async_mode: str,
    sendtimeout: float,
    writeback: bool = False,
) -> Path:
    node, peer = (P_NODE, S_NODE) if role == "primary" else (S_NODE, P_NODE)
    path = root / f"{role}.spec.json"
    path.write_text(
        json.dumps(
            {
                "module": MODULE,
                "node": node,
                "peer": peer,
                "dirs": [{"path": str(rep), "notreplicated": [], "notreplicated_regex": []}],
                "local_addr": "127.0.0.1",
                "peer_addr": "127.0.0.1",
                "port": port,
                "key_file": str(root / "cluster.key"),
                "state_dir": str(root / f"{role}-state"),
                "async_mode": async_mode,
                "sendtimeout": sendtimeout,
                "connect_interval": 0.2,
                "window_bytes": 64 << 20,
                "writeback": writeback,
                "extra": {},
            }
        )
    )
    return path


class Proc(EventProcess):
    """A replication process: its events (decoded and checked against channel's encoder)."""

    def command(self, name: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(channel.encode_command(channel.decode_command(json.dumps({"cmd": name}))))
        self.proc.stdin.flush()


class Pair:
    def __init__(
        self, root: Path, *, async_mode: str = "second", sendtimeout: float = 30.0, writeback: bool = False
    ) -> None:
        self.root = root
        (root / "cluster.key").write_text(
            "safekit-cluster-key-v1:" + base64.b64encode(os.urandom(32)).decode() + "\n"
        )
        (root / "cluster.key").chmod(0o600)
        self.replica = root / "replica"
        self.backing = root / "backing"
        self.mnt = root / "mnt"
        for d in (self.replica, self.backing, self.mnt):
            d.mkdir()
        self.secondary = Proc(
            [
                str(SECONDARY),
                str(spec(root, "secondary", self.replica, 0, async_mode=async_mode, sendtimeout=30)),
            ],
            root / "secondary.log",
        )
        port = int(self.secondary.wait("listening")["port"])
        self.primary = Proc(
            [
                str(PRIMARY),
                f"--mountpoint={self.mnt}",
                str(
                    spec(
                        root,
                        "primary",
                        self.backing,
                        port,
                        async_mode=async_mode,
                        sendtimeout=sendtimeout,
                        writeback=writeback,
                    )
                ),
            ],
            root / "primary.log",
        )
        self.primary.wait("mounted")
        self.primary.command("degrade_ok")  # safekitd's leave at start (the state machine's)
        self.primary.wait("in_sync")
        self.secondary.wait("in_sync")

    def close(self) -> None:
        for p in (self.primary, self.secondary):
            if p.proc.poll() is None:
                with _suppress():
                    os.kill(p.proc.pid, signal.SIGCONT)
        if self.primary.proc.poll() is None:
            with _suppress():
                self.primary.command("stop")
            try:
                self.primary.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.primary.proc.kill()
                self.primary.proc.wait()
        if os.path.ismount(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], check=False)
        assert not os.path.ismount(self.mnt)
        if self.secondary.proc.poll() is None:
            with _suppress():
                self.secondary.command("stop")
            try:
                self.secondary.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.secondary.proc.kill()
                self.secondary.proc.wait()


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], (OSError, ValueError))  # type: ignore[arg-type]


def detach_all_under(root: Path) -> None:
    """Every mount left under a test's root (the FUSE mount, a secondary's read-only binds after a
    kill), deepest first, lazily: nothing of a test outlives it in the mount table."""
    prefix = str(root) + "/"
    with open("/proc/self/mountinfo", "rb") as f:
        points = [os.fsdecode(line.split(b" ")[4].replace(b"\\040", b" ")) for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


@pytest.fixture
def pair() -> Iterator[Pair]:
    root = Path(tempfile.mkdtemp(prefix="skprim-", dir="/tmp"))
    p = None
    try:
        p = Pair(root)
        yield p
    finally:
        if p is not None:
            p.close()
        if os.path.ismount(root / "mnt"):
            subprocess.run(["fusermount3", "-u", "-z", str(root / "mnt")], check=False)
        detach_all_under(root)
        shutil.rmtree(root, ignore_errors=True)


def tree(root: Path) -> dict[str, Any]:
    """Everything that must be equal: type, mode, owner, size, content, target, xattrs, links."""
    out: dict[str, Any] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            entry: dict[str, Any] = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid}
            if os.path.islink(p):
                entry["target"] = os.readlink(p)
            elif p.is_file():
                entry["data"] = p.read_bytes()
                entry["nlink"] = st.st_nlink
                inodes.setdefault(st.st_ino, []).append(rel)
            if not os.path.islink(p):
                entry["xattrs"] = {
                    n: os.getxattr(p, n) for n in sorted(os.listxattr(p)) if n.startswith("user.")
                }
            out[rel] = entry
    out["#links"] = sorted(sorted(v) for v in inodes.values() if len(v) > 1)
    return out


def settle(pair: Pair) -> None:
    """An fsync of the root: every earlier operation is acknowledged (async="second")."""
    fd = os.open(pair.mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_replica_equals_backing_after_fsync(pair: Pair) -> None:
    every_kind_of_change(pair)


def every_kind_of_change(pair: Pair) -> None:
    m = pair.mnt
    (m / "d1" / "d2").mkdir(parents=True)
    with open(m / "d1" / "f", "wb") as f:
        f.write(b"hello " * 1000)
        f.write(os.urandom(3 << 20))
        f.flush()
        os.fsync(f.fileno())
    with open(m / "a", "wb") as f:
        f.write(b"x" * 100000)
    os.truncate(m / "a", 5000)
    os.rename(m / "a", m / "d1" / "b")
    (m / "gone").write_bytes(b"bye")
    os.unlink(m / "gone")
    os.symlink("d1/b", m / "sym")
    os.link(m / "d1" / "b", m / "hard")
    os.setxattr(m / "d1" / "f", "user.k", b"v1")
    os.setxattr(m / "d1" / "f", "user.k2", b"v2")
    os.removexattr(m / "d1" / "f", "user.k2")
    os.chmod(m / "d1" / "b", 0o640)
    (m / "empty").mkdir()
    os.rmdir(m / "empty")
    with open(m / "app", "ab") as f:
        for i in range(50):
            f.write(f"record {i}\n".encode())
        f.flush()
        os.fsync(f.fileno())
    settle(pair)
    assert tree(pair.replica) == tree(pair.backing)
    assert tree(pair.backing)["#links"] == [["d1/b", "hard"]]
    assert "error" not in pair.secondary.names()


def test_with_the_writeback_cache_too(make_pair: Any) -> None:
    """The spec's writeback (`<rfs writeback="on">`) reaches the front, and every kind of change
    still arrives: after the fsync of the root, the replica equals the backing directory."""
    pair = make_pair(writeback=True)
    assert "writeback cache on" in pair.primary.log()
    every_kind_of_change(pair)


def test_a_stop_writes_the_cache_back_first(make_pair: Any) -> None:
    """With the writeback cache, data an application wrote and neither synced nor closed is in the
    kernel's page cache only. A stop writes it back (and replicates it) before the connection is
    aborted: it would otherwise be lost on this node too, where without the cache it was in the
    file when write() returned."""
    pair = make_pair(writeback=True)
    data = os.urandom(300_000)
    fd = os.open(pair.mnt / "open", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        pair.primary.command("stop")
        assert pair.primary.proc.wait(10) == 0
    finally:
        with _suppress():
            os.close(fd)  # ENOTCONN: the connection is gone
    assert (pair.backing / "open").read_bytes() == data, pair.primary.log()
    assert (pair.replica / "open").read_bytes() == data, pair.primary.log() + pair.secondary.log()


def test_fsync_waits_for_the_secondary(pair: Pair) -> None:
    pair.primary.command("status")
    st = pair.primary.wait("status")
    assert st["state"] == "in_sync"
    os.kill(pair.secondary.proc.pid, signal.SIGSTOP)
    try:
        done = threading.Event()
        result: list[object] = []

        def writer() -> None:
            try:
                with open(pair.mnt / "held", "wb") as f:
                    f.write(b"must be on the secondary")
                    f.flush()
                    os.fsync(f.fileno())
                result.append("ok")
            except OSError as exc:
                result.append(exc.errno)
            done.set()

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        assert not done.wait(1.0), "fsync returned while the secondary was stopped"
    finally:
        os.kill(pair.secondary.proc.pid, signal.SIGCONT)
    t.join(10)
    assert result == ["ok"]
    assert (pair.replica / "held").read_bytes() == b"must be on the secondary"


@pytest.fixture
def make_pair() -> Iterator[Any]:
    made: list[tuple[Path, Pair | None]] = []

    def make(**kw: Any) -> Pair:
        root = Path(tempfile.mkdtemp(prefix="skprim-", dir="/tmp"))
        made.append((root, None))
        p = Pair(root, **kw)
        made[-1] = (root, p)
        return p

    try:
        yield make
    finally:
        for root, p in made:
            if p is not None:
                p.close()
            if os.path.ismount(root / "mnt"):
                subprocess.run(["fusermount3", "-u", "-z", str(root / "mnt")], check=False)
            detach_all_under(root)
            shutil.rmtree(root, ignore_errors=True)


def held_fsync(pair: Pair, name: str) -> tuple[threading.Event, list[object]]:
    done = threading.Event()
    result: list[object] = []

    def writer() -> None:
        try:
            with open(pair.mnt / name, "wb") as f:
                f.write(b"data of " + name.encode())
                f.flush()
                os.fsync(f.fileno())
            result.append("ok")
        except OSError as exc:
            result.append(exc.errno)
        done.set()

    threading.Thread(target=writer, daemon=True).start()
    return done, result


@pytest.mark.parametrize("command, expected", [("degrade_ok", "ok"), ("fence", errno.EIO)])
def test_stalled_secondary_holds_fsync_until_safekitd_decides(
    make_pair: Any, command: str, expected: object
) -> None:
    pair = make_pair(sendtimeout=1.5)
    os.kill(pair.secondary.proc.pid, signal.SIGSTOP)
    try:
        done, result = held_fsync(pair, "held")
        degraded = pair.primary.wait("degraded", count=2, timeout=10)  # the first one: "starting"
        assert "sendtimeout" in degraded["reason"]
        assert not done.wait(1.0), "fsync returned alone before safekitd's answer"
        pair.primary.command(command)
        assert done.wait(5)
        assert result == [expected]
        if command == "fence":  # new fsync calls fail too
            done2, result2 = held_fsync(pair, "later")
            assert done2.wait(5) and result2 == [errno.EIO]
        else:  # degraded: fsync is local from now on
            done2, result2 = held_fsync(pair, "later")
            assert done2.wait(5) and result2 == ["ok"]
            pair.primary.command("status")
            status = pair.primary.wait("status")
            assert status["state"] == "degraded" and status["resync_needed"] is True
    finally:
        os.kill(pair.secondary.proc.pid, signal.SIGCONT)


def test_dead_secondary_is_reported(make_pair: Any) -> None:
    pair = make_pair()
    (pair.mnt / "before").write_bytes(b"1")
    settle(pair)
    pair.secondary.proc.kill()
    pair.secondary.proc.wait()
    degraded = pair.primary.wait("degraded", count=2, timeout=10)
    assert "closed" in degraded["reason"] or "lost" in degraded["reason"], degraded
    done, result = held_fsync(pair, "after")
    assert not done.wait(0.5)
    pair.primary.command("degrade_ok")
    assert done.wait(5) and result == ["ok"]
    # the copy does not follow any more: nothing claims it is in sync again
    assert pair.primary.names().count("in_sync") == 1


def test_async_none_replicates_durably(make_pair: Any) -> None:
    pair = make_pair(async_mode="none")
    with open(pair.mnt / "f", "wb") as f:
        f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
    (pair.mnt / "d").mkdir()
    settle(pair)
    assert tree(pair.replica) == tree(pair.backing)


def test_events_are_channel_lines_and_stop_is_clean(make_pair: Any) -> None:
    pair = make_pair()
    pair.primary.command("status")
    pair.primary.wait("status")
    pair.primary.command("stop")
    assert pair.primary.proc.wait(10) == 0
    assert not os.path.ismount(pair.mnt)
    for line in pair.primary.lines:
        assert channel.encode_event(channel.decode_event(line)) == line
    names = pair.primary.names()
    assert names[:4] == ["mounted", "degraded", "resyncing", "in_sync"], names
    assert pair.primary.events()[0]["dirs"] == [str(pair.backing)]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_memory_and_descriptors_stay_flat(make_pair: Any) -> None:
    pair = make_pair()
    pid = pair.primary.proc.pid

    def burst(tag: str, n: int) -> None:
        for i in range(n):
            p = pair.mnt / f"{tag}-{i % 50}"
            with open(p, "wb") as f:
                f.write(b"z" * 4096)
            if i % 100 == 99:
                settle(pair)
        for i in range(50):
            os.unlink(pair.mnt / f"{tag}-{i}")
        settle(pair)

    burst("warm", 2000)  # 2000 x (create/truncate, write, times at close) ~ 6000 operations
    rss0, fds0 = rss_kib(pid), len(os.listdir(f"/proc/{pid}/fd"))
    burst("run", 4000)  # ~12,000 operations
    rss1, fds1 = rss_kib(pid), len(os.listdir(f"/proc/{pid}/fd"))
    assert fds1 <= fds0 + 2, (fds0, fds1)
    if not SANITIZE:  # AddressSanitizer's quarantine keeps freed memory on purpose
        assert rss1 <= rss0 + 4096, (rss0, rss1)
    pair.primary.command("status")
    status = pair.primary.wait("status")
    assert status["streamed"] >= 10000 and status["state"] == "in_sync"
    assert tree(pair.replica) == tree(pair.backing)
