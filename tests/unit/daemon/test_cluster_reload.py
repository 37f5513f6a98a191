"""The pure part of a cluster.xml reload (daemon/cluster_reload.py): what differs, and what a
running safekitd may apply live given what its modules take from cluster.xml."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from safekit.config import ClusterConfig, load_cluster
from safekit.config.cluster_parser import parse_cluster
from safekit.daemon.cluster_reload import ModuleUse, decide_reload, diff_clusters
from safekit.daemon.node import Node
from safekit.host.module_packages import sha256_file
from safekit.host.paths import Paths
from safekit.membership import clusterkey


def cluster(*lans: tuple[str, dict[str, str]], port: int | None = None) -> ClusterConfig:
    lines = [f"<cluster><lans{f' port={chr(34)}{port}{chr(34)}' if port else ''}>"]
    for name, nodes in lans:
        lines.append(f'<lan name="{name}">')
        lines += [f'<node name="{n}" addr="{a}"/>' for n, a in nodes.items()]
        lines.append("</lan>")
    lines.append("</lans></cluster>")
    return parse_cluster("\n".join(lines))


DEFAULT = ("default", {"n1": "198.18.4.1", "n2": "198.18.4.2"})
LAN1 = ("lan1", {"n1": "198.18.5.1", "n2": "198.18.5.2"})
LAN1_MOVED = ("lan1", {"n1": "198.18.5.101", "n2": "198.18.5.102"})
LAN2 = ("lan2", {"n1": "198.18.6.1", "n2": "198.18.6.2"})
OLD = cluster(DEFAULT, LAN1)

MIRROR = ModuleUse("web", "mirror", running=True, lans=("default", "lan1"), replication_lan="default")
FARM = ModuleUse("lb", "farm", running=True, lans=("lan1",))


def test_the_diff_names_added_removed_and_readdressed_networks() -> None:
    diff = diff_clusters(OLD, cluster(DEFAULT, LAN1_MOVED, LAN2))
    assert (diff.added, diff.removed, diff.readdressed) == (("lan2",), (), ("lan1",))
    assert not diff.port_changed and not diff.nodes_added
    diff = diff_clusters(OLD, cluster(DEFAULT))
    assert diff.removed == ("lan1",)
    assert diff_clusters(OLD, cluster(DEFAULT, LAN1)).empty
    # the same nodes and addresses in another order are the same network
    same = cluster(DEFAULT, ("lan1", {"n2": "198.18.5.2", "n1": "198.18.5.1"}))
    assert diff_clusters(OLD, same).empty


def test_a_new_heartbeat_network_is_applied_live_with_modules_running() -> None:
    decision = decide_reload(OLD, cluster(DEFAULT, LAN1, LAN2), local_node="n1", modules=[MIRROR, FARM])
    assert decision.accepted
    assert decision.changes == ("heartbeat network lan2 added",)
    assert not decision.relink and not decision.reload_modules


def test_a_running_mirrors_heartbeat_only_network_is_moved_live() -> None:
    decision = decide_reload(OLD, cluster(DEFAULT, LAN1_MOVED), local_node="n1", modules=[MIRROR])
    assert decision.accepted, decision.refusals
    assert dict(decision.relink) == {"web": ("lan1",)}
    assert "198.18.5.101" in decision.changes[0]


def test_the_network_carrying_a_running_mirrors_replication_is_refused() -> None:
    moved = ("default", {"n1": "198.18.4.11", "n2": "198.18.4.12"})
    decision = decide_reload(OLD, cluster(moved, LAN1), local_node="n1", modules=[MIRROR])
    assert not decision.accepted
    assert "carries the replication of module web, which runs" in decision.refusals[0]
    assert "safekit stop -m web" in decision.refusals[0]
    assert not decision.relink  # nothing applied at all


def test_every_network_of_a_running_module_at_once_is_refused() -> None:
    only_heartbeats = ModuleUse("web", "mirror", running=True, lans=("default", "lan1"))
    moved = ("default", {"n1": "198.18.4.11", "n2": "198.18.4.12"})
    decision = decide_reload(OLD, cluster(moved, LAN1_MOVED), local_node="n1", modules=[only_heartbeats])
    assert not decision.accepted
    assert "every heartbeat network of module web changes at once" in decision.refusals[0]


def test_a_stopped_module_is_loaded_again_instead() -> None:
    stopped = ModuleUse("web", "mirror", running=False, lans=("default", "lan1"), replication_lan="default")
    moved = ("default", {"n1": "198.18.4.11", "n2": "198.18.4.12"})
    decision = decide_reload(OLD, cluster(moved, LAN1), local_node="n1", modules=[stopped])
    assert decision.accepted
    assert decision.reload_modules == ("web",) and not decision.relink


def test_renaming_the_local_node_is_refused() -> None:
    renamed = cluster(
        ("default", {"alpha": "198.18.4.1", "n2": "198.18.4.2"}),
        ("lan1", {"alpha": "198.18.5.1", "n2": "198.18.5.2"}),
    )
    decision = decide_reload(OLD, renamed, local_node="n1", modules=[])
    assert not decision.accepted
    assert "this node (n1) is not in the new cluster.xml" in decision.refusals[0]
    assert "node alpha added" in decision.changes and "node n1 removed" in decision.changes


def test_a_changed_key_is_refused_even_with_the_same_file() -> None:
    decision = decide_reload(OLD, OLD, local_node="n1", modules=[], key_changed=True)
    assert not decision.accepted
    assert "cluster key" in decision.refusals[0]


def test_a_running_farms_networks_and_a_peer_change_are_refused() -> None:
    decision = decide_reload(OLD, cluster(DEFAULT, LAN1_MOVED), local_node="n1", modules=[FARM])
    assert not decision.accepted and "farm's membership" in decision.refusals[0]
    other_peer = ("lan1", {"n1": "198.18.5.1", "n3": "198.18.5.3"})
    decision = decide_reload(OLD, cluster(DEFAULT, other_peer), local_node="n1", modules=[MIRROR])
    assert not decision.accepted and "whose nodes changed" in decision.refusals[0]


def test_a_network_a_module_names_cannot_go() -> None:
    decision = decide_reload(OLD, cluster(DEFAULT), local_node="n1", modules=[MIRROR])
    assert not decision.accepted
    assert "module web names heartbeat network(s) lan1 that the new cluster.xml lacks" in decision.refusals[0]
    decision = decide_reload(OLD, cluster(DEFAULT), local_node="n1", modules=[])
    assert decision.accepted and decision.changes == ("heartbeat network lan1 removed",)


def test_the_base_port_of_a_module_that_takes_it_is_refused_while_it_runs() -> None:
    module = ModuleUse("web", "mirror", running=True, lans=("default",), port_from_cluster=True)
    decision = decide_reload(OLD, cluster(DEFAULT, LAN1, port=5000), local_node="n1", modules=[module])
    assert not decision.accepted and "base port" in decision.refusals[0]
    own_port = ModuleUse("web", "mirror", running=True, lans=("default",))
    assert decide_reload(OLD, cluster(DEFAULT, LAN1, port=5000), local_node="n1", modules=[own_port]).accepted


def test_modules_that_did_not_load_are_tried_again_after_an_accepted_reload() -> None:
    decision = decide_reload(OLD, cluster(DEFAULT, LAN1, LAN2), local_node="n1", modules=[], broken=["db"])
    assert decision.retry_broken == ("db",)
    assert "tried again" in decision.summary()
    unchanged = decide_reload(OLD, OLD, local_node="n1", modules=[], broken=["db"])
    assert unchanged.accepted and not unchanged.changes
    assert unchanged.summary() == "cluster.xml is the one safekitd runs: nothing to apply"


def _text(*lans: tuple[str, dict[str, str]]) -> str:
    body = "".join(
        f'<lan name="{name}">'
        + "".join(f'<node name="{n}" addr="{a}"/>' for n, a in nodes.items())
        + "</lan>"
        for name, nodes in lans
    )
    return f"<cluster><lans>{body}</lans></cluster>\n"


def test_the_node_applies_an_accepted_reload_and_keeps_its_cluster_on_a_refusal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Node.reload_cluster (daemon/node.py) with no module loaded: the cluster it runs follows the
    file, the API's listener hears of it; a refusal changes nothing and is logged with its reason."""
    paths = Paths(
        safe=tmp_path / "opt",
        conf=tmp_path / "etc",
        var=tmp_path / "var",
        log=tmp_path / "log",
        run=tmp_path / "run",
    )
    paths.conf.mkdir(parents=True)
    paths.cluster_xml.write_text(_text(DEFAULT, LAN1))
    key = clusterkey.generate_key()
    clusterkey.save_key(paths.cluster_key, key)
    node = Node(paths, node_name="n1")
    node._cluster, node._key = load_cluster(paths.cluster_xml), key
    node.cluster_sha256 = sha256_file(paths.cluster_xml)
    heard: list[ClusterConfig] = []
    node.cluster_listeners.append(heard.append)

    paths.cluster_xml.write_text(_text(DEFAULT, LAN1, LAN2))
    dry = asyncio.run(node.reload_cluster(dry_run=True))
    assert dry["ok"] and not dry["applied"] and node._cluster.lan("lan2") is None
    caplog.set_level(logging.INFO, logger="safekit.daemon")
    answer = asyncio.run(node.reload_cluster())
    assert answer["applied"] and answer["changes"] == ["heartbeat network lan2 added"]
    assert node._cluster.lan("lan2") is not None and [c.lan("lan2") is not None for c in heard] == [True]
    assert node.cluster_sha256 == sha256_file(paths.cluster_xml)  # `cluster confinfo`: same file
    assert "cluster.xml reload: applied live: heartbeat network lan2 added" in caplog.text

    paths.cluster_xml.write_text(_text(("default", {"alpha": "198.18.4.1", "n2": "198.18.4.2"})))
    refused = asyncio.run(node.reload_cluster())
    assert not refused["ok"] and not refused["applied"]
    assert "renaming the local node needs a restart" in refused["error"]
    assert node._cluster.lan("lan2") is not None and len(heard) == 1  # still the cluster it ran
    assert node.cluster_sha256 != sha256_file(paths.cluster_xml)
    assert "cluster.xml reload refused: not applied live: this node (n1)" in caplog.text


def test_an_async_listener_is_awaited_and_a_failing_one_does_not_undo_the_reload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The API's listener (certificate issued again, api/server.py) is awaited before the reload
    answers; one that fails is logged, and the reload stays applied."""
    paths = Paths(
        safe=tmp_path / "opt",
        conf=tmp_path / "etc",
        var=tmp_path / "var",
        log=tmp_path / "log",
        run=tmp_path / "run",
    )
    paths.conf.mkdir(parents=True)
    paths.cluster_xml.write_text(_text(DEFAULT))
    key = clusterkey.generate_key()
    clusterkey.save_key(paths.cluster_key, key)
    node = Node(paths, node_name="n1")
    node._cluster, node._key = load_cluster(paths.cluster_xml), key
    followed: list[str] = []

    async def follows(cluster: ClusterConfig) -> None:
        await asyncio.sleep(0.01)
        followed.append(",".join(lan.name for lan in cluster.lans))

    def fails(cluster: ClusterConfig) -> None:
        raise RuntimeError("no certificate")

    node.cluster_listeners += [fails, follows]
    paths.cluster_xml.write_text(_text(DEFAULT, LAN2))
    answer = asyncio.run(node.reload_cluster())
    assert answer["applied"] and followed == ["default,lan2"]  # awaited before the answer
    assert node._cluster.lan("lan2") is not None
    assert "a listener failed" in caplog.text
