"""Real lab hosts: sshd, private directories, Ansible, fault injection and a clean `down`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from safekit.lab import Lab, LabError
from safekit.lab.lab import lab_root
from safekit.lab.run_names import run_lab_name
from safekit.lab.topology import PREFIX, PRIVATE_DIRS

VENV_BIN = Path(sys.executable).parent  # the tests run from the project's .venv


def ssh(lab: Lab, host: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        lab.ssh_argv(host, ["--", command]), capture_output=True, text=True, timeout=30, check=False
    )


def can_ping(lab: Lab, src: str, dst: str, wait: float = 1) -> bool:
    ip = str(lab.plan().host(dst).address)
    return lab.exec(src, ["ping", "-c", "1", "-W", str(wait), ip]).returncode == 0


def test_every_host_answers_ssh_as_itself(lab: Lab) -> None:
    for host in ("node1", "node2", "witness", "client"):
        result = ssh(lab, host, "hostname")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == host


def test_ssh_does_not_wait_on_a_stale_pyenv_lock_of_the_machine(lab: Lab) -> None:
    """Lab hosts share the machine's /root, whose .bashrc may run `pyenv rehash`: a shim lock left
    by a killed process made every ssh command (Ansible's) wait 60 s. The lock is made in node1's
    own mount namespace only (a copy of the shims bound over them), so nothing else sees it."""
    shims = "/root/.pyenv/shims"
    if lab.exec("node1", ["test", "-d", shims]).returncode != 0:
        pytest.skip("no pyenv on this machine: nothing to wait for")  # not counted as a pass
    script = (
        f'set -e; d=$(mktemp -d /var/tmp/shims.XXXXXX); cp -a {shims}/. "$d"; '
        f': > "$d/.pyenv-shim"; mount --bind "$d" {shims}; echo "$d"'
    )
    copy = lab.exec("node1", ["sh", "-c", script], check=True).stdout.strip()
    try:
        began = time.monotonic()
        result = ssh(lab, "node1", "hostname")
        took = time.monotonic() - began
    finally:
        lab.exec("node1", ["umount", shims], check=True)
        lab.exec("node1", ["rm", "-rf", copy], check=True)
    assert result.returncode == 0 and result.stdout.strip() == "node1", result.stderr
    assert took < 15, f"ssh took {took:.1f} s with a stale pyenv lock"


def test_ansible_reaches_every_host_with_the_lab_inventory(lab: Lab) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "ansible"), "-i", str(lab.inventory_path), "all", "-m", "ansible.builtin.ping"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for host in ("node1", "node2", "witness", "client"):
        assert f"{host} | SUCCESS" in result.stdout


@pytest.mark.parametrize("directory", [*PRIVATE_DIRS, "/run"])
def test_private_directories_are_private(lab: Lab, directory: str) -> None:
    marker = f"{directory}/itest-private-marker"
    assert ssh(lab, "node1", f"echo node1 > {marker}").returncode == 0
    try:
        assert ssh(lab, "node1", f"cat {marker}").stdout.strip() == "node1"
        assert ssh(lab, "node2", f"test -e {marker}").returncode == 1
        assert not Path(marker).exists(), "a lab host wrote into this machine's own directory"
    finally:
        ssh(lab, "node1", f"rm -f {marker}")


def test_hosts_reach_each_other_by_name_but_nothing_outside_the_lab(lab: Lab) -> None:
    assert lab.exec("node1", ["ping", "-c", "1", "-W", "1", "node2"]).returncode == 0
    routes = lab.exec("node1", ["ip", "-4", "route", "show"]).stdout
    assert "default" not in routes
    assert all(line.startswith("198.18.") for line in routes.splitlines())
    result = lab.exec("node1", ["ping", "-c", "1", "-W", "1", "127.0.0.53"])
    assert result.returncode != 0 or "127.0.0.53" in result.stdout  # only its own loopback answers
    unreachable = lab.exec("node1", ["ping", "-c", "1", "-W", "1", "198.51.100.1"])
    assert unreachable.returncode != 0
    assert "Network is unreachable" in unreachable.stderr + unreachable.stdout


def test_cut_one_host_and_heal(lab: Lab) -> None:
    assert can_ping(lab, "node1", "node2")
    lab.cut("node2")
    try:
        assert not can_ping(lab, "node1", "node2")
        assert not can_ping(lab, "witness", "node2")
        carrier = lab.exec("node2", ["cat", "/sys/class/net/eth0/carrier"]).stdout.strip()
        assert carrier == "0", "the host itself sees its cable pulled"
    finally:
        lab.heal("node2")
    assert can_ping(lab, "node1", "node2", wait=2)


def test_isolate_cuts_only_the_pair(lab: Lab) -> None:
    lab.isolate("node1", "node2")
    try:
        assert not can_ping(lab, "node1", "node2")
        assert not can_ping(lab, "node2", "node1")
        assert can_ping(lab, "node1", "witness")
        assert can_ping(lab, "node2", "witness")
        # A virtual IP held by node2 is out of node1's reach too: isolation is by cable, not address.
        vip = str(lab.plan().vips[0])
        lab.exec("node2", ["ip", "addr", "add", f"{vip}/24", "dev", "eth0"], check=True)
        try:
            assert lab.exec("node1", ["ping", "-c", "1", "-W", "1", vip]).returncode != 0
            assert lab.exec("client", ["ping", "-c", "1", "-W", "1", vip]).returncode == 0
        finally:
            lab.exec("node2", ["ip", "addr", "del", f"{vip}/24", "dev", "eth0"], check=True)
    finally:
        lab.heal()
    assert can_ping(lab, "node1", "node2")


# On `dst`: count the UDP datagrams that arrive on port 5599 within `seconds`.
_COUNT_UDP = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 5599))
s.settimeout(0.2)
print("ready", flush=True)
got, end = 0, time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        s.recv(64)
        got += 1
    except TimeoutError:
        pass
print(got, flush=True)
"""

_SEND_UDP = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[2])):
    s.sendto(b"x", (sys.argv[1], 5599))
    time.sleep(0.002)
"""


def udp_received(lab: Lab, src: str, dst: str, count: int) -> int:
    """Datagrams of `count` sent from `src` to `dst` that arrived (after one ping to resolve ARP)."""
    address = str(lab.plan().host(dst).address)
    listener = subprocess.Popen(
        lab.exec_argv(dst, ["python3", "-c", _COUNT_UDP, address, "3"]), stdout=subprocess.PIPE, text=True
    )
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        lab.exec(src, ["python3", "-c", _SEND_UDP, address, str(count)], check=True)
        out, _ = listener.communicate(timeout=30)
    finally:
        if listener.poll() is None:
            listener.kill()
    return int(out.strip().splitlines()[-1])


def test_drop_cuts_one_direction_or_a_share_of_the_frames(lab: Lab) -> None:
    """`lab drop`: a one-way link (frames of node1 to node2 lost, node2's to node1 pass) and a lossy
    one, drawn frame by frame; `heal` lifts them. Neighbour entries are resolved before each cut (a
    one-way link also loses the ARP replies of its direction)."""
    assert can_ping(lab, "node1", "node2") and can_ping(lab, "node2", "node1")
    lab.drop("node1", "node2")
    try:
        assert udp_received(lab, "node1", "node2", 50) == 0
        assert udp_received(lab, "node2", "node1", 50) == 50
        assert can_ping(lab, "node1", "witness")
        assert (
            "dropping: node1 -> node2, 100 %"
            in subprocess.run(
                [str(VENV_BIN / "safekit"), "lab", "status", "--name", lab.name],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        lab.drop("node1", "node2", 50, both_ways=True)
        there = udp_received(lab, "node1", "node2", 400)
        back = udp_received(lab, "node2", "node1", 400)
        # 50 % of 400, drawn: outside 120-280 has a probability below 1e-15
        assert 120 <= there <= 280 and 120 <= back <= 280, (there, back)
    finally:
        lab.heal()
    assert udp_received(lab, "node1", "node2", 50) == 50


def test_cut_one_lan_of_a_two_lan_lab(root_required: None) -> None:
    lab = Lab(run_lab_name("itest2"))
    lab.down()
    lab.up(nodes=2, lans=2)
    try:
        plan = lab.plan()
        node2 = plan.host("node2")
        lab.cut("node2", "lan1")
        assert lab.exec("node1", ["ping", "-c1", "-W1", str(node2.addresses["lan1"].ip)]).returncode != 0
        assert lab.exec("node1", ["ping", "-c1", "-W1", str(node2.addresses["default"].ip)]).returncode == 0
        with pytest.raises(LabError, match="unknown LAN 'lan7'"):
            lab.cut("node2", "lan7")
    finally:
        lab.down()


def test_kill_is_a_power_cut_and_start_boots_a_clean_host(lab: Lab) -> None:
    vip = str(lab.plan().vips[1])
    lab.exec("node2", ["ip", "addr", "add", f"{vip}/24", "dev", "eth0"], check=True)
    ssh(lab, "node2", "echo kept > /var/safekit/disk-marker")
    sleeper = subprocess.Popen(lab.exec_argv("node2", ["sleep", "600"]))
    try:
        killed = lab.kill("node2")
        assert killed >= 2  # sshd and the sleeper at least
        assert sleeper.wait(timeout=5) == -9
        netns = lab.plan().host("node2").netns
        pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False)
        assert pids.stdout == ""
        assert not can_ping(lab, "node1", "node2")
        # the killed host's kernel must not keep answering for its addresses or a virtual IP
        assert lab.exec("client", ["ping", "-c", "1", "-W", "1", vip]).returncode != 0
        with pytest.raises(LabError, match="powered off"):
            lab.exec("node2", ["true"])
        status = {h.name: h for h in lab.status()}
        assert status["node2"].power == "killed" and not status["node2"].sshd
        assert status["node1"].power == "on" and status["node1"].sshd
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
    assert lab.start("node2") is True
    assert lab.start("node2") is False, "starting a running host does nothing"
    # Booted like a real host: its disk is kept, its addresses and /run are new.
    assert ssh(lab, "node2", "cat /var/safekit/disk-marker").stdout.strip() == "kept"
    addresses = lab.exec("node2", ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
    assert vip not in addresses
    assert can_ping(lab, "node1", "node2")
    ssh(lab, "node2", "rm -f /var/safekit/disk-marker")


def test_up_on_an_existing_lab_changes_nothing(lab: Lab) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "safekit"), "lab", "up", "--name", lab.name, "--nodes", "5"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "already up" in result.stdout
    assert len(lab.plan().hosts) == 4


def test_status_json_and_unknown_host(lab: Lab) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "safekit"), "lab", "status", "--name", lab.name, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(result.stdout)
    assert [h["name"] for h in data["hosts"]] == ["node1", "node2", "witness", "client"]
    assert all(h["power"] == "on" and h["sshd"] for h in data["hosts"])
    bad = subprocess.run(
        [str(VENV_BIN / "safekit"), "lab", "exec", "--name", lab.name, "node9", "--", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("safekit lab: unknown host 'node9'")


def _lab_traces(name: str) -> dict[str, list[str]]:
    """Everything a lab named `name` could leave on this machine."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    mounts = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
    root = str(lab_root() / name)
    return {
        "netns": [line for line in netns.splitlines() if line.startswith(f"{PREFIX}-{name}-")],
        "links": [
            line for line in links.splitlines() if f"{PREFIX}-{name}:" in line or f"{PREFIX}-{name}@" in line
        ],
        "tables": [line for line in tables.splitlines() if line.endswith(f"{PREFIX}_{name}")],
        "mounts": [line for line in mounts.splitlines() if root in line],
        "files": [root] if Path(root).exists() else [],
    }


def _processes_in_namespaces(prefix: str) -> list[str]:
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    for line in netns.splitlines():
        name = line.split()[0]
        if name.startswith(prefix):
            pids = subprocess.run(
                ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
            ).stdout
            found += pids.split()
    return found


def test_down_leaves_nothing_behind_even_after_a_crash(root_required: None) -> None:
    lab = Lab(run_lab_name("itest3"))
    lab.down()
    lab.up(nodes=2, witness=True)
    sleeper = subprocess.Popen(lab.exec_argv("node1", ["sleep", "600"]))
    assert all(_lab_traces(lab.name).values()), "the lab should exist before it is removed"
    # A crash: the state file is gone, only the prefix can find what exists.
    (lab.dir / "state.json").unlink()
    assert lab.down() is True
    assert sleeper.wait(timeout=5) == -9
    assert _lab_traces(lab.name) == {"netns": [], "links": [], "tables": [], "mounts": [], "files": []}
    assert _processes_in_namespaces(f"{PREFIX}-{lab.name}-") == []
    assert lab.down() is False, "a second down has nothing to do"


def test_a_failed_up_rolls_back_everything(root_required: None, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = Lab(run_lab_name("itest4"))
    lab.down()

    def broken_sshd(self: Lab, hosts: object) -> None:
        raise LabError("sshd did not answer (injected)")

    monkeypatch.setattr(Lab, "_wait_sshd", broken_sshd)
    with pytest.raises(LabError, match="injected"):
        lab.up(nodes=2, witness=True, client=True)
    assert _lab_traces(lab.name) == {"netns": [], "links": [], "tables": [], "mounts": [], "files": []}


def test_kill_waits_for_nothing(lab: Lab) -> None:
    """`lab kill` is a power cut, not a shutdown: it returns at once even if processes ignore SIGTERM."""
    proc = subprocess.Popen(lab.exec_argv("client", ["sh", "-c", "trap '' TERM; sleep 600"]))
    time.sleep(0.2)
    started = time.monotonic()
    lab.kill("client")
    # SIGKILL at once (the process ignores SIGTERM, so -9 proves no shutdown was attempted); the
    # bound only catches a wait for a grace period, it is generous for a loaded machine
    assert time.monotonic() - started < 10
    assert proc.wait(timeout=5) == -9
    lab.start("client")
