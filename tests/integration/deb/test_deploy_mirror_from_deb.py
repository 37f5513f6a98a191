"""playbooks/deploy-mirror.yml from the Debian package onto two Debian lab hosts whose PID 1 is
systemd, over real ssh, with a replicated directory.

Why these hosts: the namespace lab hosts (safekit lab) share this machine's root file system, so
installing a package there would install it on the machine itself. These hosts boot their own
root (an overlay of a debootstrap root, tests/integration/systemd/systemd_host.py) in their own
network namespaces; dpkg writes only into a host's throwaway overlay. The base root is the systemd
lab's package list plus openssh-server (made once, /var/tmp/safekit-systemd/SUITE-ssh). Debian 12
(bookworm) by default; SAFEKIT_DEB_SUITE=trixie: the same on Debian 13.

The lab (lab name h44deb, SAFEKIT_DEB_DEPLOY_LAB): a bridge in its own namespace NAME-sw, the two
nodes NAME-n1 and NAME-n2 (systemd, sshd, no compiler, no route out) and the client NAME-cl, a
plain network namespace that is also the Ansible controller (ansible-playbook runs there, over ssh
to the nodes) and the ping witness. Nothing of the lab is reachable from this machine's own
network namespace.

The test: the package is built once (or taken from its cache); the playbook, with the roles' default
install source (`safekit_install_source: auto`, which chooses the package on the Debian releases of
safekit_deb_auto_releases when it is in safekit_deb_dir) and `safekit_replication` (the web root
/srv/www replicated), installs it with apt-get on both nodes and starts the module; the client
reads the page through the VIP; a file written into the primary's replicated directory is on the
secondary and, after a swap, served by the former secondary through the VIP; a second run of the
playbook changes nothing.
Then playbooks/upgrade.yml, a rolling upgrade to a newer package (the same tree built with a higher
version, build_deb.py --version): the secondary first, a swap, the other node, a swap back, while
the client probes the VIP ten times a second; a second run changes nothing. And the arbiter role
(the first play of deploy-mirror.yml) on a third Debian host (NAME-w): the package there too.
`make test` runs the first test (about a minute once the package and the root are cached);
`make test-deb-deploy` runs them all (the second run of the playbook, the rolling upgrade, and
playbooks/remove.yml, which removes the package with apt-get: about 5 minutes).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "systemd"))
import systemd_host
from systemd_host import SystemdHost, booted

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(2400),
]

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
NAME = os.environ.get("SAFEKIT_DEB_DEPLOY_LAB", "h44deb")
SUITE = os.environ.get("SAFEKIT_DEB_SUITE", "bookworm")
RELEASE = {"bookworm": "12", "trixie": "13"}[SUITE]
UNIT = {"bookworm": "/lib/systemd/system", "trixie": "/usr/lib/systemd/system"}[SUITE] + "/safekitd.service"
SSH_ROOT = Path(os.environ.get("SAFEKIT_DEB_SSH_ROOT", f"/var/tmp/safekit-systemd/{SUITE}-ssh"))
NET = "198.18.244"
NODES = {f"{NAME}-n1": f"{NET}.1", f"{NAME}-n2": f"{NET}.2"}
CLIENT = f"{NAME}-cl"
WITNESS = f"{NAME}-w"
WITNESS_ADDRESS = f"{NET}.3"
CLIENT_ADDRESS = f"{NET}.250"
SWITCH = f"{NAME}-sw"
VIP = f"{NET}.100"
MODULE = "webmirror"
ENGINE = "/opt/safekit/venv/bin/safekit"
LIBEXEC = "/opt/safekit/libexec"

# Every 100 ms, one HTTP GET of the VIP from the client (a new connection each time, 1 s time-out):
# a line "MONOTONIC ok PAGE" or "MONOTONIC fail ERROR" (as tests/integration/ansible/test_ops_playbooks.py).
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
# A swap moves the service in about a second on lab hosts; 5 s leaves room for a loaded machine and
# is still far below a restart of the primary's safekitd (its stop, then the takeover).
MAX_GAP_SECONDS = 5.0


def build_ssh_root(root: Path = SSH_ROOT, suite: str = SUITE, extra: tuple[str, ...] = ()) -> Path:
    """The systemd lab's Debian root plus openssh-server (and EXTRA packages): made once
    (debootstrap), then reused."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / f".{root.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / systemd_host.READY_MARK).exists():
            return root
        shutil.rmtree(root, ignore_errors=True)
        packages = systemd_host.PACKAGES
        if suite != "bookworm":
            packages = packages.replace("libfuse3-3", "libfuse3-4")  # trixie's soname moved to 4
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={packages},openssh-server{''.join(',' + p for p in extra)}",
                suite,
                str(root),
                systemd_host.MIRROR,
            ],
            check=True,
            capture_output=True,
            timeout=1800,
        )
        # Each host makes its own host keys after boot, then starts sshd (below): no key is shared
        # through the base root, and sshd does not start (and fail) at boot without one.
        for key in (root / "etc" / "ssh").glob("ssh_host_*"):
            key.unlink()
        (root / "etc" / "systemd" / "system" / "multi-user.target.wants" / "ssh.service").unlink()
        systemd_host.prepare_root(root)
        return root


@dataclass
class DebLab:
    nodes: dict[str, SystemdHost]
    workdir: Path
    deb: Path
    first_seconds: float | None = None
    """How long the first deploy took (set by the first test)."""

    def client(
        self,
        argv: list[str],
        *,
        timeout: float,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """ARGV in the client's network namespace (this machine's files)."""
        return subprocess.run(
            ["ip", "netns", "exec", CLIENT, *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            cwd=cwd,
            env=env,
        )

    def get(self, path: str) -> str:
        """GET http://VIP:8080/PATH from the client (raises on an HTTP or network error)."""
        script = (
            "import sys, urllib.request;"
            "print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode(), end='')"
        )
        result = self.client(["python3", "-c", script, f"http://{VIP}:8080/{path}"], timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def playbook(
        self, name: str = "deploy-mirror.yml", *extra: str
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, int]], float]:
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            # Our own ssh control sockets: another lab may use the same addresses in its namespaces.
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.workdir / "cp"),
        }
        started = time.monotonic()
        result = self.client(
            [
                str(BIN / "ansible-playbook"),
                "-i",
                str(self.workdir / "inventory.yml"),
                f"playbooks/{name}",
                *extra,
            ],
            cwd=REPO,
            env=env,
            timeout=900,
        )
        elapsed = time.monotonic() - started
        recap = {
            m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
            for m in re.finditer(r"^(\S+)\s+: (ok=.*)$", result.stdout, re.MULTILINE)
        }
        return result, recap, elapsed

    def wait_for_file(self, node: str, path: str, content: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.nodes[node].sh(f"cat {path} 2>/dev/null || true") != content:
            assert time.monotonic() < deadline, f"{path} never reached {node} with {content!r}"
            time.sleep(0.5)

    def state(self, node: str) -> tuple[str, str]:
        out = self.nodes[node].run([ENGINE, "state", "-m", MODULE, "--json"]).stdout
        module = json.loads(out)["modules"][0]
        return module["state"], module["readiness"]


def ip(*argv: str, netns: str | None = None) -> None:
    subprocess.run(["ip", *(["-n", netns] if netns else []), *argv], check=True, capture_output=True)


def sysctl(netns: str, *settings: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", *settings], check=True)


def remove_netns() -> None:
    for ns in (CLIENT, SWITCH):
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def cable(ns: str, address: str) -> None:
    """A veth from the namespace NS (lan0, ADDRESS/24) to the lab's bridge."""
    port = f"{ns.rsplit('-', 1)[-1]}p"
    ip("link", "add", port, "type", "veth", "peer", "name", "lan0", "netns", ns, netns=SWITCH)
    ip("link", "set", port, "master", "br0", "up", netns=SWITCH)
    # A node taking the VIP announces it (gratuitous ARP): the others' caches must follow.
    sysctl(ns, "net.ipv4.conf.all.arp_accept=1", "net.ipv4.conf.lan0.arp_accept=1")
    ip("addr", "add", f"{address}/24", "dev", "lan0", netns=ns)
    ip("link", "set", "lan0", "up", netns=ns)
    ip("link", "set", "lo", "up", netns=ns)


@pytest.fixture(scope="module")
def deb(root_required: None) -> Path:
    """build/deb/safekit_VERSION+debN_ARCH.deb for SUITE: seconds when cached, minutes when not."""
    result = subprocess.run(
        [sys.executable, str(REPO / "packaging" / "build_deb.py"), "--suite", SUITE],
        capture_output=True,
        text=True,
        timeout=2400,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def lab(deb: Path) -> Iterator[DebLab]:
    yield from running_lab(deb, build_ssh_root())


def running_lab(deb: Path, base: Path) -> Iterator[DebLab]:
    """The lab on hosts booted from overlays of the root BASE, removed afterwards."""
    remove_netns()  # leftovers of an interrupted run
    workdir = Path(tempfile.mkdtemp(prefix=f"safekit-{NAME}-"))
    (workdir / "cp").mkdir()
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", NAME, "-f", str(key)], check=True)
    try:
        with contextlib.ExitStack() as stack:
            nodes = {name: stack.enter_context(booted(name, base, [])) for name in NODES}
            ip("netns", "add", SWITCH)
            ip("netns", "add", CLIENT)
            ip("link", "add", "br0", "type", "bridge", "stp_state", "0", netns=SWITCH)
            ip("link", "set", "br0", "up", netns=SWITCH)
            cable(CLIENT, CLIENT_ADDRESS)
            known = [ssh_host(name, host, NODES[name], key) for name, host in nodes.items()]
            (workdir / "known_hosts").write_text("".join(known))
            (workdir / "inventory.yml").write_text(inventory(workdir, key, deb))
            yield DebLab(nodes, workdir, deb)
    finally:
        remove_netns()
        shutil.rmtree(workdir, ignore_errors=True)


def ssh_host(name: str, host: SystemdHost, address: str, key: Path) -> str:
    """HOST on the lab's bridge at ADDRESS, its sshd started with KEY authorized; its known_hosts line."""
    cable(name, address)
    host.sh(f"echo {name} > /etc/hostname && hostname {name}")  # the root's is debootstrap's
    host.write("/root/.ssh/authorized_keys", key.with_suffix(".pub").read_text(), 0o600)
    host.sh("ssh-keygen -A && systemctl start ssh.service")
    kind, public = host.sh("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
    return f"{address} {kind} {public}\n"


def inventory(workdir: Path, key: Path, deb: Path, witness: str | None = None) -> str:
    ssh_args = (
        f"-o UserKnownHostsFile={workdir / 'known_hosts'} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
    )
    hosts = {
        name: {
            "ansible_host": address,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": ssh_args,
            "ansible_python_interpreter": "/usr/bin/python3",
            "safekit_addresses": {"default": address},
        }
        for name, address in NODES.items()
    }
    group = {
        "hosts": hosts,
        "vars": {
            "safekit_cluster_name": NAME,
            "safekit_key_file": str(workdir / "cluster.key"),
            "safekit_deb_dir": str(deb.parent),
            "safekit_vip": VIP,
            "safekit_witness": CLIENT_ADDRESS,
            "safekit_replication": {"dirs": [{"path": "/srv/www"}]},
        },
    }
    groups: dict[str, object] = {"safekit_nodes": group}
    if witness is not None:  # the arbiter's host (safekit_arbiter, the first play of deploy-mirror.yml)
        host = {k: v for k, v in hosts[next(iter(NODES))].items() if k != "safekit_addresses"}
        groups["safekit_witness"] = {
            "hosts": {witness: {**host, "ansible_host": WITNESS_ADDRESS}},
            "vars": group["vars"],  # the cluster's key file and name, the package directory
        }
    return json.dumps(groups, indent=2)


def test_deploy_from_the_package_serves_replicates_and_swaps(lab: DebLab) -> None:
    n1, n2 = NODES
    for host in lab.nodes.values():
        assert host.sh("command -v gcc cc || true") == "", "a compiler on a node"
        assert host.run(["test", "-e", ENGINE], check=False).returncode != 0

    first, recap, first_seconds = lab.playbook()
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-2000:]
    assert "Install the Debian package" in first.stdout
    # the roles' default install source (auto) chose the package on these Debian nodes, and said so
    for name in NODES:
        assert f"{name}: the engine from deb (auto, {lab.deb.name})" in first.stdout
    version = lab.deb.name.split("_")[1]
    for name, host in lab.nodes.items():
        assert recap[name]["failed"] == 0 and recap[name]["changed"] > 0, recap
        assert host.sh("dpkg-query -W -f='${Status} ${Version}' safekit") == f"install ok installed {version}"
        # the package's unit runs safekitd, with the package's native replication programs
        assert host.show("safekitd", "ActiveState", "FragmentPath") == {
            "ActiveState": "active",
            "FragmentPath": UNIT,
        }
        assert host.run(["test", "-x", f"{LIBEXEC}/safekit-rfs-primary"], check=False).returncode == 0
    assert lab.state(n1) == ("PRIM", "Ready")
    assert lab.state(n2) == ("SECOND", "Ready")
    # the replication runs the package's native primary (safekitd finds it in /opt/safekit/libexec)
    running = lab.nodes[n1].sh("for p in $(pgrep -x safekit-rfs-pri); do readlink /proc/$p/exe; done")
    assert running.split() == [f"{LIBEXEC}/safekit-rfs-primary"]
    assert lab.get("") == f"served by {n1}\n"

    # Written through the primary's replicated directory: served through the VIP, on the secondary.
    lab.nodes[n1].sh("echo 'written on the primary' > /srv/www/probe.txt && sync")
    assert lab.get("probe.txt") == "written on the primary\n"
    lab.wait_for_file(n2, "/srv/www/probe.txt", "written on the primary\n")

    # Swap: the former secondary serves, with the file written on the former primary.
    lab.nodes[n1].run([ENGINE, "swap", "-m", MODULE], timeout=180)
    for node, state in ((n2, "PRIM"), (n1, "SECOND")):
        wait = [ENGINE, "waitstate", "-m", MODULE, "--ready", "--timeout", "120", state]
        lab.nodes[node].run(wait, timeout=150)
    assert lab.get("") == f"served by {n2}\n"
    assert lab.get("probe.txt") == "written on the primary\n"

    # and back: written on the new primary, replicated to the new secondary
    lab.nodes[n2].sh("echo 'written after the swap' > /srv/www/after.txt && sync")
    lab.wait_for_file(n1, "/srv/www/after.txt", "written after the swap\n")
    lab.first_seconds = first_seconds
    bench_record(first_s=first_seconds, first_recap=recap)


def bench_record(**figures: object) -> None:
    """bench/deploy_deb.py's figures, added to the JSON file SAFEKIT_DEB_BENCH_JSON names (when set)."""
    path = os.environ.get("SAFEKIT_DEB_BENCH_JSON")
    if path:
        known = json.loads(Path(path).read_text()) if Path(path).exists() else {}
        Path(path).write_text(json.dumps({**known, **figures}, indent=2))


def test_a_second_run_changes_nothing(lab: DebLab) -> None:
    """After the deploy and the swap of the test above (make test-deb-deploy runs both; make test
    deselects this one, 30-60 s more)."""
    n1, n2 = NODES
    assert lab.first_seconds is not None, "runs after the deploy test above"
    again, recap, again_seconds = lab.playbook()
    assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-2000:]
    assert all(host["changed"] == 0 and host["failed"] == 0 for host in recap.values()), recap
    assert set(recap) >= set(NODES)
    assert lab.state(n1) == ("SECOND", "Ready"), "a second run moves nothing"
    assert lab.state(n2) == ("PRIM", "Ready"), "a second run moves nothing"
    size = lab.deb.stat().st_size / 1e6
    bench_record(
        second_s=again_seconds, second_recap=recap, package=lab.deb.name, package_bytes=lab.deb.stat().st_size
    )
    if os.environ.get("SAFEKIT_DEB_BENCH_JSON"):  # the baseline: what any playbook pays here
        ping, _, ping_seconds = lab.playbook("lab-ping.yml")
        assert ping.returncode == 0, ping.stdout[-3000:]
        bench_record(lab_ping_s=ping_seconds)
    print(f"first deploy {lab.first_seconds:.0f} s, second run {again_seconds:.0f} s, package {size:.1f} MB")


def bumped(version: str) -> str:
    """VERSION with its last number one higher (0.2.0.dev0: 0.2.0.dev1; 0.2.0: 0.2.1)."""
    head, number = re.fullmatch(r"(.*?)(\d+)", version).groups()  # type: ignore[union-attr]
    return f"{head}{int(number) + 1}"


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


def test_bumped_versions_sort_after() -> None:
    assert bumped("0.2.0.dev0") == "0.2.0.dev1"
    assert bumped("0.2.0") == "0.2.1"
    assert bumped("1.0rc9") == "1.0rc10"


def test_rolling_upgrade_to_a_newer_package_keeps_the_vip_serving(lab: DebLab) -> None:
    """playbooks/upgrade.yml on nodes installed from the package, to a newer package (make
    test-deb-deploy only): apt-get installs it on the secondary, whose safekitd restarts, a swap, the
    same on the other node, a swap back; the VIP serves throughout but for the two swaps. A second
    run changes nothing and restarts nothing."""
    assert lab.first_seconds is not None, "runs after the deploy test above"
    newer = bumped(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])
    started = time.monotonic()
    build = subprocess.run(
        [
            sys.executable,
            str(REPO / "packaging" / "build_deb.py"),
            "--suite",
            SUITE,
            "--out",
            str(lab.workdir / "deb-newer"),
            "--version",
            newer,
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    deb = Path(build.stdout.strip().splitlines()[-1])
    print(f"package {deb.name} built in {time.monotonic() - started:.0f} s")
    states = {node: lab.state(node) for node in NODES}
    primary = next(node for node, (state, _) in states.items() if state == "PRIM")
    secondary = next(node for node in NODES if node != primary)
    assert states == {primary: ("PRIM", "Ready"), secondary: ("SECOND", "Ready")}, states
    pids = {node: host.show("safekitd", "MainPID")["MainPID"] for node, host in lab.nodes.items()}

    probe = subprocess.Popen(
        ["ip", "netns", "exec", CLIENT, "python3", "-u", "-c", PROBE, f"http://{VIP}:8080/"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        time.sleep(1)
        result, recap, elapsed = lab.playbook("upgrade.yml", "-e", f"safekit_deb_dir={deb.parent}")
        time.sleep(1)
    finally:
        probe.send_signal(signal.SIGTERM)
        out, _ = probe.communicate(timeout=10)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    lines = out.splitlines()
    assert len(lines) > elapsed * 5, f"the probe ran: {len(lines)} probes in {elapsed:.0f} s"
    windows = outages(lines)
    servers = [line.split()[2:] for line in lines if line.split()[1] == "ok"]
    moves = [b for a, b in itertools.pairwise(servers) if a != b]
    failed = sum(n for _, n in windows)
    print(
        f"rolling upgrade to {newer}: {elapsed:.1f} s, {len(lines)} probes, {failed} failed, "
        f"outages {', '.join(f'{gap:.2f} s' for gap, _ in windows) or 'none'}, served by {moves}"
    )
    # apt-get installed the newer package on both nodes, and both daemons run it
    for node, host in lab.nodes.items():
        version = deb.name.split("_")[1]
        assert host.sh("dpkg-query -W -f='${Status} ${Version}' safekit") == f"install ok installed {version}"
        assert host.run([ENGINE, "--version"]).stdout.split()[-1] == newer
        assert recap[node]["changed"] > 0 and recap[node]["failed"] == 0, recap
        assert host.show("safekitd", "ActiveState")["ActiveState"] == "active"
        assert host.show("safekitd", "MainPID")["MainPID"] != pids[node], f"safekitd restarted on {node}"
        started_as = host.sh(
            f"grep -o 'safekitd [^ ]* running (pid {host.show('safekitd', 'MainPID')['MainPID']})' "
            "/var/log/safekit/safekitd.log | tail -n 1"
        )
        assert started_as.split()[1] == newer, started_as
    # One node at a time, each while it was the secondary: the service moved to the upgraded
    # secondary and back, unavailable only during those two swaps.
    swaps = [line.strip() for line in result.stdout.splitlines() if "swap from" in line or "wanted:" in line]
    # failures after the last answer are in no outage window: the VIP must serve when the playbook ends
    assert lines[-1].split()[1] == "ok", ("the VIP does not serve after the upgrade", lines[-5:], swaps)
    assert moves == [["served", "by", secondary], ["served", "by", primary]], (
        moves,
        swaps,
        lines[-5:],  # after the last swap: trailing failures are in no outage window
        result.stdout[-4000:],
    )
    assert len(windows) <= 2, windows
    assert all(gap <= MAX_GAP_SECONDS for gap, _ in windows), windows
    assert lab.state(primary) == ("PRIM", "Ready")
    assert lab.state(secondary) == ("SECOND", "Ready")
    assert lab.get("probe.txt") == "written on the primary\n", "the replicated data survived"

    # The same package again: nothing changes, nothing restarts.
    pids = {node: host.show("safekitd", "MainPID")["MainPID"] for node, host in lab.nodes.items()}
    again, recap, again_seconds = lab.playbook("upgrade.yml", "-e", f"safekit_deb_dir={deb.parent}")
    assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-2000:]
    assert all(host["changed"] == 0 and host["failed"] == 0 for host in recap.values()), recap
    assert {node: host.show("safekitd", "MainPID")["MainPID"] for node, host in lab.nodes.items()} == pids
    assert lab.state(primary) == ("PRIM", "Ready")
    print(f"upgrade with nothing to do: {again_seconds:.1f} s")


def test_the_arbiter_role_installs_the_package_on_a_debian_witness(lab: DebLab) -> None:
    """The first play of deploy-mirror.yml (safekit_arbiter) on a third Debian host booting systemd
    (make test-deb-deploy only): `auto` chooses the package there too, apt-get installs it, the
    arbiter runs from the package's engine as its own unit, the package's safekitd stays disabled
    and stopped; a second run changes nothing."""
    assert lab.first_seconds is not None, "runs after the deploy test above"
    key = lab.workdir / "id_ed25519"
    with booted(WITNESS, build_ssh_root(), []) as witness:
        known = (lab.workdir / "known_hosts").read_text()
        (lab.workdir / "known_hosts").write_text(known + ssh_host(WITNESS, witness, WITNESS_ADDRESS, key))
        (lab.workdir / "inventory.yml").write_text(inventory(lab.workdir, key, lab.deb, WITNESS))
        try:
            first, recap, first_seconds = lab.playbook("deploy-mirror.yml", "--limit", "safekit_witness")
            assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-2000:]
            assert f"{WITNESS}: the engine from deb (auto, {lab.deb.name})" in first.stdout
            assert recap[WITNESS]["changed"] > 0, recap
            version = lab.deb.name.split("_")[1]
            assert (
                witness.sh("dpkg-query -W -f='${Status} ${Version}' safekit")
                == f"install ok installed {version}"
            )
            deadline = time.monotonic() + 30
            while witness.show("safekit-arbiter", "ActiveState")["ActiveState"] != "active":
                status = witness.sh(
                    "systemctl status safekit-arbiter; journalctl -u safekit-arbiter", check=False
                )
                assert time.monotonic() < deadline, status
                time.sleep(1)
            command = witness.sh(
                "cat /proc/$(systemctl show -P MainPID safekit-arbiter)/cmdline | tr '\\0' ' '"
            )
            assert command.startswith("/opt/safekit/venv/bin/python"), command
            assert witness.show("safekitd", "ActiveState", "UnitFileState") == {
                "ActiveState": "inactive",
                "UnitFileState": "disabled",
            }
            again, recap, again_seconds = lab.playbook("deploy-mirror.yml", "--limit", "safekit_witness")
            assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-2000:]
            assert recap[WITNESS]["changed"] == 0, recap
            print(f"arbiter from the package: first run {first_seconds:.0f} s, second {again_seconds:.0f} s")
        finally:
            (lab.workdir / "inventory.yml").write_text(inventory(lab.workdir, key, lab.deb))


def test_remove_takes_the_package_away(lab: DebLab) -> None:
    """playbooks/remove.yml on nodes deployed from the package (make test-deb-deploy only): the
    module stops through its scripts, apt-get removes the package (not a virtualenv deleted under
    dpkg's feet), nothing of it is left; a second run changes nothing."""
    assert lab.first_seconds is not None, "runs after the deploy test above"
    removed, recap, _ = lab.playbook("remove.yml")
    assert removed.returncode == 0, removed.stdout[-6000:] + removed.stderr[-2000:]
    assert "Remove the Debian package" in removed.stdout
    for name, host in lab.nodes.items():
        assert recap[name]["changed"] > 0, recap
        status = host.sh("dpkg-query -W -f='${db:Status-Status}' safekit 2>/dev/null || true")
        assert status in ("", "not-installed", "config-files"), status
        assert host.run(["test", "-e", "/opt/safekit/venv"], check=False).returncode != 0
        assert host.show("safekitd", "LoadState")["LoadState"] == "not-found"
        assert host.run(["pgrep", "-x", "safekitd"], check=False).returncode != 0
    again, recap, _ = lab.playbook("remove.yml")
    assert again.returncode == 0, again.stdout[-6000:]
    assert all(host["changed"] == 0 for host in recap.values()), recap
