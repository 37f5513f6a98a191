"""A full resynchronisation on the native data path (native/primary/resync.c -> native/secondary): a
file's content goes as WRITE frames of up to 256 KiB read straight into their frame buffers (not
one frame per 64 KiB zone), and the copy ends byte-identical, holes kept, with a writer running during
the pass; files changed behind replication's back (size and time kept) are repaired.

The same programs and helpers as test_resync.py (127.0.0.1, temporary directories under /tmp,
SAFEKIT_NATIVE_SANITIZE=1 for the AddressSanitizer build).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from native_process import NEEDS_FUSE, build_programs
from test_resync import MIB, Cluster, beneath_the_bind, walk

pytestmark = NEEDS_FUSE


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    """The programs test_resync.Cluster runs (the sanitizer build with SAFEKIT_NATIVE_SANITIZE=1)."""
    build_programs()


@pytest.fixture
def pair() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="skfullsync-", dir="/tmp"))
    c = Cluster(root)
    try:
        yield c
    finally:
        c.close()
        if os.path.ismount(root / "mnt"):
            subprocess.run(["fusermount3", "-u", "-z", str(root / "mnt")], check=False)
        shutil.rmtree(root, ignore_errors=True)


def frames_sent(c: Cluster) -> int:
    assert c.primary is not None
    n = c.primary.count("status")
    c.primary.command("status")
    return int(c.primary.wait("status", count=n + 1)["frames_sent"])


def test_full_sync_sends_large_frames_and_keeps_holes(pair: Cluster) -> None:
    c = pair
    rng = random.Random(15)
    c.start_secondary()
    primary = c.start_primary()
    primary.wait("in_sync")
    big = rng.randbytes(16 * MIB + 4321)  # 65 pieces of at most 256 KiB (257 zones of 64 KiB)
    (c.mnt / "big").write_bytes(big)
    with open(c.mnt / "sparse", "wb") as f:  # data, a 2.9 MiB hole, data, a hole to 4 MiB
        f.write(rng.randbytes(65536))
        f.seek(3 * MIB)
        f.write(rng.randbytes(100_000))
        f.truncate(4 * MIB)
    (c.mnt / "d").mkdir()
    (c.mnt / "d" / "small").write_bytes(b"0123456789")
    (c.mnt / "empty").write_bytes(b"")
    c.settle()
    # the copy changed behind replication's back, size and times kept: only a full pass sees it
    beneath = beneath_the_bind(c)
    st = os.stat(beneath / "big")
    with open(beneath / "big", "r+b") as f:
        f.seek(9 * MIB + 17)
        f.write(b"corrupt")
    os.utime(beneath / "big", ns=(st.st_atime_ns, st.st_mtime_ns))

    before = frames_sent(c)
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:  # live writes during the pass, each fsync'd
        fd = os.open(c.mnt / "live", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            i = 0
            while not stop.is_set() and i < 200:
                os.write(fd, f"{i:08d}\n".encode())
                os.fsync(fd)
                written.append(i)
                i += 1
        finally:
            os.close(fd)

    t = threading.Thread(target=writer)
    primary.command("fullsync")
    primary.wait("degraded", count=2, timeout=10)  # it was in sync: safekitd decides
    primary.command("degrade_ok")
    t.start()
    in_sync = primary.wait("in_sync", count=2, timeout=60)
    stop.set()
    t.join(30)
    assert in_sync["mode"] == "full"
    after = frames_sent(c)
    c.settle()

    assert walk(c.backing) == walk(c.replica)
    assert (c.replica / "big").read_bytes() == big
    assert (c.replica / "live").read_bytes() == b"".join(f"{i:08d}\n".encode() for i in written)
    sparse = os.stat(c.replica / "sparse")
    assert sparse.st_size == 4 * MIB
    assert sparse.st_blocks * 512 < 1 * MIB, "the hole was written on the copy"
    # 65 + 2 data frames, the other files' and directories' frames (about 30), PINGs, PROGRESS, and
    # at most 4 per live write (WRITE, FSYNC, SETATTR): far below one frame per 64 KiB zone (257
    # for `big` alone; 268-286 frames beside the live writes' before this change)
    assert after - before - 4 * len(written) < 150, (after - before, len(written))
