"""The arp provider on real lab hosts: the VIP moves from node1 to node2 and the client follows it
through gratuitous ARP alone (its ARP cache is never flushed), TCP reaches the new holder, and
acquire / release / check are idempotent and truthful, including on a cut cable."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from safekit.lab import Lab
from safekit.lab.run_names import run_lab_name

LAB = run_lab_name("itvip")
PORT = 18080
# Each node answers every TCP connection with its hostname, so the client sees who holds the VIP.
SERVER = """
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1])))
srv.listen(8)
while True:
    conn, _ = srv.accept()
    with conn:
        conn.sendall(socket.gethostname().encode())
"""
CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as c:
    print(c.recv(100).decode())
"""


@pytest.fixture(scope="module")
def vlab(root_required: None) -> Iterator[Lab]:
    lab = Lab(LAB)
    lab.down()  # leftovers of an interrupted earlier run
    lab.up(nodes=2, client=True)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def servers(vlab: Lab) -> Iterator[None]:
    started = [
        subprocess.Popen(
            vlab.exec_argv(node, [sys.executable, "-c", SERVER, str(PORT)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for node in ("node1", "node2")
    ]
    try:
        for node in ("node1", "node2"):
            address = str(vlab.plan().host(node).address)
            deadline = time.monotonic() + 10
            while tcp_hello(vlab, address) != node:
                assert time.monotonic() < deadline, f"the test server on {node} did not start"
                time.sleep(0.1)
        yield
    finally:
        for proc in started:  # only the processes this fixture started, by their own handle
            proc.kill()
            proc.wait(timeout=10)


def vip_cli(lab: Lab, node: str, action: str, address: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return lab.exec(
        node, [sys.executable, "-m", "safekit.vip", action, "--address", address, *extra], timeout=30
    )


def acquire(lab: Lab, node: str, address: str, *extra: str) -> None:
    result = vip_cli(lab, node, "acquire", address, *extra)
    assert result.returncode == 0, result.stderr


def release_everywhere(lab: Lab, address: str) -> None:
    for node in ("node1", "node2"):
        result = vip_cli(lab, node, "release", address)
        assert result.returncode == 0, result.stderr


def client_neighbour_mac(lab: Lab, address: str) -> str | None:
    """The MAC the client's ARP cache holds for `address`, read without sending anything."""
    out = lab.exec("client", ["ip", "-4", "neigh", "show", "to", address, "dev", "eth0"], check=True).stdout
    words = out.split()
    return words[words.index("lladdr") + 1] if "lladdr" in words else None


def tcp_hello(lab: Lab, address: str) -> str:
    result = lab.exec("client", [sys.executable, "-c", CLIENT, address, str(PORT)], timeout=10)
    return result.stdout.strip()


def ping(lab: Lab, address: str) -> bool:
    return lab.exec("client", ["ping", "-c", "1", "-W", "1", address]).returncode == 0


def mac_of(lab: Lab, node: str) -> str:
    plan = lab.plan()
    return plan.host(node).mac(plan.lans[0])


@pytest.fixture
def vip(vlab: Lab) -> Iterator[str]:
    """A free VIP of the lab, released on both nodes after the test whatever happened."""
    address = str(vlab.plan().vips[0])
    release_everywhere(vlab, address)
    try:
        yield address
    finally:
        vlab.heal()
        release_everywhere(vlab, address)


def test_gratuitous_arp_moves_the_vip_without_flushing_the_client(vlab: Lab, servers: None, vip: str) -> None:
    acquire(vlab, "node1", vip)
    assert ping(vlab, vip)
    assert client_neighbour_mac(vlab, vip) == mac_of(vlab, "node1")
    assert tcp_hello(vlab, vip) == "node1"

    assert vip_cli(vlab, "node1", "release", vip).returncode == 0
    acquire(vlab, "node2", vip)
    # Read before the client sends anything to the VIP: only node2's gratuitous ARP can have
    # changed the entry, and no one flushed it.
    assert client_neighbour_mac(vlab, vip) == mac_of(vlab, "node2")
    assert tcp_hello(vlab, vip) == "node2"
    assert ping(vlab, vip)


@pytest.mark.parametrize("form", ["request", "reply"])
def test_both_garp_forms_update_the_client(vlab: Lab, vip: str, form: str) -> None:
    acquire(vlab, "node1", vip, "-o", f"garp_form={form}")
    assert ping(vlab, vip)
    assert client_neighbour_mac(vlab, vip) == mac_of(vlab, "node1")
    assert vip_cli(vlab, "node1", "release", vip).returncode == 0
    acquire(vlab, "node2", vip, "-o", f"garp_form={form}")
    assert client_neighbour_mac(vlab, vip) == mac_of(vlab, "node2")


def test_without_gratuitous_arp_the_client_keeps_the_old_mac(vlab: Lab, vip: str) -> None:
    # The control experiment: the same move with garp_count 0 leaves the client's cache stale,
    # so it is the announcement, not something else, that updates it in the other tests.
    acquire(vlab, "node1", vip)
    assert ping(vlab, vip)
    assert vip_cli(vlab, "node1", "release", vip).returncode == 0
    acquire(vlab, "node2", vip, "--garp-count", "0")
    assert client_neighbour_mac(vlab, vip) == mac_of(vlab, "node1")


def test_acquire_release_check_are_idempotent_and_truthful(vlab: Lab, vip: str) -> None:
    not_held = vip_cli(vlab, "node1", "check", vip)
    assert (not_held.returncode, not_held.stdout.strip()) == (3, f"not held: {vip} is not on eth0")

    first = vip_cli(vlab, "node1", "acquire", vip)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("acquired")
    again = vip_cli(vlab, "node1", "acquire", vip)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("already held")

    shown = vlab.exec("node1", ["ip", "-4", "-o", "addr", "show", "dev", "eth0"], check=True).stdout
    vip_lines = [line for line in shown.splitlines() if f" {vip}/" in line]
    assert len(vip_lines) == 1, shown
    assert f"{vip}/24" in vip_lines[0]
    assert "secondary eth0:sk" in vip_lines[0]

    held = vip_cli(vlab, "node1", "check", vip)
    assert (held.returncode, held.stdout.strip()) == (0, f"held: {vip} on eth0")
    assert vip_cli(vlab, "node2", "check", vip).returncode == 3

    released = vip_cli(vlab, "node1", "release", vip)
    assert released.returncode == 0, released.stderr
    assert released.stdout.startswith("released")
    released_again = vip_cli(vlab, "node1", "release", vip)
    assert released_again.returncode == 0, released_again.stderr
    assert released_again.stdout.startswith("not held")
    assert vip_cli(vlab, "node1", "check", vip).returncode == 3
    assert f" {vip}/" not in vlab.exec("node1", ["ip", "-4", "-o", "addr", "show"], check=True).stdout


def test_check_reports_degraded_on_a_cut_cable(vlab: Lab, vip: str) -> None:
    acquire(vlab, "node1", vip)
    vlab.cut("node1")
    degraded = vip_cli(vlab, "node1", "check", vip)
    assert degraded.returncode == 4
    assert "no carrier" in degraded.stdout
    refused = vip_cli(vlab, "node1", "acquire", vip)
    assert refused.returncode == 1
    assert "has no carrier" in refused.stderr
    vlab.heal("node1")
    deadline = time.monotonic() + 5
    while vip_cli(vlab, "node1", "check", vip).returncode != 0:
        assert time.monotonic() < deadline, "check did not see the carrier come back"
        time.sleep(0.1)


def test_errors_are_one_line_with_what_to_do(vlab: Lab) -> None:
    outside = vip_cli(vlab, "node1", "acquire", "198.19.255.200")
    assert outside.returncode == 1
    assert "no interface has a network that contains 198.19.255.200" in outside.stderr
    assert len(outside.stderr.strip().splitlines()) == 1
    unknown = vip_cli(vlab, "node1", "acquire", str(vlab.plan().vips[1]), "--provider", "nope")
    assert unknown.returncode == 2
    assert "known providers are arp" in unknown.stderr
