"""Modules made from the shipped templates and installed on lab nodes as a user would:
`safekit module new NAME --template T --set K=V` on this machine, then `safekit module install` on
every node (before safekitd runs). Used by the template tests and bench/modules.py."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from safekit.lab.cluster import BIN, LabCluster, cluster_xml
from safekit.membership import clusterkey


def new_package(name: str, template: str, values: Mapping[str, str], where: Path) -> Path:
    """`safekit module new NAME --template T --set K=V ...` on this machine; the .safe it wrote."""
    target = where / f"{name}.safe"
    argv = [str(BIN / "safekit"), "module", "new", name, "--template", template, "--output", str(target)]
    for key, value in values.items():
        argv += ["--set", f"{key}={value}"]
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)
    return target


def install_modules(
    cluster: LabCluster, packages: Mapping[str, tuple[str, Mapping[str, str]]]
) -> dict[str, str]:
    """cluster.xml and the key on every node, then each package {name: (template, values)} made and
    installed with `safekit module install` on every node (before safekitd runs). Returns
    {module name: its template}."""
    lab = cluster.lab
    key_text = clusterkey.encode_key_file(clusterkey.generate_key())
    xml = cluster_xml(lab, cluster.nodes)
    stage = Path(tempfile.mkdtemp(prefix="safekit-tpl-", dir="/var/tmp"))  # lab hosts see /var/tmp
    stage.chmod(0o755)
    try:
        files = {name: new_package(name, t, v, stage) for name, (t, v) in packages.items()}
        for path in files.values():
            path.chmod(0o644)
        for node in cluster.nodes:
            script = (
                'set -e; umask 077; mkdir -p /etc/safekit; printf "%s" "$1" > /etc/safekit/cluster.xml; '
                'printf "%s" "$2" > /etc/safekit/cluster.key; chmod 644 /etc/safekit/cluster.xml'
            )
            lab.exec(node, ["sh", "-c", script, "install", xml, key_text], check=True)
            for name, path in files.items():
                cluster.safekit(node, "module", "install", "-m", name, str(path), timeout=60)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {name: template for name, (template, _) in packages.items()}
