"""The arbitrating witness on real lab hosts: the service on the witness, the client on the nodes.

What is shown, with the clients' own clocks (lab hosts share one kernel, so time.monotonic() on
node1 and node2 is the same clock): a node is granted a lease only after every lease the other
node believes it holds has ended - while the holder renews, after it stops renewing, and when it
is cut off from the witness; and a node whose replica generation is older than one granted is
refused (outdated), also after the holder's lease expired and after the arbiter was killed and
started again.

SAFEKIT_ARBITER_LAB names the lab (default "arb"), so that two runs on one machine do not collide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from safekit.arbiter.wire import DEFAULT_PORT
from safekit.lab import Lab
from safekit.lab.run_names import run_lab_name
from safekit.membership import clusterkey

BIN = Path(sys.prefix) / "bin"
PROBE = Path(__file__).with_name("arbiter_probe.py")
ARBITER_KEY = "/etc/safekit/arbiter.key"  # private to the witness host
PIDFILE = "/run/safekit-arbiter.pid"
LOG = "/var/log/safekit/arbiter.log"
STATE_DIR = "/var/safekit/arbiter"  # private to the witness host (/var/lib is shared by lab hosts)
LEASE = 2.0
DAEMON_ARGS = ("--daemon", "--pidfile", PIDFILE, "--log-file", LOG, "--state-dir", STATE_DIR)
LAB_NAME = os.environ.get("SAFEKIT_ARBITER_LAB") or run_lab_name("arb")


@pytest.fixture(scope="module")
def arb_lab(root_required: None) -> Iterator[Lab]:
    lab = Lab(LAB_NAME)
    lab.down()
    lab.up(nodes=2, witness=True)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def arbiter(arb_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The service running on the witness host; yields its address and the cluster key file."""
    key_file = tmp_path_factory.mktemp("arbiter") / "cluster.key"  # /tmp: seen by every lab host
    clusterkey.save_key(key_file, clusterkey.generate_key())
    address = str(arb_lab.plan().host("witness").address)
    safekit = str(BIN / "safekit")
    arb_lab.exec(
        "witness",
        [safekit, "arbiter", "key", "--cluster-key", str(key_file), "--out", ARBITER_KEY],
        check=True,
    )
    start_arbiter(arb_lab, address)
    wait_for_grace_end(arb_lab, (address, key_file))
    yield address, key_file
    log = arb_lab.exec("witness", ["cat", LOG]).stdout
    print(log)  # shown by pytest when a test failed


def start_arbiter(lab: Lab, address: str) -> None:
    safekit = str(BIN / "safekit")
    lab.exec(
        "witness",
        [safekit, "arbiter", "serve", "--listen", address, "--key-file", ARBITER_KEY, *DAEMON_ARGS],
        check=True,
    )


def wait_for_grace_end(lab: Lab, arbiter: tuple[str, Path]) -> None:
    """A fresh service grants nothing during its grace period (10 s): wait it out."""
    address, key_file = arbiter
    argv = [str(BIN / "safekit"), "arbiter", "status", "--address", address, "--cluster-key", str(key_file)]
    deadline = time.monotonic() + 30
    while True:
        out = lab.exec("node1", [*argv, "--json"])
        if out.returncode == 0 and json.loads(out.stdout)["grace_remaining"] == 0:
            return
        assert time.monotonic() < deadline, f"arbiter not ready: {out.stdout} {out.stderr}"
        time.sleep(0.5)


def cli_request(
    lab: Lab,
    node: str,
    arbiter: tuple[str, Path],
    *,
    module: str,
    generation: int,
    confirmed: int | None = None,
) -> tuple[int, dict[str, Any]]:
    """`safekit arbiter request --generation N [--confirmed C]` on `node`: (exit code, the JSON answer)."""
    address, key_file = arbiter
    argv = [str(BIN / "safekit"), "arbiter", "request", "--address", address, "--cluster-key", str(key_file)]
    argv += ["--node", node, "--module", module, "--duration", str(LEASE), "--generation", str(generation)]
    if confirmed is not None:
        argv += ["--confirmed", str(confirmed)]
    out = lab.exec(node, [*argv, "--json"])
    if out.returncode == 4:  # EXIT_NO_ANSWER
        return out.returncode, {"detail": "no answer"}
    assert out.returncode in (0, 3), out.stdout + out.stderr
    return out.returncode, json.loads(out.stdout)


def probe(
    lab: Lab, node: str, mode: str, arbiter: tuple[str, Path], *, module: str, seconds: float
) -> subprocess.Popen[str]:
    address, key_file = arbiter
    argv = [str(BIN / "python"), str(PROBE), mode, address, str(DEFAULT_PORT), str(key_file), node, module]
    argv += [str(LEASE), str(seconds)]
    return subprocess.Popen(
        lab.exec_argv(node, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def answers(proc: subprocess.Popen[str], timeout: float = 60) -> list[dict[str, Any]]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


def first_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else "probe ended"
    return dict(json.loads(line))


def test_holder_renews_other_is_refused_then_gets_it_after_expiry(
    arb_lab: Lab, arbiter: tuple[str, Path]
) -> None:
    holder = probe(arb_lab, "node1", "hold", arbiter, module="am1", seconds=5)
    first = first_line(holder)
    assert first["granted"] is True and first["holder"] == "node1"
    contender = probe(arb_lab, "node2", "until-granted", arbiter, module="am1", seconds=30)
    node1 = [first, *answers(holder)]
    node2 = answers(contender)

    assert all(a["granted"] for a in node1), node1  # every renewal of the holder was granted
    assert len(node1) >= 5
    refused = [a for a in node2 if a["granted"] is False]
    assert refused and all(a["holder"] == "node1" for a in refused)
    # node2 was refused for as long as node1 renewed
    assert any(a["recv_at"] >= node1[-1]["sent_at"] for a in refused)
    grant = node2[-1]
    assert grant["granted"] is True and grant["holder"] == "node2"
    # never two holders: node2's grant came after the end of node1's last lease as node1 counts it
    node1_end = node1[-1]["sent_at"] + LEASE
    assert grant["recv_at"] >= node1_end
    # and the arbiter kept its word: each refusal announced when node1's lease would end
    assert all(grant["recv_at"] >= a["sent_at"] + a["remaining"] for a in refused)
    # liveness: node2 got it soon after the expiry (generous bound for a loaded machine)
    assert grant["recv_at"] - node1[-1]["recv_at"] < LEASE + 5


def test_holder_cut_off_from_the_witness_loses_the_lease_only_after_it_expired(
    arb_lab: Lab, arbiter: tuple[str, Path]
) -> None:
    holder = probe(arb_lab, "node1", "hold", arbiter, module="am2", seconds=15)
    try:
        first = first_line(holder)
        assert first["granted"] is True
        time.sleep(LEASE / 3 + 0.2)  # at least one renewal
        contender = probe(arb_lab, "node2", "until-granted", arbiter, module="am2", seconds=30)
        refused_first = first_line(contender)
        assert refused_first["granted"] is False and refused_first["holder"] == "node1"
        arb_lab.isolate("node1", "witness")
        cut_at = time.monotonic()
        node2 = [refused_first, *answers(contender)]
    finally:
        arb_lab.heal()
    node1 = [first, *answers(holder)]

    grant = node2[-1]
    # node1's grants asked for before node2 held the lease (later ones come after the heal)
    before = [a for a in node1 if a["granted"] and a["sent_at"] < grant["recv_at"]]
    last_lease_end = max(a["sent_at"] for a in before) + LEASE
    assert grant["granted"] is True and grant["holder"] == "node2"
    # node1 was cut off: answers stopped while it kept asking
    assert any(a["detail"] == "no answer" for a in node1 if a["sent_at"] > cut_at)
    # node2 obtained the lease only after node1's last lease (as node1 counts it) had ended
    assert grant["recv_at"] >= last_lease_end
    assert grant["recv_at"] - cut_at < LEASE + 6
    # after the heal node1 is refused while node2's lease surely runs, and granted once it surely ended
    answered = [a for a in node1 if a["sent_at"] > grant["recv_at"] and a["granted"] is not None]
    during = [a for a in answered if a["recv_at"] < grant["sent_at"] + LEASE]
    assert all(a["granted"] is False and a["holder"] == "node2" for a in during), during
    later = [a for a in answered if a["sent_at"] >= grant["recv_at"] + LEASE]
    assert later and all(a["granted"] for a in later), node1


def test_older_copy_is_refused_after_expiry_and_after_an_arbiter_restart(
    arb_lab: Lab, arbiter: tuple[str, Path]
) -> None:
    """node1 served alone at generation 6 (node2 never heard of it): node2, at generation 5, is
    refused OUTDATED while node1 holds the lease, after the lease expired, and by the arbiter killed
    (-9) and started again, during and after its grace period."""
    code, granted = cli_request(arb_lab, "node1", arbiter, module="am3", generation=6)
    assert code == 0 and granted["granted"] is True and granted["generation"] == 6
    code, during = cli_request(arb_lab, "node2", arbiter, module="am3", generation=5)
    assert code == 3 and during["outdated"] is True and during["generation"] == 6
    assert during["detail"] == "outdated: this copy is at generation 5, the arbiter knows generation 6"
    time.sleep(LEASE + 0.5)  # node1 does not renew: its lease has expired
    code, after = cli_request(arb_lab, "node2", arbiter, module="am3", generation=5)
    assert code == 3 and after["outdated"] is True and after["holder"] is None

    pid = arb_lab.exec("witness", ["cat", PIDFILE], check=True).stdout.strip()
    assert pid.isdigit()
    arb_lab.exec("witness", ["kill", "-KILL", pid], check=True)  # the arbiter we started, by its pid
    deadline = time.monotonic() + 10
    while arb_lab.exec("witness", ["kill", "-0", pid]).returncode == 0:
        assert time.monotonic() < deadline, f"arbiter pid {pid} still runs after SIGKILL"
        time.sleep(0.1)
    start_arbiter(arb_lab, arbiter[0])
    deadline = time.monotonic() + 10
    while True:  # the restarted service answers (in its grace period): outdated already
        code, in_grace = cli_request(arb_lab, "node2", arbiter, module="am3", generation=5)
        if code != 4:
            break
        assert time.monotonic() < deadline, in_grace
        time.sleep(0.2)
    assert code == 3 and in_grace["outdated"] is True and in_grace["generation"] == 6
    wait_for_grace_end(arb_lab, arbiter)
    code, later = cli_request(arb_lab, "node2", arbiter, module="am3", generation=5)
    assert code == 3 and later["outdated"] is True and later["generation"] == 6
    # ADR 0046: the same number, holding writes acknowledged up to 4 only, is outdated too
    code, same = cli_request(arb_lab, "node2", arbiter, module="am3", generation=6, confirmed=4)
    assert code == 3 and same["outdated"] is True and (same["confirmed"], same["generation"]) == (6, 6)
    status = arb_lab.exec(
        "node2",
        [
            str(BIN / "safekit"),
            "arbiter",
            "status",
            "--address",
            arbiter[0],
            "--cluster-key",
            str(arbiter[1]),
            "--module",
            "am3",
            "--json",
        ],
        check=True,
    )
    assert json.loads(status.stdout)["leases"] == [
        {
            "module": "am3",
            "holder": None,
            "remaining": 0.0,
            "generation": 6,
            "confirmed": 6,
            "rank": "generation 6",
        }
    ]
    # the node with the newest copy still gets the lease (liveness)
    code, back = cli_request(arb_lab, "node1", arbiter, module="am3", generation=6)
    assert code == 0 and back["granted"] is True
    log = arb_lab.exec("witness", ["cat", LOG], check=True).stdout
    assert "refused to node2: outdated" in log and "replica generations known: am3 generation 6" in log
