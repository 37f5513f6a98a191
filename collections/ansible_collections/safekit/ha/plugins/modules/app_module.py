#!/usr/bin/python
# Copyright (c) safekit contributors
# Apache License 2.0 (see LICENSE in the repository)
"""safekit.ha.app_module: an application module's userconfig.xml and scripts on a node."""

from __future__ import annotations

DOCUMENTATION = r"""
module: app_module
short_description: Configure a safekit application module (userconfig.xml and restart scripts) on a node
version_added: 0.1.0
description:
  - Writes C(/opt/safekit/modules/NAME/conf/userconfig.xml), either from structured parameters or
    from raw XML (O(userconfig)), and the module's restart scripts in C(/opt/safekit/modules/NAME/bin/).
  - The XML is validated with the engine's own validator (C(safekit config check)) on a temporary
    file before anything is written; files are written only when they differ.
  - When the configuration changed and C(safekitd) runs, a stopped module (or one the daemon does
    not know yet) takes it at once (C(safekit config -m NAME)). A running module is left alone and
    RV(restart_required) is returned; the caller decides when to stop and start it.
  - The modules directory follows the engine's E(SAFE) environment variable (default C(/opt/safekit)).
  - M(safekit.ha.node_info) returns the structured parameters of a module written by this module, in the
    same shape (round trip).
  - A mirror module (two nodes, one primary) has O(heartbeats), its O(vip) follows the primary and
    O(replication) keeps its data on both nodes; a
    farm module (O(mode=farm), every node active) has O(farm) membership, its O(vip) is held by every
    serving node and O(loadbalancing) says which traffic is spread and each node's power.
  - Any VIP may be moved by a cloud provider (O(vip[].provider), O(vip[].options)) instead of ARP.
author: safekit contributors (@safekit)
attributes:
  check_mode:
    description: Validates and reports what would change; writes and applies nothing.
    support: full
  diff_mode:
    description: Shows the change of userconfig.xml and of each script.
    support: full
  idempotent:
    description: A second run with the same parameters changes nothing and applies nothing.
    support: full
options:
  name:
    description: The module's name (letters, digits, C(_), C(.), C(-)).
    type: str
    required: true
  state:
    description:
      - V(absent) removes the module's directory; refused while the module runs (stop it first).
        Its state under C(/var/safekit) is kept.
    type: str
    choices: [present, absent]
    default: present
  userconfig:
    description: The whole userconfig.xml, instead of the structured parameters below.
    type: str
  mode:
    description:
      - The module's kind. V(mirror) is written when omitted.
      - O(heartbeats), O(heart_port), O(defaultprim) and O(replication) are for mirror modules; O(farm),
        O(loadbalancing) and O(vip[].type) for farm modules. Giving one to the other kind fails.
    type: str
    choices: [mirror, farm]
  boot:
    description:
      - Whether safekitd starts the module when it starts (engine default V(auto) - as it was when the
        daemon stopped).
    type: str
    choices: ['on', 'off', auto, ignore]
  heartbeats:
    description: >-
      Heartbeats of a mirror, one per LAN of cluster.xml. One heartbeat on LAN C(default) when omitted.
    type: list
    elements: dict
    suboptions:
      name:
        description: A C(<lan>) of cluster.xml.
        type: str
        required: true
      pulse:
        description: Interval between heartbeats (engine default 200ms).
        type: str
      timeout:
        description: Silence after which this LAN is down (engine default 1500ms); longer than the pulse.
        type: str
  heart_port:
    description: UDP port of the module's heartbeats; give each module of a node its own.
    type: int
  farm:
    description:
      - Membership of a farm module (C(<farm>)); every node sends a heartbeat to every other node of the
        LANs each O(farm.pulse). With O(mode=farm), C(<farm>) on LAN C(default) when omitted.
    type: dict
    suboptions:
      lans:
        description: LANs of cluster.xml the farm heartbeats use. LAN C(default) when omitted.
        type: list
        elements: dict
        suboptions:
          name:
            description: A C(<lan>) of cluster.xml.
            type: str
            required: true
          power:
            description: SafeKit's C(<lan power>); the node's weight is O(loadbalancing[].hosts[].power).
            type: int
      pulse:
        description: Interval between farm heartbeats (engine default 100ms).
        type: str
      mlost_count:
        description: Missed pulses after which a node is lost and its share moves (engine default 4).
        type: int
      slost_count:
        description: SafeKit's C(slost_count) (engine default 10).
        type: int
      port:
        description: UDP port of the farm heartbeats; give each module of a node its own.
        type: int
  vip:
    description:
      - Virtual IPv4 addresses. A mirror's follow the primary; a farm's are held by every serving node
        (one MAC for all, each node answering its share of the clients).
    type: list
    elements: dict
    suboptions:
      addr:
        description: The virtual address.
        type: str
        required: true
      netmask:
        description: Netmask (V(255.255.255.0) or V(24)); the engine's default when omitted.
        type: str
      interface:
        description: Network interface; found from the address when omitted.
        type: str
      type:
        description:
          - Farm only, C(<virtual_interface type>). V(vmac_invisible) (the one the engine runs) is
            written for a farm VIP when omitted.
        type: str
        choices: [vmac_invisible, vmac_directed]
      provider:
        description:
          - The VIP provider (engine default V(arp) - gratuitous ARP on a LAN). In a cloud
            V(aws_route), V(aws_eni_ip), V(aws_eip), V(aws_lb), V(azure_route), V(azure_nic_ip),
            V(azure_lb), V(gcp_route), V(gcp_alias_ip), V(gcp_ilb) (C(docs/cloud-providers.md));
            the engine needs its extra (C(safekit[aws]), ...).
        type: str
      options:
        description:
          - The provider's options, name to value (C(<option name value/>)), for example
            C(route_tables) of V(aws_route). Lists are written comma-separated and booleans V(on)/V(off).
        type: dict
  replication:
    description:
      - Mirror only, C(<rfs>) - the directories the primary replicates to the secondary while the
        application writes, resynchronised when the secondary comes back (C(docs/replication.md)).
      - SafeKit's names, except O(replication.dirs[].path) for C(<replicated dir>). SafeKit attributes
        the engine ignores (C(locktimeout), C(packetsize), C(<tocheck>), ...) need the raw O(userconfig).
      - The nodes need FUSE 3 (C(fuse3)).
    type: dict
    suboptions:
      dirs:
        description: The replicated directories (C(<replicated>)), absolute, none inside another.
        type: list
        elements: dict
        required: true
        suboptions:
          path:
            description: The directory (C(<replicated dir>)), the same path on both nodes.
            type: str
            required: true
          notreplicated:
            description:
              - Paths relative to O(replication.dirs[].path) that are not replicated, with everything
                under them (C(<notreplicated path>)).
            type: list
            elements: str
          notreplicated_regexpath:
            description:
              - Regular expressions on the paths relative to O(replication.dirs[].path) that are not
                replicated (C(<notreplicated regexpath>)).
            type: list
            elements: str
      async:
        description:
          - When the secondary acknowledges (C(<rfs async>)) - V(second) when it has received and applied
            an operation (engine default), V(none) a durability barrier after its own fsync.
        type: str
        choices: [second, none]
      sendtimeout:
        description: How long the primary waits for the secondary before going on alone (engine default 30s).
        type: str
      splitbrain_keep_free:
        description:
          - Engine extension - what a node that lost a split brain leaves free when it saves its changed
            files aside (V(10%) by default, or a size such as V(2G)).
        type: str
  loadbalancing:
    description:
      - Farm only, C(<loadbalancing_list>) - which traffic to the VIP is spread, and over which nodes.
        Without it, every node of the O(farm) LANs with power 1, and traffic hashed on the client
        address. The engine balances one group.
    type: list
    elements: dict
    suboptions:
      name:
        description: The group's name.
        type: str
        required: true
      hosts:
        description: The farm's nodes (names of cluster.xml) and their weights.
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description: The node.
            type: str
            required: true
          power:
            description: Its weight (engine default 1); its share of the clients is proportional.
            type: int
      rules:
        description: The traffic spread over the hosts.
        type: list
        elements: dict
        required: true
        suboptions:
          virtual_addr:
            description: A O(vip[].addr), or V(*) for all (engine default).
            type: str
          port:
            description: The port; every port when omitted.
            type: int
          proto:
            description: Protocol (engine default V(tcp)).
            type: str
            choices: [tcp, udp, arp]
          filter:
            description: >-
              Hash of the client address (V(on_addr), engine default: a client always reaches the
              same node) or of its address and port (V(on_port), needs O(loadbalancing[].rules[].port)).
            type: str
            choices: [on_addr, on_port, on_ipid]
  defaultprim:
    description: Mirror only. V(alone), V(lastprim) or a node name (engine default V(alone)).
    type: str
  failover:
    description: Automatic failover (engine default V(true)).
    type: bool
  maxloop:
    description: Errors allowed within O(loop_interval) before the module stops (engine default 3).
    type: int
  loop_interval:
    description: Window of O(maxloop) (a duration, e.g. V(24h); a bare number is hours).
    type: str
  user:
    description:
      - Scripts' settings. Without it no script runs, so an empty one is written when O(scripts) or
        O(scripts_dir) is given.
    type: dict
    suboptions:
      nicestoptimeout:
        description: Time a stop script has before it is killed and called with C(force) (default 300s).
        type: str
      forcestoptimeout:
        description: Time the forced stop script has (engine default 300s).
        type: str
      vars:
        description: Environment variables of the scripts (NAME -> value).
        type: dict
  errd:
    description: Process monitoring.
    type: dict
    suboptions:
      polltimer:
        description: How often the processes are checked (engine default 30s).
        type: str
      procs:
        description: Processes to watch.
        type: list
        elements: dict
        suboptions:
          name:
            description:
              - Process name (or give O(errd.procs[].nameregex), or both).
              - With O(errd.procs[].nameregex) too, only names the check (resource C(proc.NAME)), as in
                SafeKit's own module templates.
            type: str
          nameregex:
            description: Regular expression on the process name; when given, it is what matches.
            type: str
          argregex:
            description: Regular expression on the arguments.
            type: str
          atleast:
            description: Fewest processes expected (engine default 1).
            type: int
          atmax:
            description: Most processes expected, V(-1) for no limit (engine default).
            type: int
          action:
            description: What to do when the count is wrong.
            type: str
            choices: [restart, stopstart, stop, noaction]
            default: restart
          class:
            description: When the process must run.
            type: str
            choices: [prim, both, pre, second, sec]
            default: prim
  checkers:
    description: Checkers, each with one target. Their idents are unique per kind.
    type: dict
    suboptions:
      tcp:
        description: TCP connection checkers (default action V(restart)).
        type: list
        elements: dict
        suboptions:
          ident: {description: Name of the checker (resource C(tcp.IDENT)), type: str, required: true}
          addr: {description: Address or host name to connect to, type: str, required: true}
          port: {description: TCP port, type: int, required: true}
          interval: {description: Interval between checks (engine default 10s), type: str}
          timeout: {description: Time a check may take (engine default 5s), type: str}
          when: {description: When the checker runs, type: str, choices: [prim, both, pre]}
          action: {description: Action on failure, type: str, choices: [wait, restart, stopstart, stop]}
      ping:
        description: Ping checkers (default action V(wait)).
        type: list
        elements: dict
        suboptions:
          ident: {description: Name of the checker (resource C(ping.IDENT)), type: str, required: true}
          addr: {description: Address or host name to ping, type: str, required: true}
          interval: {description: Interval between checks (engine default 10s), type: str}
          timeout: {description: Time a check may take (engine default 5s), type: str}
          when: {description: When the checker runs, type: str, choices: [prim, both, pre]}
          action: {description: Action on failure, type: str, choices: [wait, restart, stopstart, stop]}
      custom:
        description: Long-running programs that report with C(safekit set -m NAME -r custom.IDENT -v up).
        type: list
        elements: dict
        suboptions:
          ident: {description: Name of the checker (resource C(custom.IDENT)), type: str, required: true}
          exec: {description: Program to run, type: str, required: true}
          arg: {description: Its arguments, type: str}
          when: {description: When the checker runs, type: str, choices: [prim, both, pre]}
          action: {description: Action on failure, type: str, choices: [wait, restart, stopstart, stop]}
  splitbrain:
    description:
      - Split-brain checker; when every heartbeat is lost, only the node the witness allows serves.
      - With O(splitbrain.exec=arbitrator), a C(safekit arbiter) service on the witness host leases
        the right to serve to one node at a time (never two primaries, whatever is cut); with
        C(ping), a witness answering pings (safe while it is reachable from one side of a split).
    type: dict
    suboptions:
      witnesses:
        description:
          - Witness addresses (usually the router between the nodes), or with C(arbitrator) the
            one C(HOST[:PORT]) of the arbiter service (port 9455 by default).
        type: list
        elements: str
        required: true
      exec:
        description: The witness kind (engine default C(ping)).
        type: str
        choices: [ping, arbitrator]
      ident:
        description: Name of the checker (engine default C(witness)).
        type: str
  failover_rules:
    description: 'Text of C(<failover>) rules, one per line: C(label: if (condition) then action();).'
    type: str
  scripts:
    description: Scripts by name (C(start_prim), C(stop_prim), ...) and content, written 0755 in C(bin/).
    type: dict
  scripts_dir:
    description: A directory on the node whose files are copied (mode 0755) to the module's C(bin/).
    type: path
  engine_bin:
    description: Directory of the engine's C(safekit) command.
    type: path
    default: /opt/safekit/venv/bin
notes:
  - Scripts that are in C(bin/) but not in O(scripts) or O(scripts_dir) are left in place.
  - Scripts are read by the engine each time it calls them; changing one needs no restart.
seealso:
  - module: safekit.ha.node_info
  - module: safekit.ha.app_module_command
"""

EXAMPLES = r"""
- name: A web service that follows a virtual IP, with a witness against split brain
  safekit.ha.app_module:
    name: web
    heartbeats:
      - name: default
      - name: replication
        pulse: 50ms
        timeout: 200ms
    heart_port: 4810
    vip:
      - addr: 192.168.1.100
        netmask: "24"
    user:
      nicestoptimeout: 20s
      vars:
        WEB_PORT: "8080"
    errd:
      polltimer: 5s
      procs:
        - name: python3
          argregex: 'http\.server 8080'
          action: restart
          class: prim
    checkers:
      tcp:
        - {ident: web, addr: 127.0.0.1, port: 8080}
    replication:
      dirs:
        - path: /srv/www
          notreplicated: [cache]
      async: second
      sendtimeout: 30s
    splitbrain:
      witnesses: [192.168.1.1]
    failover_rules: |
      web_down: if (tcp.web == down) then restart();
    scripts:
      start_prim: "{{ lookup('ansible.builtin.template', 'start_prim.j2') }}"
      stop_prim: "{{ lookup('ansible.builtin.file', 'stop_prim') }}"
  register: web

- name: A web farm - every node serves, each its share of the clients of one virtual IP
  safekit.ha.app_module:
    name: webfarm
    mode: farm
    boot: auto
    farm:
      lans: [{name: default}]
    vip:
      - addr: 192.168.1.200
    loadbalancing:
      - name: web
        hosts:
          - {name: web1, power: 1}
          - {name: web2, power: 1}
          - {name: web3, power: 2}
        rules:
          - {virtual_addr: "*", port: 80, proto: tcp, filter: on_port}
    errd:
      procs:
        - {name: nginx, class: both}
    checkers:
      tcp:
        - {ident: web, addr: 127.0.0.1, port: 80, action: restart}
    scripts:
      start_both: "{{ lookup('ansible.builtin.file', 'start_both') }}"
      stop_both: "{{ lookup('ansible.builtin.file', 'stop_both') }}"

- name: A mirror in AWS - the VIP follows the primary through a route table
  safekit.ha.app_module:
    name: db
    vip:
      - addr: 10.99.0.10
        provider: aws_route
        options:
          route_tables: [rtb-0a1b2c3d, rtb-4e5f6a7b]

- name: A module from a SafeKit userconfig.xml and its scripts already on the node
  safekit.ha.app_module:
    name: legacy
    userconfig: "{{ lookup('ansible.builtin.file', 'legacy/conf/userconfig.xml') }}"
    scripts_dir: /tmp/legacy/bin

- name: Remove a stopped module
  safekit.ha.app_module:
    name: legacy
    state: absent
"""

RETURN = r"""
changed:
  description: A file was (or would be) written or removed, or the configuration applied.
  returned: always
  type: bool
userconfig:
  description: The module's userconfig.xml.
  returned: when O(state=present)
  type: str
restart_required:
  description:
    - The configuration changed while the module runs; it takes it when stopped and started again
      (C(safekit stop -m NAME), C(safekit config -m NAME), C(safekit start -m NAME)), or at the next
      daemon restart. After O(state=absent), safekitd still holds the removed module until it restarts.
  returned: always
  type: bool
applied:
  description: C(safekit config -m NAME) was (or would be) run.
  returned: always
  type: bool
msg:
  description: What was done.
  returned: always
  type: str
"""

import os
import re

from ansible_collections.safekit.ha.plugins.module_utils.decisions import config_action
from ansible_collections.safekit.ha.plugins.module_utils.safekit import SafekitModule
from ansible_collections.safekit.ha.plugins.module_utils.userconfig import param_problems, render_userconfig

CHECKER_WHEN = {"type": "str", "choices": ["prim", "both", "pre"]}
CHECKER_ACTION = {"type": "str", "choices": ["wait", "restart", "stopstart", "stop"]}
TIMING = {
    "interval": {"type": "str"},
    "timeout": {"type": "str"},
    "when": CHECKER_WHEN,
    "action": CHECKER_ACTION,
}
PROC = {
    "name": {"type": "str"},
    "nameregex": {"type": "str"},
    "argregex": {"type": "str"},
    "atleast": {"type": "int"},
    "atmax": {"type": "int"},
    "action": {"type": "str", "choices": ["restart", "stopstart", "stop", "noaction"], "default": "restart"},
    "class": {"type": "str", "choices": ["prim", "both", "pre", "second", "sec"], "default": "prim"},
}
STRUCTURED = {
    "mode": {"type": "str", "choices": ["mirror", "farm"]},
    "boot": {"type": "str", "choices": ["on", "off", "auto", "ignore"]},
    "heartbeats": {
        "type": "list",
        "elements": "dict",
        "options": {
            "name": {"type": "str", "required": True},
            "pulse": {"type": "str"},
            "timeout": {"type": "str"},
        },
    },
    "heart_port": {"type": "int"},
    "farm": {
        "type": "dict",
        "options": {
            "lans": {
                "type": "list",
                "elements": "dict",
                "options": {"name": {"type": "str", "required": True}, "power": {"type": "int"}},
            },
            "pulse": {"type": "str"},
            "mlost_count": {"type": "int"},
            "slost_count": {"type": "int"},
            "port": {"type": "int"},
        },
    },
    "vip": {
        "type": "list",
        "elements": "dict",
        "options": {
            "addr": {"type": "str", "required": True},
            "netmask": {"type": "str"},
            "interface": {"type": "str"},
            "type": {"type": "str", "choices": ["vmac_invisible", "vmac_directed"]},
            "provider": {"type": "str"},
            "options": {"type": "dict"},
        },
    },
    "replication": {
        "type": "dict",
        "options": {
            "dirs": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "path": {"type": "str", "required": True},
                    "notreplicated": {"type": "list", "elements": "str"},
                    "notreplicated_regexpath": {"type": "list", "elements": "str"},
                },
            },
            "async": {"type": "str", "choices": ["second", "none"]},
            "sendtimeout": {"type": "str"},
            "splitbrain_keep_free": {"type": "str"},
        },
    },
    "loadbalancing": {
        "type": "list",
        "elements": "dict",
        "options": {
            "name": {"type": "str", "required": True},
            "hosts": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {"name": {"type": "str", "required": True}, "power": {"type": "int"}},
            },
            "rules": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "virtual_addr": {"type": "str"},
                    "port": {"type": "int"},
                    "proto": {"type": "str", "choices": ["tcp", "udp", "arp"]},
                    "filter": {"type": "str", "choices": ["on_addr", "on_port", "on_ipid"]},
                },
            },
        },
    },
    "defaultprim": {"type": "str"},
    "failover": {"type": "bool"},
    "maxloop": {"type": "int"},
    "loop_interval": {"type": "str"},
    "user": {
        "type": "dict",
        "options": {
            "nicestoptimeout": {"type": "str"},
            "forcestoptimeout": {"type": "str"},
            "vars": {"type": "dict"},
        },
    },
    "errd": {
        "type": "dict",
        "options": {
            "polltimer": {"type": "str"},
            "procs": {
                "type": "list",
                "elements": "dict",
                "options": PROC,
                "required_one_of": [["name", "nameregex"]],
            },
        },
    },
    "checkers": {
        "type": "dict",
        "options": {
            "tcp": {
                "type": "list",
                "elements": "dict",
                "options": {
                    "ident": {"type": "str", "required": True},
                    "addr": {"type": "str", "required": True},
                    "port": {"type": "int", "required": True},
                    **TIMING,
                },
            },
            "ping": {
                "type": "list",
                "elements": "dict",
                "options": {
                    "ident": {"type": "str", "required": True},
                    "addr": {"type": "str", "required": True},
                    **TIMING,
                },
            },
            "custom": {
                "type": "list",
                "elements": "dict",
                "options": {
                    "ident": {"type": "str", "required": True},
                    "exec": {"type": "str", "required": True},
                    "arg": {"type": "str"},
                    "when": CHECKER_WHEN,
                    "action": CHECKER_ACTION,
                },
            },
        },
    },
    "splitbrain": {
        "type": "dict",
        "options": {
            "witnesses": {"type": "list", "elements": "str", "required": True},
            "ident": {"type": "str"},
            "exec": {"type": "str", "choices": ["ping", "arbitrator"]},
        },
    },
    "failover_rules": {"type": "str"},
}
ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "userconfig": {"type": "str"},
    **STRUCTURED,
    "scripts": {"type": "dict"},
    "scripts_dir": {"type": "path"},
}
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def absent(task: SafekitModule, name: str, directory: str) -> None:
    running, entry = task.module_state(name)
    if entry is not None and entry.get("state") != "STOP":
        task.fail(
            "{} is {}: stop it before removing it (safekit.ha.app_module_command: stop)".format(
                name, entry.get("state")
            )
        )
    changed = task.remove_tree(directory)
    known = changed and running and entry is not None
    task.exit(
        changed=changed,
        restart_required=known,
        applied=False,
        msg=f"{directory} removed" if changed else f"{directory} is absent",
    )


def scripts(task: SafekitModule, bin_dir: str) -> bool:
    wanted = dict(task.params["scripts"] or {})
    source = task.params["scripts_dir"]
    if source:
        if not os.path.isdir(source):
            task.fail(f"scripts_dir {source} is not a directory on this node")
        for entry in sorted(os.listdir(source)):
            if os.path.isfile(os.path.join(source, entry)):
                with open(os.path.join(source, entry), encoding="utf-8") as f:
                    wanted[entry] = f.read()
    changed = False
    for script, content in wanted.items():
        if not NAME.match(script):
            task.fail(f"script name {script!r}: use letters, digits, '_', '.', '-'")
        changed = task.ensure_file(os.path.join(bin_dir, script), str(content), 0o755) or changed
    return changed


def main() -> None:
    task = SafekitModule(
        ARGUMENT_SPEC,
        supports_check_mode=True,
        mutually_exclusive=[["userconfig", key] for key in STRUCTURED] + [["scripts", "scripts_dir"]],
    )
    p = task.params
    name = p["name"]
    if not NAME.match(name):
        task.fail(f"module name {name!r}: use letters, digits, '_', '.', '-'")
    directory = os.path.join(task.safe_dir, "modules", name)
    if p["state"] == "absent":
        absent(task, name, directory)
        return
    if p["userconfig"] is not None:
        xml = p["userconfig"]
    else:
        structured = {key: p[key] for key in STRUCTURED}
        if structured["user"] is None and (p["scripts"] or p["scripts_dir"]):
            structured["user"] = {}
        problems = param_problems(structured)
        if problems:
            task.fail("nothing was changed: " + "; ".join(problems))
        xml = render_userconfig(structured)
    conf = os.path.join(directory, "conf", "userconfig.xml")
    task.check_config(xml, "userconfig.xml", conf)
    conf_changed = task.ensure_file(conf, xml, 0o644)
    scripts_changed = scripts(task, os.path.join(directory, "bin"))
    if not task.check_mode:
        os.makedirs(os.path.join(directory, "bin"), mode=0o755, exist_ok=True)
    running, entry = task.module_state(name)
    action = config_action(conf_changed, running, entry.get("state") if entry else None)
    if action == "apply" and not task.check_mode:
        task.engine("config", "-m", name)
    messages = {
        "none": "configuration written" if conf_changed else "configuration unchanged",
        "apply": "configuration applied to the stopped module",
        "restart_required": f"{name} is {entry.get('state') if entry else '?'}: "
        "the new configuration applies when it is stopped and started again",
    }
    task.exit(
        changed=conf_changed or scripts_changed or action == "apply",
        userconfig=xml,
        restart_required=action == "restart_required",
        applied=action == "apply",
        msg=messages[action],
    )


if __name__ == "__main__":
    main()
