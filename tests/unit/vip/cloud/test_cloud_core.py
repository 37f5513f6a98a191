"""The shared parts: backoff, deadlines, retries, metadata clients (against the metadata fakes),
and the permissions list as the one source of truth (providers, docs)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.metadata_fake import AwsImdsFake, AzureImdsFake
from safekit.vip import VipError, available_providers
from safekit.vip.cloud import permissions
from safekit.vip.cloud.metadata import AwsImds, AzureImds, MetadataError, azure_identity
from safekit.vip.cloud.retry import (
    Deadline,
    Verdict,
    backoff_delay,
    call_with_retry,
    current_deadline,
    deadline_scope,
)

DOCS = Path(__file__).resolve().parents[4] / "docs" / "cloud-permissions.md"


def test_backoff_is_full_jitter_capped() -> None:
    assert backoff_delay(1, lambda: 1.0) == pytest.approx(0.1)
    assert backoff_delay(3, lambda: 1.0) == pytest.approx(0.4)
    assert backoff_delay(30, lambda: 1.0) == pytest.approx(2.0)
    assert backoff_delay(5, lambda: 0.0) == 0.0
    draws = {round(backoff_delay(4, random.Random(seed)), 3) for seed in range(20)}
    assert len(draws) > 10 and max(draws) <= 0.8


def test_deadline_scope_keeps_the_earlier_deadline() -> None:
    with deadline_scope(1.0) as outer, deadline_scope(100.0) as inner:
        assert inner is outer and current_deadline() is outer
    assert Deadline(10.0).remaining(now=4.0) == 6.0 and Deadline(10.0).expired(now=11.0)
    assert Deadline(10.0).bound(30.0, now=9.0) == 1.0


def test_retry_until_success_then_until_deadline() -> None:
    failures = iter([TimeoutError(), TimeoutError()])

    def work(timeout: float) -> str:
        exc = next(failures, None)
        if exc:
            raise exc
        return "done"

    classify = lambda exc: Verdict.RETRY  # noqa: E731
    assert call_with_retry("x", work, classify, attempt_timeout=1, sleep=lambda s: None) == ("done", 3)

    def always(timeout: float) -> str:
        raise TimeoutError("slow")

    started = time.monotonic()
    with deadline_scope(0.5), pytest.raises(VipError, match="still failing after"):
        call_with_retry("x", always, classify, attempt_timeout=1)
    assert time.monotonic() - started < 0.6


def test_fail_verdict_is_not_retried() -> None:
    calls = []

    def work(timeout: float) -> None:
        calls.append(timeout)
        raise ValueError("bad request")

    with pytest.raises(ValueError):
        call_with_retry("x", work, lambda exc: Verdict.FAIL, attempt_timeout=1)
    assert len(calls) == 1


@pytest.fixture
def imds() -> Iterator[AwsImdsFake]:
    fake = AwsImdsFake({"instance-id": "i-1"}).start()
    yield fake
    fake.stop()


def test_imdsv2_token_is_cached_until_it_nearly_expires(imds: AwsImdsFake) -> None:
    now = [1000.0]
    client = AwsImds(imds.url, clock=lambda: now[0])
    assert [client.get("instance-id") for _ in range(3)] == ["i-1"] * 3
    assert len(imds.calls("PUT")) == 1
    now[0] += 21600 - 30  # inside the renewal margin
    client.get("instance-id")
    assert len(imds.calls("PUT")) == 2


def test_imdsv2_revoked_token_is_renewed_once(imds: AwsImdsFake) -> None:
    client = AwsImds(imds.url)
    client.get("instance-id")
    imds.tokens.clear()  # the service forgot it (instance stopped and started)
    assert client.get("instance-id") == "i-1"
    assert len(imds.calls("PUT")) == 2


def test_imds_5xx_retried_and_404_not(imds: AwsImdsFake) -> None:
    imds.inject("GET /latest/meta-data/instance-id", status=503)
    client = AwsImds(imds.url)
    assert client.get("instance-id") == "i-1"
    with pytest.raises(MetadataError, match="404"):
        client.get("no-such-path")


def test_azure_imds_identity() -> None:
    fake = AzureImdsFake(
        {
            "compute": {"subscriptionId": "s", "resourceGroupName": "rg", "name": "vm"},
            "network": {
                "interface": [
                    {"macAddress": "000D3A00000A", "ipv4": {"ipAddress": [{"privateIpAddress": "10.1.0.4"}]}}
                ]
            },
        }
    ).start()
    try:
        identity = azure_identity(AzureImds(fake.url), {"resource_group": "net-rg"})
    finally:
        fake.stop()
    assert (identity.subscription_id, identity.resource_group, identity.vm_name) == ("s", "net-rg", "vm")
    assert (identity.private_ip, identity.mac) == ("10.1.0.4", "00-0D-3A-00-00-0A")


def test_every_registered_cloud_provider_has_its_permissions() -> None:
    clouds = [p for p in available_providers() if p.split("_")[0] in ("aws", "azure", "gcp")]
    assert sorted(clouds) == sorted(permissions.PROVIDERS)


def test_undeclared_call_is_refused() -> None:
    with pytest.raises(AssertionError, match="not declared"):
        permissions.require("aws_route", "ec2:DeleteRoute")


@pytest.mark.parametrize("cloud", ["aws", "azure", "gcp"])
def test_docs_show_the_generated_policies(cloud: permissions.Cloud) -> None:
    text = DOCS.read_text()
    assert permissions.policy_document(cloud) in text, (
        f"docs/cloud-permissions.md: regenerate the {cloud} policy"
    )
    for action in permissions.actions(cloud):
        assert action in text
