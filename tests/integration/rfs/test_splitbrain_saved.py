"""A split brain that does happen is not silent data loss (rule 4), on real lab hosts.

A mirror module without a witness: the two nodes are isolated from each other, both serve, each
writes different files (and one file differently) through its own replicated directory, and the
link is healed. The node that steps down must keep what it wrote: its changed files are found,
complete, where its log says, `safekit splitbrain list` shows them and `remove` deletes them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rfs_lab import install_module, lab_up, running

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster

MODULE = "sbm"
DATA = "/srv/data"
USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="node1" failover="on" maxloop="10" loop_interval="24h">
  <heart>
    <heartbeat name="default"/>
  </heart>
  <rfs async="second" sendtimeout="3s">
    <replicated dir="/srv/data"/>
  </rfs>
</service>
</safe>
"""
SAVED = re.compile(
    r"split brain: (\d+) files \(([\d.]+) MiB\) that (\S+) changed since (.+?) saved under (\S+) "
    r"before resynchronising from (\S+)"
)
# path -> sha256 of every file under a directory
HASHES = r"""
import hashlib, json, os, sys
root = sys.argv[1]
out = {}
for dirpath, dirs, files in os.walk(root):
    for name in files:
        p = os.path.join(dirpath, name)
        with open(p, "rb") as f:
            out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
print(json.dumps(out, sort_keys=True))
"""


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    yield from lab_up("sbsave", nodes=2, lans=1)


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[LabCluster]:
    cluster = install_module(lab, MODULE, USERCONFIG)
    sh(
        lab,
        "node1",
        f"mkdir -p {DATA} && cd {DATA} && echo before > shared.txt && echo a > gone-node1.txt "
        "&& echo b > gone-node2.txt && head -c 2000000 /dev/urandom > untouched.bin",
    )
    yield from running(lab, cluster, MODULE)


def sh(lab: Lab, node: str, script: str) -> str:
    result = lab.exec(node, ["sh", "-c", script], timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"{node}: {script}: {result.stderr or result.stdout}")
    return result.stdout


def hashes(lab: Lab, node: str, root: str) -> dict[str, str]:
    out = lab.exec(node, ["python3", "-c", HASHES, root], check=True).stdout
    data: dict[str, str] = json.loads(out)
    return data


def wait_until(what: str, check: object, timeout: float) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.3)


def roles(cluster: LabCluster) -> dict[str, str]:
    return {node: cluster.state(node, MODULE)["state"] for node in cluster.nodes}


def test_the_node_that_steps_down_keeps_what_it_wrote_since_the_split(lab: Lab, cluster: LabCluster) -> None:
    cluster.safekit("node1", "prim", "-m", MODULE)
    cluster.wait_state("node1", MODULE, "ALONE", timeout=30)
    cluster.safekit("node2", "second", "-m", MODULE)
    cluster.wait_state("node1", MODULE, "PRIM", timeout=60)
    cluster.wait_state("node2", MODULE, "SECOND", timeout=60)

    lab.isolate("node1", "node2")
    wait_until("both nodes serve alone", lambda: roles(cluster) == {"node1": "ALONE", "node2": "ALONE"}, 60)
    cluster.wait_state("node2", MODULE, "ALONE", timeout=30)
    written: dict[str, dict[str, str]] = {}
    for node in cluster.nodes:
        sh(
            lab,
            node,
            f"cd {DATA} && head -c 3000000 /dev/urandom > {node}-only.bin && mkdir -p {node}-dir && "
            f"echo 'written by {node}' > {node}-dir/note.txt && echo '{node} version' > shared.txt && "
            f"rm gone-{node}.txt && sync",
        )
        written[node] = hashes(lab, node, DATA)

    lab.heal()
    wait_until(
        "one primary and one secondary again",
        lambda: sorted(roles(cluster).values()) == ["PRIM", "SECOND"],
        120,
    )
    loser = next(n for n, state in roles(cluster).items() if state == "SECOND")
    winner = next(n for n in cluster.nodes if n != loser)
    cluster.wait_state(loser, MODULE, "SECOND", timeout=120)  # resynchronised: Ready

    # the log says where, how many files and bytes, at WARNING level
    log = cluster.log(loser, MODULE)
    found = [m for m in SAVED.finditer(log)]
    assert len(found) == 1, log[-4000:]
    files, size_mib, node, _since, path, peer = found[0].groups()
    assert (node, peer) == (loser, winner)
    line = next(ln for ln in log.splitlines() if found[0].group(0) in ln)
    assert "WARNING" in line or "warning" in line.lower(), line
    assert int(files) == 3, line  # LOSER-only.bin, LOSER-dir/note.txt, shared.txt
    assert 2.8 <= float(size_mib) <= 3.0, line

    # the loser's changes are there, complete (same bytes as it wrote)
    saved = hashes(lab, loser, f"{path}/{DATA.strip('/')}")
    mine = written[loser]
    assert saved == {
        f"{loser}-only.bin": mine[f"{loser}-only.bin"],
        f"{loser}-dir/note.txt": mine[f"{loser}-dir/note.txt"],
        "shared.txt": mine["shared.txt"],
    }
    # and the copy is the winner's again
    assert hashes(lab, loser, DATA) == hashes(lab, winner, DATA) == written[winner]

    manifest = json.loads(sh(lab, loser, f"cat {path}/manifest.json"))
    assert (manifest["module"], manifest["node"], manifest["winner"]) == (MODULE, loser, winner)
    assert manifest["complete"] is True
    assert set(manifest["generations"]) == {loser, winner}
    records = {r["path"]: r for r in manifest["files"]}
    assert records[f"gone-{loser}.txt"]["deleted"] is True
    assert records["shared.txt"]["sha256"] == mine["shared.txt"]
    assert records["shared.txt"]["dir"] == DATA
    wait_until(
        "the manifest says what the winner has",
        lambda: json.loads(sh(lab, loser, f"cat {path}/manifest.json"))["resync"] is not None,
        30,
    )
    records = {r["path"]: r for r in json.loads(sh(lab, loser, f"cat {path}/manifest.json"))["files"]}
    assert records["shared.txt"]["on_winner"] == "changed on both"
    assert records[f"{loser}-only.bin"]["on_winner"] == "absent on the winner"
    assert records[f"gone-{loser}.txt"]["on_winner"] == "present on the winner"

    # only the node that stepped down saved anything
    assert cluster.safekit(winner, "splitbrain", "list", "--json").stdout.strip() == "[]"

    # list shows it, remove deletes it
    name = Path(path).name
    listed = cluster.safekit(loser, "splitbrain", "list", "-m", MODULE).stdout
    assert name in listed and path in listed and f"3 files ({size_mib} MiB)" in listed, listed
    as_json = json.loads(cluster.safekit(loser, "splitbrain", "list", "-m", MODULE, "--json").stdout)
    assert [s["time"] for s in as_json] == [name]
    cluster.safekit(loser, "splitbrain", "remove", "-m", MODULE, name)
    assert lab.exec(loser, ["test", "-e", path]).returncode != 0
    assert json.loads(cluster.safekit(loser, "splitbrain", "list", "--json").stdout) == []


def test_primforce_on_the_stale_node_saves_the_peers_writes_aside_on_the_peer(
    lab: Lab, cluster: LabCluster
) -> None:
    """An operator-made split brain (ADR 0047). The primary is stopped, the secondary takes over and
    writes, then it is stopped too; the operator starts the old primary, which waits (its copy is
    older), and forces it with primforce. When the other node comes back as its secondary, what it
    had acknowledged is saved aside before the resynchronisation overwrites it."""
    if sorted(roles(cluster).values()) == ["STOP", "STOP"]:  # run on its own (-k)
        cluster.safekit("node1", "prim", "-m", MODULE)
        cluster.wait_state("node1", MODULE, "ALONE", timeout=30)
        cluster.safekit("node2", "second", "-m", MODULE)
    wait_until(
        "one primary and one secondary",
        lambda: sorted(roles(cluster).values()) == ["PRIM", "SECOND"],
        120,
    )
    forced = next(n for n, state in roles(cluster).items() if state == "PRIM")
    taker = next(n for n in cluster.nodes if n != forced)
    cluster.wait_state(taker, MODULE, "SECOND", timeout=120)
    cluster.safekit(forced, "stop", "-m", MODULE)
    cluster.wait_state(taker, MODULE, "ALONE", timeout=60)
    sh(lab, taker, f"cd {DATA} && echo 'acknowledged by {taker} alone' > taker-only.txt && sync")
    written = hashes(lab, taker, DATA)["taker-only.txt"]
    cluster.safekit(taker, "stop", "-m", MODULE)
    cluster.wait_state(taker, MODULE, "STOP", ready=False, timeout=60)

    cluster.safekit(forced, "start", "-m", MODULE)
    cluster.wait_state(forced, MODULE, "WAIT", ready=False, timeout=60)  # its copy is older
    reply = cluster.safekit(forced, "primforce", "-m", MODULE).stdout
    assert "not saved aside" in reply or "not reachable" in cluster.log(forced, MODULE), reply
    cluster.wait_state(forced, MODULE, "ALONE", timeout=60)
    sh(lab, forced, f"cd {DATA} && echo 'forced' > forced-only.txt && sync")

    cluster.safekit(taker, "start", "-m", MODULE)
    cluster.wait_state(taker, MODULE, "SECOND", timeout=120)
    log = cluster.log(taker, MODULE)
    assert "made primary by primforce" in log, log[-3000:]
    found = [m for m in SAVED.finditer(log)]
    assert found, log[-3000:]
    *_, path, peer = found[-1].groups()
    assert peer == forced
    saved = hashes(lab, taker, f"{path}/{DATA.strip('/')}")
    assert saved.get("taker-only.txt") == written, saved
    # and the copy is the forced one's
    assert hashes(lab, taker, DATA) == hashes(lab, forced, DATA)
    assert "taker-only.txt" not in hashes(lab, forced, DATA)
