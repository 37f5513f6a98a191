#!/usr/bin/python
# Copyright (c) safekit contributors
# Apache License 2.0 (see LICENSE in the repository)
"""safekit.ha.node_info: the engine and its modules on a node, in the shape the other modules accept."""

from __future__ import annotations

DOCUMENTATION = r"""
module: node_info
short_description: Engine version, daemon and module states and module configurations of a safekit node
version_added: 0.1.0
description:
  - Returns the engine's version (the C(__version__) that C(safekit --version) prints, read by the
    engine's own Python named in the C(safekit) script's first line, which does not load every
    command; C(safekit --version) when that line names no Python), whether C(safekitd) runs, and for each
    module its state, readiness, reason and resources (C(safekit state -v --json)) and its
    C(userconfig.xml).
  - For a module whose C(userconfig.xml) the structured parameters of M(safekit.ha.app_module) can
    express (as they can every file that module renders from them), RV(modules[].params) holds
    those parameters, in the shape M(safekit.ha.app_module) accepts (round trip).
  - Never fails because the engine is missing or the daemon is down; it says so.
author: safekit contributors (@safekit)
attributes:
  check_mode:
    description: Reads only; the same in check mode.
    support: full
  diff_mode:
    description: Nothing to show.
    support: N/A
  idempotent:
    description: Reads only.
    support: full
options:
  name:
    description: Only this module. All modules when omitted.
    type: str
  engine_bin:
    description: Directory of the engine's C(safekit) command.
    type: path
    default: /opt/safekit/venv/bin
seealso:
  - module: safekit.ha.app_module
"""

EXAMPLES = r"""
- name: Read the node
  safekit.ha.node_info:
  register: node

- name: Both nodes run module web with the same configuration
  ansible.builtin.assert:
    that: >-
      (hostvars[groups['safekit_nodes'][0]].node.modules | selectattr('name', '==', 'web') | first).params
      == (hostvars[groups['safekit_nodes'][1]].node.modules | selectattr('name', '==', 'web') | first).params
  run_once: true

- name: Show states
  ansible.builtin.debug:
    msg: "{{ node.modules | items2dict(key_name='name', value_name='state') }}"
"""

RETURN = r"""
version:
  description: The engine's version; null when it is not installed.
  returned: always
  type: str
  sample: 0.1.0
daemon_running:
  description: safekitd answers on its control socket.
  returned: always
  type: bool
modules:
  description: The modules found on the node (C(modules/*/conf/userconfig.xml)) or known to safekitd.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The module.
      type: str
    state:
      description: STOP, WAIT, ALONE, PRIM or SECOND (mirror), UP (farm); null when safekitd does not run.
      type: str
    readiness:
      description: Ready or NotReady; null when safekitd does not run.
      type: str
    reason:
      description: Why the module is in its state (a module safekitd could not load says why here).
      type: str
    resources:
      description: Resources (heartbeat.LAN, rfs.uptodate, checkers) and their values.
      type: dict
    userconfig:
      description: The module's userconfig.xml; null when it has none.
      type: str
    params:
      description:
        - The structured parameters of M(safekit.ha.app_module) that render this userconfig.xml; null when
          the file holds something they cannot express (see RV(modules[].params_note)).
      type: dict
    params_note:
      description: Why RV(modules[].params) is null.
      type: str
"""

import os
from typing import Any

from ansible_collections.safekit.ha.plugins.module_utils.safekit import SafekitModule
from ansible_collections.safekit.ha.plugins.module_utils.userconfig import NotStructured, parse_userconfig

ARGUMENT_SPEC = {"name": {"type": "str"}}
# What `safekit --version` prints after "safekit " (safekit/cli.py), without loading the commands.
VERSION_PROBE = "import safekit; print(safekit.__version__)"


def on_disk(modules_dir: str) -> dict[str, str]:
    """name -> userconfig.xml text of the modules installed on the node."""
    found = {}
    if os.path.isdir(modules_dir):
        for name in sorted(os.listdir(modules_dir)):
            path = os.path.join(modules_dir, name, "conf", "userconfig.xml")
            if os.path.isfile(path):
                with open(path, encoding="utf-8", errors="replace") as f:
                    found[name] = f.read()
    return found


def describe(name: str, status: dict[str, Any], xml: str | None) -> dict[str, Any]:
    entry = {
        "name": name,
        "state": status.get("state"),
        "readiness": status.get("readiness"),
        "reason": status.get("reason"),
        "resources": status.get("resources", {}),
        "userconfig": xml,
        "params": None,
        "params_note": None,
    }
    if xml is None:
        entry["params_note"] = "no userconfig.xml"
        return entry
    try:
        entry["params"] = parse_userconfig(xml)
    except NotStructured as exc:
        entry["params_note"] = str(exc)
    return entry


def engine_python(script: str) -> str | None:
    """The Python of the engine's `safekit` script (its `#!` line), None when it names none."""
    try:
        with open(script, "rb") as f:
            first = f.readline(512).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    interpreter = words[0] if len(words) == 1 else ""
    if os.path.basename(interpreter).startswith("python") and os.access(interpreter, os.X_OK):
        return interpreter
    return None


def engine_version(task: SafekitModule) -> str | None:
    """`safekit --version`'s version, from its Python importing only the package (-P: never from the
    working directory): the whole command line takes about a second to load on a small node, on
    every run of the roles. The command line itself when the script names no Python."""
    python = engine_python(task.engine_path) if task.engine_installed() else None
    if python:
        probe = [python, "-P", "-c", VERSION_PROBE]
        rc, out, _err = task.module.run_command(probe, environ_update={"LC_ALL": "C"})
        if rc == 0 and out.strip():
            return str(out.strip().splitlines()[-1])
    rc, out, _err = task.run_engine("--version")
    return str(out.strip().split()[-1]) if rc == 0 and out.strip() else None


def main() -> None:
    task = SafekitModule(ARGUMENT_SPEC, supports_check_mode=True)
    version = engine_version(task)
    states = task.states(verbose=True)
    status = {m["name"]: m for m in states or []}
    files = on_disk(os.path.join(task.safe_dir, "modules"))
    names = sorted(set(status) | set(files))
    if task.params["name"]:
        names = [n for n in names if n == task.params["name"]]
    task.exit(
        version=version,
        daemon_running=states is not None,
        modules=[describe(n, status.get(n, {}), files.get(n)) for n in names],
    )


if __name__ == "__main__":
    main()
