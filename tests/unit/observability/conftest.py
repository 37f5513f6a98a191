"""A real safekitd Node with a mirror module on loopback, and what its /metrics declares."""

from __future__ import annotations

import asyncio
import logging
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from safekit.daemon.node import Node
from safekit.host.paths import Paths
from safekit.membership import clusterkey

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
"""The sample names of each type of family in the exposition format."""


CLUSTER = """<cluster>
  <lans>
    <lan name="default">
      <node name="n1" addr="127.0.0.1"/>
      <node name="n2" addr="127.0.0.2"/>
    </lan>
  </lans>
</cluster>
"""

USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror">
  <heart port="{port}">
    <heartbeat name="default"/>
  </heart>
  <user/>
</service>
</safe>
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Paths]:
    for name, sub in {
        "SAFE": "safe",
        "SAFEKIT_CONF": "etc",
        "SAFEVAR": "var",
        "SAFEKIT_LOG": "log",
        "SAFEKIT_RUN": "run",
    }.items():
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.delenv("SAFEKIT_SOCKET", raising=False)
    found = Paths.from_env()
    found.conf.mkdir(parents=True, exist_ok=True)
    found.cluster_xml.write_text(CLUSTER)
    clusterkey.save_key(found.cluster_key, clusterkey.generate_key())
    conf = found.module_dir("AM") / "conf" / "userconfig.xml"
    conf.parent.mkdir(parents=True)
    conf.write_text(USERCONFIG.format(port=free_udp_port()))
    start_prim = found.module_dir("AM") / "bin" / "start_prim"
    start_prim.parent.mkdir(parents=True)
    start_prim.write_text("#!/bin/sh\nsleep 0.2\n")
    start_prim.chmod(start_prim.stat().st_mode | stat.S_IXUSR)
    yield found
    logger = logging.getLogger("safekit.module.AM")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


@pytest.fixture
def exposition(paths: Paths) -> str:
    """What safekitd's /metrics answers with a mirror module loaded (stopped)."""

    async def run() -> str:
        node = Node(paths, node_name="n1", health_address="127.0.0.1", health_port=0)
        await node.start()
        try:
            return generate_latest(node.metrics.registry).decode()
        finally:
            await node.stop()

    return asyncio.run(run())


@pytest.fixture
def exported_names(exposition: str) -> set[str]:
    """Every sample name safekitd's /metrics declares (from its HELP/TYPE lines, so that a histogram
    nothing has observed yet counts too)."""
    names = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names
