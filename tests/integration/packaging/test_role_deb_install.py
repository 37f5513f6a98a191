"""The safekit.ha.node role with `safekit_install_source: deb` on a clean Debian 12 host whose PID 1
is systemd: the pre-flight passes, the package for the host's release and architecture is copied
and installed with apt-get (no python3-apt, no compiler, no route out), safekit.ha.engine enables
the package's unit without writing its own, cluster.xml is written by the packaged engine, and a
second run changes nothing.

Ansible runs inside the host (connection local, this machine's virtualenv bound read-only as the
controller; the node's modules run with the host's own /usr/bin/python3). Lab host: h25b
(SAFEKIT_PACKAGING_ROLE_LAB).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "systemd"))
from systemd_host import DEFAULT_ROOT, SystemdHost, booted, build_root

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[3]
NAME = os.environ.get("SAFEKIT_PACKAGING_ROLE_LAB", "h25b")
ADDRESS = "198.18.172.1"
VENV = Path(sys.prefix)
PLAY = """
- name: The engine from its Debian package
  hosts: safekit_nodes
  gather_facts: false
  roles:
    - safekit.ha.node
"""
INVENTORY = f"""
safekit_nodes:
  hosts:
    {NAME}:
      ansible_connection: local
      ansible_python_interpreter: /usr/bin/python3
      safekit_addresses: {{default: {ADDRESS}}}
  vars:
    safekit_install_source: deb
    safekit_deb_dir: DEB_DIR
"""


@pytest.fixture(scope="module")
def deb(root_required: None) -> Path:
    result = subprocess.run(
        [sys.executable, str(REPO / "packaging" / "build_deb.py"), "--suite", "bookworm"],
        capture_output=True,
        text=True,
        timeout=2400,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def host(deb: Path) -> Iterator[SystemdHost]:
    base = build_root(Path(os.environ.get("SAFEKIT_SYSTEMD_ROOT", DEFAULT_ROOT)))
    binds = sorted({deb.parent, VENV, Path(sys.base_prefix).resolve(), REPO})
    with booted(NAME, base, binds) as h:
        h.sh(f"echo {NAME} > /etc/hostname && hostname {NAME}")
        h.sh(
            "ip link set lo up && ip link add lan0 type veth peer name lan0p && "
            f"ip addr add {ADDRESS}/24 dev lan0 && ip link set lan0 up && ip link set lan0p up"
        )
        h.write("/root/play/site.yml", PLAY)
        h.write("/root/play/inventory.yml", INVENTORY.replace("DEB_DIR", str(deb.parent)))
        yield h


def playbook(h: SystemdHost) -> tuple[dict[str, int], str]:
    env = (
        f"ANSIBLE_CONFIG={REPO}/ansible.cfg ANSIBLE_ROLES_PATH={REPO}/roles "
        f"ANSIBLE_COLLECTIONS_PATH={REPO}/collections ANSIBLE_NOCOLOR=1 ANSIBLE_LOCAL_TEMP=/root/.ansible/tmp"
    )
    result = h.run(
        ["sh", "-c", f"cd /root/play && env {env} {VENV}/bin/ansible-playbook -i inventory.yml site.yml"],
        check=False,
        timeout=600,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    recap = re.search(rf"^{NAME}\s*: (.*)$", out, re.MULTILINE)
    assert recap, out
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap.group(1))}
    return counts, out


def test_the_role_installs_the_package_and_a_second_run_changes_nothing(host: SystemdHost, deb: Path) -> None:
    assert host.sh("dpkg-query -W -f='${Status}' python3-apt 2>/dev/null || true") != "install ok installed"
    first, out = playbook(host)
    assert first["changed"] > 0 and first["failed"] == 0, out
    assert "Install the Debian package" in out
    version = deb.name.split("_")[1]
    assert host.sh("dpkg-query -W -f='${Status} ${Version}' safekit") == f"install ok installed {version}"
    # the package's unit, enabled by safekit.ha.engine, none written by the module
    unit = host.show("safekitd", "FragmentPath", "UnitFileState", "ActiveState")
    assert unit["FragmentPath"] == "/lib/systemd/system/safekitd.service"
    assert unit["UnitFileState"] == "enabled"
    assert host.run(["test", "-e", "/etc/systemd/system/safekitd.service"], check=False).returncode != 0
    # cluster.xml written and validated by the packaged engine
    assert f'addr="{ADDRESS}"' in host.sh("cat /etc/safekit/cluster.xml")
    again, out = playbook(host)
    assert again["changed"] == 0 and again["failed"] == 0, out
