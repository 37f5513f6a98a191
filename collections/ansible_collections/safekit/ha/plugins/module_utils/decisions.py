# Copyright (c) safekit contributors
# Apache License 2.0 (see LICENSE in the repository)
"""The choices the modules make, as pure functions: what a command would change, how a new module
configuration is applied, which engine version a wheelhouse offers, which service manager runs the
daemon and its systemd unit. No I/O here, so that all of it is unit-tested."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MODULE_COMMANDS = (
    "start",
    "stop",
    "restart",
    "stopstart",
    "forcestop",
    "prim",
    "second",
    "swap",
    "primforce",
)
STATES = ("STOP", "WAIT", "ALONE", "PRIM", "SECOND")
"""A mirror module's states."""
FARM_STATES = ("UP",)
"""The farm module's own state (its others are STOP and WAIT)."""
ALL_STATES = STATES + FARM_STATES
READY_STATES = ("ALONE", "PRIM", "SECOND", "UP")
"""States with a Ready sub-state; STOP and WAIT are never Ready."""
# A command whose goal already holds in these states changes nothing; the others always act.
GOAL_HOLDS = {
    "prim": ("PRIM", "ALONE"),
    "second": ("SECOND",),
    "stop": ("STOP",),
    "start": ("WAIT", "ALONE", "PRIM", "SECOND", "UP"),
}

SYSTEMD_UNIT = """\
# safekitd under systemd (real hosts). Hosts without systemd (containers, lab hosts) run
# `safekitd --daemon --pidfile /run/safekitd.pid` instead; SIGTERM stops both gracefully.
# Why each line is here, and why the usual sandboxing lines are not: docs/systemd.md.
[Unit]
Description=safekit high-availability daemon
Documentation=file:///opt/safekit/docs/systemd.md
After=network-online.target
Wants=network-online.target

[Service]
# READY=1 once the modules are loaded and the API listens; WATCHDOG=1 from the event loop.
Type=notify
NotifyAccess=main
ExecStart={venv}/bin/safekitd
# systemctl reload: cluster.xml taken live where no running module depends on the change
# (ADR 0043; what cannot be applied is refused and logged, as `safekit cluster reload` says).
ExecReload=/bin/kill -HUP $MAINPID
# A hung event loop (no WATCHDOG=1 for this long) is aborted and restarted.
WatchdogSec=30s
# Stop and restart signal safekitd only: it stops every module through its stop scripts (the
# application, the replication process, the virtual IP). systemd must not kill them first; after
# the stop, what a stop script left running is left alone rather than killed.
KillMode=process
KillSignal=SIGTERM
# A module's stop may take nicestoptimeout + forcestoptimeout (300 s + 300 s by default).
TimeoutStopSec=15min
TimeoutStartSec=15min
Restart=on-failure
RestartSec=2s
# 77: not root, 78: configuration error - a restart cannot help; `systemctl status` says why.
RestartPreventExitStatus=77 78
# The applications started by the scripts share this control group: no task limit for them.
TasksMax=infinity
# The daemon must keep its heartbeats on time on a loaded host.
Nice=-5
LimitNOFILE=65536
RuntimeDirectory=safekit
RuntimeDirectoryMode=0700
RuntimeDirectoryPreserve=restart
# Sandboxing without a mount namespace only (the replication's FUSE mounts must be seen by the
# whole host): personality(2) locked to the native one.
LockPersonality=yes

[Install]
WantedBy=multi-user.target
"""
"""packaging/systemd/safekitd.service of the engine, with the virtualenv as a parameter (a unit test
keeps the two identical)."""


def command_changes(command: str, state: str | None) -> bool:
    """Would `safekit COMMAND` change anything for a module in `state` (None: not loaded)?"""
    return state not in GOAL_HOLDS.get(command, ())


def reached(module: dict[str, Any] | None, wanted: Iterable[str], ready: bool) -> bool:
    """Is the module (an entry of `safekit state --json`) in one of the `wanted` states (and Ready,
    for the states that have a Ready sub-state)?"""
    if not module:
        return False
    state = module.get("state")
    return state in list(wanted) and (
        not ready or state not in READY_STATES or module.get("readiness") == "Ready"
    )


def config_action(changed: bool, daemon_running: bool, state: str | None) -> str:
    """How to apply a module configuration that was (or was not) just written.

    - "none": nothing to do (unchanged, or no daemon: it reads the file when it starts);
    - "apply": `safekit config -m NAME` (the module is stopped, or the daemon does not know it yet);
    - "restart_required": the module runs; it takes the configuration when it is stopped, which the
      caller decides (never behind the application's back).
    """
    if not daemon_running:
        return "none"
    if state is None:
        return "apply"
    if not changed:
        return "none"
    return "apply" if state == "STOP" else "restart_required"


_VERSION = re.compile(r"^(\d+(?:\.\d+)*)(?:(a|b|rc)(\d+))?(?:\.post(\d+))?(?:\.dev(\d+))?$")
_PRE_RANK = {"a": 0, "b": 1, "rc": 2}


def version_key(version: str) -> tuple[Any, ...]:
    """Order of PEP 440 versions as wheels are named (N.N[aN|bN|rcN][.postN][.devN]); others sort first."""
    match = _VERSION.match(version)
    if not match:
        return ((-1,),)
    release = tuple(int(part) for part in match.group(1).split("."))
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]
    pre, pre_number, post, dev = match.group(2), match.group(3), match.group(4), match.group(5)
    # A dev release comes before its pre-releases; a final release after them.
    if pre:
        pre_key: tuple[int, int] = (_PRE_RANK[pre], int(pre_number))
    elif dev is not None and post is None:
        pre_key = (-1, 0)
    else:
        pre_key = (3, 0)
    post_key = int(post) if post is not None else -1
    dev_key = int(dev) if dev is not None else 1 << 62
    return ((0,), release, pre_key, post_key, dev_key)


def wheel_versions(filenames: Iterable[str], project: str = "safekit") -> list[str]:
    """The versions of `project` among wheel file names, newest first."""
    wanted = re.sub(r"[-_.]+", "_", project).lower()
    versions = set()
    for name in filenames:
        parts = name[: -len(".whl")].split("-") if name.endswith(".whl") else []
        if len(parts) in (5, 6) and parts[0].lower() == wanted:
            versions.add(parts[1])
    return sorted(versions, key=version_key, reverse=True)


def service_kind(requested: str, systemd_booted: bool) -> str:
    """`service: auto` is systemd when PID 1 is systemd (/run/systemd/system exists), else supervised."""
    if requested != "auto":
        return requested
    return "systemd" if systemd_booted else "supervised"


def systemd_unit(venv: str) -> str:
    return SYSTEMD_UNIT.format(venv=venv.rstrip("/"))


def dpkg_owners(search_output: str) -> list[str]:
    """The packages that `dpkg-query -S PATH...` names as owning the paths (sorted, no architecture).

    Its lines are `pkg[:arch][, pkg2...]: /path`; `diversion by PKG from|to: /path` lines say who
    diverted a file, not who owns it, and its errors go to stderr."""
    owners: set[str] = set()
    for line in search_output.splitlines():
        names, sep, _path = line.partition(": ")
        if not sep or names.startswith("diversion by "):
            continue
        owners.update(name.strip().split(":")[0] for name in names.split(",") if name.strip())
    return sorted(owners)


def packaged_engine_refusal(venv: str, owners: Iterable[str], action: str) -> str | None:
    """One line refusing `action` on a virtualenv that a Debian package owns (None when none does).

    dpkg keeps the list of the package's files: deleting or overwriting them behind its back leaves a
    package that dpkg believes installed, whose removal and upgrades then fail or undo the change."""
    packages = sorted(set(owners))
    if not packages:
        return None
    named = ", ".join(packages)
    return (
        f"{venv} belongs to the Debian package {named}: safekit.ha.engine will not {action} it; "
        f"use playbooks/remove.yml (or apt-get remove {named}) to remove it, "
        "playbooks/upgrade.yml with a newer package to upgrade it"
    )
