"""The API follows a live cluster.xml reload (ADR 0050): what it derives from the file (api/follow.py),
the live view's nodes and networks (api/watch.py), and the certificate the running server presents
(api/server.py: issued again and loaded into the live TLS context, no restart)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from api_env import Env, FakeNode
from cryptography import x509

from safekit.api import certs
from safekit.api.files import ApiFiles
from safekit.api.follow import derive, plan_follow, same_addresses
from safekit.api.server import ApiServer, ApiSettings
from safekit.api.watch import ClusterWatcher
from safekit.config import ClusterConfig
from safekit.config.cluster_parser import parse_cluster
from safekit.host.paths import Paths
from safekit.membership import clusterkey


def cluster(*lans: tuple[str, dict[str, str]]) -> ClusterConfig:
    body = "".join(
        f'<lan name="{name}">'
        + "".join(f'<node name="{n}" addr="{a}"/>' for n, a in nodes.items())
        + "</lan>"
        for name, nodes in lans
    )
    return parse_cluster(f"<cluster><lans>{body}</lans></cluster>")


DEFAULT = ("default", {"n1": "198.18.0.1", "n2": "198.18.0.2"})
SECOND = ("second", {"n1": "198.18.2.1", "n2": "198.18.2.2"})


def test_a_network_added_changes_the_certificate_and_the_networks_shown() -> None:
    old, new = derive(cluster(DEFAULT), "n1"), derive(cluster(DEFAULT, SECOND), "n1")
    assert new.addresses == ("198.18.0.1", "198.18.2.1")
    assert new.peers == {"n2": ("198.18.0.2", "198.18.2.2")}
    assert [n.to_json() for n in new.networks][1] == {
        "name": "second",
        "command": True,
        "nodes": [{"name": "n1", "addr": "198.18.2.1"}, {"name": "n2", "addr": "198.18.2.2"}],
    }
    plan = plan_follow(old, new)
    assert plan.certificate and plan.networks and not plan.added and not plan.dropped
    assert plan.readdressed == {"n2": ("198.18.0.2", "198.18.2.2")}
    assert "certificate issued again" in plan.summary()


def test_a_peer_moved_keeps_its_certificate_here_and_is_tried_where_it_was_first() -> None:
    moved = ("second", {"n1": "198.18.2.1", "n2": "198.18.2.102"})
    plan = plan_follow(derive(cluster(DEFAULT, SECOND), "n1"), derive(cluster(DEFAULT, moved), "n1"))
    assert not plan.certificate  # this node's addresses are the same
    assert plan.readdressed == {"n2": ("198.18.0.2", "198.18.2.102")}
    # seen from n2, its own address moved: its certificate must be issued again
    assert plan_follow(
        derive(cluster(DEFAULT, SECOND), "n2"), derive(cluster(DEFAULT, moved), "n2")
    ).certificate


def test_the_same_file_changes_nothing_and_an_address_written_otherwise_is_the_same() -> None:
    same = plan_follow(derive(cluster(DEFAULT), "n1"), derive(cluster(DEFAULT), "n1"))
    assert not same.changes and same.summary() == "nothing changes in the API"
    assert same_addresses(("fd00:5afe::1", "198.18.0.1"), ["198.18.0.1", "fd00:5afe:0:0::1"])
    assert not same_addresses(("198.18.0.1",), ("198.18.0.1", "198.18.2.1"))


def test_a_node_added_and_one_removed() -> None:
    three = ("default", {"n1": "198.18.0.1", "n2": "198.18.0.2", "n3": "198.18.0.3"})
    plan = plan_follow(derive(cluster(three), "n1"), derive(cluster(DEFAULT, SECOND), "n1"))
    assert plan.dropped == ("n3",) and plan.added == {}
    plan = plan_follow(derive(cluster(DEFAULT), "n1"), derive(cluster(three), "n1"))
    assert plan.added == {"n3": ("198.18.0.3",)} and not plan.certificate


def test_an_address_the_node_left_issues_its_certificate_again(tmp_path: Path) -> None:
    key = clusterkey.generate_key()
    files = ApiFiles(directory=tmp_path / "api", audit_log=tmp_path / "audit.log")
    assert certs.ensure(files, key, "n1", ["198.18.0.1", "198.18.2.1"])
    assert not certs.ensure(files, key, "n1", ["198.18.2.1", "198.18.0.1"])  # order does not matter
    assert certs.ensure(files, key, "n1", ["198.18.0.1"])
    leaf = x509.load_pem_x509_certificate(files.node_cert.read_bytes())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["198.18.0.1", "127.0.0.1"]


def test_the_live_view_watches_a_node_added_and_forgets_one_removed() -> None:
    polled: list[str] = []

    async def local() -> list[dict[str, Any]]:
        return [{"name": "web", "state": "PRIM", "readiness": "Ready"}]

    async def peer(name: str) -> dict[str, Any]:
        polled.append(name)
        return {"reachable": True, "modules": [{"name": "web", "state": "SECOND", "readiness": "Ready"}]}

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        watcher = ClusterWatcher("n1", ["n2", "n4"], local, peer, networks=[{"name": "default"}])
        queue = await watcher.subscribe()
        await asyncio.sleep(0.1)
        watcher.follow(["n2", "n3"], [{"name": "default"}, {"name": "second"}])
        for _ in range(200):  # a loaded machine: until n3 is polled (its first round is at once)
            if watcher.snapshot()["nodes"][2]["reachable"]:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the push loop's turn
        seen = watcher.snapshot()
        while not queue.empty():
            last = queue.get_nowait()
        await watcher.unsubscribe(queue)
        return seen, last

    seen, pushed = asyncio.run(scenario())
    assert [n["name"] for n in seen["nodes"]] == ["n1", "n2", "n3"]
    assert seen["nodes"][2]["reachable"] is True  # polled since the reload, without a new subscriber
    assert "n3" in polled
    assert [n["name"] for n in pushed["networks"]] == ["default", "second"]  # pushed to the console


def test_the_cluster_status_lists_the_networks_and_follows_a_reload(env: Env) -> None:
    before = env.client.get("/api/v1/cluster", headers=env.headers(env.monitor)).json()
    assert [n["name"] for n in before["networks"]] == []  # the test env starts without any
    env.api.follow([], [n.to_json() for n in derive(cluster(DEFAULT, SECOND), "n1").networks])
    after = env.client.get("/api/v1/cluster", headers=env.headers(env.monitor)).json()
    assert [n["name"] for n in after["networks"]] == ["default", "second"]
    assert after["networks"][1]["nodes"][0] == {"name": "n1", "addr": "198.18.2.1"}


@dataclass
class ReloadingNode(FakeNode):
    cluster_listeners: list[Any] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _served(port: int, ca: Path, name: str) -> tuple[set[str], str | None]:
    """The IP addresses the served certificate names, and why it does not verify for `name`."""
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    san = x509.load_pem_x509_certificate(pem.encode()).extensions
    ips = {
        str(ip)
        for ip in san.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.IPAddress
        )
    }
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=name),
        ):
            return ips, None
    except ssl.SSLCertVerificationError as exc:
        return ips, exc.verify_message


def test_the_running_server_presents_the_new_certificate_after_a_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real HTTPS server: n1 gains 198.18.2.1 in a reload; the certificate is issued again by the
    child process and loaded into the live context: a client that checks that address now verifies
    it, with the same server (no restart)."""
    paths = Paths(
        safe=tmp_path / "opt",
        conf=tmp_path / "etc",
        var=tmp_path / "var",
        log=tmp_path / "log",
        run=tmp_path / "run",
    )
    for name, value in (
        ("SAFE", paths.safe),
        ("SAFEKIT_CONF", paths.conf),
        ("SAFEVAR", paths.var),
        ("SAFEKIT_LOG", paths.log),
        ("SAFEKIT_RUN", paths.run),
    ):  # the child's paths
        monkeypatch.setenv(name, str(value))
    paths.conf.mkdir(parents=True)
    paths.log.mkdir()
    paths.cluster_xml.write_text(
        '<cluster><lans><lan name="default"><node name="n1" addr="198.18.0.1"/>'
        '<node name="n2" addr="198.18.0.2"/></lan></lans></cluster>'
    )
    clusterkey.save_key(paths.cluster_key, clusterkey.generate_key())
    node = ReloadingNode()
    port = _free_port()
    server = ApiServer(node, paths, ApiSettings(address="127.0.0.1", port=port))
    ca = ApiFiles.from_paths(paths).ca_cert

    async def scenario() -> tuple[tuple[set[str], str | None], tuple[set[str], str | None]]:
        await server.start()
        try:
            before = await asyncio.to_thread(_served, port, ca, "198.18.2.1")
            [listener] = node.cluster_listeners
            await listener(cluster(DEFAULT, SECOND))
            after = await asyncio.to_thread(_served, port, ca, "198.18.2.1")
            assert [n["name"] for n in server._api.ctx.networks] == ["default", "second"]  # type: ignore[union-attr]
            return before, after
        finally:
            await server.stop()

    before, after = asyncio.run(scenario())
    assert before[0] == {"198.18.0.1", "127.0.0.1"} and before[1] is not None  # "IP address mismatch"
    assert after == ({"198.18.0.1", "198.18.2.1", "127.0.0.1"}, None)
