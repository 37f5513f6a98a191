"""safekitd finds its node of cluster.xml by an address configured here, from inside its event loop
(pyroute2's synchronous netlink API refuses to run on a thread with a running loop: safekitd
crashed at start with "This event loop is already running" when cluster.xml named this host by
address rather than by host name)."""

from __future__ import annotations

import asyncio

import pytest

from safekit.config import ClusterConfig, ClusterNode, Lan
from safekit.daemon.node import NodeError, find_local_node

BY_ADDRESS = ClusterConfig(
    lans=(Lan("default", (ClusterNode("elsewhere", "198.18.255.254"), ClusterNode("here", "127.0.0.1"))),)
)


def test_the_node_is_found_by_an_address_of_this_host_inside_the_running_loop() -> None:
    async def start() -> str:
        return await find_local_node(BY_ADDRESS, hostname="a-name-cluster-xml-does-not-know")

    assert asyncio.run(start()) == "here"


def test_a_host_that_is_no_node_fails_with_the_way_out() -> None:
    nobody = ClusterConfig(lans=(Lan("default", (ClusterNode("elsewhere", "198.18.255.254"),)),))
    with pytest.raises(NodeError, match="safekitd --node NAME"):
        asyncio.run(find_local_node(nobody, hostname="a-name-cluster-xml-does-not-know"))
