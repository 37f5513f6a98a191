#!/usr/bin/python
# Copyright (c) safekit contributors
# Apache License 2.0 (see LICENSE in the repository)
"""safekit.ha.cluster_key: a cluster's key file (and its arbiter's) on the controller, stdlib only."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_key
short_description: Generate a safekit cluster key file, and derive its arbiter key, with no engine installed
version_added: 0.2.0
description:
  - Creates the cluster key file O(path) (mode 0600, its directory 0700 when missing) with 32 random
    bytes, in the format of C(safekit cluster genkey), when it does not exist. An existing file is
    validated and never replaced (a new key cuts every node of a running cluster off from the others;
    remove the file first to replace it on purpose).
  - With O(arbiter_key_path), also writes the key the cluster's arbiter holds, derived one-way from the
    cluster key (the format of C(safekit arbiter key)), replaced only when it differs.
  - Needs nothing but Python's standard library where it runs, meant for the controller
    (C(delegate_to=localhost), C(run_once=true), C(become=false)), where the engine is not installed.
  - Neither key is ever returned, logged or shown in a diff; RV(fingerprint) tells keys apart.
author: safekit contributors (@safekit)
attributes:
  check_mode:
    description: Reports whether a key would be created or the arbiter key rewritten; writes nothing.
    support: full
  diff_mode:
    description: A written key shows as C((secret, changed)), never the key.
    support: full
  idempotent:
    description: A second run changes nothing (an existing cluster key is kept).
    support: full
options:
  path:
    description: The cluster key file, on the host the task runs on (the controller).
    type: path
    required: true
  arbiter_key_path:
    description: When set, the file of the arbiter key derived from the cluster key.
    type: path
notes:
  - Pass the key to the nodes with C(lookup('ansible.builtin.file', path)) in O(safekit.ha.cluster#module:key)
    (a C(no_log) option).
  - The key file is refused if group or others have any permission on it, or it is owned by another user.
seealso:
  - module: safekit.ha.cluster
"""

EXAMPLES = r"""
- name: The cluster key on the controller (generated once)
  safekit.ha.cluster_key:
    path: "{{ playbook_dir }}/.safekit/prod.key"
    arbiter_key_path: "{{ playbook_dir }}/.safekit/arbiter/prod.key"
  delegate_to: localhost
  run_once: true
  become: false
"""

RETURN = r"""
changed:
  description: The cluster key was created, or the arbiter key written (or would be, in check mode).
  returned: always
  type: bool
key_created:
  description: The cluster key file did not exist and was (or would be) created.
  returned: always
  type: bool
fingerprint:
  description:
    - Log-safe identifier of the cluster key (C(sha256:) and 16 hex digits), the one the engine logs.
    - Absent in check mode when the key does not exist yet.
  returned: when the key exists
  type: str
  sample: sha256:0c6f5d1e2a3b4c5d
arbiter_key_changed:
  description: The arbiter key file was (or would be) written.
  returned: always
  type: bool
arbiter_cluster_id:
  description: The public id that names the cluster to its arbiter (16 hex digits).
  returned: when O(arbiter_key_path) is set and the key exists
  type: str
"""

import os

from ansible_collections.safekit.ha.plugins.module_utils.clusterkey import (
    ARBITER_KEY_PREFIX,
    KeyFileError,
    arbiter_cluster_id,
    create_key_file,
    derive_arbiter_key,
    encode,
    fingerprint,
    generate_key,
    read_key_file,
)
from ansible_collections.safekit.ha.plugins.module_utils.safekit import SafekitModule

ARGUMENT_SPEC = {
    "path": {"type": "path", "required": True},
    "arbiter_key_path": {"type": "path"},
}


def main() -> None:
    task = SafekitModule(ARGUMENT_SPEC, engine=False, supports_check_mode=True)
    path: str = task.params["path"]
    arbiter_path: str | None = task.params["arbiter_key_path"]
    key: bytes | None = None
    created = False
    try:
        if os.path.lexists(path):
            key = read_key_file(path)
        else:
            created = True
            task.diffs.append(
                {"before_header": path, "after_header": path, "before": "", "after": "(secret, changed)\n"}
            )
            if not task.check_mode:
                key = generate_key()
                create_key_file(path, key)
    except KeyFileError as exc:
        task.fail(str(exc))
    except OSError as exc:
        task.fail(f"{path}: {exc.strerror}")
    result: dict[str, object] = {"key_created": created, "arbiter_key_changed": False}
    if key is not None:
        result["fingerprint"] = fingerprint(key)
    if arbiter_path is not None:
        if key is None:  # check mode, no key yet: a new one means a new arbiter key
            result["arbiter_key_changed"] = True
        else:
            arbiter_key = derive_arbiter_key(key)
            result["arbiter_cluster_id"] = arbiter_cluster_id(arbiter_key)
            try:
                result["arbiter_key_changed"] = task.ensure_file(
                    arbiter_path, encode(arbiter_key, ARBITER_KEY_PREFIX), 0o600, secret=True
                )
            except OSError as exc:
                task.fail(f"{arbiter_path}: {exc.strerror}")
    task.exit(changed=created or bool(result["arbiter_key_changed"]), **result)


if __name__ == "__main__":
    main()
