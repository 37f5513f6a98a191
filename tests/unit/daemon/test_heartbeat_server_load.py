"""safekitd leaves out a module whose SafeKit `<heartbeat><server addr>` is not an address of the
LAN's nodes in cluster.xml (ADR 0055), and loads one whose servers match, with the warning."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from safekit.daemon.node import Node
from safekit.host.paths import Paths
from safekit.membership import clusterkey

CLUSTER = """<cluster><lans><lan name="default">
  <node name="n1" addr="127.0.0.1"/><node name="n2" addr="127.0.0.2"/>
</lan></lans></cluster>
"""

USERCONFIG = """<safe><service mode="mirror">
  <heart port="{port}"><heartbeat name="default">
    <server addr="127.0.0.1"/><server addr="{second}"/>
  </heartbeat></heart>
</service></safe>
"""


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Paths]:
    for name, sub in {"SAFE": "safe", "SAFEKIT_CONF": "etc", "SAFEVAR": "var", "SAFEKIT_LOG": "log"}.items():
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.setenv("SAFEKIT_RUN", str(tmp_path / "run"))
    monkeypatch.delenv("SAFEKIT_SOCKET", raising=False)
    found = Paths.from_env()
    found.conf.mkdir(parents=True, exist_ok=True)
    found.cluster_xml.write_text(CLUSTER)
    clusterkey.save_key(found.cluster_key, clusterkey.generate_key())
    yield found
    for module in ("AM", "BAD"):
        logger = logging.getLogger(f"safekit.module.{module}")
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_module(paths: Paths, name: str, port: int, second: str) -> None:
    conf = paths.module_dir(name) / "conf" / "userconfig.xml"
    conf.parent.mkdir(parents=True)
    conf.write_text(USERCONFIG.format(port=port, second=second))


def test_a_foreign_server_leaves_the_module_out_and_matching_ones_load(paths: Paths) -> None:
    write_module(paths, "AM", free_udp_port(), "127.0.0.2")
    write_module(paths, "BAD", free_udp_port(), "127.0.0.9")

    async def run() -> tuple[set[str], dict[str, str]]:
        node = Node(paths, node_name="n1", health_address="127.0.0.1", health_port=0)
        await node.start()
        try:
            return set(node.modules), dict(node.broken)
        finally:
            await node.stop()

    loaded, broken = asyncio.run(run())
    assert loaded == {"AM"}
    assert set(broken) == {"BAD"}
    assert "<server>: 127.0.0.9 is not the address of a node on LAN 'default'" in broken["BAD"]
