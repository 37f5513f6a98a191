"""The model of `cluster.xml`: the LANs of the cluster and the address of every node on each.

The cluster key that authenticates inter-node traffic is deliberately not part of this model: it
lives in its own file, so that `cluster.xml` can be shared, reviewed and versioned freely.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from safekit.config.errors import ConfigWarning


class NotANode(LookupError):
    """This host is none of the cluster's nodes: no node has its name or one of its addresses."""


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """A node's address on one LAN."""

    name: str
    addr: str
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Lan:
    """A network of the cluster; modules refer to it by name (`<heartbeat name>`, `<farm><lan>`)."""

    name: str
    nodes: tuple[ClusterNode, ...]
    # SafeKit's `command="on"`: the LAN carries commands between nodes (`-H`), not only heartbeats.
    command: bool = True
    line: int = field(default=0, compare=False)

    def node(self, name: str) -> ClusterNode | None:
        return next((n for n in self.nodes if n.name == name), None)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """The whole cluster: LANs in file order, and the optional UDP/TCP port of our extension."""

    lans: tuple[Lan, ...]
    # Extension: `<lans port="...">` sets the base port of the authenticated inter-node traffic.
    port: int | None = None
    filename: str = field(default="cluster.xml", compare=False)
    warnings: tuple[ConfigWarning, ...] = field(default=(), compare=False)

    def lan(self, name: str) -> Lan | None:
        return next((lan for lan in self.lans if lan.name == name), None)

    @property
    def node_names(self) -> tuple[str, ...]:
        """Every node name, in order of first appearance."""
        names: dict[str, None] = {}
        for lan in self.lans:
            for node in lan.nodes:
                names.setdefault(node.name)
        return tuple(names)

    def local_node(self, hostname: str, address_here: Callable[[str], bool]) -> str:
        """This host's node name: the node called `hostname`, else the first node (LAN by LAN, in file
        order) whose address `address_here` finds configured on this host.

        The caller passes the host's name and the address lookup, so the model does no I/O itself.
        Raises `NotANode` when neither matches."""
        if hostname in self.node_names:
            return hostname
        for lan in self.lans:
            for node in lan.nodes:
                if address_here(node.addr):
                    return node.name
        raise NotANode(
            f"this host ({hostname}) is not a node of cluster.xml: no node has its name or one of its "
            "addresses"
        )
