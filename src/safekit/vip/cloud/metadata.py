"""This instance's identity from the cloud's metadata service: AWS IMDSv2 (session token cached
until shortly before it expires), Azure IMDS, and the GCP metadata server (which also hands out
the service account's access token, cached until it expires).

Every lookup is small, bounded by the current operation's deadline and retried on 429/5xx and
timeouts. A refused or unreachable connection fails at once: that is what happens off the cloud,
and a VIP operation must say so quickly rather than spend its time bound.

The base URL of each service is overridable, for tests and labs, by an option (`metadata_url`) or
by an environment variable (`SAFEKIT_AWS_METADATA_URL`, `SAFEKIT_AZURE_METADATA_URL`,
`SAFEKIT_GCP_METADATA_URL`). Identity values are cached for the life of the provider (an
instance's id, zone and network interface do not change while it runs).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from safekit.vip.cloud.retry import Verdict, call_with_retry
from safekit.vip.provider import VipError

AWS_METADATA_URL = "http://169.254.169.254"
AZURE_METADATA_URL = "http://169.254.169.254"
GCP_METADATA_URL = "http://metadata.google.internal"
AWS_TOKEN_TTL = 21600
"""Seconds an IMDSv2 session token is asked for (the maximum, six hours)."""
TOKEN_MARGIN = 60.0
"""A cached token is renewed this many seconds before it expires."""
AZURE_IMDS_API_VERSION = "2021-02-01"
ATTEMPT_TIMEOUT = 1.0
"""Seconds one metadata request may take: the service is link-local and answers in milliseconds."""

_ENV = {
    "aws": "SAFEKIT_AWS_METADATA_URL",
    "azure": "SAFEKIT_AZURE_METADATA_URL",
    "gcp": "SAFEKIT_GCP_METADATA_URL",
}
_DEFAULT = {"aws": AWS_METADATA_URL, "azure": AZURE_METADATA_URL, "gcp": GCP_METADATA_URL}


def metadata_url(cloud: str, option: str | None) -> str:
    """The metadata service's base URL: the option, else the environment variable, else the cloud's."""
    return (option or os.environ.get(_ENV[cloud]) or _DEFAULT[cloud]).rstrip("/")


class MetadataError(VipError):
    """The metadata service could not be read."""


class _HttpStatusError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status


def _classify(exc: BaseException) -> Verdict:
    if isinstance(exc, _HttpStatusError):
        return Verdict.RETRY if exc.status == 429 or exc.status >= 500 else Verdict.FAIL
    if isinstance(exc, TimeoutError | socket.timeout):
        return Verdict.RETRY
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, TimeoutError | socket.timeout):
        return Verdict.RETRY
    return Verdict.FAIL


def _request(
    method: str, url: str, headers: Mapping[str, str], timeout: float, data: bytes | None = None
) -> str:
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers))  # noqa: S310 - http only, URL from config
    # No proxy: the metadata service is link-local, and a proxy would answer for another machine.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            body: bytes = response.read()
            return body.decode()
    except urllib.error.HTTPError as exc:
        raise _HttpStatusError(exc.code, exc.read().decode(errors="replace")) from None


class _MetadataClient:
    cloud = ""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._lock = threading.Lock()
        self.requests = 0
        """How many HTTP requests were made (tests check the token cache with it)."""

    def _fetch(self, method: str, path: str, headers: Mapping[str, str], data: bytes | None = None) -> str:
        url = self.base_url + path

        def attempt(timeout: float) -> str:
            self.requests += 1
            return _request(method, url, headers, timeout, data)

        try:
            return call_with_retry(f"metadata {url}", attempt, _classify, attempt_timeout=ATTEMPT_TIMEOUT)[0]
        except VipError as exc:
            raise MetadataError(f"{self.cloud} metadata service: {exc}") from exc
        except _HttpStatusError as exc:
            raise MetadataError(f"{self.cloud} metadata service: {method} {url} answered {exc}") from exc
        except (OSError, urllib.error.URLError) as exc:
            raise MetadataError(
                f"{self.cloud} metadata service at {self.base_url} cannot be reached ({exc}): "
                "is this node a cloud instance? Otherwise give its identity in the provider options"
            ) from exc


class AwsImds(_MetadataClient):
    """IMDSv2: a session token (PUT, cached until TOKEN_MARGIN before its TTL ends), then GETs with it."""

    cloud = "aws"

    def __init__(self, base_url: str, clock: Any = time.monotonic) -> None:
        super().__init__(base_url)
        self._clock = clock
        self._token: tuple[str, float] | None = None

    def token(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is None or self._token[1] - TOKEN_MARGIN <= now:
                text = self._fetch(
                    "PUT",
                    "/latest/api/token",
                    {"X-aws-ec2-metadata-token-ttl-seconds": str(AWS_TOKEN_TTL)},
                    data=b"",
                )
                self._token = (text.strip(), now + AWS_TOKEN_TTL)
            return self._token[0]

    def get(self, path: str) -> str:
        try:
            return self._fetch("GET", f"/latest/meta-data/{path}", {"X-aws-ec2-metadata-token": self.token()})
        except MetadataError as exc:
            if isinstance(exc.__cause__, _HttpStatusError) and exc.__cause__.status == 401:
                # the token was revoked or the instance restarted: one more try with a new one
                with self._lock:
                    self._token = None
                return self._fetch(
                    "GET", f"/latest/meta-data/{path}", {"X-aws-ec2-metadata-token": self.token()}
                )
            raise


class AzureImds(_MetadataClient):
    cloud = "azure"

    def instance(self) -> dict[str, Any]:
        text = self._fetch(
            "GET", f"/metadata/instance?api-version={AZURE_IMDS_API_VERSION}", {"Metadata": "true"}
        )
        document: dict[str, Any] = json.loads(text)
        return document


class GcpMetadata(_MetadataClient):
    cloud = "gcp"

    def __init__(self, base_url: str, clock: Any = time.time) -> None:
        super().__init__(base_url)
        self._clock = clock
        self._token: tuple[str, float] | None = None

    def get(self, path: str) -> str:
        return self._fetch("GET", f"/computeMetadata/v1/{path}", {"Metadata-Flavor": "Google"})

    def access_token(self) -> tuple[str, float]:
        """(token, expiry as a wall-clock time), cached until TOKEN_MARGIN before it expires."""
        with self._lock:
            now = self._clock()
            if self._token is None or self._token[1] - TOKEN_MARGIN <= now:
                data = json.loads(self.get("instance/service-accounts/default/token"))
                self._token = (str(data["access_token"]), now + float(data["expires_in"]))
            return self._token


@dataclass(frozen=True)
class AwsIdentity:
    instance_id: str
    region: str
    eni_id: str
    private_ip: str


@dataclass(frozen=True)
class AzureIdentity:
    subscription_id: str
    resource_group: str
    vm_name: str
    private_ip: str
    mac: str
    """As Azure's NIC resources write it: upper case, dashes (00-0D-3A-...)."""


@dataclass(frozen=True)
class GcpIdentity:
    project: str
    zone: str
    instance: str
    private_ip: str


def aws_identity(imds: AwsImds, options: Mapping[str, str]) -> AwsIdentity:
    """Options given win over the metadata service (and spare its calls)."""

    def value(option: str, path: str) -> str:
        return options.get(option) or imds.get(path).strip()

    mac = "" if options.get("eni_id") else imds.get("mac").strip()
    return AwsIdentity(
        instance_id=value("instance_id", "instance-id"),
        region=value("region", "placement/region"),
        eni_id=value("eni_id", f"network/interfaces/macs/{mac}/interface-id"),
        private_ip=value("private_ip", "local-ipv4"),
    )


def azure_identity(imds: AzureImds, options: Mapping[str, str]) -> AzureIdentity:
    keys = ("subscription_id", "resource_group", "vm_name", "private_ip", "mac")
    if all(options.get(k) for k in keys):
        return AzureIdentity(*(options[k] for k in keys))
    doc = imds.instance()
    try:
        compute, nic = doc["compute"], doc["network"]["interface"][0]
        mac = str(nic["macAddress"]).upper().replace(":", "").replace("-", "")
        return AzureIdentity(
            subscription_id=options.get("subscription_id") or str(compute["subscriptionId"]),
            resource_group=options.get("resource_group") or str(compute["resourceGroupName"]),
            vm_name=options.get("vm_name") or str(compute["name"]),
            private_ip=options.get("private_ip") or str(nic["ipv4"]["ipAddress"][0]["privateIpAddress"]),
            mac=options.get("mac") or "-".join(mac[i : i + 2] for i in range(0, len(mac), 2)),
        )
    except (KeyError, IndexError, TypeError) as exc:
        raise MetadataError(f"azure metadata service: the instance document lacks {exc}") from exc


def gcp_identity(server: GcpMetadata, options: Mapping[str, str]) -> GcpIdentity:
    def value(option: str, path: str) -> str:
        return options.get(option) or server.get(path).strip()

    return GcpIdentity(
        project=value("project", "project/project-id"),
        # the server answers projects/NUMBER/zones/ZONE
        zone=value("zone", "instance/zone").rsplit("/", 1)[-1],
        instance=value("instance", "instance/name"),
        private_ip=value("private_ip", "instance/network-interfaces/0/ip"),
    )
