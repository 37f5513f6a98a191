"""The histograms and counters behind the dashboard's heartbeat, VIP and cloud panels, fed by the
daemon's real objects: two heartbeat links on loopback, ModuleVips over a cloud provider whose API
call times out twice before it succeeds."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from typing import Any, ClassVar

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from safekit.daemon.heartbeats import HeartbeatLan, HeartbeatLink, StatusCodec
from safekit.daemon.metrics import Metrics
from safekit.daemon.module_vips import ModuleVips
from safekit.farm import status_codec as farm_codec
from safekit.farm.states import FarmState
from safekit.farm.status_codec import FarmStatus
from safekit.lifecycle import Readiness
from safekit.membership.counters import Histogram
from safekit.mirror import AcquireVip, Event, ReleaseVip
from safekit.vip import VipSpec
from safekit.vip.cloud.base import CloudVipProvider
from safekit.vip.cloud.retry import Verdict
from safekit.vip.provider import VipCheck, VipState

Samples = dict[str, list[tuple[dict[str, str], float]]]


def samples(metrics: Metrics) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def buckets_are_cumulative(found: Samples, name: str, **labels: str) -> float:
    """The +Inf bucket of the histogram `name` with these labels, after checking that its buckets
    never decrease and that +Inf equals _count."""
    rows = [(got, v) for got, v in found[f"{name}_bucket"] if all(got[k] == w for k, w in labels.items())]
    values = [v for got, v in sorted(rows, key=lambda row: float(row[0]["le"]))]
    assert values == sorted(values) and values
    count = next(v for got, v in found[f"{name}_count"] if all(got[k] == w for k, w in labels.items()))
    assert values[-1] == count
    return count


def test_a_histogram_counts_each_observation_in_its_bucket() -> None:
    histogram = Histogram((0.01, 0.1))
    for value in (0.005, 0.01, 0.05, 3.0):
        histogram.observe(value)
    assert histogram.cumulative() == [("0.01", 2.0), ("0.1", 3.0), ("+Inf", 4.0)]
    assert (histogram.count, round(histogram.total, 3)) == (4, 3.065)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.wallclock
def test_heartbeat_round_trips_and_send_lateness_are_histograms() -> None:
    nodes = {"node1": "127.0.0.1", "node2": "127.0.0.2"}
    codec = StatusCodec(farm_codec.wire_fields, farm_codec.status_from)
    metrics = Metrics()

    async def run() -> None:
        port = free_port()
        links: dict[str, HeartbeatLink[Any]] = {}
        for name, address in nodes.items():
            peers = tuple((n, a) for n, a in nodes.items() if n != name)
            lan = HeartbeatLan("lan1", address, peers, port, 0.05, 0.5)
            link: HeartbeatLink[Any] = HeartbeatLink(
                module="AM",
                local_node=name,
                key=bytes(range(32)),
                lans=[lan],
                codec=codec,
                on_status=lambda status, now: None,
                on_liveness=lambda event, now: None,
            )
            link.announce(FarmStatus(name, FarmState.UP, Readiness.READY))
            await link.start()
            links[name] = link
        one = links["node1"]
        metrics.add_heartbeat_source(
            "AM", one.figures, lambda: ("AM", one.lateness_p99(), one.lateness_histogram)
        )
        deadline = time.monotonic() + 5
        while one.receiver.rtt("node2", "lan1").samples < 5:
            assert time.monotonic() < deadline, "no round trip measured"
            await asyncio.sleep(0.05)
        for link in links.values():
            await link.close()

    asyncio.run(run())
    found = samples(metrics)
    rtts = buckets_are_cumulative(found, "safekit_heartbeat_rtt_seconds", peer="node2", lan="lan1")
    assert rtts >= 5
    took = next(v for _, v in found["safekit_heartbeat_rtt_seconds_sum"])
    assert 0 < took / rtts < 0.5  # loopback
    assert buckets_are_cumulative(found, "safekit_heartbeat_send_lateness_seconds", module="AM") >= 1
    assert "safekit_heartbeat_rtt_seconds" not in found  # no smoothed gauge: the histogram only


class FlakyRoute(CloudVipProvider):
    """An `aws_route` provider whose route update times out twice, then succeeds."""

    name: ClassVar[str] = "aws_route"
    cloud: ClassVar[Any] = "aws"
    os_address_default: ClassVar[str] = "off"

    def __init__(self) -> None:
        super().__init__(VipSpec(ipaddress.IPv4Address("198.18.16.203"), 32, None, "aws_route", {}))
        self.failures = 2

    def _classify(self, exc: BaseException) -> Verdict:
        return Verdict.RETRY if isinstance(exc, TimeoutError) else Verdict.FAIL

    def _replace_route(self, timeout: float) -> bool:
        if self.failures:
            self.failures -= 1
            raise TimeoutError("slow API")
        return True

    async def _acquire(self) -> bool:
        return await self.api("ec2:ReplaceRoute", self._replace_route)

    async def _release(self) -> bool:
        return await self.api("ec2:DescribeRouteTables", lambda timeout: False)

    async def _check(self) -> VipCheck:
        return VipCheck(VipState.ABSENT)


def test_vip_operations_and_cloud_api_calls_are_measured() -> None:
    metrics = Metrics()
    provider = FlakyRoute()
    reports: list[Event] = []
    vips = ModuleVips(
        [provider],
        logging.getLogger("test"),
        reports.append,
        split_brain_bound=2.0,
        observe=lambda p, operation, outcome, took: metrics.vip_duration.labels(
            "AM", p, operation, outcome
        ).observe(took),
    )
    metrics.add_cloud_calls("AM", vips.cloud_calls)

    async def run() -> None:
        await vips.acquire(AcquireVip())
        await vips.release(ReleaseVip())

    asyncio.run(run())
    assert reports == []
    found = samples(metrics)
    for operation in ("acquire", "release"):
        assert (
            buckets_are_cumulative(
                found,
                "safekit_vip_operation_duration_seconds",
                provider="aws_route",
                operation=operation,
                outcome="ok",
            )
            == 1
        )
    calls = {(got["action"], got["outcome"]): v for got, v in found["safekit_vip_cloud_api_calls_total"]}
    attempts = {
        (got["action"], got["outcome"]): v for got, v in found["safekit_vip_cloud_api_attempts_total"]
    }
    assert calls == {("ec2:DescribeRouteTables", "ok"): 1, ("ec2:ReplaceRoute", "ok"): 1}
    assert attempts == {("ec2:DescribeRouteTables", "ok"): 1, ("ec2:ReplaceRoute", "ok"): 3}
