"""playbooks/examples/kvm_vm.yml on fresh lab hosts: the kvm_vm template (a libvirt VM as a mirror
module) deployed through the roles, as its playbook says: the VM's definition and disks put in the
VM directory of the first primary beforehand. The VM runs on the primary only and answers through
the VIP; a second run changes nothing and leaves the VM running. Then the primary loses its power
while the client writes to the guest's counter: the VM boots on node2 from the replicated image and
holds every number it acknowledged (issue 16's test of each template deployed by its playbook).

The guest, the lab's libvirt and the definition are those of the template's own lab test
(tests/integration/modules/test_vm_template.py): a tiny busybox guest under QEMU's TCG whose HTTP
service the definition forwards from VIP:8080.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ansible_lab_runs import ROOT, Recap, fresh_lab, run_playbook

from safekit.lab import Lab

sys.path.insert(0, str(ROOT / "tests" / "integration" / "modules"))
from test_vm_template import DOMAIN, build_guest, libvirt_host, power_cut_keeps_acknowledged_writes

VM = "vm1"  # the playbook's default safekit_vm_name, also the module's name
VM_DIR = "/srv/vm"  # safekit_template_vm_dir in the playbook
PORT = 8080


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    for program in ("virsh", "libvirtd", "qemu-system-x86_64"):
        assert shutil.which(program), f"no {program}: make test-deps (libvirt and QEMU)"
    labs = fresh_lab("md16vm")
    lab = next(labs)
    try:
        for node in ("node1", "node2"):
            libvirt_host(lab, node)
        # The VM on the node that will be the first primary, as the playbook's header asks.
        stage = Path(tempfile.mkdtemp(prefix="safekit-vm-", dir="/var/tmp"))  # lab hosts see /var/tmp
        try:
            build_guest(stage)
            vip = lab.plan().vips[0]
            (stage / f"{VM}.xml").write_text(DOMAIN.format(name=VM, dir=VM_DIR, vip=vip, port=PORT))
            lab.exec("node1", ["sh", "-c", f"mkdir -p {VM_DIR} && cp {stage}/* {VM_DIR}/"], check=True)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        yield lab
    finally:
        labs.close()  # the lab goes down


def playbook(lab: Lab) -> tuple[subprocess.CompletedProcess[str], Recap]:
    return run_playbook(lab, "examples/kvm_vm.yml")


def state(lab: Lab, node: str) -> tuple[str, str]:
    out = lab.exec(node, ["/opt/safekit/venv/bin/safekit", "state", "-m", VM, "--json"], check=True)
    module = json.loads(out.stdout)["modules"][0]
    return module["state"], module["readiness"]


def domstate(lab: Lab, node: str) -> str:
    done = lab.exec(node, ["virsh", "-q", "-c", "qemu:///system", "domstate", VM], timeout=30)
    return done.stdout.strip() if done.returncode == 0 else "undefined"


def guest(lab: Lab, path: str) -> str | None:
    code = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())"
    url = f"http://{lab.plan().vips[0]}:{PORT}{path}"
    done = lab.exec("client", ["python3", "-c", code, url], timeout=30)
    return done.stdout.strip() if done.returncode == 0 else None


def wait_for(what: str, check: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {timeout:g} s"
        time.sleep(1)


@pytest.mark.timeout(1200)  # two whole deployments and a guest boot: 159 s then 106 s at load 11
def test_the_vm_playbook_runs_the_vm_on_the_primary_then_changes_nothing(lab: Lab) -> None:
    started = time.monotonic()
    first, recap = playbook(lab)
    first_run = time.monotonic() - started
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert recap["node1"]["failed"] == 0 and recap["node1"]["changed"] > 0
    assert state(lab, "node1") == ("PRIM", "Ready")
    assert state(lab, "node2") == ("SECOND", "Ready")
    # Only the primary knows the VM; the guest (booted from the replicated directory) answers
    # through the VIP and acknowledges a write only after its disk has it.
    assert domstate(lab, "node1") == "running"
    assert domstate(lab, "node2") == "undefined"
    wait_for("the guest through the VIP", lambda: guest(lab, "/cgi-bin/add?7") == "ok 7", 120)
    assert lab.exec("node2", ["test", "-s", f"{VM_DIR}/disk.img"]).returncode == 0

    started = time.monotonic()
    second, recap = playbook(lab)
    second_run = time.monotonic() - started
    assert second.returncode == 0, second.stdout[-4000:]
    assert all(host["changed"] == 0 for host in recap.values()), recap
    assert state(lab, "node1") == ("PRIM", "Ready"), "a second run restarts nothing"
    assert domstate(lab, "node1") == "running"
    assert "7" in (guest(lab, "/cgi-bin/list") or "").split(), "the guest kept its disk"
    print(f"first run: {first_run:.1f} s, second run: {second_run:.1f} s")


@pytest.mark.timeout(600)
def test_the_guests_acknowledged_writes_survive_a_power_cut_of_the_primary(lab: Lab) -> None:
    """Follows the deployment above (the module's lab): node1 PRIM, the guest answering."""
    assert state(lab, "node1") == ("PRIM", "Ready"), "the deployment test runs first"
    seen = power_cut_keeps_acknowledged_writes(
        lab,
        f"http://{lab.plan().vips[0]}:{PORT}/cgi-bin/add",
        lambda: state(lab, "node2") == ("ALONE", "Ready"),
        lambda: guest(lab, "/cgi-bin/list"),
        lambda: domstate(lab, "node2"),
    )
    print(json.dumps(seen))
