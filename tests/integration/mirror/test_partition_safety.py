"""Partition safety with the arbitrating witness (issue 13, ADR 0010), on real lab hosts.

A mirror module (the web example, served on the VIP) with `<splitbrain exec="arbitrator">` and
`safekit arbiter serve` on the witness host. The judge is the client: a probe on the client host
asks the LAN, every 50 ms, who answers ARP for the VIP; two MAC addresses in one probe (within
40 ms of each other) is two nodes serving at once. The nodes' own word decides nothing here.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.run_names import run_lab_name
from safekit.membership import clusterkey

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "modules" / "webmirror"
MODULE = "web"
PORT = 8080
ARBITER_PORT = 9455

USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone" failover="on">
  <heart>
    <heartbeat name="default"/>
  </heart>
  <vip>
    <interface_list>
      <interface check="{intf_check}">
        <real_interface>
          <virtual_addr addr="{vip}" where="one_side_alias"/>
        </real_interface>
      </interface>
    </interface_list>
  </vip>
  <user nicestoptimeout="3s" forcestoptimeout="10s" logging="userlog">
    <var name="WEB_PORT" value="{port}"/>
    <var name="WEB_ROOT" value="/srv/www"/>
  </user>
  <check>
    <splitbrain ident="witness" exec="arbitrator" arg="{witness}:{arbiter_port}"/>
  </check>
</service>
</safe>
"""

# One process on the client: probe the VIP's owners every 50 ms for `seconds`, one JSON line each.
OWNER_MONITOR = """
import asyncio, ipaddress, json, sys, time
from safekit.vip.owner import probe_vip_owners
vip, seconds = ipaddress.IPv4Address(sys.argv[1]), float(sys.argv[2])
async def main():
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        p = await probe_vip_owners("eth0", vip, attempts=1, interval=0.01, wait=0.04)
        print(json.dumps({"t": time.time(), "owners": sorted(p.owners), "error": p.error}), flush=True)
        await asyncio.sleep(max(0.0, 0.05 - (time.monotonic() - started)))
asyncio.run(main())
"""


class OwnerMonitor:
    """The client's view of who answers for the VIP, while a fault runs."""

    def __init__(self, lab: Lab, vip: str, seconds: float) -> None:
        self.samples: list[dict[str, object]] = []
        self._thread = threading.Thread(target=self._run, args=(lab, vip, seconds), daemon=True)
        self._thread.start()

    def _run(self, lab: Lab, vip: str, seconds: float) -> None:
        out = lab.exec(
            "client", [sys.executable, "-c", OWNER_MONITOR, vip, str(seconds)], timeout=seconds + 30
        )
        self.samples = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        self.stderr = out.stderr

    def result(self) -> list[dict[str, object]]:
        self._thread.join()
        assert self.samples, f"the owner monitor recorded nothing: {getattr(self, 'stderr', '')}"
        return self.samples

    def two_owner_samples(self) -> list[dict[str, object]]:
        return [s for s in self.result() if len(s["owners"]) > 1]  # type: ignore[arg-type]

    def longest_gap(self) -> float:
        """Longest time without any owner answering (the VIP unreachable for clients)."""
        gap, since = 0.0, None
        for sample in self.result():
            t = float(sample["t"])  # type: ignore[arg-type]
            if sample["owners"]:
                if since is not None:
                    gap = max(gap, t - since)
                since = None
            elif since is None:
                since = t
        return gap


def _lab(name: str) -> Iterator[Lab]:
    lab = Lab(run_lab_name(name))
    lab.down()
    lab.up(nodes=2, witness=True, client=True)
    try:
        yield lab
    finally:
        lab.down()


def _cluster(lab: Lab, intf_check: str) -> Iterator[LabCluster]:
    plan = lab.plan()
    root = Path(tempfile.mkdtemp(prefix="safekit-psafe-", dir="/var/tmp"))
    path = root / MODULE
    shutil.copytree(EXAMPLE, path)
    witness = plan.host("witness").address
    (path / "conf" / "userconfig.xml").write_text(
        USERCONFIG.format(
            vip=plan.vips[0], port=PORT, witness=witness, arbiter_port=ARBITER_PORT, intf_check=intf_check
        )
    )
    root.chmod(0o755)
    key = clusterkey.generate_key()
    cluster = LabCluster(lab)
    cluster.install(path, key=key)
    cluster.start_arbiter(key)  # and waits out its grace period
    for node in cluster.nodes:
        cluster.start_daemon(node)
    try:
        yield cluster
    finally:
        shutil.rmtree(root, ignore_errors=True)
        cluster.stop_daemons()


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    yield from _lab("psafe")


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[LabCluster]:
    yield from _cluster(lab, intf_check="on")


@pytest.fixture(scope="module")
def late_lab(root_required: None) -> Iterator[Lab]:
    yield from _lab("plate")


@pytest.fixture(scope="module")
def late_cluster(late_lab: Lab) -> Iterator[LabCluster]:
    # No interface checker: the cut primary serves on until its lease ends, and says so in the
    # heartbeats it writes meanwhile.
    yield from _cluster(late_lab, intf_check="off")


def vip(lab: Lab) -> str:
    return str(lab.plan().vips[0])


def prim_and_second(cluster: LabCluster, primary: str = "node1") -> None:
    secondary = "node2" if primary == "node1" else "node1"
    try:
        cluster.wait_state(primary, MODULE, "PRIM", timeout=60)
        cluster.wait_state(secondary, MODULE, "SECOND", timeout=60)
    except Exception as exc:
        logs = {n: cluster.log(n, MODULE)[-6000:] for n in cluster.nodes}
        raise AssertionError(f"{exc}\n" + "\n".join(f"--- {n}\n{t}" for n, t in logs.items())) from exc


def test_first_start(cluster: LabCluster) -> None:
    cluster.safekit("node1", "prim", "-m", MODULE)
    cluster.safekit("node2", "second", "-m", MODULE)
    prim_and_second(cluster)
    assert "split-brain arbitrator" in cluster.log("node1", MODULE)


def test_nodes_cut_from_each_other_both_reaching_the_witness_keep_one_primary(
    lab: Lab, cluster: LabCluster
) -> None:
    """The issue's scenario: `lab isolate node1 node2` for 10 s, both still reach the witness."""
    monitor = OwnerMonitor(lab, vip(lab), seconds=14)
    time.sleep(1.0)
    lab.isolate("node1", "node2")
    try:
        time.sleep(10)
        assert cluster.state("node1", MODULE)["state"] == "ALONE"
        second = cluster.state("node2", MODULE)
        assert second["state"] == "WAIT", second
    finally:
        lab.heal()
    assert monitor.two_owner_samples() == [], "two MAC addresses answered for the VIP at once"
    assert monitor.longest_gap() < 0.5, "the VIP stopped answering during the split"
    log2 = cluster.log("node2", MODULE)
    # node2 learnt that node1 went on without it: the arbitrator refused its older generation
    # (node1's renewal carried its new one), or node1 kept renewing after the loss
    assert "the arbitrator knows a copy at" in log2
    assert "virtual IP acquired" not in log2.split("all heartbeats")[-1]
    # node1 went on alone (its generation is newer): node2 comes back as its secondary, resynchronised
    prim_and_second(cluster)


def test_the_primary_cut_from_everything_fences_and_the_secondary_takes_over(
    lab: Lab, cluster: LabCluster
) -> None:
    monitor = OwnerMonitor(lab, vip(lab), seconds=12)
    time.sleep(1.0)
    lab.cut("node1")
    try:
        cluster.wait_state("node2", MODULE, "ALONE", timeout=15)
    finally:
        lab.heal()
    assert monitor.two_owner_samples() == []
    # the primary released the VIP on its lease, then the secondary took it: a short gap
    assert monitor.longest_gap() < 5.0
    prim_and_second(cluster, primary="node2")
    cluster.safekit("node2", "swap", "-m", MODULE)
    prim_and_second(cluster)


def test_power_cut_of_the_primary_fails_over_on_the_lease(lab: Lab, cluster: LabCluster) -> None:
    monitor = OwnerMonitor(lab, vip(lab), seconds=10)
    time.sleep(1.0)
    lab.kill("node1")
    cluster.wait_state("node2", MODULE, "ALONE", timeout=20)
    samples = monitor.result()
    assert monitor.two_owner_samples() == []
    gap = monitor.longest_gap()
    print(f"power cut: VIP unanswered for {gap:.2f} s ({len(samples)} probes)")
    assert gap < 5.0
    lab.start("node1")
    cluster.start_daemon("node1")
    cluster.wait_state("node1", MODULE, "SECOND", timeout=60)
    cluster.wait_state("node2", MODULE, "PRIM", timeout=30)


def test_heartbeats_written_during_a_cut_and_delivered_late_do_not_unseat_the_new_primary(
    late_lab: Lab, late_cluster: LabCluster
) -> None:
    """The CI failure of 2026-12-06 (ADR 0070). A cut node's kernel forgets its neighbours when
    the carrier goes, so the heartbeats it writes while cut wait in its neighbour table for an
    address resolution and leave together once the cable is back: seconds old, showing it still
    serving. The new primary took them for a primary next to it, stepped down for it (the node
    name decides between two primaries) and marked its copy not up to date; the old primary,
    fenced, lacked the writes acknowledged since: no node could be primary.
    """
    lab, cluster = late_lab, late_cluster
    cluster.safekit("node1", "prim", "-m", MODULE)
    cluster.safekit("node2", "second", "-m", MODULE)
    prim_and_second(cluster)
    lab.cut("node1")
    try:
        cluster.wait_state("node2", MODULE, "ALONE", timeout=15)
    finally:
        lab.heal()
    prim_and_second(cluster, primary="node2")
    log2 = cluster.log("node2", MODULE)
    assert "both nodes primary" not in log2
    # Whether late heartbeats arrived depends on where the cut node's address resolution was when
    # the cable came back (a quiet run: always; one CI run under load: none were logged). Without
    # ADR 0070 this test failed on every quiet run; tests/unit/membership checks the rule itself.
    daemon2 = lab.exec("node2", ["cat", "/var/log/safekit/safekitd.log"]).stdout
    late = daemon2.count("heartbeat ignored, the LAN stays down until the peer answers this node")
    print(f"late heartbeats from the cut node ignored by node2: logged {late} time(s)")
