"""Finding and removing safekit's mounts without ever looking through them (host/mounts.py)."""

from __future__ import annotations

import os
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
