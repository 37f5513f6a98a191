"""What safekitd really exports on its health port's /metrics: a real Node with a mirror module on
loopback, its registry's exposition parsed with prometheus_client's parser."""

from __future__ import annotations

import asyncio
import dataclasses

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from safekit.daemon.mirror_module import MirrorModule
from safekit.daemon.node import Node
from safekit.host.paths import Paths
from safekit.mirror.states import Phase


def scrape(node: Node) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """family name -> [(sample name, labels, value)], as Prometheus would read /metrics."""
    text = generate_latest(node.metrics.registry).decode()
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def value(families: dict[str, list[tuple[str, dict[str, str], float]]], sample: str, **labels: str) -> float:
    """The value of the one sample named `sample` with these labels (others may differ)."""
    for samples in families.values():
        for name, got, v in samples:
            if name == sample and all(got.get(k) == want for k, want in labels.items()):
                return v
    raise AssertionError(f"no {sample}{labels}")


def test_the_daemon_exports_build_info_states_scripts_and_no_created_series(paths: Paths) -> None:
    async def run() -> None:
        node = Node(paths, node_name="n1", health_address="127.0.0.1", health_port=0)
        await node.start()
        try:
            module = node.modules["AM"]
            before = scrape(node)
            assert value(before, "safekit_build_info", version=__import__("safekit").__version__) == 1
            assert value(before, "safekit_module_state", module="AM", state="STOP") == 1
            reply = await module.command("prim")
            assert reply.accepted, reply
            for _ in range(100):
                if module.module_state == "ALONE" and module.readiness == "Ready":
                    break
                await asyncio.sleep(0.05)
            after = scrape(node)
            assert value(after, "safekit_module_state", module="AM", state="ALONE") == 1
            assert value(after, "safekit_module_ready", module="AM") == 1
            assert value(after, "safekit_module_serving", module="AM") == 1
            assert value(after, "safekit_module_transitions_total", module="AM", from_state="STOP") >= 1
            took = value(
                after, "safekit_script_duration_seconds_sum", module="AM", script="start_prim", outcome="ok"
            )
            assert 0.2 <= took < 5
            # prestart ran too, but the module has no such script: nothing measured.
            scripts = {labels.get("script") for _, labels, _ in after["safekit_script_duration_seconds"]}
            assert scripts == {"start_prim"}
            exported = {name for samples in after.values() for name, _, _ in samples}
            assert not [name for name in exported if name.endswith("_created")]
            await module.command("stop")
        finally:
            await node.stop()

    asyncio.run(run())


def test_module_ready_is_1_for_second_ready_and_serving_stays_0(paths: Paths) -> None:
    """The bug of issue 19: `safekit_module_ready` was the health check's answer (0 on SECOND)."""

    async def run() -> None:
        node = Node(paths, node_name="n1", health_address="127.0.0.1", health_port=0)
        await node.start()
        try:
            module = node.modules["AM"]
            assert isinstance(module, MirrorModule)
            module.state = dataclasses.replace(module.state, phase=Phase.SECONDARY, uptodate=True)
            assert (module.module_state, module.readiness) == ("SECOND", "Ready")
            module._show_state()
            families = scrape(node)
            assert value(families, "safekit_module_state", module="AM", state="SECOND") == 1
            assert value(families, "safekit_module_ready", module="AM") == 1
            assert value(families, "safekit_module_serving", module="AM") == 0
            module.state = dataclasses.replace(module.state, uptodate=False)  # SECOND (Transient)
            module._show_state()
            assert value(scrape(node), "safekit_module_ready", module="AM") == 0
        finally:
            await node.stop()

    asyncio.run(run())
