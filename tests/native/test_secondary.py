"""The native secondary (native/secondary, `safekit-rfs-secondary`) end to end, driven by the test
sender (native/tools, `safekit-rfs-send`) over 127.0.0.1: the copy after each kind of operation,
the ACK values, refused frames (tampered, replayed, reordered, lost, a v1 HELLO, a path through a
symlink) with nothing of them applied, the control channel's events (byte for byte what
safekit.rfs.channel encodes), the state file, a resync, flat RSS and fds over 20k operations, the
read-only binds over the copy (recorded as safekitd's recovery reads them, removed at stop, after a kill -9 at
the next start, a hung FUSE mount detached without a hang) and the split-brain save with a real
Python child (`python -m safekit.rfs splitbrain-save`).

With SAFEKIT_SECONDARY_SANITIZE=1 both programs are the AddressSanitizer + UBSan builds
(`make -C native asan`) and every exit is checked clean.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from native_process import EventProcess

from safekit.host import mounts
from safekit.rfs import channel

REPO = Path(__file__).resolve().parents[2]
SANITIZE = os.environ.get("SAFEKIT_SECONDARY_SANITIZE") == "1"
BUILD = REPO / "native" / "build" / ("asan" if SANITIZE else "")
SECONDARY = BUILD / "safekit-rfs-secondary"
SEND = BUILD / "safekit-rfs-send"
MODULE, PRIMARY, NODE = "pgsql", "node1", "node2"


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    target = "asan" if SANITIZE else "all"
    result = subprocess.run(
        ["make", "-C", str(REPO / "native"), target], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def esc(data: bytes | str) -> str:
    """A script token: %XX for anything but printable ASCII (and '%'); '.' is the empty path."""
    raw = data.encode() if isinstance(data, str) else data
    if not raw:
        return "."
    return "".join(chr(b) if 0x20 < b < 0x7F and b != 0x25 else f"%{b:02X}" for b in raw)


def gen(offset: int, length: int, seed: int) -> bytes:
    """The bytes `writegen PATH OFFSET LENGTH SEED` writes."""
    return bytes(((seed * 31 + x * 7 + (x >> 8)) & 0xFF) for x in range(offset, offset + length))


class Secondary(EventProcess):
    """One secondary process over a temporary replica, key and state directory."""

    def __init__(
        self,
        root: Path,
        *,
        async_mode: str = "second",
        dirs: int = 1,
        extra: dict[str, Any] | None = None,
        wait_listening: bool = True,
        paths: list[Path] | None = None,
    ) -> None:
        self.root = root
        self.key = root / "cluster.key"
        if not self.key.exists():
            self.key.write_text("safekit-cluster-key-v1:" + base64.b64encode(os.urandom(32)).decode() + "\n")
            self.key.chmod(0o600)
        self.dirs = paths or [root / f"rep{i}" for i in range(dirs)]
        self.state_dir = root / "state"
        self.spec = root / "secondary.spec.json"
        self.spec.write_text(
            json.dumps(
                {
                    "module": MODULE,
                    "node": NODE,
                    "peer": PRIMARY,
                    "dirs": [
                        {"path": str(d), "notreplicated": [], "notreplicated_regex": []} for d in self.dirs
                    ],
                    "local_addr": "127.0.0.1",
                    "peer_addr": "127.0.0.1",
                    "port": 0,
                    "key_file": str(self.key),
                    "state_dir": str(self.state_dir),
                    "async_mode": async_mode,
                    "sendtimeout": 30.0,
                    "connect_interval": 1.0,
                    "window_bytes": 64 << 20,
                    "extra": {"python": sys.executable, **(extra or {})},
                }
            )
        )
        super().__init__([str(SECONDARY), str(self.spec)], root / "secondary.log")
        self.port = int(self.wait("listening")["port"]) if wait_listening else 0

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.state_dir / "secondary.json").read_text()))

    def send(
        self,
        script: list[str],
        *,
        first_seq: int = 1,
        epoch: str = "e1",
        extra: list[str] | None = None,
        check: bool = True,
        async_mode: str = "second",
    ) -> list[str]:
        args = [
            str(SEND),
            "--port",
            str(self.port),
            "--key",
            str(self.key),
            "--module",
            MODULE,
            "--node",
            PRIMARY,
            "--peer",
            NODE,
            "--dirs",
            str(len(self.dirs)),
            "--epoch",
            epoch,
            "--first-seq",
            str(first_seq),
            "--async",
            async_mode,
            *(extra or []),
            "-",
        ]
        result = subprocess.run(
            args, input="\n".join(script) + "\n", capture_output=True, text=True, timeout=40, check=False
        )
        out = result.stdout.splitlines()
        if check:
            assert result.returncode == 0, f"{out}\n{result.stderr}\n{self.log()}"
            assert not [line for line in out if line.startswith("FAIL")], out
        if SANITIZE:
            assert "Sanitizer" not in result.stderr, result.stderr
        return out

    def stop(self, *, close_only: bool = False) -> int:
        assert self.proc.stdin is not None
        if not close_only:
            self.proc.stdin.write(b'{"cmd":"stop"}\n')
            self.proc.stdin.flush()
        self.proc.stdin.close()
        code = self.proc.wait(timeout=20)
        self._reader.join(timeout=5)
        if SANITIZE:
            assert "Sanitizer" not in self.log() and "runtime error" not in self.log(), self.log()
        return code

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


@pytest.fixture
def tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sks-test-") as d:
        try:
            yield Path(d)
        finally:
            detach_under(Path(d))


def detach_under(root: Path) -> None:
    """Whatever a failed test left mounted under `root`, removed without looking through it."""
    for m in reversed(mounts.read_mounts()):
        if m.point == str(root) or m.point.startswith(f"{root}/"):
            with contextlib.suppress(mounts.MountError):
                mounts.detach(m.point)


@pytest.fixture
def sec(tmp: Path) -> Iterator[Secondary]:
    s = Secondary(tmp)
    yield s
    if s.proc.poll() is None:
        assert s.stop() == 0
    check_channel_lines(s)


def check_channel_lines(s: Secondary) -> None:
    """Every line decodes, and re-encodes byte for byte, with safekit.rfs.channel."""
    for line in s.lines:
        event = channel.decode_event(line)
        assert not isinstance(event, channel.UnknownEvent), line
        assert channel.encode_event(event) == line, line


def acks(out: list[str]) -> list[tuple[int, int, int]]:
    return [
        (int(a), int(b), int(c)) for _, a, b, c in (line.split() for line in out if line.startswith("ACK "))
    ]


# --------------------------------------------------------------------------- the copy


def test_operations_make_the_copy(sec: Secondary) -> None:
    rep = sec.dirs[0]
    out = sec.send(
        [
            "mkdir d 750 1000 1000",  # 100
            "create d/a 640 1000 1000",
            "write d/a 0 hello%20world",
            "create d/big 600 0 0",  # 103
            "writegen d/big 0 300000 5",
            "writegen d/big 1000000 70000 9",
            "truncate d/big 1200000",
            "fallocate d/big 1 2000000 65536",  # KEEP_SIZE
            "fallocate d/big 0 1200000 4096",
            "create d/b 644 0 0",
            "write d/b 0 old",
            "rename d/a d/b 0",  # 111: replaces b
            "symlink d/s b 0 0",
            "link d/b d/hard",
            "setxattr d/b user.k v%00al",
            "setxattr d/b user.gone x",
            "removexattr d/b user.gone",
            "setattr d/b 17 600 0 0 0 1500000000123456789 0",  # mode, mtime
            "create d/tmp 644 0 0",
            "unlink d/tmp",
            "mkdir d/e 755 0 0",
            "rmdir d/e",
            "mknod d/fifo 10600 0 0 0",
            "!fsync d/b",  # 123
            "expect_ack 123 123 123",
        ],
        first_seq=100,
    )
    assert acks(out)[-1] == (123, 123, 123)
    assert (rep / "d").stat().st_mode & 0o7777 == 0o750
    assert (rep / "d").stat().st_uid == 1000
    assert (rep / "d/b").read_bytes() == b"hello world"
    assert not (rep / "d/a").exists() and not (rep / "d/tmp").exists() and not (rep / "d/e").exists()
    st = (rep / "d/b").stat()
    assert st.st_mode & 0o7777 == 0o600 and st.st_mtime_ns == 1500000000123456789
    assert st.st_ino == (rep / "d/hard").stat().st_ino and st.st_nlink == 2
    assert os.readlink(rep / "d/s") == "b"
    assert os.getxattr(rep / "d/b", "user.k") == b"v\x00al"
    assert "user.gone" not in os.listxattr(rep / "d/b")
    big = (rep / "d/big").read_bytes()
    want = bytearray(gen(0, 300000, 5).ljust(1000000, b"\0") + gen(1000000, 70000, 9))
    want = want.ljust(1200000, b"\0")[:1200000] + b"\0" * 4096
    assert big == bytes(want)
    assert (rep / "d/big").stat().st_blocks * 512 >= 300000 + 70000 + 65536  # the kept-size allocation too
    assert os.stat(rep / "d/fifo", follow_symlinks=False).st_mode == 0o10600
    assert sec.names()[:3] == ["ready", "listening", "connected"]
    assert sec.wait("connected") == {"event": "connected", "peer": PRIMARY, "epoch": "e1"}
    assert sec.wait("disconnected")["reason"] == "the primary closed the connection"


def test_times_alone_land_on_the_file_the_path_names_now(sec: Secondary) -> None:
    """The times of a file being written (sent at each fsync) go through the cached fd of its writes:
    after a rename, an unlink and a new file of the same name, they land on what the path names."""
    rep = sec.dirs[0]
    t1, t2, t3, t4 = (1_500_000_000_000_000_000 + k * 1_000_000_007 for k in range(1, 5))
    out = sec.send(
        [
            "create k 644 0 0",
            "write k 0 three",
            f"setattr k 24 0 0 0 {t1} {t2} 0",  # atime + mtime, k's fd cached by its write
            "create f 644 0 0",
            "write f 0 one",
            f"setattr f 24 0 0 0 {t1} {t1} 0",
            "create g 644 0 0",
            "write g 0 two",
            "rename g h 0",
            f"setattr h 16 0 0 0 0 {t3} 0",  # mtime: h is g, renamed (not cached under h)
            "write f 3 +",
            "unlink f",
            "create f 600 0 0",  # a new file under the old name
            f"setattr f 16 0 0 0 0 {t4} 0",
            "!fsync f",
            "expect_ack 15 15 15",
        ]
    )
    assert acks(out)[-1] == (15, 15, 15)
    k = (rep / "k").stat()
    assert (rep / "k").read_bytes() == b"three" and (k.st_atime_ns, k.st_mtime_ns) == (t1, t2)
    assert (rep / "f").read_bytes() == b"" and (rep / "f").stat().st_mtime_ns == t4
    assert (rep / "h").read_bytes() == b"two" and (rep / "h").stat().st_mtime_ns == t3
    assert not (rep / "g").exists()


def test_ack_every_256_operations_and_at_barriers(sec: Secondary) -> None:
    script = ["create f 644 0 0"] + [f"write f {i} x" for i in range(999)] + ["!ping"]
    out = sec.send([*script, "expect_ack 1001 1001 1001"])
    got = acks(out)
    assert got[-1] == (1001, 1001, 1001)
    applied = [a for _, a, _ in got]
    assert all(b - a <= 256 for a, b in zip([0, *applied], applied, strict=False)), applied
    assert all(r >= a for r, a, _ in got)


@pytest.mark.parametrize("async_mode", ["second", "none"])
def test_durable_follows_the_async_mode(tmp: Path, async_mode: str) -> None:
    s = Secondary(tmp, async_mode=async_mode)
    try:
        out = s.send(
            ["create f 644 0 0", "write f 0 abc", "!fsync f data", "expect_ack 3 3 3", "write f 3 d", "wait"],
            async_mode=async_mode,
        )
        # async="none": durable advances at an fsync'd barrier only; "second": with applied
        assert acks(out)[-1] == ((5, 5, 3) if async_mode == "none" else (5, 5, 5))
    finally:
        assert s.stop() == 0
    check_channel_lines(s)


# --------------------------------------------------------------------------- refused frames


@pytest.mark.parametrize(
    ("trick", "reason"),
    [
        ("tamper", "failed authentication"),
        ("replay", "replayed"),
        ("swap", "lost or reordered"),
        ("skip", "lost or reordered"),
    ],
)
def test_a_bad_frame_ends_the_connection_and_nothing_of_it_is_applied(
    sec: Secondary, trick: str, reason: str
) -> None:
    rep = sec.dirs[0]
    script = ["create f 644 0 0", "write f 0 good", "wait"]
    if trick == "replay":
        script += ["write f 4 +once", "replay", "expect_close"]
    else:
        script += [trick, "write f 4 EVIL", "write f 8 LATER", "expect_close"]
    out = sec.send(script)
    assert any(line.startswith("CLOSED") for line in out)
    assert (rep / "f").read_bytes() == (b"good+once" if trick == "replay" else b"good")
    assert reason in sec.wait("disconnected")["reason"]
    assert reason in sec.log()
    # the process goes on: the next (good) connection is served
    sec.send(["write f 0 next", "wait"], first_seq=10)
    assert (rep / "f").read_bytes().startswith(b"next")


def test_a_v1_hello_is_refused_with_a_clear_reason(sec: Secondary) -> None:
    out = sec.send([], extra=["--v1-hello"])
    assert out[-1].startswith("CLOSED")
    reason = sec.wait("disconnected")["reason"]
    assert "version 1" in reason and "upgrade the peer" in reason


def test_a_wrong_key_or_module_is_refused(sec: Secondary, tmp: Path) -> None:
    other = tmp / "other.key"
    other.write_text("safekit-cluster-key-v1:" + base64.b64encode(os.urandom(32)).decode() + "\n")
    other.chmod(0o600)
    args = [
        str(SEND),
        "--port",
        str(sec.port),
        "--key",
        str(other),
        "--module",
        MODULE,
        "--node",
        PRIMARY,
        "--peer",
        NODE,
        "-",
    ]
    result = subprocess.run(args, input="", capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 1 and "CLOSED" in result.stdout
    assert "cluster key" in sec.wait("disconnected")["reason"]


def test_an_operation_through_a_symlink_is_refused(sec: Secondary, tmp: Path) -> None:
    outside = tmp / "outside"
    outside.mkdir()
    name = "l/évasion"
    out = sec.send(
        [f"symlink l {esc(str(outside))} 0 0", f"create {esc(name)} 644 0 0", "expect_error", "expect_close"]
    )
    error = next(line for line in out if line.startswith("ERROR "))
    assert error.split()[1:3] == ["2", str(errno.ELOOP)]
    assert list(outside.iterdir()) == []
    event = sec.wait("error")
    assert event["errno"] == errno.ELOOP
    assert (
        event["reason"]
        == f"could not apply Create '{name}' on the secondary: Too many levels of symbolic links"
    )
    sec.wait("disconnected")
    assert sec.names()[-2:] == ["error", "disconnected"]
    assert sec.state()["in_sync"] is False


# --------------------------------------------------------------------------- resync, state, channel


def test_resync_manifest_state_and_restart(tmp: Path) -> None:
    (tmp / "rep0/stale").mkdir(parents=True)  # before the start: the copy is read-only then
    (tmp / "rep0/stale/x").write_bytes(b"x")
    s = Secondary(tmp)
    rep = s.dirs[0]
    data = gen(0, 200000, 3)
    out = s.send(
        [
            "sync_begin full",
            "remove_tree stale",
            "writegen a/b/c 0 200000 3",  # lenient: the file and its parents are created
            "unlink not-there",
            "setxattr missing user.x 1",
            "clear_xattrs a/b/c",
            "progress 50 100",
            "manifest_req all",
            "manifest_req paths a/b/c missing",
            "sync_end 7",
            "wait",
        ],
        epoch="e2",
    )
    assert not (rep / "stale").exists() and (rep / "a/b/c").read_bytes() == data
    entries = [line.split() for line in out if line.startswith("ENTRY ")]
    sums = "".join(
        hashlib.sha256(data[i : i + 65536]).digest()[:16].hex() for i in range(0, len(data), 65536)
    )
    files = [e for e in entries if e[1] == "a/b/c"]
    assert len(files) == 2 and all(e[2] == "f" and e[9:12] == ["4", "0", sums] for e in files)
    assert [e[1] for e in entries[:3]] == ["a", "a/b", "a/b/c"]
    assert s.wait("resyncing") == {"event": "resyncing", "mode": "full"}
    assert s.wait("progress") == {"event": "progress", "percent": 50}
    assert s.wait("in_sync") == {
        "event": "in_sync",
        "generation": 7,
        "mode": "",
        "seconds": None,
        "bytes": None,
    }
    state = s.state()
    assert state["in_sync"] is True and state["generation"] == 7 and state["epoch"] == "e2"
    assert state["clean"] is False
    assert s.stop() == 0
    state = s.state()
    assert state["clean"] is True and state["applied_seq"] == 11
    check_channel_lines(s)

    again = Secondary(tmp)
    try:
        assert again.wait("ready") == {"event": "ready", "in_sync": True, "epoch": "e2", "trusted": True}
        out = again.send(["wait"], epoch="e2", first_seq=12)
        assert "HELLO_OK node=node2 epoch=e2 trusted=1 in_sync=1 fullsync=0" in out
        assert again.state()["in_sync"] is True
        again.send(["wait"], epoch="e3", first_seq=1)  # another primary history: out of sync at once
        assert again.state()["in_sync"] is False and again.state()["epoch"] == "e3"
    finally:
        assert again.stop(close_only=True) == 0  # a closed stdin: safekitd died, stop as for `stop`
    assert "safekitd closed the control channel" in again.log()
    check_channel_lines(again)


def test_channel_lines_match_the_channel_module() -> None:
    """The events of a run, encoded by the native code, against safekit.rfs.channel (also done on
    every test's lines); here with text that needs escaping."""
    with tempfile.TemporaryDirectory(prefix="sks-test-") as d:
        s = Secondary(Path(d))
        name = 'ü/"q"/😀'
        s.send([f"write {esc(name)} 0 x", "expect_error", "expect_close"])
        reason = s.wait("error")["reason"]
        assert f"Write '{name}'" in reason
        line = next(line for line in s.lines if b'"event":"error"' in line)
        assert b"\\u00fc" in line and b"\\ud83d\\ude00" in line
        assert s.stop() == 0
        check_channel_lines(s)


# --------------------------------------------------------------------------- resources


def test_rss_and_fds_stay_flat_over_20k_operations(sec: Secondary) -> None:
    def batch(round_: int) -> list[str]:
        lines = []
        for i in range(1000):
            name = f"f{i % 150}"
            lines += [
                f"create {name} 644 0 0",
                f"writegen {name} 0 4096 {round_}",
                f"setattr {name} 16 0 0 0 0 {1_600_000_000_000_000_000 + i} 0",
                f"rename {name} g{i % 150} 0",
                f"unlink g{i % 150}",
            ]
        return [*lines, "wait"]

    seq = 1
    sec.send(batch(0), first_seq=seq)  # warm-up: 5000 operations
    sec.wait("disconnected", count=1)  # measured between sessions: the connection is closed
    seq += 5001
    rss0, fds0 = sec.rss_kib(), sec.fds()
    for round_ in (1, 2, 3):  # 15000 more
        sec.send(batch(round_), first_seq=seq)
        sec.wait("disconnected", count=1 + round_)
        seq += 5001
    rss1, fds1 = sec.rss_kib(), sec.fds()
    print(f"secondary RSS {rss0} -> {rss1} KiB, fds {fds0} -> {fds1} over 20k operations")
    assert fds1 == fds0
    assert rss1 - rss0 <= 512, (rss0, rss1)
    assert list(sec.dirs[0].iterdir()) == []


# --------------------------------------------------------------------------- the read-only binds


def stack(path: Path) -> list[mounts.Mount]:
    return mounts.mounts_at(str(path))


def test_the_copy_is_read_only_for_writers_while_the_apply_writes_it(tmp: Path) -> None:
    """Rule 5: a read-only bind of each directory over itself, recorded in secondary.json as safekitd's
    recovery reads it (Mount.key), removed at stop and only it."""
    s = Secondary(tmp, dirs=2)
    try:
        for rep in s.dirs:
            top = stack(rep)[-1]
            assert os.statvfs(rep).f_flag & os.ST_RDONLY
            with pytest.raises(OSError) as refused:
                (rep / "by-an-application").write_bytes(b"x")
            assert refused.value.errno == errno.EROFS
            assert top.key in s.state()["mounts"]
        assert s.state()["mounts"] == [stack(rep)[-1].key for rep in s.dirs]
        # the apply writes beneath the bind, through the fds opened before it
        s.send(["create a 644 0 0", "write a 0 through-the-fd", "fsync a 0", "wait"])
        assert (s.dirs[0] / "a").read_bytes() == b"through-the-fd"
        depth = [len(stack(rep)) for rep in s.dirs]
    finally:
        assert s.stop() == 0
    check_channel_lines(s)
    assert [len(stack(rep)) for rep in s.dirs] == [d - 1 for d in depth]
    for rep in s.dirs:
        (rep / "writable-again").write_bytes(b"y")


def test_binds_left_by_a_kill_are_removed_at_the_next_start_and_by_safekitd(tmp: Path) -> None:
    s = Secondary(tmp)
    rep = s.dirs[0]
    base = len(stack(rep)) - 1
    first = s.state()["mounts"]
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait(timeout=10)
    assert [m.key for m in stack(rep)][base:] == first  # left behind, recorded

    again = Secondary(tmp)  # removes the recorded bind, makes its own
    try:
        assert again.wait("ready")["trusted"] is True  # same boot: the page cache holds the copy
        assert len(stack(rep)) == base + 1  # the old bind removed (the kernel may reuse its id)
        assert again.state()["mounts"] == [stack(rep)[-1].key]
        again.proc.send_signal(signal.SIGKILL)
        again.proc.wait(timeout=10)
    finally:
        if again.proc.poll() is None:
            again.stop()
    # safekitd's recovery (host.mounts.detach_ours) removes what this one recorded
    assert mounts.detach_ours(str(rep), again.state()["mounts"]) == 1
    assert len(stack(rep)) == base


def test_a_directory_named_with_a_space_an_e_acute_and_a_non_utf8_byte_is_bound_and_unbound(
    tmp: Path,
) -> None:
    """mountinfo names are bytes: the read-only bind over /tmp/.../dé x\\xff is found, recorded as
    safekit.host.mounts reads it (json.dumps of os.fsdecode), removed at stop, after a kill -9 at the
    next start, and by safekitd's recovery (host.mounts.detach_ours)."""
    rep = Path(os.fsdecode(os.fsencode(tmp) + b"/d\xc3\xa9 x\xff"))  # the spec holds "\\udcff"
    s = Secondary(tmp, paths=[rep])
    try:
        assert rep.is_dir() and os.fsencode(rep).endswith(b"/d\xc3\xa9 x\xff")  # made by the program
        top = stack(rep)[-1]
        assert os.fsencode(top.point) == os.fsencode(rep)
        assert s.state()["mounts"] == [top.key]
        assert os.statvfs(rep).f_flag & os.ST_RDONLY
        s.send(["create a 644 0 0", "write a 0 under-the-bind", "fsync a 0", "wait"])
        assert (rep / "a").read_bytes() == b"under-the-bind"
        base = len(stack(rep)) - 1
    finally:
        assert s.stop() == 0
    assert len(stack(rep)) == base  # removed at stop
    (rep / "writable-again").write_bytes(b"y")

    s = Secondary(tmp, paths=[rep])
    first = s.state()["mounts"]
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait(timeout=10)
    assert [m.key for m in stack(rep)][base:] == first  # left behind, recorded
    again = Secondary(tmp, paths=[rep])  # finds the recorded bind by its key and removes it
    try:
        assert len(stack(rep)) == base + 1
        again.proc.send_signal(signal.SIGKILL)
        again.proc.wait(timeout=10)
    finally:
        if again.proc.poll() is None:
            again.stop()
    assert mounts.detach_ours(str(rep), again.state()["mounts"]) == 1  # safekitd's recovery
    assert len(stack(rep)) == base


def test_a_mount_not_ours_stays(tmp: Path) -> None:
    """A file system the administrator mounted at the directory is the copy's: bound over and kept."""
    rep = tmp / "rep0"
    rep.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "sks-user", str(rep)], check=True)
    try:
        user = stack(rep)[-1]
        assert user.fstype == "tmpfs"
        s = Secondary(tmp)
        assert stack(rep)[-2] == user and s.state()["mounts"] == [stack(rep)[-1].key]
        s.send(["create on-tmpfs 644 0 0", "write on-tmpfs 0 x", "wait"])
        assert s.stop() == 0
        assert stack(rep)[-1] == user and (rep / "on-tmpfs").read_bytes() == b"x"
        again = Secondary(tmp)  # its recorded bind is gone; the tmpfs is not removed at start either
        assert stack(rep)[-2] == user
        assert again.stop() == 0
        assert stack(rep)[-1] == user
    finally:
        mounts.detach(str(rep))


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")
@pytest.mark.parametrize("how", [signal.SIGSTOP, signal.SIGKILL], ids=["hung", "dead"])
def test_a_hung_or_dead_fuse_mount_over_the_directory_is_detached(tmp: Path, how: signal.Signals) -> None:
    """A safekit FUSE mount whose server does not answer (stopped: a stat of it hangs for ever) or is
    gone is over the directory, as an earlier primary on this node leaves it: the secondary detaches
    it from /proc/self/mountinfo without a stat, then binds and serves."""
    front = REPO / "native" / "build" / "front" / "safekit-front"
    subprocess.run(["make", "-s", "-C", str(REPO / "native" / "front")], check=True, timeout=300)
    backing, rep = tmp / "backing", tmp / "rep0"
    backing.mkdir()
    rep.mkdir()
    (backing / "seen-through-fuse").write_bytes(b"f")
    proc = subprocess.Popen(
        [str(front), "--sink=null", str(backing), str(rep)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith(b"mounted")
        assert stack(rep)[-1].fstype == mounts.FUSE_TYPE
        proc.send_signal(how)
        started = time.monotonic()
        s = Secondary(tmp)
        assert s.wait("ready")["in_sync"] is False
        assert time.monotonic() - started < 10
        assert mounts.FUSE_TYPE not in [m.fstype for m in stack(rep)]
        assert "detached fuse.safekit mount" in s.log()
        s.send(["create a 644 0 0", "write a 0 x", "wait"])
        assert (rep / "a").read_bytes() == b"x" and not (rep / "seen-through-fuse").exists()
        assert s.stop() == 0
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait(timeout=10)


def test_another_directory_identity_means_a_full_compare(tmp: Path) -> None:
    s = Secondary(tmp)
    s.send(["sync_begin full", "sync_end 3", "wait"], epoch="e5")
    assert s.stop() == 0
    os.rename(tmp / "rep0", tmp / "old-rep0")  # another directory at the same path
    again = Secondary(tmp)
    try:
        assert again.wait("ready") == {"event": "ready", "in_sync": False, "epoch": "", "trusted": False}
        assert "compared in full" in again.log()
    finally:
        assert again.stop() == 0


@pytest.mark.parametrize(
    ("clean", "boot", "trusted"),
    [(True, "another boot", True), (False, "this boot", True), (False, "another boot", False)],
)
def test_trust_is_a_clean_stop_or_the_same_boot(tmp: Path, clean: bool, boot: str, trusted: bool) -> None:
    """The copy holds every applied operation if the process
    stopped cleanly, or if the machine did not reboot since (the page cache still has them)."""
    s = Secondary(tmp)
    s.send(["sync_begin full", "sync_end 2", "wait"], epoch="e7")
    assert s.stop() == 0
    state = s.state()
    state["clean"] = clean
    if boot != "this boot":
        state["boot_id"] = "00000000-0000-0000-0000-000000000000"
    (s.state_dir / "secondary.json").write_text(json.dumps(state))
    again = Secondary(tmp)
    try:
        assert again.wait("ready") == {"event": "ready", "in_sync": True, "epoch": "e7", "trusted": trusted}
        assert (
            again.state()["clean"] is False
            and again.state()["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        )
    finally:
        assert again.stop() == 0


# --------------------------------------------------------------------------- split brain (rule 4)

DIVERGED = {"peer": PRIMARY, "generation": 4, "peer_generation": 6, "split_at": 1700000000.5}


def saves(tmp: Path) -> list[Path]:
    return sorted((tmp / "splitbrain").iterdir()) if (tmp / "splitbrain").is_dir() else []


def test_a_split_brain_lost_is_saved_before_the_primary_is_served(tmp: Path) -> None:
    (tmp / "rep0/d").mkdir(parents=True)
    (tmp / "rep0/d/mine").write_bytes(b"written here after the split")
    (tmp / "rep0/top").write_bytes(b"t" * 5000)
    s = Secondary(tmp, extra={"diverged": DIVERGED})
    try:
        assert s.wait("ready")["in_sync"] is False
        # a primary connecting now waits in the listen queue until the save is done
        out = s.send(
            ["sync_begin full", "remove_tree d", "unlink top", "write new 0 winner", "sync_end 8", "wait"]
        )
        assert "HELLO_OK node=node2 epoch= trusted=0 in_sync=0 fullsync=0" in out
        names = s.names()
        assert names.index("splitbrain") < names.index("connected")
        event = s.wait("splitbrain")
        (target,) = saves(tmp)
        assert event == {
            "event": "splitbrain",
            "path": str(target),
            "files": 2,
            "bytes": 5000 + len(b"written here after the split"),
            "not_saved": 0,
            "deleted": 0,
            "since": "2023-11-14T22:13:20Z",  # split_at
            "winner": PRIMARY,
        }
        rel = str(tmp / "rep0").strip("/")
        assert (target / rel / "d/mine").read_bytes() == b"written here after the split"
        assert (target / rel / "top").read_bytes() == b"t" * 5000
        s.wait("in_sync")
        assert s.state()["splitbrain"] is None and s.state()["in_sync"] is True
        # after the resync the manifest says what the winner has (splitbrain-annotate)
        deadline = time.monotonic() + 20
        while json.loads((target / "manifest.json").read_text())["resync"] is None:
            assert time.monotonic() < deadline, s.log()
            time.sleep(0.1)
        manifest = json.loads((target / "manifest.json").read_text())
        assert manifest["resync"]["on_winner"] == {"absent on the winner": 2}
        assert manifest["generations"] == {NODE: 4, PRIMARY: 6}
    finally:
        assert s.stop() == 0
    check_channel_lines(s)


def test_an_interrupted_save_is_redone_at_the_next_start(tmp: Path) -> None:
    (tmp / "rep0").mkdir()
    (tmp / "rep0/f").write_bytes(b"mine")
    slow = tmp / "slow-python"  # the step starts late: the stop arrives while it runs
    slow.write_text(f'#!/bin/sh\nsleep 3\nexec {sys.executable} "$@"\n')
    slow.chmod(0o755)
    s = Secondary(tmp, extra={"diverged": DIVERGED, "python": str(slow)})
    state = s.state()["splitbrain"]
    assert state["phase"] == "saving" and state["peer"] == PRIMARY and state["split_at"] == 1700000000.5
    assert state["dir"].startswith(str(tmp / "splitbrain") + "/")
    assert s.stop() == 0
    assert "the save under" in s.log() and "was interrupted" in s.log()
    assert s.state()["splitbrain"]["phase"] == "saving" and "splitbrain" not in s.names()
    partial = Path(state["dir"])
    (partial / "junk").mkdir(parents=True)  # what an interrupted copy leaves: replaced

    again = Secondary(tmp)  # safekitd no longer says diverged: the recorded save is done anyway
    try:
        event = again.wait("splitbrain", timeout=30)
        assert event["path"] == state["dir"] and event["files"] == 1
        assert not (partial / "junk").exists()
        assert again.state()["splitbrain"]["phase"] == "saved"
        assert len(saves(tmp)) == 1
    finally:
        assert again.stop() == 0
    check_channel_lines(again)


def test_a_save_that_cannot_be_made_ends_the_process_with_python_s_reason(tmp: Path) -> None:
    (tmp / "rep0").mkdir()
    (tmp / "rep0/f").write_bytes(b"mine")
    (tmp / "splitbrain").write_bytes(b"not a directory")  # the save cannot be made there
    s = Secondary(tmp, extra={"diverged": DIVERGED})
    failed = s.wait("failed", timeout=30)["reason"]
    assert s.proc.wait(timeout=20) == 1
    assert failed.startswith("split brain: could not save what node2 changed since the split under ")
    assert failed.endswith(
        "the resynchronisation from node1 waits until it can (free space on that file system)"
    )
    assert "connected" not in s.names() and s.state()["splitbrain"]["phase"] == "saving"
    assert stack(tmp / "rep0") == []  # its bind removed at the exit
    check_channel_lines(s)
