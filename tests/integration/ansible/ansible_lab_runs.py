"""What the playbook tests share: a fresh lab per test module, and a playbook run with its recap."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from safekit.lab import Lab
from safekit.lab.run_names import run_lab_name

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent

Recap = dict[str, dict[str, int]]


def fresh_lab(name: str) -> Iterator[Lab]:
    """A 2-node lab with witness and client, removed afterwards (for a module-scoped fixture)."""
    lab = Lab(run_lab_name(name))
    lab.down()
    lab.up(nodes=2, witness=True, client=True)
    try:
        yield lab
    finally:
        lab.down()


def run_playbook(lab: Lab, name: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], Recap]:
    """ansible-playbook playbooks/NAME on the lab's inventory; the PLAY RECAP as {host: {ok: n, ...}}."""
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(lab.inventory_path), f"playbooks/{name}", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return result, recap_of(result.stdout)


def recap_of(output: str) -> Recap:
    return {
        m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
        for m in re.finditer(r"^(\S+)\s+: (ok=.*)$", output, re.MULTILINE)
    }
