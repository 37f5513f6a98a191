"""What the replication lab tests share: a lab brought up for one test file, one mirror module
installed on its nodes, and the module logs kept for a post-mortem of a failed run."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.run_names import run_lab_name
from safekit.membership import clusterkey
from safekit.rfs import native


def lab_up(name: str, **hosts: Any) -> Iterator[Lab]:
    """A module fixture's body: the lab `name` (leftovers of an interrupted run removed first) with
    `hosts` (Lab.up's nodes, lans, witness, client), down again after the file's tests.
    SAFEKIT_RFS_LAB names the lab instead (another run of the same file side by side on one
    machine; one test file at a time with it)."""
    lab = Lab(os.environ.get("SAFEKIT_RFS_LAB") or run_lab_name(name))
    lab.down()
    lab.up(**hosts)
    try:
        yield lab
    finally:
        lab.down()


def install_module(lab: Lab, module: str, userconfig: str, scripts: Mapping[str, str] = {}) -> LabCluster:
    """The mirror module `module` (its userconfig.xml and bin/ scripts) installed on every node of
    `lab` under a new cluster key; safekitd is not started yet. The native replication programs
    must be built (`make test` builds them: a missing one fails here, saying where it looked)."""
    for role in native.PROGRAMS:
        native.find_program(role, {})
    root = Path(tempfile.mkdtemp(prefix=f"safekit-{lab.name}-", dir="/var/tmp"))  # the hosts see /var/tmp
    try:
        directory = root / module
        (directory / "conf").mkdir(parents=True)
        (directory / "bin").mkdir()
        (directory / "conf" / "userconfig.xml").write_text(userconfig)
        for name, body in scripts.items():
            (directory / "bin" / name).write_text(body)
            (directory / "bin" / name).chmod(0o755)
        root.chmod(0o755)
        cluster = LabCluster(lab)
        cluster.install(directory, key=clusterkey.generate_key())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return cluster


def running(lab: Lab, cluster: LabCluster, module: str) -> Iterator[LabCluster]:
    """A cluster fixture's end: safekitd started on every node, then, after the file's tests, each
    living node's log kept (LabCluster.keep_logs) and its safekitd stopped."""
    for node in cluster.nodes:
        cluster.start_daemon(node)
    try:
        yield cluster
    finally:
        cluster.keep_logs(module)
        cluster.stop_daemons()
