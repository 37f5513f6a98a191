"""A mirror module on real lab hosts: first start, faults, commands, checkers, split brain, security.

One lab (2 nodes on 2 LANs, a witness, a client) and one module for the whole file; the tests run
in order and each leaves the cluster with a primary and a secondary, as the next one expects.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.run_names import run_lab_name
from safekit.membership import clusterkey
from safekit.membership.wire import Heartbeat, ModuleState, SubState, encode

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "modules" / "webmirror"
MODULE = "web"
PORT = 8080

USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone" failover="on" maxloop="3" loop_interval="24h">
  <heart>
    <heartbeat name="default"/>
    <heartbeat name="lan1"/>
  </heart>
  <vip>
    <interface_list>
      <interface check="on">
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
  <errd polltimer="1s">
    <proc name="python3" argregex="http\\.server {port}" atleast="1" action="restart" class="prim"/>
  </errd>
  <check>
    <custom ident="app" exec="appcheck" action="restart"/>
    <splitbrain ident="witness" exec="ping" arg="{witness}"/>
  </check>
  <failover period="500ms" handle_time="1s">
  <![CDATA[
    app_rule: if (custom.app == down && heartbeat.default == up) then restart();
  ]]>
  </failover>
</service>
</safe>
"""

# A stop_prim that hangs while /srv/hang-stop exists, unless called with `force`.
HANGING_STOP = """#!/bin/sh
if [ "$1" != force ] && [ -f /srv/hang-stop ]; then sleep 600; fi
exec "$SAFEUSERBIN/stop_prim.real" "$@"
"""

# A custom checker: reports down while /srv/app-down exists, up otherwise.
APPCHECK = """#!/bin/sh
last=""
while true; do
    if [ -f /srv/app-down ]; then now=down; else now=up; fi
    if [ "$now" != "$last" ]; then safekit set -m web -r custom.app -v "$now" && last=$now; fi
    sleep 0.2
done
"""


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    lab = Lab(run_lab_name("itmir"))
    lab.down()
    lab.up(nodes=2, lans=2, witness=True, client=True)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def module_dir(lab: Lab) -> Iterator[Path]:
    plan = lab.plan()
    # Lab hosts have a private /tmp: the module is staged where they all see it.
    root = Path(tempfile.mkdtemp(prefix="safekit-itmir-", dir="/var/tmp"))
    path = root / MODULE
    shutil.copytree(EXAMPLE, path)
    (path / "conf" / "userconfig.xml").write_text(
        USERCONFIG.format(vip=plan.vips[0], port=PORT, witness=plan.host("witness").address)
    )
    (path / "bin" / "stop_prim").rename(path / "bin" / "stop_prim.real")
    for name, body in (("stop_prim", HANGING_STOP), ("appcheck", APPCHECK)):
        (path / "bin" / name).write_text(body)
        (path / "bin" / name).chmod(0o755)
    root.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(lab: Lab, module_dir: Path) -> Iterator[LabCluster]:
    cluster = LabCluster(lab)
    cluster.install(module_dir, key=clusterkey.generate_key())
    for node in cluster.nodes:
        cluster.start_daemon(node)
    try:
        yield cluster
    finally:
        cluster.keep_logs(MODULE)
        cluster.stop_daemons()


def vip(lab: Lab) -> str:
    return str(lab.plan().vips[0])


def served_by(lab: Lab, timeout: float = 1.0) -> str | None:
    """Which node answers the web service at the VIP, as the client sees it."""
    url = f"http://{vip(lab)}:{PORT}/"
    code = (
        "import urllib.request\n"
        f"try: print(urllib.request.urlopen({url!r}, timeout={timeout}).read().decode())\n"
        "except Exception as e: print('error', e)"
    )
    out = lab.exec("client", ["python3", "-c", code]).stdout.strip()
    return out.removeprefix("served by ") if out.startswith("served by ") else None


def wait_served_by(lab: Lab, node: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served_by(lab) == node:
            return
        time.sleep(0.1)
    raise AssertionError(f"the VIP is not served by {node} after {timeout:g} s (now: {served_by(lab)})")


def holds_vip(lab: Lab, node: str) -> bool:
    out = lab.exec(node, ["ip", "-4", "-o", "addr", "show"]).stdout
    return f" {vip(lab)}/" in out


def health(lab: Lab, node: str) -> int:
    url = f"http://{lab.plan().host(node).address}:9010/var/modules/{MODULE}/ready.txt"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def metrics(lab: Lab, node: str) -> str:
    url = f"http://{lab.plan().host(node).address}:9010/metrics"
    with urllib.request.urlopen(url, timeout=2) as response:
        return str(response.read().decode())


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name} {labels}")


def primary_and_secondary(cluster: LabCluster) -> tuple[str, str]:
    states = {node: cluster.state(node, MODULE)["state"] for node in cluster.nodes}
    prim = [n for n, s in states.items() if s in ("PRIM", "ALONE")]
    assert len(prim) == 1, states
    return prim[0], next(n for n in cluster.nodes if n != prim[0])


def test_first_start_makes_a_primary_and_a_secondary(lab: Lab, cluster: LabCluster) -> None:
    cluster.safekit("node1", "prim", "-m", MODULE)
    cluster.safekit("node2", "second", "-m", MODULE)
    cluster.wait_state("node1", MODULE, "PRIM")
    cluster.wait_state("node2", MODULE, "SECOND")
    wait_served_by(lab, "node1")
    assert health(lab, "node1") == 200
    assert health(lab, "node2") == 404
    # SafeKit's exit codes of `state -lq`: PRIM 3, SECOND 4.
    assert cluster.safekit("node1", "state", "-m", MODULE, "-lq", check=False).returncode == 3
    assert cluster.safekit("node2", "state", "-m", MODULE, "-lq", check=False).returncode == 4
    assert holds_vip(lab, "node1") and not holds_vip(lab, "node2")


def test_losing_one_heartbeat_lan_is_a_warning_not_a_failover(lab: Lab, cluster: LabCluster) -> None:
    lab.cut("node2", "lan1")
    try:
        deadline = time.monotonic() + 10
        while cluster.state("node1", MODULE)["resources"]["heartbeat.lan1"] != "down":
            assert time.monotonic() < deadline, "heartbeat.lan1 never went down"
            time.sleep(0.2)
        time.sleep(2)  # longer than the heartbeat timeout: a failover would have started by now
        assert cluster.state("node1", MODULE)["state"] == "PRIM"
        assert cluster.state("node2", MODULE)["state"] == "SECOND"
        assert cluster.state("node1", MODULE)["resources"]["heartbeat.default"] == "up"
        assert "heartbeat.lan1 down" in cluster.log("node1", MODULE)
    finally:
        lab.heal("node2")
    deadline = time.monotonic() + 10
    while cluster.state("node1", MODULE)["resources"]["heartbeat.lan1"] != "up":
        assert time.monotonic() < deadline, "heartbeat.lan1 did not come back"
        time.sleep(0.2)


def test_swap_exchanges_the_roles_and_back(lab: Lab, cluster: LabCluster) -> None:
    cluster.safekit("node1", "swap", "-m", MODULE)
    cluster.wait_state("node2", MODULE, "PRIM")
    cluster.wait_state("node1", MODULE, "SECOND")
    wait_served_by(lab, "node2")
    cluster.safekit("node2", "swap", "-m", MODULE)
    cluster.wait_state("node1", MODULE, "PRIM")
    cluster.wait_state("node2", MODULE, "SECOND")
    wait_served_by(lab, "node1")


def test_restart_runs_the_scripts_again_without_failover(lab: Lab, cluster: LabCluster) -> None:
    before = lab.exec("node1", ["cat", f"/var/log/safekit/modules/{MODULE}.userlog"]).stdout.count(
        "start_prim"
    )
    cluster.safekit("node1", "restart", "-m", MODULE)
    cluster.wait_state("node1", MODULE, "PRIM")
    after = lab.exec("node1", ["cat", f"/var/log/safekit/modules/{MODULE}.userlog"]).stdout
    assert after.count("start_prim") == before + 1
    assert cluster.state("node2", MODULE)["state"] == "SECOND"
    wait_served_by(lab, "node1")


def test_stopstart_of_the_primary_hands_over_to_the_secondary(lab: Lab, cluster: LabCluster) -> None:
    # SafeKit's stopstart on the primary fails over: the in-sync secondary takes over while the
    # primary stops, and the restarted node becomes its secondary (it is not elected again as
    # the last primary). The client sees the VIP answered by node2.
    cluster.safekit("node1", "stopstart", "-m", MODULE)
    cluster.wait_state("node2", MODULE, "PRIM")
    cluster.wait_state("node1", MODULE, "SECOND")
    wait_served_by(lab, "node2")
    assert holds_vip(lab, "node2") and not holds_vip(lab, "node1")
    assert "stopstarted the primary role: node2 is an up-to-date secondary" in cluster.log("node1", MODULE)
    cluster.safekit("node2", "swap", "-m", MODULE)  # back to node1 for the tests below
    cluster.wait_state("node1", MODULE, "PRIM")
    cluster.wait_state("node2", MODULE, "SECOND")
    wait_served_by(lab, "node1")


def test_errd_restarts_an_application_that_died(lab: Lab, cluster: LabCluster) -> None:
    lab.exec("node1", ["sh", "-c", "kill -9 $(cat /run/webmirror.pid)"], check=True)
    deadline = time.monotonic() + 15
    while "errd: python3: 0 running" not in cluster.log("node1", MODULE):
        assert time.monotonic() < deadline, "errd did not notice the dead application"
        time.sleep(0.2)
    cluster.wait_state("node1", MODULE, "PRIM")
    wait_served_by(lab, "node1")


def test_a_custom_checker_triggers_its_action(lab: Lab, cluster: LabCluster) -> None:
    lab.exec("node1", ["touch", "/srv/app-down"], check=True)
    try:
        deadline = time.monotonic() + 10
        while "custom.app asks restart" not in cluster.log("node1", MODULE):
            assert time.monotonic() < deadline, cluster.log("node1", MODULE)[-2000:]
            time.sleep(0.2)
        # The <failover> rule on the same resource fires once its condition held for handle_time.
        while "failover rule app_rule" not in cluster.log("node1", MODULE):
            assert time.monotonic() < deadline, cluster.log("node1", MODULE)[-2000:]
            time.sleep(0.2)
    finally:
        lab.exec("node1", ["rm", "-f", "/srv/app-down"], check=True)
    cluster.wait_state("node1", MODULE, "PRIM")
    assert cluster.state("node1", MODULE)["resources"]["custom.app"] == "up"


def test_a_hanging_stop_script_is_called_again_with_force(lab: Lab, cluster: LabCluster) -> None:
    lab.exec("node1", ["touch", "/srv/hang-stop"], check=True)
    try:
        started = time.monotonic()
        cluster.safekit("node1", "stop", "-m", MODULE)
        cluster.wait_state("node1", MODULE, "STOP", ready=False, timeout=30)
        deadline = time.monotonic() + 30
        while cluster.state("node1", MODULE)["readiness"] != "NotReady":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert time.monotonic() - started >= 3, "the stop script was given its nicestoptimeout"
        userlog = lab.exec("node1", ["cat", f"/var/log/safekit/modules/{MODULE}.userlog"]).stdout
        assert "calling it again with 'force'" in userlog
        # The secondary took over while node1 stopped.
        cluster.wait_state("node2", MODULE, "ALONE")
        wait_served_by(lab, "node2")
    finally:
        lab.exec("node1", ["rm", "-f", "/srv/hang-stop"], check=True)
    cluster.safekit("node1", "start", "-m", MODULE)
    cluster.wait_state("node1", MODULE, "SECOND")
    cluster.wait_state("node2", MODULE, "PRIM")


def test_power_cut_of_the_primary_fails_over_and_the_node_rejoins(lab: Lab, cluster: LabCluster) -> None:
    primary, secondary = primary_and_secondary(cluster)
    wait_served_by(lab, primary)
    killed_at = time.monotonic()
    lab.kill(primary)
    wait_served_by(lab, secondary, timeout=20)
    outage = time.monotonic() - killed_at
    assert outage < 10, f"failover took {outage:.1f} s"
    cluster.wait_state(secondary, MODULE, "ALONE")
    # The survivor's report of it: what was detected, what decided, each step with its duration.
    [episode] = json.loads(cluster.safekit(secondary, "report", "-m", MODULE, "--json").stdout)
    assert episode["failover"] and episode["to"] == "ALONE (Ready)", episode
    names = [entry["name"] for entry in episode["entries"]]
    assert "AcquireVip" in names and "start_prim" in names, names
    assert episode["took"] < outage, episode
    print(cluster.safekit(secondary, "report", "-m", MODULE).stdout)
    lab.start(primary)
    cluster.start_daemon(primary)  # boot="auto": the module starts again by itself
    # The node that was away holds an older replica generation: it must come back as secondary and
    # never, not even for a moment, as a primary.
    deadline = time.monotonic() + 30
    while True:
        state = cluster.state(primary, MODULE)
        assert state["state"] not in ("PRIM", "ALONE"), state
        if state["state"] == "SECOND" and state["readiness"] == "Ready":
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    cluster.wait_state(secondary, MODULE, "PRIM")
    assert not holds_vip(lab, primary)


def test_split_brain_only_the_side_that_reaches_the_witness_serves(lab: Lab, cluster: LabCluster) -> None:
    primary, secondary = primary_and_secondary(cluster)
    wait_served_by(lab, primary)
    lab.cut(primary)  # every LAN: no heartbeat, no witness for the primary; the secondary keeps both
    cut_at = time.monotonic()
    released_at = acquired_at = None
    try:
        while time.monotonic() - cut_at < 15 and (released_at is None or acquired_at is None):
            # each look stamped when it was made, the primary's first: one round of looks that
            # finds the VIP released there and held here shows the release came first
            on_primary, primary_seen = holds_vip(lab, primary), time.monotonic() - cut_at
            on_secondary, secondary_seen = holds_vip(lab, secondary), time.monotonic() - cut_at
            assert not (on_primary and on_secondary), (
                f"both nodes hold the VIP {secondary_seen:.2f} s after the cut"
            )
            if released_at is None and not on_primary:
                released_at = primary_seen
            if acquired_at is None and on_secondary:
                acquired_at = secondary_seen
            time.sleep(0.05)
        assert released_at is not None, "the isolated primary kept the VIP"
        assert acquired_at is not None, "the side with the witness did not take over"
        assert released_at < acquired_at
        assert cluster.state(primary, MODULE)["state"] == "WAIT"
        wait_served_by(lab, secondary)
        served_alone = cluster.state(secondary, MODULE)["generation"]
    finally:
        lab.heal(primary)
    # The old primary never acknowledged a write alone (the witness did not answer it): whatever
    # generation it claimed when it lost its peer, its copy must read as older than the one the
    # other side served alone, so it comes back as a secondary that resynchronises.
    cluster.wait_state(primary, MODULE, "SECOND", timeout=30)
    cluster.wait_state(secondary, MODULE, "PRIM")
    assert cluster.state(primary, MODULE)["generation"] == served_alone


def _sniff_heartbeat(lab: Lab, node: str, port: int) -> bytes:
    """One heartbeat payload as it arrived on the node's eth0 (a raw capture, like an attacker's)."""
    code = f"""
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0800))
s.bind(("eth0", 0)); s.settimeout(5)
while True:
    frame, meta = s.recvfrom(65535)
    if meta[2] == socket.PACKET_OUTGOING: continue
    ip = frame[14:]; ihl = (ip[0] & 15) * 4
    if ip[9] != 17: continue
    udp = ip[ihl:]
    if struct.unpack("!H", udp[2:4])[0] == {port}:
        sys.stdout.write(udp[8:].hex()); break
"""
    out = lab.exec(node, ["python3", "-c", code], timeout=10)
    assert out.returncode == 0, out.stderr
    return bytes.fromhex(out.stdout)


def test_forged_and_replayed_heartbeats_are_dropped_and_counted(lab: Lab, cluster: LabCluster) -> None:
    primary, secondary = primary_and_secondary(cluster)
    target = str(lab.plan().host(primary).address)
    before = metrics(lab, primary)
    labels = {"module": MODULE, "peer": secondary, "lan": "default"}
    forged = Heartbeat(
        module=MODULE,
        sender=secondary,
        target=primary,
        lan="default",
        incarnation=2**62,
        sequence=1,
        sent_at_us=1,
        state=ModuleState.PRIM,
        substate=SubState.READY,
    )
    captured = _sniff_heartbeat(lab, primary, 4800)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(encode(forged, clusterkey.generate_key()), (target, 4800))  # signed with a wrong key
        sock.sendto(captured, (target, 4800))  # an authentic packet, sent again
    time.sleep(1)
    after = metrics(lab, primary)
    for reason in ("bad_signature", "replay"):
        name = "safekit_heartbeats_dropped_total"
        assert (
            metric(after, name, reason=reason, **labels) >= metric(before, name, reason=reason, **labels) + 1
        )
    assert cluster.state(primary, MODULE)["state"] == "PRIM"
    assert cluster.state(secondary, MODULE)["state"] == "SECOND"


def test_a_malformed_module_is_reported_and_the_daemon_keeps_running(lab: Lab, cluster: LabCluster) -> None:
    _, secondary = primary_and_secondary(cluster)
    cluster.stop_daemon(secondary)
    broken = "/opt/safekit/modules/broken/conf"
    lab.exec(secondary, ["mkdir", "-p", broken], check=True)
    cluster.write(
        secondary, f"{broken}/userconfig.xml", '<safe>\n<service mode="mirror">\n<heart><beat/></heart>\n'
    )
    try:
        cluster.start_daemon(secondary)
        cluster.wait_state(secondary, MODULE, "SECOND", timeout=30)  # the good module came back by itself
        out = cluster.safekit(secondary, "state", "--json").stdout
        modules = {m["name"]: m for m in json.loads(out)["modules"]}
        assert "userconfig.xml:" in modules["broken"]["reason"]
        assert "not loaded" in modules["broken"]["reason"]
        # Fixed and applied with `safekit config -m`, without restarting the daemon.
        fixed = (
            '<safe><service mode="mirror"><heart port="4810"><heartbeat name="default"/></heart>'
            "</service></safe>"
        )
        cluster.write(secondary, f"{broken}/userconfig.xml", fixed)
        assert "configuration applied" in cluster.safekit(secondary, "config", "-m", "broken").stdout
        assert cluster.state(secondary, "broken")["state"] == "STOP"
        # A running module's configuration is not swapped under it.
        refused = cluster.safekit(secondary, "config", "-m", MODULE, check=False)
        assert refused.returncode == 1 and "stop" in refused.stderr
        assert cluster.state(secondary, MODULE)["state"] == "SECOND"
    finally:
        lab.exec(secondary, ["rm", "-rf", "/opt/safekit/modules/broken"], check=True)


def test_an_application_that_keeps_dying_moves_over_then_stops_after_maxloop(
    lab: Lab, cluster: LabCluster
) -> None:
    # The application is killed on whichever node serves. errd restarts it locally; a start_prim
    # that fails (killed again) stopstarts, which hands the module over to the up-to-date
    # secondary (ADR 0060); each node counts its own errors, and past maxloop the module stops on
    # the node that failed once more, and its peer goes on ALONE.
    deadline = time.monotonic() + 240
    while True:
        states = {node: cluster.state(node, MODULE)["state"] for node in cluster.nodes}
        if "STOP" in states.values():
            break
        assert time.monotonic() < deadline, (states, cluster.log("node1", MODULE)[-3000:])
        for node, state in states.items():
            if state not in ("PRIM", "ALONE"):
                continue
            # The states were read one node after the other: a peer that stopped since must not have
            # this node's application killed once more - it is the node that goes on ALONE.
            if any(cluster.state(peer, MODULE)["state"] == "STOP" for peer in cluster.nodes if peer != node):
                break
            lab.exec(node, ["sh", "-c", "kill -9 $(cat /run/webmirror.pid) 2>/dev/null"])
        time.sleep(0.5)
    (node,) = [n for n in cluster.nodes if cluster.state(n, MODULE)["state"] == "STOP"]
    other = next(n for n in cluster.nodes if n != node)
    assert "maxloop" in cluster.log(node, MODULE)
    handed = [n for n in cluster.nodes if "stopstarted the primary role: " in cluster.log(n, MODULE)]
    assert handed, "no failed start_prim handed the module over"
    cluster.wait_state(other, MODULE, "ALONE", timeout=30)
    wait_served_by(lab, other)


def test_failover_off_keeps_the_secondary_from_taking_over(
    lab: Lab, cluster: LabCluster, module_dir: Path
) -> None:
    # The previous test left a node stopped by maxloop: waitstart brings it back as secondary.
    for node in cluster.nodes:
        if cluster.state(node, MODULE)["state"] == "STOP":
            out = cluster.safekit(node, "waitstart", "-m", MODULE, "--timeout", "60").stdout
            assert out.split()[1:3] == ["SECOND", "(Ready)"], out
    primary, secondary = primary_and_secondary(cluster)
    cluster.wait_state(primary, MODULE, "PRIM")
    wait_served_by(lab, primary)

    ports = json.loads(cluster.safekit(secondary, "module", "getports", "-m", MODULE, "--json").stdout)
    assert (ports["heartbeat_port"], ports["health_port"]) == (4800, 9010)
    assert sorted(ports["lans"]) == ["default", "lan1"]
    assert "heartbeat UDP port 4800" in cluster.safekit(primary, "module", "getports", "-m", MODULE).stdout
    info = json.loads(cluster.safekit(secondary, "confinfo", "-m", MODULE, "--json").stdout)
    expected = hashlib.sha256((module_dir / "conf" / "userconfig.xml").read_bytes()).hexdigest()
    assert info["path"] == f"/opt/safekit/modules/{MODULE}/conf/userconfig.xml"
    assert (info["sha256"], info["loaded_sha256"], info["differs"]) == (expected, expected, False)
    assert "same as the file" in cluster.safekit(secondary, "confinfo", "-m", MODULE).stdout

    assert "failover off" in cluster.safekit(secondary, "failover", "off", "-m", MODULE).stdout
    assert cluster.state(secondary, MODULE)["controls"]["failover"] == "off"
    lab.cut(primary)  # every LAN: without `failover off` the secondary would take over in ~2 s
    cut_at = time.monotonic()
    try:
        while time.monotonic() - cut_at < 5:
            state = cluster.state(secondary, MODULE)
            assert state["state"] in ("WAIT", "SECOND"), state
            assert not holds_vip(lab, secondary)
            time.sleep(0.2)
        state = cluster.state(secondary, MODULE)
        assert state["state"] == "WAIT" and "failover off" in state["reason"], state
    finally:
        lab.heal(primary)
    cluster.safekit(secondary, "failover", "on", "-m", MODULE)
    assert cluster.state(secondary, MODULE)["controls"]["failover"] == "on"
    deadline = time.monotonic() + 30
    while True:
        states = {n: cluster.state(n, MODULE) for n in cluster.nodes}
        if sorted((s["state"], s["readiness"]) for s in states.values()) == [
            ("PRIM", "Ready"),
            ("SECOND", "Ready"),
        ]:
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.2)
    wait_served_by(lab, primary_and_secondary(cluster)[0])
