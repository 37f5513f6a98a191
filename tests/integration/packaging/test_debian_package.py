"""The Debian package of the engine (packaging/build_deb.py) on a clean Debian 12 host.

The package is built (or taken from its cache, keyed by its inputs) and installed with apt, without
downloading anything, into a lab host booted from the same debootstrap root as the systemd tests
(tests/integration/systemd/systemd_host.py): Debian 12's Python and libraries, systemd as PID 1, no
compiler, none of this machine's virtualenv or source bound in. From the package alone: the
commands run, safekitd starts from the shipped unit and brings a mirror module with a replicated
directory (the native primary from /opt/safekit/libexec, against Debian's libfuse3) to ALONE;
removal stops it through its stop script and leaves no file of the package; purge leaves nothing
of safekit but the user's modules.

SAFEKIT_PACKAGING_LAB names the lab host (default h25a); SAFEKIT_DEB_SUITE=trixie runs the same on
Debian 13 (a trixie root made by debootstrap the first time, /var/tmp/safekit-systemd/trixie).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "systemd"))
import systemd_host
from systemd_host import DEFAULT_ROOT, SystemdHost, booted, build_root

from safekit.membership import clusterkey

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[3]
SUITE = os.environ.get("SAFEKIT_DEB_SUITE", "bookworm")
PYTHON = {"bookworm": "python3.11", "trixie": "python3.13"}[SUITE]
UNIT = {"bookworm": "/lib/systemd/system", "trixie": "/usr/lib/systemd/system"}[SUITE] + "/safekitd.service"
NAME = os.environ.get("SAFEKIT_PACKAGING_LAB", "h25a")
ADDRESS = "198.18.171.1"
MODULE = "app"
CLUSTER = f"""<cluster>
  <lans>
    <lan name="default">
      <node name="{NAME}" addr="{ADDRESS}"/>
      <node name="peer" addr="198.18.171.2"/>
    </lan>
  </lans>
</cluster>
"""
USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone" failover="on">
  <heart>
    <heartbeat name="default"/>
  </heart>
  <rfs async="second">
    <replicated dir="/srv/data"/>
  </rfs>
  <user nicestoptimeout="20s" forcestoptimeout="20s"/>
</service>
</safe>
"""
SCRIPT = '#!/bin/sh\necho "{name} $*" >> /var/lib/events\n'
SCRIPTS = ("prestart", "start_prim", "stop_prim", "start_second", "stop_second", "poststop")


@pytest.fixture(scope="module")
def deb(root_required: None) -> Path:
    """build/deb/safekit_VERSION_ARCH.deb for SUITE: seconds when cached, minutes when not."""
    result = subprocess.run(
        [sys.executable, str(REPO / "packaging" / "build_deb.py"), "--suite", SUITE],
        capture_output=True,
        text=True,
        timeout=2400,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.stderr.write(result.stdout)
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def host(deb: Path) -> Iterator[SystemdHost]:
    if SUITE == "bookworm":
        base = build_root(Path(os.environ.get("SAFEKIT_SYSTEMD_ROOT", DEFAULT_ROOT)))
    else:
        # the lab root's packages, with trixie's libfuse3 (its soname moved to 4)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(systemd_host, "PACKAGES", systemd_host.PACKAGES.replace("libfuse3-3", "libfuse3-4"))
            base = build_root(DEFAULT_ROOT.parent / SUITE, suite=SUITE)
    with booted(NAME, base, [deb.parent]) as h:
        # The node is found by its host name: debootstrap copied this machine's /etc/hostname, which
        # trixie's systemd applies at boot. (Found by address instead, safekitd fails: pyroute2's
        # IPRoute() inside the daemon's running event loop - reported, not fixed here.)
        h.sh(f"echo {NAME} > /etc/hostname && hostname {NAME}")
        h.sh(
            "ip link set lo up && ip link add lan0 type veth peer name lan0p && "
            f"ip addr add {ADDRESS}/24 dev lan0 && ip link set lan0 up && ip link set lan0p up"
        )
        yield h


def files_of_the_package(h: SystemdHost) -> list[str]:
    return [p for p in h.sh("dpkg -L safekit").splitlines() if p != "/."]


def state(h: SystemdHost) -> dict[str, Any]:
    result = h.run(["safekit", "state", "-m", MODULE, "--json"], check=False, timeout=30)
    if result.returncode != 0:
        return {}
    module: dict[str, Any] = json.loads(result.stdout)["modules"][0]
    return module


def test_installs_without_a_compiler_nor_a_download(host: SystemdHost, deb: Path) -> None:
    assert host.sh("command -v gcc cc python3-config x86_64-linux-gnu-gcc || true").strip() == ""
    started = time.monotonic()
    # The host's network namespace has no route out (its only link is the lab's): nothing can be
    # downloaded, every dependency must already be on a Debian 12 system like this one.
    assert "default" not in host.sh("ip route")
    out = host.sh(f"DEBIAN_FRONTEND=noninteractive apt-get install -y {deb}", timeout=600)
    seconds = time.monotonic() - started
    sys.stderr.write(f"apt-get install {deb.name} ({deb.stat().st_size / 1e6:.1f} MB): {seconds:.1f} s\n")
    assert "0 upgraded, 1 newly installed, 0 to remove" in out, out
    assert host.sh("dpkg-query -W -f='${Status}' safekit") == "install ok installed"
    # every shared library the package's programs and Python extensions load is found on the node
    missing = host.sh(
        "find /opt/safekit -type f \\( -name '*.so*' -o -perm -u+x \\) -exec sh -c "
        '\'head -c4 "$1" | grep -q ELF && ldd "$1" | sed "s|^|$1: |"\' _ {} \\; | grep \'not found\' || true'
    )
    assert missing == ""
    # the engine runs the node's own Python, not this machine's
    assert host.sh("readlink -f /opt/safekit/venv/bin/python").strip() == f"/usr/bin/{PYTHON}"


def test_commands_and_native_programs(host: SystemdHost) -> None:
    version = host.sh("safekit --version").strip()
    assert version.startswith("safekit ")
    assert host.sh("safekitd --version").strip() == "safekitd " + version.split()[1]
    assert host.sh("dpkg-query -W -f='${Version}' safekit").startswith(
        version.split()[1].replace(".dev", "~~dev")
    )
    for program in ("safekit-rfs-primary", "safekit-rfs-secondary"):
        assert host.run(["test", "-x", f"/opt/safekit/libexec/{program}"], check=False).returncode == 0
    # safekitd finds them with no setting (the native programs are the only engine: docs/adr/0029)
    look = "from safekit.rfs import native; print(native.find_program('primary', {}).resolve())"
    found = host.run(["env", "-i", "/opt/safekit/venv/bin/python", "-c", look]).stdout
    assert found.strip() == "/opt/safekit/libexec/safekit-rfs-primary"


def test_the_unit_is_in_place_neither_enabled_nor_started(host: SystemdHost) -> None:
    unit = host.show("safekitd", "FragmentPath", "UnitFileState", "ActiveState", "Type", "KillMode")
    assert unit == {
        "FragmentPath": UNIT,
        "UnitFileState": "disabled",
        "ActiveState": "inactive",
        "Type": "notify",
        "KillMode": "process",
    }
    shipped = (REPO / "packaging" / "systemd" / "safekitd.service").read_text()
    assert host.sh(f"cat {UNIT}") == shipped


def test_safekitd_from_the_package_runs_a_replicated_module(host: SystemdHost) -> None:
    key = clusterkey.encode_key_file(clusterkey.generate_key())
    host.write("/etc/safekit/cluster.xml", CLUSTER)
    host.write("/etc/safekit/cluster.key", key, 0o600)
    host.write(f"/opt/safekit/modules/{MODULE}/conf/userconfig.xml", USERCONFIG)
    for name in SCRIPTS:
        host.write(f"/opt/safekit/modules/{MODULE}/bin/{name}", SCRIPT.format(name=name), 0o755)
    # what the roles do once the node is configured
    host.run(["systemctl", "enable", "--now", "safekitd"], timeout=120)
    host.run(["safekit", "prim", "-m", MODULE], timeout=60)
    deadline = time.monotonic() + 60
    current = state(host)
    while not (current.get("state") == "ALONE" and current.get("readiness") == "Ready"):
        assert time.monotonic() < deadline, (
            f"{current}\n{host.sh('journalctl -u safekitd -o cat', check=False)}"
        )
        time.sleep(0.3)
        current = state(host)
    assert host.sh("findmnt -n -o FSTYPE /srv/data").strip().startswith("fuse")
    host.sh("echo kept > /srv/data/probe")


def test_remove_stops_the_module_and_leaves_no_file_of_the_package(host: SystemdHost) -> None:
    files = files_of_the_package(host)
    assert "/opt/safekit/venv/bin/safekitd" in files
    host.sh("DEBIAN_FRONTEND=noninteractive apt-get remove -y safekit", timeout=300)
    assert host.show("safekitd", "ActiveState")["ActiveState"] in ("inactive", "")
    assert "stop_prim" in host.sh("cat /var/lib/events")
    assert host.sh("dpkg-query -W -f='${Status}' safekit") == "deinstall ok config-files"
    assert host.sh("dpkg-query -W -f='${Conffiles}' safekit").strip() == ""
    # what is still there, but for what other installed packages own too (/usr/bin, /lib)
    exists = (
        'for f in "$@"; do if [ -e "$f" ] || [ -L "$f" ]; then '
        'dpkg -S "$f" >/dev/null 2>&1 || echo "$f"; fi; done'
    )
    # /opt/safekit stays only because it holds the application modules (the user's, kept)
    left = host.run(["sh", "-c", exists, "-", *(f for f in files if f != "/opt/safekit")]).stdout.split()
    assert left == []
    assert host.sh("ls -A /opt/safekit").split() == ["modules"]
    assert host.sh("find /etc/systemd -name 'safekitd*'") == ""
    # the configuration and state are the user's until purge
    assert {"cluster.key", "cluster.xml"} <= set(host.sh("ls /etc/safekit").split())
    assert host.sh("cat /srv/data/probe").strip() == "kept"


def test_purge_leaves_nothing_but_the_users_modules(host: SystemdHost) -> None:
    host.sh("dpkg --purge safekit", timeout=120)
    assert host.sh("dpkg-query -W -f='${Status}' safekit 2>/dev/null || true") in (
        "",
        "unknown ok not-installed",
    )
    left = host.sh(
        "ls -d /etc/safekit /var/safekit /var/log/safekit /run/safekit /opt/safekit/venv 2>/dev/null || true"
    )
    assert left == ""
    assert host.sh("ls /opt/safekit").split() == ["modules"]
