"""`safekit lab`: build, drive and remove a multi-host lab made of network namespaces.

A lab host is a network namespace (its own interfaces, addresses, routes, firewall), a persistent
mount namespace (private views of the directories listed in `PRIVATE_DIRS` and a fresh `/run`) and a
UTS namespace (its own hostname), with its own sshd. The LANs are bridges inside a separate switch
namespace; this machine (the Ansible controller) reaches LAN 0 through one veth. Lab hosts have no
default route and the root namespace refuses to forward their packets, so nothing leaves the lab.

Everything is recorded in a state file before it is created, and everything carries the `sklab`
prefix, so `down` removes a lab completely even after a crash half-way through `up`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from safekit.lab import system
from safekit.lab.topology import (
    PREFIX,
    PRIVATE_DIRS,
    Host,
    LabError,
    LabPlan,
    choose_slot,
    inventory,
    plan_lab,
    validate_name,
)
from safekit.lab.wiring import FaultState, isolation_ruleset, port_states

DEFAULT_ROOT = Path("/var/lib/safekit-lab")
LOCK_FILE = Path("/run/lock/safekit-lab.lock")
"""The machine's lab lock: held by `up` and `down`, which share state between labs (the slots, the
mountpoints of `PRIVATE_DIRS`, the lab root). Each lab also has its own lock, next to it
(`lab_lock_file`), held by everything that changes the lab; a fault (`kill`, `cut`...) takes only
that one, so it never waits for another lab's `up` (ADR 0066)."""
STATE_VERSION = 1
SSHD_START_TIMEOUT = 10.0


def lab_root() -> Path:
    return Path(os.environ.get("SAFEKIT_LAB_ROOT", str(DEFAULT_ROOT)))


@dataclass
class LabState:
    """What `up` recorded about a lab: its parameters (the plan is derived from them) and its faults."""

    name: str
    slot: int
    nodes: int
    lans: int
    witness: bool
    client: bool
    status: str = "creating"
    ipv6: bool = False
    faults: FaultState = field(default_factory=FaultState)
    created_mountpoints: list[str] = field(default_factory=list)

    def plan(self) -> LabPlan:
        return plan_lab(
            self.name,
            slot=self.slot,
            nodes=self.nodes,
            lans=self.lans,
            witness=self.witness,
            client=self.client,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "name": self.name,
            "slot": self.slot,
            "nodes": self.nodes,
            "lans": self.lans,
            "witness": self.witness,
            "client": self.client,
            "ipv6": self.ipv6,
            "status": self.status,
            "faults": self.faults.to_json(),
            "created_mountpoints": self.created_mountpoints,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        return cls(
            name=str(data["name"]),
            slot=int(data["slot"]),
            nodes=int(data["nodes"]),
            lans=int(data["lans"]),
            witness=bool(data["witness"]),
            client=bool(data["client"]),
            ipv6=bool(data.get("ipv6", False)),
            status=str(data.get("status", "creating")),
            faults=FaultState.from_json(data.get("faults", {})),
            created_mountpoints=[str(p) for p in data.get("created_mountpoints", [])],
        )


@dataclass(frozen=True)
class PowerCut:
    """What `Lab.power_cut` did, and when the host went silent."""

    host: str
    processes: int
    """Processes SIGKILLed."""
    cut_at: float
    """`time.monotonic()` when the cables were pulled: from then on no frame of the host leaves it."""
    cut_at_wall: float
    """The same moment as `time.time()`."""
    waited_s: float
    """How long the power cut waited for the lab's lock (another operation on the same lab)."""


def lab_lock_file(name: str) -> Path:
    """The lock of one lab, outside the lab's directory (`down` removes that directory); `down`
    removes the lock file too, while it holds it."""
    return LOCK_FILE.with_name(f"safekit-lab.{name}.lock")


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    """Hold the lock of `path`. A process that waited on a file removed meanwhile (by `down`) holds
    a lock nobody else sees: it locks the file now at `path` instead."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        f = open(path, "a+b")  # noqa: SIM115 - closed below or by the `with`
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            current = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        f.close()
    with f:
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True)
class HostStatus:
    name: str
    role: str
    addresses: dict[str, str]
    power: str  # "on", "killed", "missing"
    sshd: bool
    links: dict[str, bool]
    processes: int


class Lab:
    """One lab, by name. Methods that change the lab take its lock; `up` and `down` also take the
    machine's (they choose a slot and create or remove the shared mountpoints)."""

    def __init__(self, name: str = "lab", root: Path | None = None) -> None:
        self.name = validate_name(name)
        self.root = root or lab_root()
        self.dir = self.root / name

    # ----------------------------------------------------------------- paths
    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    @property
    def inventory_path(self) -> Path:
        return self.dir / "inventory.yml"

    @property
    def private_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def ns_dir(self) -> Path:
        return self.dir / "ns"

    def host_dir(self, host: str) -> Path:
        return self.dir / "host" / host

    def _ns_file(self, host: str, kind: str) -> Path:
        return self.ns_dir / f"{host}.{kind}"

    # ----------------------------------------------------------------- state
    def load_state(self) -> LabState | None:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise LabError(
                f"{self.state_path}: unreadable lab state ({exc}); run 'safekit lab down'"
            ) from exc
        return LabState.from_json(data)

    def _save_state(self, state: LabState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state.to_json(), f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    def require_state(self) -> LabState:
        state = self.load_state()
        if state is None or state.status != "up":
            raise LabError(f"lab {self.name!r} is not up: start it with 'safekit lab up --name {self.name}'")
        return state

    def plan(self) -> LabPlan:
        return self.require_state().plan()

    @contextlib.contextmanager
    def _machine_lock(self) -> Iterator[None]:
        """Both locks, the machine's first (the only order anyone takes both in: no deadlock)."""
        with _flock(LOCK_FILE), _flock(lab_lock_file(self.name)):
            yield

    def _lab_lock(self) -> contextlib.AbstractContextManager[None]:
        return _flock(lab_lock_file(self.name))

    def _other_slots(self) -> set[int]:
        slots: set[int] = set()
        if self.root.is_dir():
            for path in self.root.glob("*/state.json"):
                if path.parent.name == self.name:
                    continue
                with contextlib.suppress(OSError, ValueError, KeyError):
                    slots.add(int(json.loads(path.read_text(encoding="utf-8"))["slot"]))
        return slots

    # ----------------------------------------------------------------- up
    def up(
        self,
        *,
        nodes: int = 2,
        lans: int = 1,
        witness: bool = False,
        client: bool = False,
        ipv6: bool = False,
    ) -> tuple[LabPlan, bool]:
        """Build the lab. Returns (plan, created); an existing lab is left as it is (created=False)."""
        system.preflight()
        with self._machine_lock():
            existing = self.load_state()
            if existing is not None and existing.status == "up":
                return existing.plan(), False
            if existing is not None or self._leftovers():
                # An earlier `up` crashed half-way: remove what it left before building anew.
                self._teardown(existing)
            state = LabState(
                name=self.name,
                slot=choose_slot(self._other_slots()),
                nodes=nodes,
                lans=lans,
                witness=witness,
                client=client,
                ipv6=ipv6,
            )
            plan = state.plan()  # validates the parameters before anything is created
            self._save_state(state)
            try:
                self._build(plan, state)
                state.status = "up"
                self._save_state(state)
            except BaseException:
                self._teardown(state)
                lab_lock_file(self.name).unlink(missing_ok=True)
                raise
            return plan, True

    def _build(self, plan: LabPlan, state: LabState) -> None:
        self._make_mountpoints(state)
        self._save_state(state)
        self._build_switch(plan)
        self._make_keys(plan)
        for host in plan.hosts:
            self._build_host(plan, host, ipv6=state.ipv6)
        self._apply_wiring(plan, state.faults)
        for host in plan.hosts:
            self._start_sshd(host)
        self._wait_sshd(plan.hosts)
        self.inventory_path.write_text(
            yaml.safe_dump(
                inventory(
                    plan,
                    private_key=str(self.private_key),
                    known_hosts=str(self.known_hosts),
                    python=_target_python(),
                ),
                sort_keys=False,
            ),
            encoding="utf-8",
        )

    def _make_mountpoints(self, state: LabState) -> None:
        for path in PRIVATE_DIRS:
            if not os.path.isdir(path):
                os.makedirs(path, mode=0o755)
                state.created_mountpoints.append(path)

    def _build_switch(self, plan: LabPlan) -> None:
        sw = plan.switch_netns
        system.run(["ip", "netns", "add", sw])
        self._sysctl(sw, {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"})
        commands = ["link set lo up"]
        for lan in plan.lans:
            commands += [
                # No IGMP snooping: multicast (and unknown unicast) reaches every port, as farms need.
                f"link add {lan.bridge} type bridge mcast_snooping 0 stp_state 0",
                f"link set {lan.bridge} up",
            ]
        system.ip_batch(sw, commands)
        link = plan.controller_link
        system.run(["ip", "link", "add", link, "type", "veth", "peer", "name", "ctl", "netns", sw])
        self._sysctl(
            None,
            {f"net.ipv6.conf.{link}.disable_ipv6": "1", f"net.ipv4.conf.{link}.arp_accept": "1"},
        )
        system.ip_batch(None, [f"addr add {plan.controller_address} dev {link}", f"link set {link} up"])
        system.ip_batch(sw, [f"link set ctl master {plan.lans[0].bridge}", "link set ctl up"])
        system.nft(
            f"table inet {plan.guard_table} {{\n"
            "  chain forward {\n"
            "    type filter hook forward priority filter - 10; policy accept;\n"
            f'    iifname "{link}" drop\n'
            f'    oifname "{link}" drop\n'
            "  }\n"
            "}\n"
        )

    def _make_keys(self, plan: LabPlan) -> None:
        if not self.private_key.exists():
            system.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    f"safekit-lab-{self.name}",
                    "-f",
                    str(self.private_key),
                ]
            )
        lines = []
        for host in plan.hosts:
            ssh_dir = self.host_dir(host.name) / "ssh"
            ssh_dir.mkdir(parents=True, exist_ok=True)
            key = ssh_dir / "ssh_host_ed25519_key"
            if not key.exists():
                system.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.name, "-f", str(key)])
            pub = key.with_suffix(".pub").read_text(encoding="utf-8").split()
            names = ",".join([host.name] + [str(a.ip) for a in host.addresses.values()])
            lines.append(f"{names} {pub[0]} {pub[1]}")
            (ssh_dir / "sshd_config").write_text(
                _sshd_config(key, self.private_key.with_suffix(".pub")), encoding="utf-8"
            )
        self.known_hosts.write_text("\n".join(lines) + "\n", encoding="utf-8")
        etc_hosts = ["127.0.0.1\tlocalhost"]
        etc_hosts += [f"{host.address}\t{host.name}" for host in plan.hosts]
        etc_hosts.append(f"{plan.controller_address.ip}\tcontroller")
        (self.dir / "etc-hosts").write_text("\n".join(etc_hosts) + "\n", encoding="utf-8")

    def _build_host(self, plan: LabPlan, host: Host, *, ipv6: bool = False) -> None:
        """Create the host's namespaces from nothing: this is also how a killed host boots again."""
        ns = host.netns
        system.run(["ip", "netns", "add", ns])
        settings = {
            "net.ipv6.conf.all.disable_ipv6": "1",
            "net.ipv6.conf.default.disable_ipv6": "1",
            # Gratuitous ARP from a node taking a virtual IP must update its peers' caches.
            "net.ipv4.conf.all.arp_accept": "1",
            "net.ipv4.conf.default.arp_accept": "1",
        }
        self._sysctl(ns, settings)
        cables = []
        host_cmds = ["link set lo up"]
        for lan in plan.host_lans(host):
            port, iface = host.switch_port(lan), host.interface(lan)
            cables += [
                # A fixed MAC per host and LAN, like a real NIC: peers' ARP caches stay right
                # when a killed host boots again with new namespaces.
                f"link add {port} type veth peer name {iface} netns {ns} address {host.mac(lan)}",
                f"link set {port} master {lan.bridge}",
            ]
            host_cmds += [f"addr add {host.addresses[lan.name]} dev {iface}"]
            settings[f"net.ipv4.conf.{iface}.arp_accept"] = "1"
            settings[f"net.ipv6.conf.{iface}.disable_ipv6"] = "0" if ipv6 else "1"
            if ipv6:
                # The lab's unique-local /64 per LAN, no duplicate address detection (a lab host's
                # address is its own by construction; DAD would only delay it).
                settings[f"net.ipv6.conf.{iface}.accept_dad"] = "0"
                host_number = int(host.addresses[lan.name].ip) - int(lan.network.network_address)
                host_cmds.append(f"addr add {lan.address6(host_number)} dev {iface} nodad")
            host_cmds.append(f"link set {iface} up")
        system.ip_batch(plan.switch_netns, cables)
        self._sysctl(ns, settings)
        system.ip_batch(ns, host_cmds)
        self._build_mount_ns(host)

    def _build_mount_ns(self, host: Host) -> None:
        if not system.mounts_under(self.ns_dir):
            # A mount namespace can be kept alive by a bind mount of its file only on a private mount.
            self.ns_dir.mkdir(parents=True, exist_ok=True)
            system.run(["mount", "--bind", str(self.ns_dir), str(self.ns_dir)])
            system.run(["mount", "--make-private", str(self.ns_dir)])
        fs = self.host_dir(host.name) / "fs"
        binds = []
        for path in PRIVATE_DIRS:
            source = fs / path.lstrip("/")
            source.mkdir(parents=True, exist_ok=True)
            binds.append(f"mount --bind {source} {path}")
        mnt, uts = self._ns_file(host.name, "mnt"), self._ns_file(host.name, "uts")
        mnt.touch()
        uts.touch()
        script = "\n".join(
            [
                "set -e",
                f"hostname {host.name}",
                # Drop the copies of other namespaces' files (/run/netns, the lab's ns/ files) that the
                # new mount namespace inherited: they would keep other hosts' namespaces alive.
                "for m in $(awk '{print $5}' /proc/self/mountinfo"
                f" | grep -E '^(/run/netns|{self.root})(/|$)' | sort -r); do",
                '  umount -l "$m" 2>/dev/null || true',
                "done",
                "umount -l /sys",
                "mount -t sysfs -o nosuid,nodev,noexec sysfs /sys",
                *binds,
                "mount -t tmpfs -o mode=0755,nosuid,nodev,size=64m tmpfs /run",
                "mkdir -p /run/sshd /run/lock",
                f"mount --bind {self.dir / 'etc-hosts'} /etc/hosts",
            ]
        )
        system.run(
            [
                "nsenter", f"--net=/run/netns/{host.netns}",
                "unshare", f"--mount={mnt}", f"--uts={uts}", "--propagation", "private",
                "--", "/bin/sh", "-c", script,
            ]
        )  # fmt: skip

    def _sysctl(self, netns: str | None, settings: dict[str, str]) -> None:
        argv = ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in settings.items())]
        if netns:
            argv = ["nsenter", f"--net=/run/netns/{netns}", *argv]
        system.run(argv)

    def _apply_wiring(self, plan: LabPlan, faults: FaultState) -> None:
        present = set(_links_in(plan.switch_netns))
        system.ip_batch(
            plan.switch_netns,
            [
                f"link set {port} {'up' if up else 'down'}"
                for port, up in port_states(plan, faults).items()
                if port in present
            ],
        )
        system.nft(isolation_ruleset(plan, faults), plan.switch_netns)

    def _start_sshd(self, host: Host) -> None:
        ssh_dir = self.host_dir(host.name) / "ssh"
        # sshd daemonizes; the daemon stays in the host's namespaces.
        self._exec(
            host,
            [system.SSHD, "-f", str(ssh_dir / "sshd_config"), "-E", str(ssh_dir / "sshd.log")],
            check=True,
        )

    def _wait_sshd(self, hosts: Sequence[Host]) -> None:
        deadline = time.monotonic() + SSHD_START_TIMEOUT
        waiting = list(hosts)
        while waiting:
            waiting = [h for h in waiting if not _port_open(str(h.address), 22)]
            if waiting and time.monotonic() > deadline:
                names = ", ".join(h.name for h in waiting)
                raise LabError(f"sshd did not answer on {names} within {SSHD_START_TIMEOUT:.0f} s")
            if waiting:
                time.sleep(0.01)

    # ----------------------------------------------------------------- down
    def down(self) -> bool:
        """Remove the lab and everything it created. Returns False when there was nothing to remove."""
        system.preflight()
        with self._machine_lock():
            state = self.load_state()
            existed = state is not None or self._leftovers() or self.dir.exists()
            if existed:
                self._teardown(state)
            lab_lock_file(self.name).unlink(missing_ok=True)  # no file left per lab name ever used
            return existed

    def _leftovers(self) -> bool:
        return any(ns.startswith(f"{PREFIX}-{self.name}-") for ns in system.netns_list()) or (
            system.link_exists(f"{PREFIX}-{self.name}")
        )

    def _teardown(self, state: LabState | None) -> None:
        """Remove by prefix, not only by state: the state may be missing or older than what exists."""
        prefix = f"{PREFIX}-{self.name}-"
        namespaces = [ns for ns in system.netns_list() if ns.startswith(prefix)]
        for ns in namespaces:
            self._kill_processes(ns)
        for point in system.mounts_under(self.dir):
            system.unmount(point)
        for ns in namespaces:
            system.run(["ip", "netns", "delete", ns], check=False)
        link = f"{PREFIX}-{self.name}"
        if system.link_exists(link):
            system.run(["ip", "link", "delete", link], check=False)
        system.run(["nft", "delete", "table", "inet", f"{PREFIX}_{self.name}"], check=False)
        if state is not None:
            others = [p for p in self.root.glob("*/state.json") if p.parent.name != self.name]
            for path in reversed(state.created_mountpoints):
                if not others:
                    with contextlib.suppress(OSError):
                        os.rmdir(path)
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.root.rmdir()  # only when no other lab is left

    def _kill_processes(self, netns: str, timeout: float = 5.0) -> int:
        """SIGKILL every process of a namespace (a power cut): no process gets to clean up after itself."""
        deadline = time.monotonic() + timeout
        killed = 0
        while True:
            pids = [pid for pid in system.netns_pids(netns) if pid != os.getpid()]
            if not pids:
                return killed
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
            if time.monotonic() > deadline:
                raise LabError(f"processes {pids} of {netns} survived SIGKILL for {timeout:.0f} s")
            time.sleep(0.01)

    # ----------------------------------------------------------------- use
    def exec_argv(self, host: str, argv: Sequence[str]) -> list[str]:
        """The command line that runs `argv` inside a lab host (its network, mounts and hostname)."""
        state = self.require_state()
        if host in state.faults.killed:
            raise LabError(f"{host} is powered off (lab kill): boot it with 'safekit lab start {host}' first")
        return self._host_argv(state.plan().host(host), argv)

    def _host_argv(self, host: Host, argv: Sequence[str]) -> list[str]:
        return [
            "nsenter",
            f"--net=/run/netns/{host.netns}",
            f"--mount={self._ns_file(host.name, 'mnt')}",
            f"--uts={self._ns_file(host.name, 'uts')}",
            "--",
            *argv,
        ]

    def exec(
        self,
        host: str,
        argv: Sequence[str],
        *,
        check: bool = False,
        timeout: float | None = 60,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on a host and wait for it (output captured as text unless told otherwise)."""
        return _run_on_host(
            self.exec_argv(host, argv), host, argv, check=check, timeout=timeout, kwargs=kwargs
        )

    def _exec(
        self, host: Host, argv: Sequence[str], *, check: bool = False, timeout: float | None = 60
    ) -> subprocess.CompletedProcess[str]:
        return _run_on_host(
            self._host_argv(host, argv), host.name, argv, check=check, timeout=timeout, kwargs={}
        )

    def ssh_argv(self, host: str, argv: Sequence[str] = ()) -> list[str]:
        h = self.plan().host(host)
        return [
            "ssh",
            "-i", str(self.private_key),
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "ConnectTimeout=5",
            f"root@{h.address}",
            *argv,
        ]  # fmt: skip

    # ----------------------------------------------------------------- faults
    def _change_faults(self, change: Callable[[LabState], None]) -> LabState:
        system.preflight()
        with self._lab_lock():
            state = self.require_state()
            change(state)
            self._save_state(state)
            self._apply_wiring(state.plan(), state.faults)
            return state

    def kill(self, host: str) -> int:
        """Power cut: SIGKILL every process of the host and pull all its cables. Returns processes killed."""
        return self.power_cut(host).processes

    def power_cut(self, host: str) -> PowerCut:
        """`kill`, telling when the host went silent (its cables pulled) and how long that waited."""
        h = self.plan().host(host)
        system.preflight()
        asked = time.monotonic()
        with self._lab_lock():
            waited = time.monotonic() - asked
            state = self.require_state()
            state.faults.killed.add(host)
            self._save_state(state)
            self._apply_wiring(state.plan(), state.faults)
            cut_at, cut_at_wall = time.monotonic(), time.time()
            processes = self._kill_processes(h.netns)
        return PowerCut(host, processes, cut_at, cut_at_wall, waited)

    def start(self, host: str) -> bool:
        """Boot a host: fresh namespaces (no leftover addresses, firewall or mounts), cables in, sshd.

        Returns False when the host was already running.
        """
        system.preflight()
        with self._lab_lock():
            state = self.require_state()
            plan = state.plan()
            h = plan.host(host)
            if host not in state.faults.killed and h.netns in system.netns_list():
                if self._sshd_running(h):
                    return False
                self._start_sshd(h)  # the host runs but its sshd was stopped: bring it back
                if not self._links_cut(state, h):
                    self._wait_sshd([h])
                return True
            self._kill_processes(h.netns)
            with contextlib.suppress(LabError):
                for kind in ("mnt", "uts"):
                    system.unmount(str(self._ns_file(host, kind)))
            # Delete the cables first: a deleted namespace frees its interfaces asynchronously, and
            # the new cables reuse their names.
            for lan in plan.host_lans(h):
                system.run(["ip", "-n", plan.switch_netns, "link", "delete", h.switch_port(lan)], check=False)
            system.run(["ip", "netns", "delete", h.netns], check=False)
            self._build_host(plan, h, ipv6=state.ipv6)
            state.faults.killed.discard(host)
            self._save_state(state)
            self._apply_wiring(plan, state.faults)
            self._start_sshd(h)
            if not self._links_cut(state, h):
                self._wait_sshd([h])
            return True

    def _sshd_running(self, host: Host) -> bool:
        probe = "test -f /run/sshd.pid && kill -0 $(cat /run/sshd.pid)"
        return self._exec(host, ["/bin/sh", "-c", probe]).returncode == 0

    @staticmethod
    def _links_cut(state: LabState, host: Host) -> bool:
        return any(h == host.name for h, _ in state.faults.cuts)

    def cut(self, host: str, lan: str | None = None) -> None:
        plan = self.plan()
        h = plan.host(host)
        lans = [plan.lan(lan)] if lan else plan.host_lans(h)
        for one in lans:
            if one.name not in h.addresses:
                raise LabError(f"host {host!r} is not on LAN {one.name!r}")
        self._change_faults(lambda s: s.faults.cuts.update((host, one.name) for one in lans))

    def isolate(self, host_a: str, host_b: str) -> None:
        plan = self.plan()
        plan.host(host_a)
        plan.host(host_b)
        if host_a == host_b:
            raise LabError("isolate needs two different hosts")
        self._change_faults(lambda s: s.faults.isolations.add(frozenset((host_a, host_b))))

    def drop(self, sender: str, receiver: str, percent: int = 100, *, both_ways: bool = False) -> None:
        """Drop `percent` % of the frames `sender` sends `receiver` on every LAN (each frame drawn on
        its own; 100: all, a one-way cut), and of the other direction too with `both_ways`. Replaces
        an earlier drop between them; `heal` lifts it."""
        plan = self.plan()
        plan.host(sender)
        plan.host(receiver)
        if sender == receiver:
            raise LabError("drop needs two different hosts")
        if not 1 <= percent <= 100:
            raise LabError(f"drop: percent must be 1-100, not {percent}")
        pairs = [(sender, receiver), (receiver, sender)] if both_ways else [(sender, receiver)]
        self._change_faults(lambda s: s.faults.drops.update(dict.fromkeys(pairs, percent)))

    def heal(self, host: str | None = None) -> None:
        if host is not None:
            self.plan().host(host)
        self._change_faults(lambda s: s.faults.heal(host))

    # ----------------------------------------------------------------- status
    def status(self) -> list[HostStatus]:
        state = self.require_state()
        plan = state.plan()
        namespaces = set(system.netns_list())
        ports = port_states(plan, state.faults)
        result = []
        for h in plan.hosts:
            links = {lan.name: ports[h.switch_port(lan)] for lan in plan.host_lans(h)}
            if h.netns not in namespaces:
                power = "missing"
            elif h.name in state.faults.killed:
                power = "killed"
            else:
                power = "on"
            processes = len(system.netns_pids(h.netns)) if power != "missing" else 0
            result.append(
                HostStatus(
                    name=h.name,
                    role=h.role,
                    addresses={lan: str(a.ip) for lan, a in h.addresses.items()},
                    power=power,
                    sshd=power == "on" and links[plan.lans[0].name] and _port_open(str(h.address), 22),
                    links=links,
                    processes=processes,
                )
            )
        return result


def _run_on_host(
    full_argv: list[str],
    host: str,
    argv: Sequence[str],
    *,
    check: bool,
    timeout: float | None,
    kwargs: dict[str, Any],
) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("capture_output", True)
    proc = subprocess.run(full_argv, text=True, timeout=timeout, check=False, **kwargs)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip()
        raise LabError(f"{host}: {' '.join(argv)}: exit {proc.returncode}: {detail}")
    return proc


def _links_in(netns: str) -> list[str]:
    out = system.run(["ip", "-n", netns, "-o", "link", "show"]).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def _port_open(address: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _target_python() -> str:
    """Lab hosts share this machine's /usr: Ansible modules run with the system's Python."""
    return (
        "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else shutil.which("python3") or "python3"
    )


def _sshd_config(host_key: Path, authorized_keys: Path) -> str:
    return "\n".join(
        [
            "# Written by safekit lab: one sshd per lab host, keys only.",
            "Port 22",
            f"HostKey {host_key}",
            "PidFile /run/sshd.pid",
            f"AuthorizedKeysFile {authorized_keys}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "AcceptEnv LANG LC_*",
            # Lab hosts share the machine's /root: its shell start files run for every ssh command
            # (Ansible's too). A pyenv there waits up to 60 s on a shim lock a killed process left
            # ('pyenv rehash'); a lab command must not.
            "SetEnv PYENV_REHASH_TIMEOUT=1",
            "MaxStartups 100:30:200",
            "Subsystem sftp internal-sftp",
            "",
        ]
    )
