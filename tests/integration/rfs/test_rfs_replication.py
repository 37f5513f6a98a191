"""Replication (rfs) on real lab hosts: FUSE on the primary, the secondary's receiver, failover with
fsync'd data, reintegration, fullsync, verify, forged packets and a full disk on the secondary.

One lab and one module for the file; the tests run in order, each leaving a primary and an
in-sync secondary behind (which node is which is tracked in `ROLES`). The replication processes are
the native programs of this checkout (native/build, `make -C native`), the only data path (ADR 0029).
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rfs_lab import install_module, lab_up, running
from rfs_processes import rfs_programs, rfs_role

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.membership import clusterkey
from safekit.rfs import native

MODULE = "rep"
DATA = "/srv/data"
USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone" failover="on" maxloop="10" loop_interval="24h">
  <heart>
    <heartbeat name="default"/>
  </heart>
  <rfs async="second" sendtimeout="3s">
    <replicated dir="/srv/data">
      <notreplicated path="scratch"/>
      <notreplicated regexpath=".*\\.tmp"/>
    </replicated>
  </rfs>
</service>
</safe>
"""

# Appends numbered 4 KiB records with fsync after each, and prints the number of every record
# whose fsync returned: what the application was told is durable.
WRITER = r"""
import os, sys
path = sys.argv[1] if len(sys.argv) > 1 else "/srv/data/journal.bin"
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
n = 0
while True:
    os.write(fd, n.to_bytes(8, "big") * 512)
    os.fsync(fd)
    print(n, flush=True)
    n += 1
"""

# How many whole records the copy holds, and the first one that is not what the writer wrote (-1).
CHECK_RECORDS = r"""
raw = open("/srv/data/journal.bin", "rb").read()
bad = -1
for n in range(len(raw) // 4096):
    if raw[n * 4096 : (n + 1) * 4096] != n.to_bytes(8, "big") * 512:
        bad = n
        break
print(len(raw) // 4096, bad)
"""

# The tree under /srv/data as path -> sha256 (files), "dir", or "-> target" (symlinks), plus
# modes and owners: what must be identical on both nodes.
TREE = r"""
import hashlib, json, os, stat, sys
root = sys.argv[1]
out = {}
for dirpath, dirs, files in os.walk(root):
    dirs.sort()
    for name in sorted(dirs + files):
        p = os.path.join(dirpath, name)
        rel = os.path.relpath(p, root)
        if rel == "scratch" or rel.startswith("scratch/") or rel.endswith(".tmp"):
            continue
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            what = "-> " + os.readlink(p)
        elif stat.S_ISDIR(st.st_mode):
            what = "dir"
        elif not stat.S_ISREG(st.st_mode):
            what = "special"
        else:
            with open(p, "rb") as f:
                what = hashlib.sha256(f.read()).hexdigest()
        out[rel] = [what, oct(st.st_mode), st.st_uid, st.st_gid]
print(json.dumps(out, sort_keys=True))
"""


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    yield from lab_up("itrfs", nodes=2, lans=1)


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[LabCluster]:
    cluster = install_module(lab, MODULE, USERCONFIG)
    # node1 has the data before the module ever starts; node2 has an unrelated old copy.
    sh(
        lab,
        "node1",
        f"mkdir -p {DATA}/sub/deep {DATA}/scratch && cd {DATA} && "
        "head -c 3000000 /dev/urandom > big.bin && echo hello > sub/hello.txt && "
        "echo deep > sub/deep/f && ln -s sub/hello.txt link && chmod 640 sub/hello.txt && "
        "chown 1234:2345 sub/deep/f && echo local > scratch/x && echo t > a.tmp",
    )
    sh(lab, "node2", f"mkdir -p {DATA}/stale && echo old > {DATA}/stale/file && echo old > {DATA}/big.bin")
    yield from running(lab, cluster, MODULE)


ROLES = {"primary": "node1", "secondary": "node2"}


def sh(lab: Lab, node: str, script: str, check: bool = True, timeout: float = 60) -> str:
    result = lab.exec(node, ["sh", "-c", script], timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{node}: {script}: {result.stderr or result.stdout}")
    return result.stdout


def tree(lab: Lab, node: str) -> dict[str, list[object]]:
    out = lab.exec(node, ["python3", "-c", TREE, DATA], check=True).stdout
    data: dict[str, list[object]] = json.loads(out)
    return data


def tree_with_excluded(lab: Lab, node: str) -> list[str]:
    """Every path under the directory, the notreplicated ones included."""
    out = sh(lab, node, f"cd {DATA} && find . -mindepth 1 | sed 's|^./||'")
    return out.split()


def wait_in_sync(cluster: LabCluster, timeout: float = 60) -> None:
    cluster.wait_state(ROLES["primary"], MODULE, "PRIM", timeout=timeout)
    cluster.wait_state(ROLES["secondary"], MODULE, "SECOND", timeout=timeout)


def verify(cluster: LabCluster) -> dict[str, object]:
    out = cluster.safekit(ROLES["primary"], "rfs", "verify", "-m", MODULE, "--json", timeout=120).stdout
    result: dict[str, object] = json.loads(out)
    return result


def assert_identical(lab: Lab, cluster: LabCluster) -> None:
    """Both copies hold the same tree: `safekit rfs verify` (both compared at one point of the
    operation order, every file's block checksums)."""
    result = verify(cluster)
    assert result["identical"] is True, result


def test_first_start_copies_the_primarys_data(lab: Lab, cluster: LabCluster) -> None:
    cluster.safekit("node1", "prim", "-m", MODULE)
    cluster.wait_state("node1", MODULE, "ALONE", timeout=30)
    cluster.safekit("node2", "second", "-m", MODULE)
    wait_in_sync(cluster)
    mine, theirs = tree(lab, "node1"), tree(lab, "node2")
    assert mine == theirs
    assert "big.bin" in theirs and "stale" not in theirs  # the secondary's own old copy is gone
    assert theirs["sub/deep/f"][2:] == [1234, 2345] and theirs["link"][0] == "-> sub/hello.txt"
    for node, role in (("node1", "primary"), ("node2", "secondary")):
        replication = cluster.state(node, MODULE)["replication"]
        assert (replication["role"], replication["engine"]) == (role, "native"), replication
        assert [Path(p).name for p in rfs_programs(lab, node)] == [f"safekit-rfs-{role}"]
        shown = cluster.safekit(node, "state", "-m", MODULE, "-v").stdout
        assert f"replication {role} (native engine)" in shown, shown
    # the primary serves it through FUSE (the mount over the directory, or a bind of it)
    assert f" {DATA} fuse.safekit " in sh(lab, "node1", "cat /proc/self/mounts")
    assert_identical(lab, cluster)


def test_notreplicated_paths_stay_local_on_each_side(lab: Lab, cluster: LabCluster) -> None:
    assert "scratch/x" not in set(tree_with_excluded(lab, ROLES["secondary"]))
    assert sh(lab, ROLES["primary"], f"cat {DATA}/scratch/x").strip() == "local"


def test_applications_on_the_secondary_cannot_write_the_copy(lab: Lab, cluster: LabCluster) -> None:
    denied = lab.exec(ROLES["secondary"], ["sh", "-c", f"echo x > {DATA}/intruder"])
    if denied.returncode == 0:  # the copy diverged: put it back for the tests that follow
        sh(lab, ROLES["secondary"], f"rm -f {DATA}/intruder")
    assert denied.returncode != 0 and "Read-only" in denied.stderr


def test_the_mount_is_named_after_the_module(lab: Lab, cluster: LabCluster) -> None:
    assert f"safekit-{MODULE} {DATA} fuse.safekit " in sh(lab, ROLES["primary"], "cat /proc/self/mounts")


def test_hard_links_are_replicated(lab: Lab, cluster: LabCluster) -> None:
    primary, secondary = ROLES["primary"], ROLES["secondary"]
    link = lab.exec(primary, ["ln", f"{DATA}/big.bin", f"{DATA}/hard"])
    assert link.returncode == 0, link.stderr
    inodes = f"stat -c %i {DATA}/big.bin {DATA}/hard"
    deadline = time.monotonic() + 10
    while len(set(sh(lab, secondary, inodes, check=False).split())) != 1:
        assert time.monotonic() < deadline, "the hard link is not one file on the secondary"
        time.sleep(0.2)
    sh(lab, primary, f"rm {DATA}/hard")
    assert_identical(lab, cluster)


def test_verify_finds_both_copies_identical(lab: Lab, cluster: LabCluster) -> None:
    result = verify(cluster)
    assert result["identical"] is True, result


def test_live_changes_are_replicated_in_order(lab: Lab, cluster: LabCluster) -> None:
    p = ROLES["primary"]
    sh(
        lab,
        p,
        f"cd {DATA} && mkdir -p live/a && echo one > live/a/f && mv live/a live/b && "
        "dd if=/dev/urandom of=live/b/big bs=1M count=8 conv=fsync status=none && "
        "truncate -s 5000 live/b/big && ln -s b live/lnk && chmod 600 live/b/f && "
        'python3 -c \'import os; os.setxattr("live/b/f", "user.tag", b"blue")\' && '
        "touch -d '2001-02-03 04:05:06' live/b/f && "
        "printf abc >> live/b/f && rm -f a.tmp && mkfifo live/fifo && sync",
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and tree(lab, p) != tree(lab, ROLES["secondary"]):
        time.sleep(0.2)
    assert tree(lab, p) == tree(lab, ROLES["secondary"])
    attr = sh(
        lab,
        ROLES["secondary"],
        f'python3 -c \'import os; print(os.getxattr("{DATA}/live/b/f", "user.tag"))\'',
    )
    assert attr.strip() == "b'blue'"
    assert_identical(lab, cluster)


def test_sparse_and_large_files_stay_sparse(lab: Lab, cluster: LabCluster) -> None:
    primary, secondary = ROLES["primary"], ROLES["secondary"]
    # one byte past 5 GiB (beyond 32-bit offsets), written live through the FUSE front
    sh(
        lab,
        primary,
        f"python3 -c \"import os; fd = os.open('{DATA}/sparse.bin', os.O_WRONLY | os.O_CREAT, 0o644); "
        "os.pwrite(fd, b'Z', 5 * 2**30); os.fsync(fd)\"",
    )
    check = (
        f"python3 -c \"import os; st = os.stat('{DATA}/sparse.bin'); f = open('{DATA}/sparse.bin', 'rb'); "
        'f.seek(5 * 2**30); print(st.st_size, st.st_blocks * 512 < 2**20, f.read(1))"'
    )
    assert sh(lab, secondary, check).split() == ["5368709121", "True", "b'Z'"]
    # and a resynchronisation keeps it sparse: only its data extent crosses the wire
    mark = cluster.log(primary, MODULE).count("in sync (")
    cluster.safekit(secondary, "second", "fullsync", "-m", MODULE)
    deadline = time.monotonic() + 120
    while cluster.log(primary, MODULE).count("in sync (") == mark:
        assert time.monotonic() < deadline, "no resynchronisation"
        time.sleep(0.3)
    wait_in_sync(cluster)
    assert sh(lab, secondary, check).split() == ["5368709121", "True", "b'Z'"]
    last = [line for line in cluster.log(primary, MODULE).splitlines() if "in sync (" in line][-1]
    sent = int(last.split(" bytes")[0].rsplit(" ", 1)[-1])
    assert sent < 256 << 20, f"the full sync sent {sent} bytes: the 5 GiB hole crossed the wire? {last}"
    sh(lab, primary, f"rm {DATA}/sparse.bin")


def test_every_fsynced_record_survives_the_primarys_power_loss(lab: Lab, cluster: LabCluster) -> None:
    primary, secondary = ROLES["primary"], ROLES["secondary"]
    writer = subprocess.Popen(
        lab.exec_argv(primary, ["python3", "-c", WRITER]), stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    acknowledged = -1
    started = time.monotonic()
    while time.monotonic() - started < 2.0:
        line = writer.stdout.readline()
        if not line:
            break
        acknowledged = int(line)
    lab.kill(primary)  # power off: every process of the host dies, cables pulled
    for line in writer.stdout:  # anything printed before the kill landed
        acknowledged = max(acknowledged, int(line))
    writer.wait(timeout=10)
    assert acknowledged > 50, f"only {acknowledged + 1} fsyncs in 2 s"
    cluster.wait_state(secondary, MODULE, "ALONE", timeout=30)
    out = lab.exec(secondary, ["python3", "-c", CHECK_RECORDS], check=True).stdout.split()
    records, bad = int(out[0]), int(out[1])
    assert records >= acknowledged + 1, (
        f"{acknowledged + 1} records acknowledged, {records} on the new primary"
    )
    assert bad == -1, f"record {bad} differs: not a prefix of the primary's writes"
    ROLES["primary"], ROLES["secondary"] = secondary, primary


def test_the_old_primary_returns_as_secondary_and_resyncs(lab: Lab, cluster: LabCluster) -> None:
    old = ROLES["secondary"]
    lab.start(old)
    cluster.start_daemon(old)
    cluster.safekit(old, "start", "-m", MODULE, check=False)  # it may start at boot by itself
    wait_in_sync(cluster, timeout=90)
    assert tree(lab, old) == tree(lab, ROLES["primary"])
    log = cluster.log(ROLES["primary"], MODULE)
    assert "checksum" in log  # another primary history: compared by checksum, not copied whole
    assert_identical(lab, cluster)


def test_reintegration_sends_only_what_changed(lab: Lab, cluster: LabCluster) -> None:
    primary, secondary = ROLES["primary"], ROLES["secondary"]
    sh(
        lab,
        primary,
        f"mkdir -p {DATA}/set && cd {DATA}/set && for i in $(seq 1 40); do "
        "head -c 1048576 /dev/urandom > f$i; done && sync",
    )
    deadline = time.monotonic() + 30
    while tree(lab, primary) != tree(lab, secondary) and time.monotonic() < deadline:
        time.sleep(0.2)
    cluster.safekit(secondary, "stop", "-m", MODULE)
    cluster.wait_state(primary, MODULE, "ALONE", timeout=30)
    # while the secondary is away: one 64 KiB zone changed in 2 files, one file removed, one renamed
    sh(
        lab,
        primary,
        f"cd {DATA}/set && dd if=/dev/urandom of=f1 bs=4k count=1 seek=100 conv=notrunc,fsync "
        "status=none && dd if=/dev/urandom of=f2 bs=4k count=1 conv=notrunc status=none && rm f3 && "
        "mv f4 f4-renamed && echo new > brand-new",
    )
    cluster.safekit(secondary, "second", "-m", MODULE)
    wait_in_sync(cluster)
    assert tree(lab, primary) == tree(lab, secondary)
    last = [line for line in cluster.log(primary, MODULE).splitlines() if "in sync (" in line][-1]
    assert "journal" in last, last
    sent = int(last.split(" bytes")[0].rsplit(" ", 1)[-1])
    assert sent < 4 * 1048576, f"reintegration sent {sent} bytes for 2 zones, a rename and a new file: {last}"


def test_fullsync_copies_everything(lab: Lab, cluster: LabCluster) -> None:
    primary, secondary = ROLES["primary"], ROLES["secondary"]
    cluster.safekit(secondary, "second", "fullsync", "-m", MODULE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = [ln for ln in cluster.log(primary, MODULE).splitlines() if "in sync (full" in ln]
        if lines:
            break
        time.sleep(0.3)
    else:
        raise AssertionError("no full resynchronisation in the primary's log")
    wait_in_sync(cluster)
    assert_identical(lab, cluster)


def rfs_pid(lab: Lab, node: str) -> int:
    netns = lab.plan().host(node).netns
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=True)
    for pid in pids.stdout.split():
        try:
            if rfs_role(Path(f"/proc/{pid}/cmdline").read_bytes()) is not None:
                return int(pid)
        except OSError:
            continue
    raise AssertionError(f"no replication process on {node}")


@pytest.mark.parametrize("role", ["secondary", "primary"])
def test_a_dead_replication_process_is_restarted_and_resyncs(
    lab: Lab, cluster: LabCluster, role: str
) -> None:
    node = ROLES[role]
    pid = rfs_pid(lab, node)
    subprocess.run(["kill", "-KILL", str(pid)], check=True)  # a process this test's lab started
    deadline = time.monotonic() + 30
    while rfs_pid_or_none(lab, node) in (None, pid):
        assert time.monotonic() < deadline, f"the replication process on {node} was not restarted"
        time.sleep(0.2)
    assert "exited with code" in cluster.log(node, MODULE)
    wait_in_sync(cluster, timeout=60)
    # the primary serves the directory again (a new FUSE mount over the dead one)
    sh(lab, ROLES["primary"], f"echo after-restart > {DATA}/after-{role} && sync")
    deadline = time.monotonic() + 10
    while tree(lab, ROLES["primary"]) != tree(lab, ROLES["secondary"]):
        assert time.monotonic() < deadline, "the copies differ after the restart"
        time.sleep(0.2)
    assert_identical(lab, cluster)


def rfs_pid_or_none(lab: Lab, node: str) -> int | None:
    try:
        return rfs_pid(lab, node)
    except AssertionError:
        return None


def test_the_primary_goes_on_when_the_secondary_loses_power(lab: Lab, cluster: LabCluster) -> None:
    primary, secondary = ROLES["primary"], ROLES["secondary"]
    writer = subprocess.Popen(
        lab.exec_argv(primary, ["python3", "-c", WRITER, f"{DATA}/during-loss.bin"]),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    stamps: list[float] = []
    try:
        while len(stamps) < 50:
            assert writer.stdout.readline(), "the writer stopped"
            stamps.append(time.monotonic())
        killed = time.monotonic()
        lab.kill(secondary)
        while time.monotonic() - killed < 8:
            assert writer.stdout.readline(), "the writer stopped"
            stamps.append(time.monotonic())
    finally:
        writer.kill()
        writer.wait(timeout=10)
    after = [t for t in stamps if t > killed]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # fsync is held until the secondary is known stale (heartbeats lost, new generation), then goes on
    assert max(gaps) < 6.0, f"an fsync waited {max(gaps):.1f} s"
    assert len(after) > 100, f"only {len(after)} fsyncs in the 8 s after the secondary's power loss"
    cluster.wait_state(primary, MODULE, "ALONE", timeout=30)
    lab.start(secondary)
    cluster.start_daemon(secondary)
    cluster.safekit(secondary, "second", "-m", MODULE, check=False)  # it may start at boot by itself
    wait_in_sync(cluster, timeout=90)
    assert_identical(lab, cluster)


def forge_v2(lab: Lab, node: str, peer: str, addr: str, script: str) -> subprocess.CompletedProcess[str]:
    """native/tools' primary stub, from `node`, with a key that is not the cluster key."""
    port = 4801  # heartbeat port + 1
    keydir = Path(tempfile.mkdtemp(prefix="safekit-itrfs-key-", dir="/var/tmp"))
    try:
        key = keydir / "wrong.key"
        key.write_text(clusterkey.encode_key_file(clusterkey.generate_key()))
        key.chmod(0o600)
        sender = str(native.CHECKOUT_BUILD / "safekit-rfs-send")
        argv = [sender, "--port", str(port), "--key", str(key), "--module", MODULE, "--node", node]
        argv += ["--peer", peer, "--host", addr, "-"]
        return lab.exec(node, argv, input=script, timeout=30)
    finally:
        shutil.rmtree(keydir, ignore_errors=True)


def test_forged_replication_traffic_is_refused(lab: Lab, cluster: LabCluster) -> None:
    primary, secondary = ROLES["primary"], ROLES["secondary"]
    addr = lab.plan().host(secondary).address
    syncs_before = cluster.log(primary, MODULE).count("in sync (")
    out = forge_v2(lab, primary, secondary, str(addr), "unlink big.bin\n")
    assert "HELLO_OK" not in out.stdout and "CLOSED" in out.stdout, out.stdout + out.stderr
    deadline = time.monotonic() + 10
    while "failed authentication" not in cluster.log(secondary, MODULE):
        assert time.monotonic() < deadline, "the forged frame was not reported"
        time.sleep(0.1)
    # the real primary's connection was not disturbed: no new resynchronisation
    assert cluster.state(secondary, MODULE)["readiness"] == "Ready"
    assert cluster.log(primary, MODULE).count("in sync (") == syncs_before
    assert_identical(lab, cluster)


def test_a_full_disk_on_the_secondary_leaves_the_primary_unaffected(lab: Lab, cluster: LabCluster) -> None:
    primary, secondary = ROLES["primary"], ROLES["secondary"]
    cluster.safekit(secondary, "stop", "-m", MODULE)
    cluster.wait_state(primary, MODULE, "ALONE", timeout=30)
    # the secondary's copy lives on a 24 MiB file system from now on
    sh(lab, secondary, f"mount -t tmpfs -o size=24m tmpfs {DATA}")
    try:
        cluster.safekit(secondary, "second", "-m", MODULE)
        # the data set (about 50 MiB) cannot fit: the secondary leaves sync with a clear error
        deadline = time.monotonic() + 60
        while "disk is full" not in cluster.log(secondary, MODULE):
            assert time.monotonic() < deadline, "no disk-full error on the secondary"
            time.sleep(0.3)
        state = cluster.state(secondary, MODULE)
        assert state["readiness"] != "Ready"
        # the primary goes on: writes and fsync succeed
        sh(lab, primary, f"dd if=/dev/zero of={DATA}/after-full bs=4k count=10 conv=fsync status=none")
        assert cluster.state(primary, MODULE)["readiness"] == "Ready"
    finally:
        cluster.safekit(secondary, "stop", "-m", MODULE, check=False)
        sh(lab, secondary, f"umount -l {DATA}", check=False)
    cluster.safekit(secondary, "second", "-m", MODULE)
    wait_in_sync(cluster, timeout=90)
    assert_identical(lab, cluster)
