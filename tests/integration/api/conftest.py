"""One lab for the API tests (HTTPS from the controller, `safekit -H`, and the console in
Chromium): 2 nodes and a witness, safekitd on each with two mirror modules, a console user."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, sync_playwright

from safekit.lab import Lab
from safekit.lab.cluster import BIN, LabCluster
from safekit.lab.run_names import run_lab_name
from safekit.membership import clusterkey

LAB = os.environ.get("SAFEKIT_API_LAB") or run_lab_name("api1")  # another name: runs beside an api1
MODULE = "web"
PASSWORD = "console-password-1"
CHROMIUM = "/usr/bin/chromium"
"""Debian's Chromium: the console tests never use a downloaded browser."""
ARTIFACTS = Path(
    os.environ.get("SAFEKIT_TEST_ARTIFACTS", Path(__file__).resolve().parents[3] / "test-artifacts")
)

USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone" failover="on">
  <heart port="{port}">
    <heartbeat name="default"/>
  </heart>
  {vip}
  <check>
    <splitbrain ident="witness" exec="ping" arg="{witness}"/>
  </check>
</service>
</safe>
"""
VIP = """<vip><interface_list><interface check="on"><real_interface>
    <virtual_addr addr="{addr}" where="one_side_alias"/>
  </real_interface></interface></interface_list></vip>"""


@dataclass
class ApiLab:
    lab: Lab
    cluster: LabCluster
    ca_pem: str
    monitor_token: str
    admin_token: str

    def address(self, node: str) -> str:
        return str(self.lab.plan().host(node).address)

    def url(self, node: str, path: str) -> str:
        return f"https://{self.address(node)}:9453{path}"

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem)

    def call(
        self, node: str, method: str, path: str, token: str | None, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url(node, path), data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.context()) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


def _module(root: Path, name: str, port: int, witness: str, vip: str | None) -> Path:
    path = root / name
    (path / "conf").mkdir(parents=True)
    (path / "bin").mkdir()
    (path / "conf" / "userconfig.xml").write_text(
        USERCONFIG.format(port=port, witness=witness, vip=VIP.format(addr=vip) if vip else "")
    )
    return path


@pytest.fixture(scope="package")
def api_lab(root_required: None) -> Iterator[ApiLab]:
    lab = Lab(LAB)
    lab.down()
    lab.up(nodes=2, witness=True)
    root = Path(tempfile.mkdtemp(prefix="safekit-api-", dir="/var/tmp"))  # lab hosts see /var/tmp
    root.chmod(0o755)
    try:
        plan = lab.plan()
        witness = str(plan.host("witness").address)
        web = _module(root, MODULE, 4810, witness, str(plan.vips[0]))
        web2 = _module(root, "web2", 4820, witness, None)
        cluster = LabCluster(lab)
        key = clusterkey.generate_key()
        cluster.install(web, key=key)
        cluster.install(web2, key=key)
        add_console_user(lab, cluster.nodes)
        monitor = cluster.safekit(
            "node1", "api", "token", "create", "--role", "monitor", "--name", "itest"
        ).stdout
        admin = cluster.safekit(
            "node1", "api", "token", "create", "--role", "admin", "--name", "itadm"
        ).stdout
        for node in cluster.nodes:
            cluster.start_daemon(node)
        cluster.safekit("node1", "prim", "-m", MODULE)  # a new cluster: node1 has the data
        cluster.wait_state("node1", MODULE, "ALONE", timeout=30)
        cluster.safekit("node2", "start", "-m", MODULE)
        cluster.wait_state("node2", MODULE, "SECOND", timeout=30)
        cluster.wait_state("node1", MODULE, "PRIM", timeout=30)
        ca = _wait_file(lab, "node1", "/etc/safekit/api/ca.crt")
        yield ApiLab(lab, cluster, ca, monitor.strip(), admin.strip())
    finally:
        lab.down()
        shutil.rmtree(root, ignore_errors=True)


def _wait_file(lab: Lab, node: str, path: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        result = lab.exec(node, ["cat", path])
        # the API listens once its certificate exists; give it a moment to bind
        listening = lab.exec(node, ["sh", "-c", "ss -ltn | grep -q ':9453 '"]).returncode == 0
        if result.returncode == 0 and "BEGIN CERTIFICATE" in result.stdout and listening:
            return result.stdout
        time.sleep(0.2)
    raise AssertionError(f"{node}: no API certificate {path} / listener after 20 s")


def add_console_user(lab: Lab, nodes: list[str]) -> None:
    """The console's user (alice, admin, PASSWORD) on every node."""
    for node in nodes:
        lab.exec(
            node,
            [str(BIN / "safekit"), "api", "user", "add", "alice", "--role", "admin", "--password-stdin"],
            input=PASSWORD + "\n",
            check=True,
        )


def spki_pin(pem: str) -> str:
    """base64 SHA-256 of a certificate's public key: Chromium trusts exactly that key."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def node_pins(lab: Lab, nodes: list[str]) -> list[str]:
    """Chromium reads no CA file: the pins of the nodes' served certificates, each checked against
    the cluster CA first (a pin of a certificate the cluster vouches for). Waits for the files."""
    ca = x509.load_pem_x509_certificate(_wait_file(lab, nodes[0], "/etc/safekit/api/ca.crt").encode())
    pins = []
    for node in nodes:
        pem = _wait_file(lab, node, "/etc/safekit/api/node.crt")
        x509.load_pem_x509_certificate(pem.encode()).verify_directly_issued_by(ca)
        pins.append(spki_pin(pem))
    return pins


def shape_port(lab: Lab, node: str, port: int, rate: str | None) -> None:
    """Slow (or restore) what `node` sends to TCP/UDP `port` on the default LAN, and only it:
    heartbeats and the API's requests between nodes keep their speed."""
    plan = lab.plan()
    device = plan.host(node).interface(plan.lan("default"))
    lab.exec(node, ["tc", "qdisc", "del", "dev", device, "root"])
    if rate is None:
        return
    for command in (  # htb: the lab's kernel has no prio qdisc
        f"qdisc add dev {device} root handle 1: htb default 1",
        f"class add dev {device} parent 1: classid 1:1 htb rate 10gbit",
        f"class add dev {device} parent 1: classid 1:2 htb rate {rate}",
        f"filter add dev {device} parent 1: protocol ip u32 match ip dport {port} 0xffff flowid 1:2",
    ):
        lab.exec(node, ["tc", *command.split()], check=True)


@contextmanager
def chromium(pins: list[str]) -> Iterator[Browser]:
    """Debian's Chromium, headless, trusting exactly the pinned node keys (`node_pins`); the
    screenshots' directory made."""
    (ARTIFACTS / "console").mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[f"--ignore-certificate-errors-spki-list={','.join(pins)}", "--no-sandbox"],
        )
        try:
            yield browser
        finally:
            browser.close()


def rss_kib(api_lab: ApiLab, node: str) -> int:
    """safekitd's resident memory on `node`."""
    pid = api_lab.cluster.daemon_pid(node)
    status = api_lab.lab.exec(node, ["cat", f"/proc/{pid}/status"]).stdout
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


def console_session(api_lab: ApiLab, node: str) -> None:
    """One console visit without a browser: log in (alice), the requests the console makes, its
    event stream until the first view, log out."""
    conn = http.client.HTTPSConnection(api_lab.address(node), 9453, context=api_lab.context(), timeout=20)
    try:
        body = json.dumps({"user": "alice", "password": PASSWORD})
        conn.request("POST", "/api/v1/session", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = json.loads(response.read())
        assert response.status == 200, answer
        cookie = response.getheader("set-cookie", "").split(";", 1)[0]
        headers = {"Cookie": cookie, "X-CSRF-Token": answer["csrf"]}
        for path in (
            "/api/v1/session",
            "/api/v1/node",
            "/api/v1/cluster",
            f"/api/v1/modules/{MODULE}/monitoring?node={node}",
            f"/api/v1/modules/{MODULE}/history?node={node}&since={time.time() - 600:.0f}&step=0",
            f"/api/v1/modules/{MODULE}/report?node={node}&last=5",
            f"/api/v1/modules/{MODULE}/log?node={node}&lines=20",
        ):
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            assert response.status in (200, 404), (path, response.status)
        events = http.client.HTTPSConnection(
            api_lab.address(node), 9453, context=api_lab.context(), timeout=20
        )
        try:
            events.request("GET", "/api/v1/events", headers=headers)
            stream = events.getresponse()
            assert stream.status == 200
            while b"event: state" not in stream.readline():
                pass
        finally:
            events.close()
        conn.close()  # idle while the stream ran: the server may have ended it (5 s keep-alive)
        conn.request("DELETE", "/api/v1/session", headers=headers)
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    finally:
        conn.close()


def console_sessions(api_lab: ApiLab, node: str, count: int, parallel: int = 4) -> None:
    """`count` console visits, `parallel` at a time (a browser opens several connections at once,
    so several of the API's worker threads take part)."""
    with ThreadPoolExecutor(parallel) as pool:
        for done in pool.map(lambda _: console_session(api_lab, node), range(count)):
            assert done is None
