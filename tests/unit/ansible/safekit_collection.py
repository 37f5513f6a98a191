"""Makes the collection importable as `ansible_collections.safekit.ha` and names its files.

The tests import the collection's pure module_utils directly, and run its modules as Ansible runs
them on a node (`python MODULE.py ARGS.json`) against the engine of this checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
COLLECTIONS = REPO / "collections"
COLLECTION = COLLECTIONS / "ansible_collections" / "safekit" / "ha"
MODULES = COLLECTION / "plugins" / "modules"
ENGINE_BIN = Path(sys.executable).parent
MODULE_NAMES = (
    "engine",
    "cluster",
    "cluster_key",
    "app_module",
    "app_module_command",
    "node_info",
    "wheelhouse",
)

if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


def run_module(
    name: str,
    args: dict[str, Any],
    tmp: Path,
    env: dict[str, str],
    *,
    check: bool = False,
    diff: bool = False,
) -> dict[str, Any]:
    """Run plugins/modules/NAME.py as Ansible would on the node; its JSON result."""
    payload = dict(args, _ansible_check_mode=check, _ansible_diff=diff, _ansible_tmpdir=str(tmp))
    args_file = tmp / f"{name}-args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
    environment = dict(os.environ, PYTHONPATH=str(COLLECTIONS), **env)
    done = subprocess.run(
        [sys.executable, str(MODULES / f"{name}.py"), str(args_file)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    try:
        return json.loads(done.stdout)  # type: ignore[no-any-return]
    except ValueError as exc:
        raise AssertionError(f"{name}: no JSON result: {done.stdout!r} {done.stderr!r}") from exc


def local_play_env(path: str | None = None) -> dict[str, str]:
    """The environment of an ansible-playbook run against this machine with this checkout's
    collection and this interpreter; `path`: the PATH the play sees (this machine's if None)."""
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_NOCOLOR": "1",
        **({"PATH": path} if path is not None else {}),
    }


def run_local_play(
    play: str, tmp: Path, variables: dict[str, Any], *, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook of `play` (YAML text) against this machine as the node `node1` (local
    connection, this interpreter), with `variables` as extra vars; `path`: the PATH the play sees
    (fakes first; this machine's if None)."""
    (tmp / "play.yml").write_text(play)
    env = local_play_env(path)
    playbook = [str(ENGINE_BIN / "ansible-playbook"), "-i", "node1,", "-c", "local"]
    return subprocess.run(
        [*playbook, "-e", json.dumps(variables), str(tmp / "play.yml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
