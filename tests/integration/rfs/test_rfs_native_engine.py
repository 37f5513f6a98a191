"""safekitd runs the native replication programs (`<rfs engine="native">`, docs/adr/0024): the short
check of `make test`, whatever SAFEKIT_TEST_RFS_ENGINE says (`make test-rfs-native` runs the whole
rfs set on the native engine).

One lab, one module, the tests in order: a first start copies the primary's data through the
native pair; every fsync'd record survives the primary's power loss; the old primary comes back as
secondary and resyncs. About a minute.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rfs_engines import rfs_role
from test_rfs_replication import CHECK_RECORDS, TREE, WRITER

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.membership import clusterkey
from safekit.rfs import native

MODULE = "nat"
DATA = "/srv/data"
USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone" failover="on" maxloop="10" loop_interval="24h">
  <heart>
    <heartbeat name="default"/>
  </heart>
  <rfs async="second" sendtimeout="3s" engine="native">
    <replicated dir="/srv/data"/>
  </rfs>
</service>
</safe>
"""
ROLES = {"primary": "node1", "secondary": "node2"}


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    lab = Lab("rfsfix")  # test_rfs_recovery.py's lab name: the two files never run at once
    lab.down()
    lab.up(nodes=2, lans=1)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[LabCluster]:
    for role in ("primary", "secondary"):  # built by `make test` (native-test) and test-rfs-native
        native.find_program(role, {})
    root = Path(tempfile.mkdtemp(prefix="safekit-rfsnat-", dir="/var/tmp"))
    module = root / MODULE
    (module / "conf").mkdir(parents=True)
    (module / "bin").mkdir()
    (module / "conf" / "userconfig.xml").write_text(USERCONFIG)
    root.chmod(0o755)
    cluster = LabCluster(lab)
    cluster.install(module, key=clusterkey.generate_key())
    shutil.rmtree(root, ignore_errors=True)
    sh(
        lab,
        "node1",
        f"mkdir -p {DATA}/sub && cd {DATA} && head -c 2000000 /dev/urandom > big.bin && "
        "echo hello > sub/hello.txt && ln -s sub/hello.txt link && chown 1234:2345 sub/hello.txt && "
        "ln big.bin big.hardlink",
    )
    sh(lab, "node2", f"mkdir -p {DATA}/stale && echo old > {DATA}/stale/file")
    for node in cluster.nodes:
        cluster.start_daemon(node)
    try:
        yield cluster
    finally:
        keep = Path("/var/tmp/safekit-rfsnat-logs")  # for a post-mortem of a failed run
        shutil.rmtree(keep, ignore_errors=True)
        keep.mkdir()
        for node in cluster.nodes:
            if node not in lab.require_state().faults.killed:
                (keep / f"{node}.log").write_text(cluster.log(node, MODULE))
        cluster.stop_daemons()


def sh(lab: Lab, node: str, script: str, check: bool = True) -> str:
    result = lab.exec(node, ["sh", "-c", script], timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"{node}: {script}: {result.stderr or result.stdout}")
    return result.stdout


def tree(lab: Lab, node: str) -> dict[str, list[object]]:
    data: dict[str, list[object]] = json.loads(
        lab.exec(node, ["python3", "-c", TREE, DATA], check=True).stdout
    )
    return data


def same_trees(lab: Lab, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while (mine := tree(lab, ROLES["primary"])) != (theirs := tree(lab, ROLES["secondary"])):
        assert time.monotonic() < deadline, {
            k: (mine.get(k), theirs.get(k)) for k in mine.keys() ^ theirs.keys()
        }
        time.sleep(0.3)


def rfs_programs(lab: Lab, node: str) -> list[str]:
    """argv[0] of the node's replication processes."""
    netns = lab.plan().host(node).netns
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=True).stdout
    found = []
    for pid in out.split():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if rfs_role(cmdline) is not None:
            found.append(cmdline.split(b"\0")[0].decode())
    return found


def test_a_native_pair_copies_the_primarys_data(lab: Lab, cluster: LabCluster) -> None:
    cluster.safekit("node1", "prim", "-m", MODULE)
    cluster.wait_state("node1", MODULE, "ALONE", timeout=30)
    cluster.safekit("node2", "second", "-m", MODULE)
    cluster.wait_state("node1", MODULE, "PRIM", timeout=60)
    cluster.wait_state("node2", MODULE, "SECOND", timeout=60)
    for node, role in (("node1", "primary"), ("node2", "secondary")):
        assert [Path(p).name for p in rfs_programs(lab, node)] == [f"safekit-rfs-{role}"]
        shown = cluster.safekit(node, "state", "-m", MODULE, "-v").stdout
        assert f"replication {role} (native engine)" in shown, shown
    same_trees(lab)
    theirs = tree(lab, "node2")
    assert "stale" not in theirs and theirs["sub/hello.txt"][2:] == [1234, 2345]
    assert theirs["link"][0] == "-> sub/hello.txt"
    # a hard link is one file on the secondary too (the native front replicates LINK)
    inodes = sh(lab, "node2", f"stat -c %i {DATA}/big.bin {DATA}/big.hardlink").split()
    assert len(inodes) == 2 and inodes[0] == inodes[1]


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
    lab.kill(primary)  # power off: every process of the host dies
    for line in writer.stdout:
        acknowledged = max(acknowledged, int(line))
    writer.wait(timeout=10)
    assert acknowledged > 50, f"only {acknowledged + 1} fsyncs in 2 s"
    cluster.wait_state(secondary, MODULE, "ALONE", timeout=30)
    records, bad = map(int, lab.exec(secondary, ["python3", "-c", CHECK_RECORDS], check=True).stdout.split())
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
    cluster.wait_state(ROLES["primary"], MODULE, "PRIM", timeout=90)
    cluster.wait_state(old, MODULE, "SECOND", timeout=90)
    same_trees(lab)
    assert "checksum" in cluster.log(ROLES["primary"], MODULE)  # another history: compared, not copied
