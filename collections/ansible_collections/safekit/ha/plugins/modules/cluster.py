#!/usr/bin/python
# Copyright (c) safekit contributors
# Apache License 2.0 (see LICENSE in the repository)
"""safekit.ha.cluster: cluster.xml and the cluster key on a node."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster
short_description: Configure the safekit cluster (cluster.xml and the cluster key) on a node
version_added: 0.1.0
description:
  - Renders C(/etc/safekit/cluster.xml) from O(lans) and O(port), validates it with the engine's own
    validator (C(safekit config check)) on a temporary file before anything is written, and writes it
    only when it differs.
  - Writes the cluster key C(/etc/safekit/cluster.key) (mode 0600) from O(key) only when it differs.
    The key is never printed, returned or shown in a diff.
  - Does not restart C(safekitd); RV(restart_required) tells the caller that it runs with an older
    cluster configuration.
  - The directory follows the engine's E(SAFEKIT_CONF) environment variable (default C(/etc/safekit)).
author: safekit contributors (@safekit)
attributes:
  check_mode:
    description: Validates and reports what would change; writes nothing.
    support: full
  diff_mode:
    description: Shows the change of cluster.xml; a key change shows as C((secret, changed)), never the key.
    support: full
  idempotent:
    description: A second run with the same parameters changes nothing.
    support: full
options:
  lans:
    description:
      - The LANs of the cluster, each with every node's address on it. The same list goes to every node.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: LAN name, referred to by modules' heartbeats (C(default) is the usual first one).
        type: str
        required: true
      nodes:
        description: The nodes on this LAN.
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description: Node name (the host name safekitd finds itself by).
            type: str
            required: true
          addr:
            description: The node's IPv4 address on this LAN.
            type: str
            required: true
      command:
        description: The LAN carries commands between nodes. The engine's default (V(true)) when omitted.
        type: bool
  port:
    description: Base port of the authenticated traffic between nodes; the daemon's default when omitted.
    type: int
  key:
    description:
      - Content of the cluster key file, as M(safekit.ha.cluster_key) or C(safekit cluster genkey) writes it
        (one line C(safekit-cluster-key-v1:<base64 of 32 bytes>)). Generate it once per cluster.
      - When omitted, the key file on the node is left as it is.
    type: str
  engine_bin:
    description: Directory of the engine's C(safekit) command.
    type: path
    default: /opt/safekit/venv/bin
notes:
  - Generate the key once, on the controller, with M(safekit.ha.cluster_key) (no engine needed there)
    or C(safekit cluster genkey FILE), and pass it with C(lookup('ansible.builtin.file', FILE)) to every
    node. O(key) is C(no_log), so the task needs no C(no_log).
seealso:
  - module: safekit.ha.cluster_key
  - module: safekit.ha.engine
  - module: safekit.ha.app_module
"""

EXAMPLES = r"""
- name: Cluster of two nodes on two LANs
  safekit.ha.cluster:
    lans:
      - name: default
        nodes:
          - {name: node1, addr: 192.168.1.11}
          - {name: node2, addr: 192.168.1.12}
      - name: replication
        command: false
        nodes:
          - {name: node1, addr: 10.0.0.11}
          - {name: node2, addr: 10.0.0.12}
    key: "{{ lookup('ansible.builtin.file', 'files/cluster.key') }}"
  register: cluster

- name: Restart safekitd when its cluster configuration changed
  ansible.builtin.service:
    name: safekitd
    state: restarted
  when: cluster.restart_required
"""

RETURN = r"""
changed:
  description: cluster.xml or the key was (or would be) written.
  returned: always
  type: bool
cluster_xml:
  description: The rendered cluster.xml.
  returned: always
  type: str
key_changed:
  description: The cluster key was (or would be) written. Never the key itself.
  returned: always
  type: bool
restart_required:
  description: cluster.xml or the key changed while safekitd runs; it applies them when restarted.
  returned: always
  type: bool
"""

import os

from ansible_collections.safekit.ha.plugins.module_utils.clusterkey import KeyFileError, decode, encode
from ansible_collections.safekit.ha.plugins.module_utils.safekit import SafekitModule
from ansible_collections.safekit.ha.plugins.module_utils.userconfig import render_cluster

NODE = {"name": {"type": "str", "required": True}, "addr": {"type": "str", "required": True}}
LAN = {
    "name": {"type": "str", "required": True},
    "nodes": {"type": "list", "elements": "dict", "required": True, "options": NODE},
    "command": {"type": "bool"},
}
ARGUMENT_SPEC = {
    "lans": {"type": "list", "elements": "dict", "required": True, "options": LAN},
    "port": {"type": "int"},
    "key": {"type": "str", "no_log": True},
}


def key_file_text(content: str) -> str:
    """The key file to write; raises ValueError (never quoting the key) when it is not one."""
    try:
        key = decode(content)
    except KeyFileError:
        raise ValueError(
            "key is not a cluster key: give the content of a file made by safekit.ha.cluster_key or "
            "'safekit cluster genkey' (one line safekit-cluster-key-v1:<base64 of 32 bytes>)"
        ) from None
    return encode(key)


def main() -> None:
    task = SafekitModule(ARGUMENT_SPEC, supports_check_mode=True)
    p = task.params
    key_text = None
    if p["key"] is not None:
        try:
            key_text = key_file_text(p["key"])
        except ValueError as exc:
            task.fail(str(exc))
    xml_path = os.path.join(task.conf_dir, "cluster.xml")
    xml = render_cluster(p["lans"], p["port"])
    task.check_config(xml, "cluster.xml", xml_path)
    xml_changed = task.ensure_file(xml_path, xml, 0o644)
    key_changed = key_text is not None and task.ensure_file(
        os.path.join(task.conf_dir, "cluster.key"), key_text, 0o600, secret=True
    )
    changed = xml_changed or key_changed
    running = changed and task.states() is not None
    task.exit(changed=changed, cluster_xml=xml, key_changed=key_changed, restart_required=running)


if __name__ == "__main__":
    main()
