"""safekit.ha.engine never deletes or overwrites an engine that a Debian package owns (make deb's
/opt/safekit/venv): state=absent and a wheelhouse install fail in one line, naming the package and
the way that removes or upgrades it, and change nothing. dpkg is a fake `dpkg-query` first in PATH
that answers `--search` for the paths it is given as the package's."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from safekit_collection import run_module

# isort: split
from ansible_collections.safekit.ha.plugins.module_utils.decisions import dpkg_owners, packaged_engine_refusal

FAKE_DPKG_QUERY = """#!/bin/sh
# dpkg-query --search PATH...: the package's for the paths in OWNED, an error for the others
echo "$*" >> {calls}
[ "$1" = --search ] || exit 2
shift
rc=0
for path in "$@"; do
    if grep -qxF "$path" {owned}; then echo "safekit: $path"; else
        echo "dpkg-query: no path found matching pattern $path" >&2; rc=1; fi
done
exit $rc
"""


def test_dpkg_owners_reads_the_search_output() -> None:
    out = (
        "safekit: /opt/safekit/venv\n"
        "safekit:amd64: /opt/safekit/venv/bin/safekitd\n"
        "diversion by other from: /opt/safekit/venv/bin/safekitd\n"
        "libc6:amd64, libc6-dev:amd64: /usr/lib\n"
    )
    assert dpkg_owners(out) == ["libc6", "libc6-dev", "safekit"]
    assert dpkg_owners("") == []
    assert dpkg_owners("diversion by other to: /x.distrib\n") == []


def test_the_refusal_is_one_line_naming_the_package_and_the_way_out() -> None:
    assert packaged_engine_refusal("/opt/safekit/venv", [], "remove") is None
    msg = packaged_engine_refusal("/opt/safekit/venv", ["safekit", "safekit"], "remove")
    assert msg is not None and "\n" not in msg
    assert msg.startswith("/opt/safekit/venv belongs to the Debian package safekit: ")
    assert "will not remove it" in msg
    assert "playbooks/remove.yml" in msg and "apt-get remove safekit" in msg


@pytest.fixture
def dpkg(tmp_path: Path) -> Iterator[tuple[Path, Path, dict[str, str]]]:
    """A fake dpkg-query on PATH; the file of the paths it says the package owns; its calls."""
    bin_dir, owned, calls = tmp_path / "fakebin", tmp_path / "owned", tmp_path / "calls"
    bin_dir.mkdir()
    owned.write_text("")
    query = bin_dir / "dpkg-query"
    query.write_text(FAKE_DPKG_QUERY.format(calls=calls, owned=owned))
    query.chmod(0o755)
    yield owned, calls, {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def packaged_venv(tmp_path: Path) -> Path:
    """What the package unpacks: the virtualenv with safekitd in its bin/."""
    venv = tmp_path / "opt" / "safekit" / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "safekitd").write_text("#!/bin/sh\n")
    (venv / "lib").mkdir()
    (venv / "lib" / "engine.py").write_text("")
    return venv


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def daemon() -> Iterator[int]:
    """The pid of a live process standing for the package's safekitd: not this test's child (the
    shell that started it has exited), so that a SIGTERM makes it go away instead of a zombie."""
    pid = int(
        subprocess.run(
            ["sh", "-c", "sleep 120 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True, check=True
        ).stdout
    )
    yield pid
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def install(tmp_path: Path, env: dict[str, str], args: dict[str, Any], check: bool = False) -> dict[str, Any]:
    return run_module("engine", args, tmp_path, env, check=check)


@pytest.mark.parametrize("check", [False, True])
def test_absent_refuses_the_package_engine_and_changes_nothing(
    tmp_path: Path, dpkg: tuple[Path, Path, dict[str, str]], daemon: int, check: bool
) -> None:
    owned, calls, env = dpkg
    venv = packaged_venv(tmp_path)
    owned.write_text(f"{venv}\n{venv}/bin/safekitd\n")
    pidfile = tmp_path / "safekitd.pid"
    pidfile.write_text(f"{daemon}\n")
    before = tree(venv)
    args = {"venv": str(venv), "service": "supervised", "pidfile": str(pidfile), "state": "absent"}
    answer = install(tmp_path, env, args, check=check)
    assert answer.get("failed") and not answer.get("changed"), answer
    assert "\n" not in answer["msg"] and "belongs to the Debian package safekit" in answer["msg"], answer
    assert "apt-get remove safekit" in answer["msg"] and "playbooks/remove.yml" in answer["msg"]
    assert tree(venv) == before
    assert alive(daemon), "the daemon was stopped"
    assert pidfile.read_text() == f"{daemon}\n"
    assert f"--search {venv} {venv}/bin/safekitd" in calls.read_text()


def test_absent_still_removes_an_engine_no_package_owns(
    tmp_path: Path, dpkg: tuple[Path, Path, dict[str, str]], daemon: int
) -> None:
    """The same tree, dpkg knowing none of it (a wheelhouse install): removed, the daemon stopped."""
    _owned, calls, env = dpkg
    venv = packaged_venv(tmp_path)
    pidfile = tmp_path / "safekitd.pid"
    pidfile.write_text(f"{daemon}\n")
    args = {"venv": str(venv), "service": "supervised", "pidfile": str(pidfile), "state": "absent"}
    answer = install(tmp_path, env, args)
    assert answer["changed"] and not answer.get("failed"), answer
    assert not venv.exists()
    deadline = time.monotonic() + 10
    while alive(daemon) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(daemon)
    assert calls.read_text()  # dpkg was asked


def test_a_wheelhouse_install_over_the_package_engine_is_refused(
    tmp_path: Path, dpkg: tuple[Path, Path, dict[str, str]]
) -> None:
    owned, _calls, env = dpkg
    venv = packaged_venv(tmp_path)
    owned.write_text(f"{venv}\n")
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    with zipfile.ZipFile(wheelhouse / "safekit-9.1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("safekit/__init__.py", "")
    before = tree(venv)
    answer = install(tmp_path, env, {"venv": str(venv), "service": "none", "wheelhouse": str(wheelhouse)})
    assert answer.get("failed") and "will not overwrite it" in answer["msg"], answer
    assert tree(venv) == before
