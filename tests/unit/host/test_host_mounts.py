"""Finding and removing safekit's mounts without ever looking through them (host/mounts.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from safekit.host import mounts

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 8:1 /srv/data /srv/data rw - ext4 /dev/sda1 rw
41 40 0:50 / /var/safekit/modules/am/rfs/mnt rw,nosuid - fuse.safekit safekit-am rw
42 40 0:50 /0 /srv/data rw,nosuid - fuse.safekit safekit-am rw
43 22 0:51 / /srv/with\\040space rw - tmpfs tmpfs rw
"""


def test_mountinfo_is_read_as_stacks_with_escaped_names() -> None:
    parsed = mounts.parse_mountinfo(MOUNTINFO + "garbage line\n")
    assert [m.id for m in parsed] == [22, 40, 41, 42, 43]
    assert parsed[-1].point == "/srv/with space"
    stack = mounts.stack_at("/srv/data", parsed)
    expected = [(40, "ext4", "/srv/data"), (42, "fuse.safekit", "/0")]
    assert [(m.id, m.fstype, m.root) for m in stack] == expected
    assert mounts.ours_on_top(stack)
    assert not mounts.ours_on_top(stack[:1])  # a user's bind under it stays
    assert mounts.ours_on_top(stack[:1], recorded=[[40, "8:1", "/srv/data"]])  # a recorded bind is ours
    assert not mounts.ours_on_top([])


def test_names_are_bytes_a_utf8_name_is_itself_and_a_non_utf8_byte_comes_back() -> None:
    """Only the kernel's octal escapes (space, tab, newline, backslash) are decoded, on the bytes;
    the bytes are then a path string as `os` makes one: /srv/dé stays /srv/dé (not mojibake), a
    byte that is not UTF-8 is a surrogate that os.fsencode turns back into that byte."""
    raw = (
        b"50 22 8:1 /srv/d\xc3\xa9\\040x /srv/d\xc3\xa9\\040x rw - ext4 /dev/sda1 rw\n"
        b"51 22 0:52 / /srv/b\\134ack\\011tab\\012nl\\040\xff\xfe rw - tmpfs tmpfs rw\n"
        b"52 22 0:53 / /srv/nel\xc2\x85nbsp\xc2\xa0ls\xe2\x80\xa8end rw - tmpfs tmpfs rw\n"
    )
    parsed = mounts.parse_mountinfo(os.fsdecode(raw))
    assert [m.id for m in parsed] == [50, 51, 52]
    assert parsed[0].point == parsed[0].root == "/srv/dé x"
    assert os.fsencode(parsed[1].point) == b"/srv/b\\ack\ttab\nnl \xff\xfe"
    assert parsed[1].point == "/srv/b\\ack\ttab\nnl \udcff\udcfe"
    # str.split() and str.splitlines() would cut these names apart; the kernel's separators do not
    assert parsed[2].point == "/srv/nel\x85nbsp\xa0ls\u2028end"
    assert mounts.stack_at("/srv/dé x", parsed) == [parsed[0]]
    # a key recorded by the native secondary (json.dumps of the same string) is recognised
    recorded = json.loads(json.dumps([parsed[1].key]))
    assert mounts.ours_on_top([parsed[1]], recorded=recorded)


def test_the_mount_point_of_a_non_ascii_directory_is_found_in_this_namespace(tmp_path: Path) -> None:
    """read_mounts reads the kernel's bytes: a directory /tmp/.../dé x\\xff mounted over is found."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    target = os.fsencode(tmp_path) + b"/d\xc3\xa9 x\xff"
    os.mkdir(target)
    subprocess.run([b"mount", b"-t", b"tmpfs", b"-o", b"size=1m", b"skmnt", target], check=True)
    try:
        stack = mounts.mounts_at(os.fsdecode(target))
        assert [m.fstype for m in stack] == ["tmpfs"]
        assert os.fsencode(stack[0].point) == target
        mounts.detach(os.fsdecode(target))
        assert mounts.mounts_at(os.fsdecode(target)) == []
    finally:
        subprocess.run([b"umount", b"-l", target], check=False, capture_output=True)


def test_the_mount_point_is_named_without_resolving_its_last_component(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    # the parent is resolved (the kernel lists real paths) ...
    assert mounts.mount_point(str(tmp_path / "link" / "data")) == str(real / "data")
    # ... the last component is not: it may be a dead FUSE mount, a stat of which hangs
    (real / "last").symlink_to("/nonexistent")
    assert mounts.mount_point(str(real / "last")) == str(real / "last")
    assert mounts.mount_point(str(real / "x" / ".." / "y")) == str(real / "y")


def test_mount_point_never_stats_the_path_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = str(tmp_path / "dead-fuse")
    real_lstat = os.lstat

    def guarded(path: str, *args: object, **kwargs: object) -> os.stat_result:
        assert os.fspath(path) != target, "the dead mount point was looked through"
        return real_lstat(path)

    monkeypatch.setattr(os, "lstat", guarded)
    monkeypatch.setattr(os, "stat", guarded)
    assert mounts.mount_point(target) == os.path.join(os.path.realpath(tmp_path), "dead-fuse")


def test_detach_ours_removes_safekit_mounts_from_the_top_and_stops_at_a_users_mount(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = mounts.parse_mountinfo(MOUNTINFO)
    table.append(mounts.Mount(44, "0:50", "/0", "/srv/data", "fuse.safekit"))  # stacked twice
    detached: list[tuple[str, int]] = []

    def umount2(point: str, flags: int) -> None:
        detached.append((point, flags))
        top = mounts.stack_at(point, table)[-1]
        table.remove(top)

    monkeypatch.setattr(mounts, "read_mounts", lambda: list(table))
    monkeypatch.setattr(mounts, "_umount2", umount2)
    monkeypatch.setattr(mounts, "mount_point", lambda path: path)
    assert mounts.detach_ours("/srv/data") == 2
    assert detached == [("/srv/data", mounts.MNT_DETACH | mounts.UMOUNT_NOFOLLOW)] * 2
    assert [m.id for m in mounts.stack_at("/srv/data", table)] == [40]  # the user's mount stays
    assert mounts.detach_ours("/srv/data") == 0


def test_a_failed_unmount_is_reported_with_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    table = mounts.parse_mountinfo(MOUNTINFO)

    def umount2(point: str, flags: int) -> None:
        raise mounts.MountError(16, f"umount2 {point}: Device or resource busy")

    monkeypatch.setattr(mounts, "read_mounts", lambda: list(table))
    monkeypatch.setattr(mounts, "_umount2", umount2)
    monkeypatch.setattr(mounts, "mount_point", lambda path: path)
    with pytest.raises(mounts.MountError, match="/srv/data"):
        mounts.detach_ours("/srv/data")
