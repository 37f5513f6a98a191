"""`safekit lab kill` is a power cut at once, even while another lab is being built (ADR 0066).

The machine's lab lock is held here, for about a second, the way another session's `lab up` holds it
(up to a minute was seen); the power cut must not wait for it, and the node must be silent after it.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from safekit.lab import Lab
from safekit.lab.lab import LOCK_FILE
from safekit.lab.run_names import run_lab_name

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def two_nodes(root_required: None) -> Iterator[Lab]:
    lab = Lab(run_lab_name("itkill"))
    lab.down()
    lab.up(nodes=2)
    try:
        yield lab
    finally:
        lab.down()


def test_power_cut_does_not_wait_for_another_labs_up(two_nodes: Lab) -> None:
    node2 = str(two_nodes.plan().host("node2").address)
    assert two_nodes.exec("node1", ["ping", "-c1", "-W1", node2]).returncode == 0
    with open(LOCK_FILE, "a+b") as machine_lock:
        fcntl.flock(machine_lock, fcntl.LOCK_EX)  # another lab's `up` is under way
        try:
            asked = time.time()
            result = subprocess.run(
                [str(VENV_BIN / "safekit"), "lab", "kill", "--name", two_nodes.name, "node2", "--json"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            answered = time.time()
        finally:
            fcntl.flock(machine_lock, fcntl.LOCK_UN)
    assert result.returncode == 0, result.stderr
    cut = json.loads(result.stdout)
    assert cut["waited_s"] < 1
    assert asked <= cut["cut_at"] <= answered
    # generous for a loaded machine: the old lab kill waited until this test let the lock go
    assert answered - asked < 10
    assert two_nodes.exec("node1", ["ping", "-c1", "-W1", node2]).returncode != 0
    assert [h.power for h in two_nodes.status() if h.name == "node2"] == ["killed"]
