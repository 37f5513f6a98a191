"""Which node of cluster.xml this host is: by its name, else by an address configured here."""

from __future__ import annotations

import pytest

from safekit.config import ClusterConfig, ClusterNode, Lan, NotANode

CLUSTER = ClusterConfig(
    lans=(
        Lan("lan1", (ClusterNode("node1", "198.18.1.1"), ClusterNode("node2", "198.18.1.2"))),
        Lan("lan2", (ClusterNode("node1", "198.18.2.1"), ClusterNode("node3", "198.18.2.3"))),
    )
)


def nowhere(address: str) -> bool:
    return False


def test_the_hostname_names_the_node_without_looking_at_addresses() -> None:
    looked: list[str] = []

    def here(address: str) -> bool:
        looked.append(address)
        return True

    assert CLUSTER.local_node("node2", here) == "node2"
    assert looked == []


def test_else_the_first_node_with_an_address_configured_here_lan_by_lan() -> None:
    looked: list[str] = []

    def here(address: str) -> bool:
        looked.append(address)
        return address in {"198.18.2.3", "198.18.1.2"}

    assert CLUSTER.local_node("box", here) == "node2"
    assert looked == ["198.18.1.1", "198.18.1.2"]
    assert CLUSTER.local_node("box", lambda a: a == "198.18.2.3") == "node3"


def test_a_host_that_is_no_node_is_told_so() -> None:
    with pytest.raises(NotANode, match=r"this host \(box\) is not a node of cluster.xml"):
        CLUSTER.local_node("box", nowhere)
    assert issubclass(NotANode, LookupError)
