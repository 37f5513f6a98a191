#!/usr/bin/python
# Copyright (c) safekit contributors
# Apache License 2.0 (see LICENSE in the repository)
"""safekit.ha.app_module_command: an operator command on a module, and waiting for a state."""

from __future__ import annotations

DOCUMENTATION = r"""
module: app_module_command
short_description: Run a safekit module command (start, stop, prim, second, swap, ...) and wait for a state
version_added: 0.1.0
description:
  - Runs C(safekit COMMAND -m NAME) on the node, unless the command's goal already holds
    (V(prim) on a PRIM or ALONE node, V(second) on a SECOND node, V(start) on a module that is not
    STOP - a farm node UP or WAIT included, V(stop) on a STOP module). V(restart), V(stopstart),
    V(swap), V(forcestop) and V(primforce) always act.
  - Then, with O(wait_for), polls C(safekit state -m NAME --json) until the module is in one of
    those states (and Ready with O(ready)), or fails after O(timeout) seconds with the last state and
    its reason.
author: safekit contributors (@safekit)
attributes:
  check_mode:
    description: Predicts RV(changed) from the current state; runs nothing and does not wait.
    support: full
  diff_mode:
    description: Nothing to show.
    support: none
  idempotent:
    description: >-
      V(start), V(stop), V(prim) and V(second) do nothing when their goal already holds;
      the other commands always act.
    support: partial
options:
  name:
    description: The module.
    type: str
    required: true
  command:
    description: SafeKit's command (see C(safekit --help)).
    type: str
    required: true
    choices: [start, stop, restart, stopstart, forcestop, prim, second, swap, primforce]
  wait_for:
    description: >-
      State or states to wait for (STOP, WAIT, ALONE, PRIM, SECOND; UP for a farm module). No waiting
      when omitted.
    type: list
    elements: str
  ready:
    description: >-
      With O(wait_for), also wait for the Ready sub-state of ALONE, PRIM, SECOND and UP
      (STOP and WAIT have none).
    type: bool
    default: true
  timeout:
    description: Seconds to wait for O(wait_for).
    type: int
    default: 120
  engine_bin:
    description: Directory of the engine's C(safekit) command.
    type: path
    default: /opt/safekit/venv/bin
notes:
  - V(primforce) discards what only the peer had, so it is an explicit operator decision.
seealso:
  - module: safekit.ha.node_info
"""

EXAMPLES = r"""
- name: First start - prim on the node that has the data
  safekit.ha.app_module_command:
    name: web
    command: prim
    wait_for: [PRIM, ALONE]
  when: inventory_hostname == groups['safekit_nodes'][0]

- name: First start - second on the other node
  safekit.ha.app_module_command:
    name: web
    command: second
    wait_for: SECOND
    timeout: 300
  when: inventory_hostname != groups['safekit_nodes'][0]

- name: Start a farm module on every node and wait until each serves its share (UP, Ready)
  safekit.ha.app_module_command:
    name: webfarm
    command: start
    wait_for: UP
"""

RETURN = r"""
changed:
  description: The command was (or would be) run.
  returned: always
  type: bool
state_before:
  description: The module's entry of C(safekit state --json) before the command.
  returned: always
  type: dict
  sample:
    name: web
    state: STOP
    readiness: NotReady
    reason: stopped by the operator
state_after:
  description: The same after the command (and the wait).
  returned: always
  type: dict
msg:
  description: The engine's answer, or why nothing was done.
  returned: always
  type: str
"""

import time

from ansible_collections.safekit.ha.plugins.module_utils.decisions import (
    ALL_STATES,
    MODULE_COMMANDS,
    command_changes,
    reached,
)
from ansible_collections.safekit.ha.plugins.module_utils.safekit import SafekitModule

ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "command": {"type": "str", "required": True, "choices": list(MODULE_COMMANDS)},
    "wait_for": {"type": "list", "elements": "str"},
    "ready": {"type": "bool", "default": True},
    "timeout": {"type": "int", "default": 120},
}
POLL_SECONDS = 0.5


def main() -> None:
    task = SafekitModule(ARGUMENT_SPEC, supports_check_mode=True)
    p = task.params
    name, command = p["name"], p["command"]
    wanted = [state.upper() for state in p["wait_for"] or []]
    unknown = [state for state in wanted if state not in ALL_STATES]
    if unknown:
        task.fail("wait_for: unknown state {} (states: {})".format(", ".join(unknown), ", ".join(ALL_STATES)))
    before = task.engine("state", "-m", name)["modules"][0]
    changed = command_changes(command, before.get("state"))
    if task.check_mode:
        task.exit(
            changed=changed,
            state_before=before,
            state_after=before,
            msg=f"would run {command}"
            if changed
            else "nothing to do: {} is {}".format(name, before["state"]),
        )
        return
    msg = f"nothing to do: {name} is {before['state']}"
    if changed:
        msg = task.engine(command, "-m", name).get("message", f"{name}: {command} done")
    after = before if not changed else task.engine("state", "-m", name)["modules"][0]
    deadline = time.monotonic() + p["timeout"]
    while wanted and not reached(after, wanted, p["ready"]):
        if time.monotonic() >= deadline:
            target = "/".join(wanted) + (" Ready" if p["ready"] else "")
            task.fail(
                f"{name}: still {after.get('state')} ({after.get('readiness')}) after {p['timeout']} s, "
                f"not {target}: {after.get('reason', '')}",
                changed=changed,
                state_before=before,
                state_after=after,
            )
        time.sleep(POLL_SECONDS)
        after = task.engine("state", "-m", name)["modules"][0]
    task.exit(changed=changed, state_before=before, state_after=after, msg=msg)


if __name__ == "__main__":
    main()
