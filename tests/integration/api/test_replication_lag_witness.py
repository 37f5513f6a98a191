"""Lag in seconds, ack latency and the witness as each node sees it, on their own lab ("h34a": 2
nodes, a witness, one replicated directory on the native engine): under a write load through a
slowed replication link the primary's console card and its metrics show a lag and an ack latency
above zero, and the lag goes back to 0 once the load has drained; node1 cut from the witness
(`lab isolate node1 witness`) shows it unreachable with its last error in node1's card and
metrics, while node2 still reaches it, then both reach it again once healed. Screenshots 11 and 12
in test-artifacts/console/.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import add_console_user, chromium, node_pins, shape_port
from playwright.sync_api import Page, expect
from test_console_monitoring import SHOTS, card, login

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.run_names import run_lab_name
from safekit.membership import clusterkey
from safekit.rfs import native

LAB = os.environ.get("SAFEKIT_CONSOLE_LAG_LAB") or run_lab_name("h34a")  # another name: runs beside an h34a
MODULE = "lag"
DATA = "/srv/lag"
HEART_PORT = 4940
REPLICATION_PORT = HEART_PORT + 1
LOAD_MIB = 24
RATE = "16mbit"  # 2 MB/s: the load takes about 12 s to reach the secondary
USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone" failover="on">
  <heart port="{port}">
    <heartbeat name="default"/>
  </heart>
  <vip><interface_list><interface check="on"><real_interface>
    <virtual_addr addr="{vip}" where="one_side_alias"/>
  </real_interface></interface></interface_list></vip>
  <rfs sendtimeout="20s" engine="native">
    <replicated dir="{data}"/>
  </rfs>
  <check>
    <splitbrain ident="witness" exec="ping" arg="{witness}"/>
  </check>
</service>
</safe>
"""


@dataclass
class LagLab:
    lab: Lab
    cluster: LabCluster
    pins: list[str]
    witness: str

    def url(self, node: str, path: str = "/") -> str:
        return f"https://{self.lab.plan().host(node).address}:9453{path}"

    def metrics(self, node: str) -> str:
        url = f"http://{self.lab.plan().host(node).address}:9010/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return str(answer.read().decode())

    def sample(self, node: str, name: str) -> float | None:
        """The value of the module's series `name` (first match) in the node's /metrics."""
        pattern = re.compile(rf"^{re.escape(name)}\{{[^}}]*module=\"{MODULE}\"[^}}]*\}} (\S+)$", re.M)
        found = pattern.search(self.metrics(node))
        return None if found is None else float(found.group(1))


@pytest.fixture(scope="module")
def lag_lab(root_required: None) -> Iterator[LagLab]:
    for role in ("primary", "secondary"):  # make -C native
        native.find_program(role, os.environ)  # SAFEKIT_RFS_NATIVE_DIR, as the daemons find them
    lab = Lab(LAB)
    lab.down()
    lab.up(nodes=2, witness=True)
    root = Path(tempfile.mkdtemp(prefix="safekit-h34a-", dir="/var/tmp"))
    root.chmod(0o755)
    cluster = LabCluster(lab)
    try:
        plan = lab.plan()
        witness = str(plan.host("witness").address)
        module = root / MODULE
        (module / "conf").mkdir(parents=True)
        (module / "bin").mkdir()
        (module / "conf" / "userconfig.xml").write_text(
            USERCONFIG.format(port=HEART_PORT, vip=plan.vips[0], data=DATA, witness=witness)
        )
        cluster.install(module, key=clusterkey.generate_key())
        add_console_user(lab, cluster.nodes)
        for node in cluster.nodes:
            lab.exec(node, ["mkdir", "-p", DATA], check=True)
        lab.exec("node1", ["sh", "-c", f"head -c 1048576 /dev/urandom > {DATA}/seed"], check=True)
        for node in cluster.nodes:
            cluster.start_daemon(node)
        pins = node_pins(lab, cluster.nodes)
        cluster.safekit("node1", "prim", "-m", MODULE)
        cluster.wait_state("node1", MODULE, "ALONE", timeout=30)
        cluster.safekit("node2", "second", "-m", MODULE)
        cluster.wait_state("node2", MODULE, "SECOND", timeout=60)
        cluster.wait_state("node1", MODULE, "PRIM", timeout=30)
        yield LagLab(lab, cluster, pins, witness)
    finally:
        keep = Path("/var/tmp/safekit-h34a-logs")  # for a post-mortem of a failed run
        shutil.rmtree(keep, ignore_errors=True)
        keep.mkdir()
        for node in cluster.nodes:
            if lab.load_state() is not None and node not in lab.require_state().faults.killed:
                (keep / f"{node}.log").write_text(cluster.log(node, MODULE))
        cluster.stop_daemons()
        lab.down()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def console(lag_lab: LagLab) -> Iterator[Page]:
    with chromium(lag_lab.pins) as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        login(page, lag_lab.url("node1"))
        page.click('#tabs button[data-tab="module"]')
        page.select_option("#mon-module", MODULE)
        expect(card(page, "node1")).to_contain_text("primary", timeout=10_000)  # type: ignore[arg-type]
        yield page
        assert not errors, errors


def _number(page: Page, selector: str, attribute: str) -> float | None:
    value = page.evaluate(
        "([s, a]) => { const e = document.querySelector(s); return e ? e.getAttribute(a) : null; }",
        [selector, attribute],
    )
    return float(value) if value else None


def test_lag_and_ack_latency_under_a_write_load(lag_lab: LagLab, console: Page) -> None:
    lab, page = lag_lab.lab, console
    node1 = '#mon-nodes article[data-node="node1"]'
    expect(page.locator(f"{node1} .sync")).to_have_attribute("data-in-sync", "true", timeout=20_000)
    expect(page.locator(f"{node1} .lag")).to_have_attribute("data-lag", "0", timeout=20_000)
    acks_before = lag_lab.sample("node1", "safekit_rfs_ack_latency_seconds_count") or 0.0

    shape_port(lab, "node1", REPLICATION_PORT, RATE)
    load = threading.Thread(
        target=lab.exec,
        args=("node1", ["dd", "if=/dev/urandom", f"of={DATA}/load", "bs=1M", f"count={LOAD_MIB}"]),
        kwargs={"timeout": 180},
    )
    try:
        load.start()
        lags, p99s, exported = [], [], []
        shot = False
        deadline = time.monotonic() + 120
        # until the load is written and drained to the secondary (the window lets the writer finish
        # before the slowed link has carried it)
        while (load.is_alive() or not exported or exported[-1] > 0) and time.monotonic() < deadline:
            lag = _number(page, f"{node1} .lag", "data-lag")
            p99 = _number(page, f"{node1} .ack", "data-p99")
            lags.append(lag or 0.0)
            p99s.append(p99 or 0.0)
            exported.append(lag_lab.sample("node1", "safekit_rfs_lag_seconds") or 0.0)
            if lag and lag > 1 and p99 and not shot:
                page.screenshot(path=str(SHOTS / "11-lag-and-ack-latency.png"), full_page=True)
                shot = True
            time.sleep(0.5)
    finally:
        shape_port(lab, "node1", REPLICATION_PORT, None)
        load.join(timeout=60)
    print(
        f"lag shown (s): max {max(lags):.2f}; ack p99 shown (s): max {max(p99s):.4f}; "
        f"exported lag max {max(exported):.2f}"
    )
    assert max(lags) > 0.5, f"the console never showed a lag under load: {lags}"
    assert max(exported) > 0.5, f"safekit_rfs_lag_seconds never rose under load: {exported}"
    assert max(p99s) > 0, f"the console never showed an ack latency under load: {p99s}"
    assert shot, "no moment with both a lag over 1 s and an ack latency shown"
    acks_after = lag_lab.sample("node1", "safekit_rfs_ack_latency_seconds_count") or 0.0
    assert acks_after - acks_before >= LOAD_MIB, (acks_before, acks_after)  # at least one write per MiB
    # drained: the secondary has everything again
    expect(page.locator(f"{node1} .lag")).to_have_attribute("data-lag", "0", timeout=60_000)
    assert lag_lab.sample("node1", "safekit_rfs_lag_seconds") == 0.0


def test_the_witness_as_each_node_sees_it(lag_lab: LagLab, console: Page) -> None:
    lab, page = lag_lab.lab, console
    witness_of = {node: f'#mon-nodes article[data-node="{node}"] div.witness' for node in ("node1", "node2")}
    for node, selector in witness_of.items():
        expect(page.locator(selector)).to_have_attribute("data-reachable", "true", timeout=15_000)
        assert lag_lab.sample(node, "safekit_witness_reachable") == 1.0
        rtt = lag_lab.sample(node, "safekit_witness_rtt_seconds")
        assert rtt is not None and 0 < rtt < 1, rtt

    lab.isolate("node1", "witness")
    try:
        expect(page.locator(witness_of["node1"])).to_have_attribute("data-reachable", "false", timeout=15_000)
        expect(page.locator(witness_of["node1"])).to_contain_text("no answer to a ping")
        expect(page.locator(witness_of["node2"])).to_have_attribute("data-reachable", "true")
        assert lag_lab.sample("node1", "safekit_witness_reachable") == 0.0
        assert (lag_lab.sample("node1", "safekit_witness_probe_failures_total") or 0) >= 1
        assert lag_lab.sample("node2", "safekit_witness_reachable") == 1.0
        page.screenshot(path=str(SHOTS / "12-witness-unreachable-from-node1.png"), full_page=True)
        # nothing else moves: the peer is there, the witness only matters at a split
        cluster = lag_lab.cluster
        assert cluster.safekit("node1", "state", "-m", MODULE).stdout.count("PRIM") >= 1
    finally:
        lab.heal("node1")
    expect(page.locator(witness_of["node1"])).to_have_attribute("data-reachable", "true", timeout=15_000)
    assert lag_lab.sample("node1", "safekit_witness_reachable") == 1.0
