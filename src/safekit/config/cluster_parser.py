"""Reading `cluster.xml` into `ClusterConfig`, with every problem reported at its file:line."""

from __future__ import annotations

from safekit.config.attributes import ElementReader, check_children, children
from safekit.config.cluster import ClusterConfig, ClusterNode, Lan
from safekit.config.compat import IGNORED_ATTRIBUTES
from safekit.config.errors import Diagnostics
from safekit.config.xmlread import XmlElement, read_xml


def parse_cluster(text: str | bytes, filename: str = "cluster.xml") -> ClusterConfig:
    """Parse the text of a `cluster.xml`; raise ConfigError (all problems at once) if invalid."""
    root = read_xml(text, filename)
    diag = Diagnostics(filename)
    config = cluster_from_element(root, diag)
    diag.raise_if_errors()
    return config


def cluster_from_element(root: XmlElement, diag: Diagnostics) -> ClusterConfig:
    if root.tag != "cluster":
        diag.error(root.line, root.tag, "the root element of cluster.xml must be <cluster>")
        return ClusterConfig(lans=(), filename=diag.filename)
    ElementReader(root, diag, None, allowed=())
    check_children(root, diag, ("lans",), once=("lans",))
    lans_elements = children(root, "lans")
    if not lans_elements:
        diag.error(root.line, "cluster", "missing <lans> (declare at least one <lan> with its <node>s)")
        return ClusterConfig(lans=(), filename=diag.filename)
    lans_element = lans_elements[0]
    reader = ElementReader(lans_element, diag, None, allowed=("port",))
    port = reader.port("port")
    check_children(lans_element, diag, ("lan",))
    lans = tuple(_lan(element, diag) for element in children(lans_element, "lan"))
    if not lans:
        diag.error(lans_element.line, "lans", 'no <lan> declared (e.g. <lan name="default">)')
    _check_consistency(lans, diag)
    return ClusterConfig(lans=lans, port=port, filename=diag.filename, warnings=diag.sorted_warnings())


def _lan(element: XmlElement, diag: Diagnostics) -> Lan:
    reader = ElementReader(
        element, diag, None, allowed=("name", "command"), ignored=IGNORED_ATTRIBUTES["lans/lan"]
    )
    name = reader.name("name", required=True) or ""
    command = reader.flag("command", True)
    check_children(element, diag, ("node",))
    nodes: list[ClusterNode] = []
    for node_element in children(element, "node"):
        node_reader = ElementReader(node_element, diag, None, allowed=("name", "addr"))
        node_name = node_reader.name("name", required=True)
        addr = node_reader.ipv4("addr")
        if node_name is not None and addr is not None:
            nodes.append(ClusterNode(node_name, addr, node_element.line))
    if not children(element, "node"):
        reader.error(f'LAN {name!r} has no <node> (e.g. <node name="node1" addr="192.168.1.10"/>)')
    return Lan(name=name, nodes=tuple(nodes), command=command, line=element.line)


def _check_consistency(lans: tuple[Lan, ...], diag: Diagnostics) -> None:
    seen_lans: set[str] = set()
    address_owner: dict[str, str] = {}
    for lan in lans:
        if lan.name in seen_lans:
            diag.error(lan.line, "lan", f"LAN {lan.name!r} is declared twice")
        seen_lans.add(lan.name)
        names: set[str] = set()
        for node in lan.nodes:
            if node.name in names:
                diag.error(node.line, "node", f"node {node.name!r} appears twice in LAN {lan.name!r}")
            names.add(node.name)
            owner = address_owner.setdefault(node.addr, node.name)
            if owner != node.name:
                diag.error(
                    node.line, "node", f"address {node.addr} is given to both {owner!r} and {node.name!r}"
                )
