"""SafeKit attributes that are accepted for compatibility but have no effect here.

Each one produces a warning (returned to the caller, never printed) so that a user migrating from
SafeKit learns that the setting does nothing. docs/config.md lists the same table; a unit test keeps
the two in step.
"""

from __future__ import annotations

from typing import Final

# key: element as named in messages ("lan" of cluster.xml is "lans/lan"); value: attribute -> why.
IGNORED_ATTRIBUTES: Final[dict[str, dict[str, str]]] = {
    "lans/lan": {
        "framework": "not used: a module picks its LANs (<heartbeat name>, <farm><lan>)",
        "console": "not used: where the API listens is a daemon setting, not a LAN attribute",
    },
    "interface": {
        "arpreroute": "not used: the VIP provider announces the address itself whenever it moves",
    },
    "rfs": {
        "acl": "not used: what metadata is replicated is fixed by the replication engine",
        "nbremconn": "not used: the replication engine chooses its connections",
        "mountover": (
            "not used: the replication engine always serves the directory through its own mount over it"
        ),
    },
    "user": {
        "userlogsize": "not used: user log rotation is a daemon setting",
    },
}
