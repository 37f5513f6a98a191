"""The lab's topology: names, addresses and the Ansible inventory, computed without touching the system.

Everything the lab creates is derived here from four parameters (name, slot, node count, LAN count,
plus the optional witness and client), so that `up`, `down`, `status` and the tests agree on every
name and address, and so that a crashed lab can be found and removed from its parameters alone.

Addresses: the lab uses 198.18.0.0/15 only (RFC 2544, set aside for network test labs). The range is
cut into 512 /24 networks; a lab takes a *slot* of four consecutive /24s, one per LAN, so up to 128
labs can exist side by side. In LAN k of slot s the network is the (4*s + k)-th /24 of the range, and:

    .1 .. .N      node1 .. nodeN
    .100          client (LAN 0 only)
    .200 - .239   free, for virtual IPs (`vips`)
    .253          the controller (this machine's root namespace, LAN 0 only)
    .254          witness, the "router" a split-brain checker pings (LAN 0 only)

IPv6 (`up --ipv6`, off by default): the hosts' interfaces also get an address of a unique-local /64
per LAN, fd00:5afe:0:N::/64 with N the LAN's /24 index in the IPv4 range (never routed outside:
the lab has no route out), host part the same number as in IPv4 (node1 `::1`, VIPs `::c8`...).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

PREFIX = "sklab"
"""Every namespace, interface and nftables table the lab creates starts with this prefix."""

LAB_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
LAB_RANGE6 = ipaddress.IPv6Network("fd00:5afe::/48")
LANS_PER_SLOT = 4
SLOTS = LAB_RANGE.num_addresses // 256 // LANS_PER_SLOT
MAX_NODES = 32
MAX_LANS = LANS_PER_SLOT
CLIENT_HOST = 100
VIP_HOSTS = range(200, 240)
CONTROLLER_HOST = 253
WITNESS_HOST = 254
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,8}$")
# Linux limits interface names to 15 characters; the root-namespace veth is "sklab-" + name.
MAX_NAME_LEN = 15 - len(PREFIX) - 1

Role = Literal["node", "witness", "client"]

PRIVATE_DIRS: tuple[str, ...] = (
    "/etc/safekit",
    "/opt/safekit",
    "/var/safekit",
    "/var/log/safekit",
    "/srv",
)
"""Directories each lab host sees privately (bind mounts of per-host directories kept on disk, so they
survive `lab kill` like a disk does). `/run` is private too, but a fresh tmpfs at every boot.
`/tmp` is shared on purpose: the project (and its virtualenv, which lab hosts run) may live there."""


class LabError(Exception):
    """A lab operation that cannot be done; the message is one line a user can act on."""


@dataclass(frozen=True)
class Lan:
    name: str
    index: int
    network: ipaddress.IPv4Network

    @property
    def bridge(self) -> str:
        return f"br{self.index}"

    def address(self, host: int) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.network[host]}/{self.network.prefixlen}")

    @property
    def network6(self) -> ipaddress.IPv6Network:
        """The LAN's IPv6 network (labs built with `--ipv6`): a /64 of fd00:5afe::/48."""
        index = (int(self.network.network_address) - int(LAB_RANGE.network_address)) >> 8
        return ipaddress.IPv6Network((int(LAB_RANGE6.network_address) + (index << 64), 64))

    def address6(self, host: int) -> ipaddress.IPv6Interface:
        return ipaddress.IPv6Interface(f"{self.network6[host]}/64")


@dataclass(frozen=True)
class Host:
    name: str
    role: Role
    lab: str
    addresses: dict[str, ipaddress.IPv4Interface]
    """LAN name -> address on that LAN, in LAN order."""

    @property
    def netns(self) -> str:
        return f"{PREFIX}-{self.lab}-{self.name}"

    @property
    def address(self) -> ipaddress.IPv4Address:
        """The host's address on its first LAN: the one sshd and Ansible use."""
        return next(iter(self.addresses.values())).ip

    def mac(self, lan: Lan) -> str:
        """The host's MAC on a LAN: locally administered, derived from its address, stable across boots."""
        addr = self.addresses[lan.name].ip.packed
        return "02:5b:" + ":".join(f"{b:02x}" for b in addr)

    def interface(self, lan: Lan) -> str:
        """The interface name inside the host."""
        return f"eth{lan.index}"

    def switch_port(self, lan: Lan) -> str:
        """The name of the host's cable end on the LAN's bridge, inside the switch namespace."""
        return f"{self.name}-{lan.index}"


@dataclass(frozen=True)
class LabPlan:
    name: str
    slot: int
    nodes: int
    lans: tuple[Lan, ...]
    witness: bool
    client: bool
    hosts: tuple[Host, ...] = field(default=())

    @property
    def switch_netns(self) -> str:
        """The namespace that holds the LAN bridges (a switch no other namespace can route through)."""
        return f"{PREFIX}-{self.name}-switch"

    @property
    def controller_link(self) -> str:
        """The veth in the root namespace that lets this machine (the Ansible controller) reach LAN 0."""
        return f"{PREFIX}-{self.name}"

    @property
    def controller_address(self) -> ipaddress.IPv4Interface:
        return self.lans[0].address(CONTROLLER_HOST)

    @property
    def guard_table(self) -> str:
        """The root namespace's nftables table that forbids forwarding to or from the lab."""
        return f"{PREFIX}_{self.name}"

    @property
    def netns_prefix(self) -> str:
        return f"{PREFIX}-{self.name}-"

    @property
    def vips(self) -> list[ipaddress.IPv4Address]:
        """Addresses of LAN 0 that no lab host uses, free for virtual IPs."""
        return [self.lans[0].network[h] for h in VIP_HOSTS]

    @property
    def vips6(self) -> list[ipaddress.IPv6Address]:
        """IPv6 addresses of LAN 0 free for virtual IPs (labs built with `--ipv6`)."""
        return [self.lans[0].network6[h] for h in VIP_HOSTS]

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts)
        raise LabError(f"unknown host {name!r} in lab {self.name!r} (hosts: {known})")

    def lan(self, name: str) -> Lan:
        for lan in self.lans:
            if lan.name == name:
                return lan
        known = ", ".join(lan.name for lan in self.lans)
        raise LabError(f"unknown LAN {name!r} in lab {self.name!r} (LANs: {known})")

    def host_lans(self, host: Host) -> list[Lan]:
        return [lan for lan in self.lans if lan.name in host.addresses]


def lan_name(index: int) -> str:
    """LAN 0 is SafeKit's `default` LAN; the others are lan1, lan2, lan3."""
    return "default" if index == 0 else f"lan{index}"


def validate_name(name: str) -> str:
    if len(name) > MAX_NAME_LEN:
        raise LabError(
            f"lab name {name!r} is too long ({len(name)} characters, at most {MAX_NAME_LEN}: "
            "it becomes part of Linux interface names)"
        )
    if not NAME_RE.match(name):
        raise LabError(f"lab name {name!r} is invalid: use a lower-case letter, then letters or digits")
    return name


def plan_lab(
    name: str, *, slot: int, nodes: int = 2, lans: int = 1, witness: bool = False, client: bool = False
) -> LabPlan:
    """The complete, deterministic description of a lab."""
    validate_name(name)
    if not 1 <= nodes <= MAX_NODES:
        raise LabError(f"--nodes must be between 1 and {MAX_NODES}, not {nodes}")
    if not 1 <= lans <= MAX_LANS:
        raise LabError(f"--lans must be between 1 and {MAX_LANS}, not {lans}")
    if not 0 <= slot < SLOTS:
        raise LabError(f"lab slot must be between 0 and {SLOTS - 1}, not {slot}")
    lan_list = tuple(
        Lan(
            name=lan_name(k),
            index=k,
            network=ipaddress.IPv4Network(
                (int(LAB_RANGE.network_address) + (slot * LANS_PER_SLOT + k) * 256, 24)
            ),
        )
        for k in range(lans)
    )
    hosts: list[Host] = [
        Host(f"node{i}", "node", name, {lan.name: lan.address(i) for lan in lan_list})
        for i in range(1, nodes + 1)
    ]
    first = lan_list[0]
    if witness:
        hosts.append(Host("witness", "witness", name, {first.name: first.address(WITNESS_HOST)}))
    if client:
        hosts.append(Host("client", "client", name, {first.name: first.address(CLIENT_HOST)}))
    return LabPlan(name, slot, nodes, lan_list, witness, client, tuple(hosts))


def choose_slot(used: Iterable[int]) -> int:
    """The lowest free slot, so the first lab on a machine always gets 198.18.0.0/24."""
    taken = set(used)
    for slot in range(SLOTS):
        if slot not in taken:
            return slot
    raise LabError(f"all {SLOTS} lab slots are in use: remove a lab with 'safekit lab down --name NAME'")


def inventory(
    plan: LabPlan, *, private_key: str, known_hosts: str, python: str = "/usr/bin/python3"
) -> dict[str, Any]:
    """The Ansible inventory (YAML-shaped dict) that reaches every host through its own sshd."""

    def host_vars(host: Host) -> dict[str, Any]:
        return {
            "ansible_host": str(host.address),
            "safekit_lab_addresses": {lan: str(addr.ip) for lan, addr in host.addresses.items()},
            "safekit_lab_interfaces": {
                lan.name: host.interface(lan) for lan in plan.lans if lan.name in host.addresses
            },
        }

    def group(role: Role) -> dict[str, Any]:
        return {"hosts": {h.name: host_vars(h) for h in plan.hosts if h.role == role}}

    children: dict[str, Any] = {"safekit_nodes": group("node")}
    if plan.witness:
        children["safekit_witness"] = group("witness")
    if plan.client:
        children["safekit_clients"] = group("client")
    return {
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": private_key,
                "ansible_ssh_common_args": (
                    f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes "
                    "-o IdentitiesOnly=yes -o ConnectTimeout=5"
                ),
                "ansible_python_interpreter": python,
                "safekit_lab_name": plan.name,
                "safekit_lab_lans": {lan.name: str(lan.network) for lan in plan.lans},
                "safekit_lab_vips": [str(ip) for ip in plan.vips[:4]],
                "safekit_lab_witness": (str(plan.host("witness").address) if plan.witness else None),
            },
            "children": children,
        }
    }
