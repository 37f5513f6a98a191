"""The operations playbooks on a deployed mirror cluster: failover drill, rolling upgrade, snapshot, remove.

One lab, deployed once with playbooks/deploy-mirror.yml; the tests run in file order, the last one
removes everything.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible_lab_runs import Recap, run_playbook

from safekit.lab import Lab, system
from safekit.lab.run_names import run_lab_name

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
ENGINE = "/opt/safekit/venv/bin/safekit"
MODULE = "webmirror"

# Every 100 ms, one HTTP GET of the VIP from the client (a new connection each time, 1 s time-out):
# a line "MONOTONIC ok PAGE" or "MONOTONIC fail ERROR".
PROBE = """
import sys, time, urllib.request
url = sys.argv[1]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
while True:
    started = time.monotonic()
    try:
        page = opener.open(url, timeout=1).read().decode().strip()
        print(f"{started:.3f} ok {page}", flush=True)
    except Exception as exc:
        print(f"{started:.3f} fail {type(exc).__name__}", flush=True)
    time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))
"""

# A swap stops the application on the primary (stop_prim, VIP released) and starts it on the
# secondary (VIP, start_prim waits until it accepts connections): about 1 s on lab hosts. 5 s
# leaves room for a loaded machine and is still far below what a restart of the primary's
# safekitd would cost (its stop, then the takeover), which must never happen.
MAX_GAP_SECONDS = 5.0


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    lab = Lab(run_lab_name("itops"))
    lab.down()
    lab.up(nodes=2, witness=True, client=True)
    try:
        result, _recap = playbook(lab, "deploy-mirror.yml")
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        yield lab
    finally:
        lab.down()


def playbook(lab: Lab, name: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], Recap]:
    return run_playbook(lab, name, *extra)


def state(lab: Lab, node: str) -> tuple[str, str]:
    out = lab.exec(node, [ENGINE, "state", "-m", MODULE, "--json"], check=True)
    module = json.loads(out.stdout)["modules"][0]
    return module["state"], module["readiness"]


def daemon_pid(lab: Lab, node: str) -> str:
    return lab.exec(node, ["cat", "/run/safekitd.pid"], check=True).stdout.strip()


def outages(lines: list[str]) -> list[tuple[float, int]]:
    """(seconds without an answer, failed probes) for each run of failures between two answers."""
    windows: list[tuple[float, int]] = []
    last_ok: float | None = None
    failed = 0
    for line in lines:
        stamp, outcome = line.split()[:2]
        if outcome == "ok":
            if failed and last_ok is not None:
                windows.append((float(stamp) - last_ok, failed))
            last_ok, failed = float(stamp), 0
        else:
            failed += 1
    if failed:
        windows.append((float("inf"), failed))  # still down at the end
    return windows


def test_failover_drill_swaps_and_back(lab: Lab) -> None:
    started = time.monotonic()
    result, _recap = playbook(lab, "failover-drill.yml")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "drill passed" in result.stdout
    # The primary ends where it started.
    assert state(lab, "node1") == ("PRIM", "Ready")
    assert state(lab, "node2") == ("SECOND", "Ready")
    swaps = re.findall(r"swap from (node\d) to (node\d) took ([\d.]+) s", result.stdout)
    assert [(a, b) for a, b, _ in swaps] == [("node1", "node2"), ("node2", "node1")], swaps
    print(f"drill: {elapsed:.1f} s, swaps {', '.join(s for _, _, s in swaps)} s")


def test_failover_drill_fails_clearly_when_the_application_does_not_answer(lab: Lab) -> None:
    url = f"http://{lab.plan().vips[0]}:9/"  # nothing listens there
    result, _recap = playbook(lab, "failover-drill.yml", "-e", f"safekit_drill_url={url}")
    assert result.returncode != 0
    assert f"before the drill: {url} did not answer as expected" in result.stdout
    assert state(lab, "node1") == ("PRIM", "Ready"), "nothing was swapped"


def test_rolling_upgrade_keeps_the_vip_serving_then_changes_nothing(lab: Lab) -> None:
    vip = lab.plan().vips[0]
    pids = {node: daemon_pid(lab, node) for node in ("node1", "node2")}
    probe = subprocess.Popen(
        lab.exec_argv("client", ["python3", "-u", "-c", PROBE, f"http://{vip}:8080/"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        time.sleep(1)
        started = time.monotonic()
        result, recap = playbook(lab, "upgrade.yml", "-e", "safekit_upgrade_force_restart=true")
        elapsed = time.monotonic() - started
        time.sleep(1)
    finally:
        probe.send_signal(signal.SIGTERM)
        out, _ = probe.communicate(timeout=10)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    lines = out.splitlines()
    assert len(lines) > elapsed * 5, f"the probe ran: {len(lines)} probes in {elapsed:.0f} s"
    windows = outages(lines)
    servers = [line.split()[2:] for line in lines if line.split()[1] == "ok"]
    moves = [b for a, b in itertools.pairwise(servers) if a != b]
    failed = sum(n for _, n in windows)
    print(
        f"upgrade with restarts: {elapsed:.1f} s, {len(lines)} probes, {failed} failed, "
        f"outages {', '.join(f'{gap:.2f} s' for gap, _ in windows) or 'none'}, served by {moves}"
    )
    # Both daemons were restarted, one at a time, each while it was the secondary: the service
    # moved twice (swap, swap back) and was unavailable only during those two swaps.
    assert all(daemon_pid(lab, node) != pid for node, pid in pids.items())
    assert moves == [["served", "by", "node2"], ["served", "by", "node1"]], moves
    assert len(windows) <= 2, windows
    assert all(gap <= MAX_GAP_SECONDS for gap, _ in windows), windows
    assert state(lab, "node1") == ("PRIM", "Ready")
    assert state(lab, "node2") == ("SECOND", "Ready")

    # The same version again, without forcing: nothing changes, nothing restarts.
    pids = {node: daemon_pid(lab, node) for node in ("node1", "node2")}
    started = time.monotonic()
    again, recap = playbook(lab, "upgrade.yml")
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    assert all(host["changed"] == 0 for host in recap.values()), recap
    assert {node: daemon_pid(lab, node) for node in ("node1", "node2")} == pids
    print(f"upgrade with nothing to do: {time.monotonic() - started:.1f} s")


def test_snapshot_fetches_one_zip_per_node_without_the_key(lab: Lab, tmp_path: Path) -> None:
    result, _recap = playbook(lab, "snapshot.yml", "-e", f"safekit_snapshot_dir={tmp_path}")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    zips = sorted(tmp_path.glob("*.zip"))
    assert [re.sub(r"-\d{8}T\d{6}Z\.zip$", "", z.name) for z in zips] == [
        "node1-webmirror",
        "node2-webmirror",
    ], zips
    key = lab.exec("node1", ["cat", "/etc/safekit/cluster.key"], check=True).stdout.strip()
    secret = key.split(":", 1)[1].encode()
    for path in zips:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            assert any(name.endswith("userconfig.xml") for name in names), names
            assert not any("cluster.key" in name for name in names), names
            for name in names:
                assert secret not in archive.read(name), f"{path.name}:{name} holds the cluster key"


def test_remove_leaves_nothing_running_then_changes_nothing(lab: Lab) -> None:
    started = time.monotonic()
    result, recap = playbook(lab, "remove.yml")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    for node in ("node1", "node2"):
        netns = lab.plan().host(node).netns
        commands = [
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            for pid in system.netns_pids(netns)
            if Path(f"/proc/{pid}/cmdline").exists()
        ]
        assert not [c for c in commands if "safekitd" in c], commands
        assert lab.exec(node, ["test", "-e", "/opt/safekit/venv"]).returncode != 0
        assert lab.exec(node, ["test", "-e", "/opt/safekit/modules/webmirror"]).returncode != 0
        assert lab.exec(node, ["test", "-f", "/etc/safekit/cluster.xml"]).returncode == 0, "config kept"
    vip = lab.plan().vips[0]
    gone = lab.exec("client", ["python3", "-c", f"import socket;socket.create_connection(('{vip}',8080),1)"])
    assert gone.returncode != 0, "the VIP was released"

    again, recap = playbook(lab, "remove.yml")
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    assert all(host["changed"] == 0 for host in recap.values()), recap
    print(f"remove: {elapsed:.1f} s")
