"""The lab's list of its mounts (safekit.lab.system.mounts_under) reads a mount point whose name
is not UTF-8, another program's: `make test` failed once when a lab came up while
tests/native/test_secondary.py had a tmpfs mounted on a path with a 0xff byte."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from safekit.lab import system

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount)")


def test_a_mount_point_that_is_not_utf8_is_listed_not_refused(tmp_path: Path) -> None:
    odd = Path(os.fsdecode(os.fsencode(tmp_path) + b"/odd-\xff"))
    odd.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "sklabodd", str(odd)], check=True)
    try:
        assert system.mounts_under(tmp_path) == [str(odd)]
    finally:
        subprocess.run(["umount", "-l", str(odd)], check=False)
