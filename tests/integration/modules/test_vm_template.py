"""The kvm_vm template on real lab hosts: a whole virtual machine under libvirt as a mirror module,
made with `safekit module new` and installed with `safekit module install`.

The lab has no /dev/kvm: the guest runs under QEMU's software emulation (TCG). It is tiny and built
here: Debian's cloud kernel and an initramfs of busybox-static whose `/init` mounts the VM's disk
(an ext4 image in the replicated directory) and serves HTTP - `/cgi-bin/add?N` appends N to a
file of that disk and answers `ok N` only after an fsync (a flush of the virtual disk, so an
fdatasync of the image by QEMU, so a replicated fsync); `/cgi-bin/list` shows the file. Clients
reach it through the module's virtual IP: the VM's definition forwards VIP:8080 to the guest's
port 80 (QEMU user networking; see the template's README for why, and for bridges on real hosts).

libvirtd runs on each lab host, started by the module's prestart. What the Debian package
libvirt-daemon-system sets up on a real host (the libvirt-qemu user, /etc/libvirt/qemu.conf) is
given to each lab host privately here: a lab host shares /etc and /var/lib with this machine.

The VM starts on node1; its QEMU is killed (a crash): the custom checker has it restarted there;
a client writes numbers through the VIP while node1 loses power; the VM boots on node2 from the
replicated image and every number the guest acknowledged is on its disk.
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
from tpl_lab import save_logs, wait_for

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.modules import install_modules
from safekit.lab.run_names import run_lab_name

LAB_NAME = run_lab_name("h16vm")
MODULE = "tplvm"
VM_NAME = "tinyvm"
VM_DIR = "/srv/tplvm"
GUEST_PORT = 8080
"""The port of the VIP forwarded to the guest's HTTP service (port 80 inside)."""
GUEST_MODULES = (
    "virtio_pci", "virtio_blk", "virtio_net", "button", "evdev",
)  # fmt: skip
"""Kernel modules the guest loads (with what they depend on): disk, network, the ACPI power button
(virsh shutdown) and the input events busybox acpid reads it from."""

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/order); do insmod "/lib/modules/$m.ko"; done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mount -t ext4 /dev/vda /data || echo "GUEST: cannot mount /dev/vda"
touch /data/log; sync /data/log
ip link set lo up; ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2
acpid -d -l /dev/console &
httpd -p 80 -h /www
echo "GUEST: ready, $(wc -l < /data/log) entries on the disk"
while :; do sleep 3600; done
"""
POWER_BUTTON = """#!/bin/sh
echo "GUEST: power button: stopping"
killall httpd; sync; umount /data && echo "GUEST: disk unmounted cleanly"
poweroff -f
"""
ADD = r"""#!/bin/sh
v=$(echo "$QUERY_STRING" | tr -cd 0-9)
if [ -n "$v" ] && echo "$v" >> /data/log && sync /data/log; then
    printf 'Content-Type: text/plain\r\n\r\nok %s\n' "$v"
else
    printf 'Status: 500 not written\r\nContent-Type: text/plain\r\n\r\nfailed\n'
fi
"""
LIST = r"""#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'; cat /data/log
"""

DOMAIN = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <uuid>6a1c2c55-3d0e-4c8e-9a57-1f6b0e51a016</uuid>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{dir}/vmlinuz</kernel>
    <initrd>{dir}/initrd.img</initrd>
    <cmdline>console=ttyS0 quiet edd=off panic=-1</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='writeback'/>
      <source file='{dir}/disk.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='/var/log/libvirt/qemu/{name}.serial.log' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='user,id=vmnet0,restrict=on,hostfwd=tcp:{vip}:{port}-:80'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=vmnet0,bus=pci.0,addr=0x10'/>
  </qemu:commandline>
</domain>
"""

QEMU_CONF = """# the lab's libvirt: QEMU as root, no security driver, cgroups or namespaces (a lab host is a
# network and mount namespace of this machine, without systemd)
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""
LIBVIRT_DIRS = ("/etc/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt")


# ---------------------------------------------------------------------- the guest


def _kernel() -> tuple[Path, str]:
    """Debian's cloud kernel (linux-image-cloud-amd64), the newest with its modules."""
    found = sorted(
        (p for p in Path("/boot").glob("vmlinuz-*") if Path("/lib/modules", p.name[8:]).is_dir()),
        key=lambda p: ("cloud" in p.name, p.stat().st_mtime),
    )
    assert found, (
        "no kernel in /boot with its modules: apt-get install linux-image-cloud-amd64 (make test-deps)"
    )
    return found[-1], found[-1].name[len("vmlinuz-") :]


def _modinfo(version: str, module: str, field: str | None = None) -> str:
    argv = ["modinfo", "-k", version, *(["-F", field] if field else ["-n"]), module]
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30).stdout.strip()


def _module_order(version: str) -> list[str]:
    """GUEST_MODULES and what they depend on, dependencies first."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        for dep in filter(None, _modinfo(version, name, "depends").split(",")):
            visit(dep)
        order.append(name)

    for name in GUEST_MODULES:
        visit(name)
    return order


def build_guest(where: Path) -> None:
    """vmlinuz, initrd.img and disk.img (16 MiB of ext4) of the tiny guest, in `where`."""
    busybox = shutil.which("busybox")
    assert busybox and _static(busybox), (
        "a static busybox is needed: apt-get install busybox-static (make test-deps)"
    )
    kernel, version = _kernel()
    root = where / "root"
    for sub in ("bin", "dev", "proc", "sys", "data", "www/cgi-bin", "etc/acpi/PWRF", "lib/modules"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(busybox, root / "bin" / "busybox")
    order = _module_order(version)
    for name in order:
        shutil.copy(_modinfo(version, name), root / "lib" / "modules" / f"{name}.ko")
    (root / "lib" / "modules" / "order").write_text("\n".join(order) + "\n")
    for path, text in {
        "init": INIT,
        "etc/acpi/PWRF/00000080": POWER_BUTTON,
        "www/cgi-bin/add": ADD,
        "www/cgi-bin/list": LIST,
    }.items():
        (root / path).write_text(text)
        (root / path).chmod(0o755)
    cpio = subprocess.run(
        "find . | cpio -o -H newc --quiet | gzip -1", shell=True, cwd=root, check=True, capture_output=True
    )
    (where / "initrd.img").write_bytes(cpio.stdout)
    shutil.copy(kernel, where / "vmlinuz")
    with (where / "disk.img").open("wb") as disk:
        disk.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(where / "disk.img")], check=True, timeout=60)
    shutil.rmtree(root)


def _static(program: str) -> bool:
    """Whether a program runs without shared libraries (in an initramfs that has none)."""
    done = subprocess.run(["ldd", program], capture_output=True, text=True, check=False)
    return "not a dynamic executable" in done.stdout + done.stderr


# ---------------------------------------------------------------------- the lab


def libvirt_host(lab: Lab, node: str) -> None:
    """A lab host gets what libvirt-daemon-system gives a real host, privately: its own libvirt
    directories (with the lab's qemu.conf) and the libvirt-qemu user libvirtd looks up."""
    base = lab.host_dir(node) / "libvirt"
    binds = []
    for path in LIBVIRT_DIRS:
        source = base / path.strip("/").replace("/", "-")
        source.mkdir(parents=True, exist_ok=True)
        binds.append((str(source), path))
    (base / "var-log-libvirt" / "qemu").mkdir(exist_ok=True)  # the guest's console log
    etc = base / "etc-libvirt"
    for conf in ("libvirt.conf", "libvirt-admin.conf"):
        if Path("/etc/libvirt", conf).is_file():
            shutil.copy(Path("/etc/libvirt", conf), etc / conf)
    (etc / "qemu.conf").write_text(QEMU_CONF)
    for table, line in (
        ("passwd", "libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin"),
        ("group", "libvirt-qemu:x:64055:"),
    ):
        text = Path("/etc", table).read_text()
        if not any(entry.startswith("libvirt-qemu:") for entry in text.splitlines()):
            text += line + "\n"
        (base / table).write_text(text)
        binds.append((str(base / table), f"/etc/{table}"))
    script = "set -e\n" + "".join(
        f"[ -e {target} ] || mkdir -p {target}\nmount --bind {source} {target}\n" for source, target in binds
    )
    lab.exec(node, ["sh", "-c", script], check=True)


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    for program in ("virsh", "libvirtd", "qemu-system-x86_64"):
        assert shutil.which(program), f"no {program}: make test-deps (libvirt and QEMU)"
    lab = Lab(LAB_NAME)
    lab.down()  # leftovers of an interrupted earlier run
    lab.up(nodes=2, witness=True, client=True)
    try:
        yield lab
    finally:
        lab.down()


def vip(lab: Lab) -> str:
    return str(lab.plan().vips[0])


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[LabCluster]:
    cluster = LabCluster(lab)
    for node in cluster.nodes:
        libvirt_host(lab, node)
    # The VM, on the node that will be the first primary: its data is the module's first copy.
    stage = Path(tempfile.mkdtemp(prefix="safekit-vm-", dir="/var/tmp"))  # lab hosts see /var/tmp
    try:
        build_guest(stage)
        (stage / f"{VM_NAME}.xml").write_text(
            DOMAIN.format(name=VM_NAME, dir=VM_DIR, vip=vip(lab), port=GUEST_PORT)
        )
        lab.exec("node1", ["sh", "-c", f"mkdir -p {VM_DIR} && cp {stage}/* {VM_DIR}/"], check=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    values = {
        "virtual_ip": vip(lab),
        "vm_name": VM_NAME,
        "vm_dir": VM_DIR,
        "shutdown_timeout": "30",
        "witness": str(lab.plan().host("witness").address),
        "heartbeat_port": "4840",
    }
    install_modules(cluster, {MODULE: ("kvm_vm", values)})
    for node in cluster.nodes:
        cluster.start_daemon(node)
    try:
        cluster.safekit("node1", "prim", "-m", MODULE)
        cluster.safekit("node2", "second", "-m", MODULE)
        cluster.wait_state("node1", MODULE, "PRIM", timeout=120)
        cluster.wait_state("node2", MODULE, "SECOND", timeout=120)
        yield cluster
    finally:
        save_logs(lab, cluster, [MODULE])
        for node in cluster.nodes:  # the guest's console, for a post-mortem
            if node not in lab.require_state().faults.killed:
                out = lab.exec(node, ["cat", f"/var/log/libvirt/qemu/{VM_NAME}.serial.log"]).stdout
                Path(f"/var/tmp/safekit-tpl-logs/{lab.name}.{node}.{VM_NAME}.serial.log").write_text(out)


def http_get(lab: Lab, path: str, timeout: float = 3) -> str | None:
    script = (
        "import sys, urllib.request\n"
        "print(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read().decode())"
    )
    url = f"http://{vip(lab)}:{GUEST_PORT}{path}"
    done = lab.exec("client", ["python3", "-c", script, url, str(timeout)], timeout=30)
    return done.stdout.strip() if done.returncode == 0 else None


def domstate(lab: Lab, node: str) -> str:
    done = lab.exec(node, ["virsh", "-q", "-c", "qemu:///system", "domstate", VM_NAME], timeout=30)
    return done.stdout.strip() if done.returncode == 0 else f"none ({done.stderr.strip()})"


def qemu_pid(lab: Lab, node: str) -> int | None:
    done = lab.exec(node, ["cat", f"/run/libvirt/qemu/{VM_NAME}.pid"])
    return int(done.stdout) if done.returncode == 0 and done.stdout.strip() else None


def userlog(lab: Lab, node: str) -> str:
    return lab.exec(node, ["cat", f"/var/log/safekit/modules/{MODULE}.userlog"]).stdout


# Run on the client: add 1, 2, 3, ... through the VIP until the stop file exists, each number once
# acknowledged (a failed or unanswered request is tried again with the same number). The
# acknowledged numbers are appended to ACKS as they come.
WRITER = r"""
import os, sys, time, urllib.request
url, acks, stop = sys.argv[1], sys.argv[2], sys.argv[3]
n = 1
with open(acks, "a") as out:
    while not os.path.exists(stop):
        try:
            with urllib.request.urlopen(f"{url}?{n}", timeout=2) as reply:
                if reply.read().decode().strip() == f"ok {n}":
                    out.write(f"{n}\n")
                    out.flush()
                    n += 1
                    continue
        except OSError:
            pass
        time.sleep(0.2)
"""


def acked(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


# ---------------------------------------------------------------------- the tests


def test_the_vm_runs_on_the_primary_and_serves_through_the_vip(lab: Lab, cluster: LabCluster) -> None:
    assert (
        wait_for("the guest's service through the VIP", lambda: http_get(lab, "/cgi-bin/add?0"), 90) == "ok 0"
    )
    assert domstate(lab, "node1") == "running"
    assert domstate(lab, "node2").startswith("none"), "the VM is defined on the secondary"
    log = userlog(lab, "node1")
    assert "prestart: libvirtd started (libvirtd --daemon); ready to start" in log, log
    assert (
        f"start_prim: VM {VM_NAME} defined from {VM_DIR}/{VM_NAME}.xml and started (was undefined" in log
    ), log
    denied = lab.exec("node2", ["sh", "-c", f"echo x > {VM_DIR}/intruder"])
    assert denied.returncode != 0, "the secondary's copy of the VM's directory is writable"


def test_the_checker_restarts_a_vm_that_died(lab: Lab, cluster: LabCluster) -> None:
    # acknowledged once (a request that timed out may have been written too: written twice, fine)
    assert wait_for("the guest's service", lambda: http_get(lab, "/cgi-bin/add?1"), 90) == "ok 1"
    pid = qemu_pid(lab, "node1")
    assert pid is not None
    lab.exec("node1", ["kill", "-9", str(pid)], check=True)  # the VM crashes
    wait_for(
        "a new QEMU on node1",
        lambda: domstate(lab, "node1") == "running" and qemu_pid(lab, "node1") not in (None, pid),
        60,
        interval=0.5,
    )
    listing = wait_for("the restarted guest's service", lambda: http_get(lab, "/cgi-bin/list"), 90)
    assert "1" in listing.split(), listing  # its disk is the one it had
    log = userlog(lab, "node1")
    assert f"stop_prim: VM {VM_NAME} was not running" in log, log
    assert cluster.state("node1", MODULE)["state"] == "PRIM"


def power_cut_keeps_acknowledged_writes(
    lab: Lab,
    url: str,
    survivor_alone: Callable[[], object],
    listing: Callable[[], str | None],
    node2_domain: Callable[[], str],
) -> dict[str, float]:
    """The guest's counter written from the client through `url` (its /cgi-bin/add) while node1,
    the primary, loses its power: the VM boots on node2 from the replicated image, takes writes
    again, and holds every number it acknowledged. Returns what the client saw."""
    work = Path(tempfile.mkdtemp(prefix="safekit-vm-writer-", dir="/var/tmp"))
    acks, stop = work / "acks", work / "stop"
    writer = subprocess.Popen(
        lab.exec_argv("client", [sys.executable, "-c", WRITER, url, str(acks), str(stop)])
    )
    try:
        wait_for("20 acknowledged writes", lambda: len(acked(acks)) >= 20, 60)
        lab.kill("node1")
        cut = time.monotonic()
        at_cut = len(acked(acks))
        wait_for("node2 ALONE", survivor_alone, 60, 0.5)
        # the VM boots on node2 from the replicated image, and takes writes again
        wait_for("a write acknowledged by the VM on node2", lambda: len(acked(acks)) > at_cut, 120, 0.05)
        outage = time.monotonic() - cut
        wait_for("writes acknowledged by the VM on node2", lambda: len(acked(acks)) >= at_cut + 5, 60)
    finally:
        stop.touch()
        writer.wait(timeout=30)
    written = acked(acks)
    assert node2_domain() == "running"
    listed = listing()
    assert listed is not None
    on_disk = {int(v) for v in listed.split()}
    missing = [n for n in written if n not in on_disk]
    assert not missing, f"acknowledged writes lost in the failover: {missing} (of {len(written)})"
    assert written == list(range(1, len(written) + 1))
    shutil.rmtree(work, ignore_errors=True)
    return {"acknowledged": len(written), "before_the_cut": at_cut, "outage_s": round(outage, 1)}


def test_acknowledged_writes_survive_a_power_cut(lab: Lab, cluster: LabCluster) -> None:
    wait_for("the guest's service", lambda: http_get(lab, "/cgi-bin/list"), 90)
    seen = power_cut_keeps_acknowledged_writes(
        lab,
        f"http://{vip(lab)}:{GUEST_PORT}/cgi-bin/add",
        lambda: cluster.wait_state("node2", MODULE, "ALONE", timeout=60),
        lambda: http_get(lab, "/cgi-bin/list"),
        lambda: domstate(lab, "node2"),
    )
    print(json.dumps(seen))


def test_a_stop_shuts_the_guest_down_through_acpi(lab: Lab, cluster: LabCluster) -> None:
    cluster.safekit("node2", "stop", "-m", MODULE, timeout=120)
    log = wait_for(
        "stop_prim's line", lambda: "stop_prim: VM" in (text := userlog(lab, "node2")) and text, 60
    )
    assert f"stop_prim: VM {VM_NAME} shut down by the guest (ACPI power button" in log, log
    cluster.wait_state("node2", MODULE, "STOP", ready=False, timeout=60)
    assert domstate(lab, "node2").startswith("none")
    console = lab.exec("node2", ["cat", f"/var/log/libvirt/qemu/{VM_NAME}.serial.log"]).stdout
    assert "GUEST: disk unmounted cleanly" in console
