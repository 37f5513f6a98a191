"""Fixtures of the cloud VIP provider tests: the fakes (tests/fakes) on 127.0.0.1, moto's server as
a process, and an environment where no SDK can reach a real cloud: credentials and endpoints are
given explicitly, and the metadata services point at a closed loopback port unless a test starts
a fake."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # tests/: the fakes package

from fakes.metadata_fake import AwsImdsFake

CLOSED = "http://127.0.0.1:9"  # discard port: nothing listens, a connection is refused at once


@pytest.fixture(autouse=True)
def offline_cloud_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("AWS_", "AZURE_", "GOOGLE_", "GCE_", "MSI_", "IDENTITY_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SAFEKIT_AWS_METADATA_URL", CLOSED)
    monkeypatch.setenv("SAFEKIT_AZURE_METADATA_URL", CLOSED)
    monkeypatch.setenv("SAFEKIT_GCP_METADATA_URL", CLOSED)
    # boto3: fixed test credentials, no instance-role lookup, no shared config files
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    # azure-identity's managed identity: IMDS at a closed port unless a test points it at a fake
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", CLOSED)
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's server, a real HTTP server in its own process; ended by its PID."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_EC2_METADATA_DISABLED="true")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def moto(moto_server: str) -> str:
    """moto's server with its state reset: every test starts from an empty account."""
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=5):
        pass
    return moto_server


@pytest.fixture
def aws_imds() -> Iterator[AwsImdsFake]:
    fake = AwsImdsFake({}).start()
    yield fake
    fake.stop()
