"""The JSON schemas of the console's form models (`forms.py`), for the OpenAPI
document: a copy, so that safekitd serves the document without importing pydantic. Made by
`python -m safekit.api.forms --schemas > src/safekit/api/form_schemas.py`; tests/unit/api/test_forms.py
checks it is up to date."""

import json
from typing import Any

SCHEMAS: dict[str, Any] = json.loads(
    r"""
{
 "CheckerForm": {
  "additionalProperties": false,
  "properties": {
   "action": {
    "default": "",
    "enum": [
     "",
     "wait",
     "restart",
     "stopstart",
     "stop"
    ],
    "title": "Action",
    "type": "string"
   },
   "addr": {
    "default": "",
    "description": "tcp, ping: the address checked",
    "maxLength": 255,
    "title": "Addr",
    "type": "string"
   },
   "arg": {
    "default": "",
    "description": "custom: its arguments",
    "maxLength": 255,
    "title": "Arg",
    "type": "string"
   },
   "exec": {
    "default": "",
    "description": "custom: the program (in the module's bin/)",
    "maxLength": 255,
    "title": "Exec",
    "type": "string"
   },
   "ident": {
    "maxLength": 64,
    "title": "Ident",
    "type": "string"
   },
   "interval": {
    "default": "",
    "description": "e.g. 10s (empty: the default)",
    "maxLength": 16,
    "title": "Interval",
    "type": "string"
   },
   "kind": {
    "enum": [
     "tcp",
     "ping",
     "custom"
    ],
    "title": "Kind",
    "type": "string"
   },
   "port": {
    "anyOf": [
     {
      "type": "integer"
     },
     {
      "type": "null"
     }
    ],
    "default": null,
    "description": "tcp: the port",
    "title": "Port"
   },
   "timeout": {
    "default": "",
    "description": "e.g. 5s (empty: the default)",
    "maxLength": 16,
    "title": "Timeout",
    "type": "string"
   },
   "when": {
    "default": "",
    "enum": [
     "",
     "prim",
     "both",
     "pre"
    ],
    "title": "When",
    "type": "string"
   }
  },
  "required": [
   "kind",
   "ident"
  ],
  "title": "CheckerForm",
  "type": "object"
 },
 "ClusterApply": {
  "additionalProperties": false,
  "description": "`PUT /api/v1/cluster/config`.",
  "properties": {
   "dry_run": {
    "default": false,
    "title": "Dry Run",
    "type": "boolean"
   },
   "form": {
    "$ref": "#/components/schemas/ClusterForm"
   },
   "nodes": {
    "default": "all",
    "enum": [
     "all",
     "local"
    ],
    "title": "Nodes",
    "type": "string"
   },
   "reload": {
    "default": true,
    "description": "then each safekitd takes it live where it can: on every node or none",
    "title": "Reload",
    "type": "boolean"
   }
  },
  "required": [
   "form"
  ],
  "title": "ClusterApply",
  "type": "object"
 },
 "ClusterForm": {
  "additionalProperties": false,
  "description": "cluster.xml: the heartbeat networks, and every node's address on each. No key.",
  "properties": {
   "lans": {
    "items": {
     "$ref": "#/components/schemas/LanForm"
    },
    "maxItems": 16,
    "title": "Lans",
    "type": "array"
   },
   "port": {
    "anyOf": [
     {
      "type": "integer"
     },
     {
      "type": "null"
     }
    ],
    "default": null,
    "description": "base port of the traffic between nodes (empty: 4800)",
    "title": "Port"
   }
  },
  "required": [
   "lans"
  ],
  "title": "ClusterForm",
  "type": "object"
 },
 "ClusterReload": {
  "additionalProperties": false,
  "description": "`POST /api/v1/cluster/reload`: each safekitd takes its cluster.xml live if it can.",
  "properties": {
   "dry_run": {
    "default": false,
    "title": "Dry Run",
    "type": "boolean"
   },
   "nodes": {
    "default": "all",
    "enum": [
     "all",
     "local"
    ],
    "title": "Nodes",
    "type": "string"
   }
  },
  "title": "ClusterReload",
  "type": "object"
 },
 "GroupForm": {
  "additionalProperties": false,
  "description": "A farm's balancing group: its nodes (none: every node of the farm) and its rules.",
  "properties": {
   "hosts": {
    "items": {
     "$ref": "#/components/schemas/HostForm"
    },
    "maxItems": 64,
    "title": "Hosts",
    "type": "array"
   },
   "name": {
    "maxLength": 64,
    "title": "Name",
    "type": "string"
   },
   "rules": {
    "items": {
     "$ref": "#/components/schemas/RuleForm"
    },
    "maxItems": 16,
    "title": "Rules",
    "type": "array"
   }
  },
  "required": [
   "name"
  ],
  "title": "GroupForm",
  "type": "object"
 },
 "HostForm": {
  "additionalProperties": false,
  "properties": {
   "name": {
    "description": "a node of the farm",
    "maxLength": 64,
    "title": "Name",
    "type": "string"
   },
   "power": {
    "default": 1,
    "description": "its share of the clients (weight)",
    "title": "Power",
    "type": "integer"
   }
  },
  "required": [
   "name"
  ],
  "title": "HostForm",
  "type": "object"
 },
 "LanForm": {
  "additionalProperties": false,
  "properties": {
   "command": {
    "default": true,
    "description": "carries commands between nodes (safekit -H)",
    "title": "Command",
    "type": "boolean"
   },
   "name": {
    "description": "the network's name, referred to by modules",
    "maxLength": 64,
    "title": "Name",
    "type": "string"
   },
   "nodes": {
    "items": {
     "$ref": "#/components/schemas/NodeForm"
    },
    "maxItems": 64,
    "title": "Nodes",
    "type": "array"
   }
  },
  "required": [
   "name",
   "nodes"
  ],
  "title": "LanForm",
  "type": "object"
 },
 "ModuleForm": {
  "additionalProperties": false,
  "description": "A module from scratch: a mirror (the default) or a farm.",
  "properties": {
   "checkers": {
    "items": {
     "$ref": "#/components/schemas/CheckerForm"
    },
    "maxItems": 16,
    "title": "Checkers",
    "type": "array"
   },
   "defaultprim": {
    "default": "alone",
    "maxLength": 64,
    "title": "Defaultprim",
    "type": "string"
   },
   "failover": {
    "default": true,
    "title": "Failover",
    "type": "boolean"
   },
   "failover_rules": {
    "default": "",
    "description": "rules 'label: if (...) then action();'",
    "maxLength": 16384,
    "title": "Failover Rules",
    "type": "string"
   },
   "groups": {
    "description": "farm: the balancing groups (none: every node, by address)",
    "items": {
     "$ref": "#/components/schemas/GroupForm"
    },
    "maxItems": 8,
    "title": "Groups",
    "type": "array"
   },
   "heartbeat_port": {
    "anyOf": [
     {
      "type": "integer"
     },
     {
      "type": "null"
     }
    ],
    "default": null,
    "description": "UDP port of the module's heartbeats (empty: the cluster's)",
    "title": "Heartbeat Port"
   },
   "heartbeats": {
    "description": "LANs of cluster.xml (a farm's membership networks)",
    "items": {
     "type": "string"
    },
    "maxItems": 4,
    "title": "Heartbeats",
    "type": "array"
   },
   "mode": {
    "default": "mirror",
    "description": "mirror (primary and secondary) or farm (every node serves)",
    "enum": [
     "mirror",
     "farm"
    ],
    "title": "Mode",
    "type": "string"
   },
   "replicated": {
    "items": {
     "$ref": "#/components/schemas/ReplicatedForm"
    },
    "maxItems": 16,
    "title": "Replicated",
    "type": "array"
   },
   "scripts": {
    "additionalProperties": {
     "type": "string"
    },
    "description": "script name: its text (a shell script without #! gets #!/bin/sh)",
    "propertyNames": {
     "enum": [
      "prestart",
      "start_prim",
      "stop_prim",
      "start_second",
      "stop_second",
      "start_both",
      "stop_both",
      "poststop"
     ]
    },
    "title": "Scripts",
    "type": "object"
   },
   "vip": {
    "$ref": "#/components/schemas/VipForm",
    "default": {
     "addr": "",
     "kind": "none",
     "options": {},
     "provider": "",
     "type": "vmac_invisible"
    }
   },
   "witness": {
    "$ref": "#/components/schemas/WitnessForm",
    "default": {
     "arg": "",
     "kind": "none"
    }
   }
  },
  "title": "ModuleForm",
  "type": "object"
 },
 "ModuleInstall": {
  "additionalProperties": false,
  "description": "`POST /api/v1/modules/AM/install`: a ModuleRequest without the name (it is in the path).",
  "properties": {
   "dry_run": {
    "default": false,
    "title": "Dry Run",
    "type": "boolean"
   },
   "form": {
    "anyOf": [
     {
      "$ref": "#/components/schemas/ModuleForm"
     },
     {
      "type": "null"
     }
    ],
    "default": null
   },
   "nodes": {
    "default": "all",
    "enum": [
     "all",
     "local"
    ],
    "title": "Nodes",
    "type": "string"
   },
   "template": {
    "anyOf": [
     {
      "maxLength": 64,
      "type": "string"
     },
     {
      "type": "null"
     }
    ],
    "default": null,
    "title": "Template"
   },
   "values": {
    "additionalProperties": {
     "type": "string"
    },
    "title": "Values",
    "type": "object"
   }
  },
  "title": "ModuleInstall",
  "type": "object"
 },
 "ModuleRequest": {
  "additionalProperties": false,
  "description": "A new module: a template of the library and its values, or a form from scratch.",
  "properties": {
   "form": {
    "anyOf": [
     {
      "$ref": "#/components/schemas/ModuleForm"
     },
     {
      "type": "null"
     }
    ],
    "default": null
   },
   "name": {
    "maxLength": 64,
    "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$",
    "title": "Name",
    "type": "string"
   },
   "template": {
    "anyOf": [
     {
      "maxLength": 64,
      "type": "string"
     },
     {
      "type": "null"
     }
    ],
    "default": null,
    "title": "Template"
   },
   "values": {
    "additionalProperties": {
     "type": "string"
    },
    "title": "Values",
    "type": "object"
   }
  },
  "required": [
   "name"
  ],
  "title": "ModuleRequest",
  "type": "object"
 },
 "NodeForm": {
  "additionalProperties": false,
  "properties": {
   "addr": {
    "description": "its IPv4 address on this network",
    "maxLength": 64,
    "title": "Addr",
    "type": "string"
   },
   "name": {
    "description": "the node's name",
    "maxLength": 64,
    "title": "Name",
    "type": "string"
   }
  },
  "required": [
   "name",
   "addr"
  ],
  "title": "NodeForm",
  "type": "object"
 },
 "ReplicatedForm": {
  "additionalProperties": false,
  "properties": {
   "dir": {
    "description": "an absolute directory replicated to the secondary",
    "maxLength": 1024,
    "title": "Dir",
    "type": "string"
   },
   "exclude": {
    "description": "paths below it not replicated",
    "items": {
     "type": "string"
    },
    "maxItems": 64,
    "title": "Exclude",
    "type": "array"
   }
  },
  "required": [
   "dir"
  ],
  "title": "ReplicatedForm",
  "type": "object"
 },
 "RuleForm": {
  "additionalProperties": false,
  "properties": {
   "filter": {
    "default": "on_addr",
    "description": "what chooses the node: the client's address, its port, ...",
    "enum": [
     "on_addr",
     "on_port",
     "on_ipid"
    ],
    "title": "Filter",
    "type": "string"
   },
   "port": {
    "anyOf": [
     {
      "type": "integer"
     },
     {
      "type": "null"
     }
    ],
    "default": null,
    "description": "the port balanced (empty: every port)",
    "title": "Port"
   },
   "proto": {
    "default": "tcp",
    "enum": [
     "tcp",
     "udp"
    ],
    "title": "Proto",
    "type": "string"
   },
   "virtual_addr": {
    "default": "*",
    "description": "the virtual IP (*: every one)",
    "maxLength": 64,
    "title": "Virtual Addr",
    "type": "string"
   }
  },
  "title": "RuleForm",
  "type": "object"
 },
 "VipForm": {
  "additionalProperties": false,
  "properties": {
   "addr": {
    "default": "",
    "description": "the virtual IPv4 address",
    "maxLength": 64,
    "title": "Addr",
    "type": "string"
   },
   "kind": {
    "default": "none",
    "description": "none, an address moved by ARP, or a cloud",
    "enum": [
     "none",
     "arp",
     "cloud"
    ],
    "title": "Kind",
    "type": "string"
   },
   "options": {
    "additionalProperties": {
     "type": "string"
    },
    "description": "the provider's options (name: value)",
    "title": "Options",
    "type": "object"
   },
   "provider": {
    "default": "",
    "description": "the cloud provider (aws_route, azure_lb, ...)",
    "maxLength": 32,
    "title": "Provider",
    "type": "string"
   },
   "type": {
    "default": "vmac_invisible",
    "description": "farm: how every node holds the address (vmac_invisible, or vmac_directed)",
    "enum": [
     "vmac_invisible",
     "vmac_directed"
    ],
    "title": "Type",
    "type": "string"
   }
  },
  "title": "VipForm",
  "type": "object"
 },
 "WitnessForm": {
  "additionalProperties": false,
  "properties": {
   "arg": {
    "default": "",
    "description": "ping: addresses (space separated); arbitrator: HOST[:PORT]",
    "maxLength": 255,
    "title": "Arg",
    "type": "string"
   },
   "kind": {
    "default": "none",
    "enum": [
     "none",
     "ping",
     "arbitrator"
    ],
    "title": "Kind",
    "type": "string"
   }
  },
  "title": "WitnessForm",
  "type": "object"
 }
}
"""
)
