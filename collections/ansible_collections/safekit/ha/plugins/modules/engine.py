#!/usr/bin/python
# Copyright (c) safekit contributors
# Apache License 2.0 (see LICENSE in the repository)
"""safekit.ha.engine: the engine in a virtualenv on a node, and the service that runs safekitd."""

from __future__ import annotations

DOCUMENTATION = r"""
module: engine
short_description: Install, upgrade or remove the safekit engine and its service on a node
version_added: 0.1.0
description:
  - Installs the engine (the C(safekit) Python package) into a virtualenv (O(venv)), made with the
    node's C(python3 -m venv), from a wheelhouse directory on the node (O(wheelhouse), no index, so it works
    air-gapped) or from a package index (O(index_url)).
  - Without O(wheelhouse) and O(index_url), the engine must already be installed - by the Debian
    package of C(make deb), whose virtualenv is C(/opt/safekit/venv) - and only the service is set
    up, with the package's unit as it is (nothing is written to O(unit_path)).
  - Sets up the service that runs C(safekitd) - a systemd unit where systemd runs, else a supervised
    process (C(safekitd --daemon --pidfile)) - and starts it only with O(started).
  - Nothing is reinstalled when the wanted version is already there.
author: safekit contributors (@safekit)
attributes:
  check_mode:
    description: Reports the versions before and after and what would change; changes nothing.
    support: full
  diff_mode:
    description: Shows the systemd unit's change.
    support: partial
    details: The package itself is reported as RV(version_before) and RV(version_after), not as a diff.
  idempotent:
    description: >-
      The same version installed, the unit in place and enabled (and the daemon running with
      O(started)) change nothing.
    support: full
requirements:
  - python3 and its venv module on the node (Debian/Ubuntu package C(python3-venv)).
options:
  state:
    description:
      - V(present) installs O(version) (or, without it, the newest version of the wheelhouse) unless a
        version (that version) is installed.
      - V(latest) installs the newest version of the wheelhouse (or of the index); it needs one of them.
      - V(absent) stops the daemon, removes the service and the virtualenv. Configuration
        (C(/etc/safekit), C(/opt/safekit/modules)) and state (C(/var/safekit)) are kept.
      - V(absent) fails, changing nothing, when the virtualenv belongs to a Debian package
        (C(dpkg-query -S)) - that engine is removed with the package, by C(playbooks/remove.yml) or
        C(apt-get remove safekit). A wheelhouse or index install over it fails the same way.
    type: str
    choices: [present, latest, absent]
    default: present
  version:
    description: The engine version to install (e.g. V(0.1.0)).
    type: str
  wheelhouse:
    description:
      - A directory on the node holding the C(safekit) wheel and the wheels of its dependencies
        (C(pip wheel) on the controller, copied over). Installed with C(pip install --no-index --find-links).
    type: path
  index_url:
    description: A package index to install from instead of O(wheelhouse).
    type: str
  extras:
    description:
      - Optional features of the package (V(aws), V(azure), V(gcp) - the cloud VIP providers' SDKs).
      - When a package an extra needs is missing from the virtualenv, it is installed (from the same
        O(wheelhouse) or O(index_url)) even though the engine's version is already there.
    type: list
    elements: str
    default: []
  venv:
    description: The virtualenv of the engine; C(safekit) and C(safekitd) are in its C(bin/).
    type: path
    default: /opt/safekit/venv
  python:
    description: The node's Python that creates the virtualenv.
    type: str
    default: python3
  service:
    description:
      - How C(safekitd) runs. V(auto) is V(systemd) when PID 1 is systemd (C(/run/systemd/system)
        exists), else V(supervised).
      - V(systemd) installs C(safekitd.service) (its C(ExecStart) in O(venv)) and enables it.
      - V(supervised) runs C(VENV/bin/safekitd --daemon --pidfile PIDFILE) (with O(started)).
      - V(none) sets up nothing.
    type: str
    choices: [auto, systemd, supervised, none]
    default: auto
  started:
    description:
      - Start C(safekitd) when it does not run. Off by default - start it once cluster.xml, the key and
        the modules are in place.
    type: bool
    default: false
  pidfile:
    description: Pid file of the supervised daemon.
    type: path
    default: /run/safekitd.pid
  unit_path:
    description: Where the systemd unit is written.
    type: path
    default: /etc/systemd/system/safekitd.service
notes:
  - An upgrade does not restart a running daemon; RV(restart_required) says it runs the old version.
    Restart the nodes one after the other, the secondary first.
seealso:
  - module: safekit.ha.cluster
"""

EXAMPLES = r"""
- name: Copy the wheelhouse built on the controller (pip wheel --wheel-dir wheelhouse safekit)
  ansible.builtin.copy:
    src: wheelhouse/
    dest: /var/cache/safekit/wheelhouse/
    mode: "0644"

- name: Install the engine (enabled, not started)
  safekit.ha.engine:
    wheelhouse: /var/cache/safekit/wheelhouse
    version: 0.1.0
  register: engine

- name: Upgrade to the newest wheel of the wheelhouse
  safekit.ha.engine:
    wheelhouse: /var/cache/safekit/wheelhouse
    state: latest

- name: Start the daemon once everything is configured
  safekit.ha.engine:
    wheelhouse: /var/cache/safekit/wheelhouse
    started: true

- name: Remove the engine
  safekit.ha.engine:
    state: absent
"""

RETURN = r"""
changed:
  description: The engine, the service or the daemon was (or would be) changed.
  returned: always
  type: bool
version_before:
  description: The engine version installed before; null when there was none.
  returned: always
  type: str
version_after:
  description: The engine version installed after (in check mode, the one that would be).
  returned: always
  type: str
service:
  description: The service kind used (systemd, supervised or none).
  returned: always
  type: str
restart_required:
  description: The version changed while safekitd runs the old one.
  returned: always
  type: bool
"""

import json
import os
import signal
import time

from ansible_collections.safekit.ha.plugins.module_utils.decisions import (
    dpkg_owners,
    packaged_engine_refusal,
    service_kind,
    systemd_unit,
    version_key,
    wheel_versions,
)
from ansible_collections.safekit.ha.plugins.module_utils.safekit import SafekitModule, one_line

# Where the Debian package (make deb) puts the unit: Debian 12, Debian 13.
PACKAGED_UNITS = ("/lib/systemd/system/safekitd.service", "/usr/lib/systemd/system/safekitd.service")
ARGUMENT_SPEC = {
    "state": {"type": "str", "choices": ["present", "latest", "absent"], "default": "present"},
    "version": {"type": "str"},
    "wheelhouse": {"type": "path"},
    "index_url": {"type": "str"},
    "extras": {"type": "list", "elements": "str", "default": []},
    "venv": {"type": "path", "default": "/opt/safekit/venv"},
    "python": {"type": "str", "default": "python3"},
    "service": {"type": "str", "choices": ["auto", "systemd", "supervised", "none"], "default": "auto"},
    "started": {"type": "bool", "default": False},
    "pidfile": {"type": "path", "default": "/run/safekitd.pid"},
    "unit_path": {"type": "path", "default": "/etc/systemd/system/safekitd.service"},
}
STOP_SECONDS = 300
VERSION_PROBE = "import importlib.metadata as m; print(m.version('safekit'))"
# The distributions that the given extras of the installed engine need and that are not installed.
EXTRAS_PROBE = r"""
import json, re, sys
from importlib import metadata
missing = []
for requirement in metadata.requires("safekit") or []:
    name, _, marker = requirement.partition(";")
    extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
    if extra and extra.group(1) in sys.argv[1:]:
        project = re.match(r"[A-Za-z0-9_.-]+", name.strip()).group(0)
        try:
            metadata.distribution(project)
        except metadata.PackageNotFoundError:
            missing.append(project)
print(json.dumps(sorted(set(missing))))
"""


class Engine:
    """The engine's virtualenv and daemon on this node."""

    def __init__(self, task: SafekitModule) -> None:
        self.task, self.p = task, task.params
        self.python = os.path.join(self.p["venv"], "bin", "python")
        self.kind = service_kind(self.p["service"], os.path.isdir("/run/systemd/system"))

    def run(self, args: list[str], what: str) -> str:
        rc, out, err = self.task.module.run_command(args, environ_update={"LC_ALL": "C", "PIP_NO_INPUT": "1"})
        if rc != 0:
            errors = [line for line in err.splitlines() if line.startswith("ERROR")]
            self.task.fail(f"{what} failed: {errors[-1] if errors else one_line(err, f'exit code {rc}')}")
        return str(out)

    def version(self) -> str | None:
        if not os.access(self.python, os.X_OK):
            return None
        rc, out, _err = self.task.module.run_command([self.python, "-c", VERSION_PROBE])
        return out.strip() if rc == 0 and out.strip() else None

    def missing_extras(self) -> list[str]:
        """Packages the wanted extras need that the virtualenv lacks (none without extras or engine)."""
        if not self.p["extras"] or not os.access(self.python, os.X_OK):
            return []
        out = self.run([self.python, "-c", EXTRAS_PROBE, *self.p["extras"]], "reading the installed extras")
        try:
            return list(json.loads(out))
        except ValueError:
            return []

    def package_owners(self) -> list[str]:
        """The Debian packages that own the virtualenv (dpkg-query -S), none without dpkg or venv."""
        venv = self.p["venv"].rstrip("/") or "/"
        dpkg_query = self.task.module.get_bin_path("dpkg-query")
        if not dpkg_query or not os.path.lexists(venv):
            return []
        # rc 1 when a path is no package's: the owners of the others are still on stdout
        _rc, out, _err = self.task.module.run_command(
            [dpkg_query, "--search", venv, os.path.join(venv, "bin", "safekitd")],
            environ_update={"LC_ALL": "C"},
        )
        return dpkg_owners(str(out))

    def refuse_if_packaged(self, action: str) -> None:
        refusal = packaged_engine_refusal(self.p["venv"], self.package_owners(), action)
        if refusal:
            self.task.fail(refusal)

    def spec(self, version: str | None) -> str:
        extras = "[{}]".format(",".join(self.p["extras"])) if self.p["extras"] else ""
        return "safekit{}{}".format(extras, f"=={version}" if version else "")

    @property
    def packaged(self) -> bool:
        """No source given: the engine comes from elsewhere (the Debian package)."""
        return not self.p["wheelhouse"] and not self.p["index_url"]

    def target(self, before: str | None) -> str | None:
        """The version to install, or None when the wanted one is there (or the index decides)."""
        wanted, state = self.p["version"], self.p["state"]
        if self.packaged:
            if before is None:
                self.task.fail(
                    "the engine is not in {}: install the Debian package first (make deb; "
                    "safekit_install_source: deb) or give wheelhouse or index_url".format(self.p["venv"])
                )
            if wanted and version_key(wanted) != version_key(before or ""):
                self.task.fail(f"safekit {before} is installed, not {wanted}: install that Debian package")
            return None
        if self.p["wheelhouse"]:
            if not os.path.isdir(self.p["wheelhouse"]) and self.task.check_mode:
                # A play in check mode has not copied it yet: what it offers is unknown.
                self.task.module.warn("wheelhouse {} is not on this node yet".format(self.p["wheelhouse"]))
                return None if state == "present" and before is not None else "?"
            if not os.path.isdir(self.p["wheelhouse"]):
                self.task.fail("wheelhouse {} is not a directory on this node".format(self.p["wheelhouse"]))
            offered = wheel_versions(os.listdir(self.p["wheelhouse"]))
            if not offered:
                self.task.fail(
                    "no safekit wheel in {} (safekit-VERSION-py3-none-any.whl)".format(self.p["wheelhouse"])
                )
            if wanted and not any(version_key(v) == version_key(wanted) for v in offered):
                self.task.fail(
                    "safekit {} is not in {} (it has {})".format(
                        wanted, self.p["wheelhouse"], ", ".join(offered)
                    )
                )
            newest = wanted or offered[0]
        else:
            newest = wanted or self.index_newest(before)
        if before is not None and newest is not None and version_key(before) == version_key(newest):
            return None
        if state == "present" and before is not None and not wanted:
            return None
        return newest or "?"

    def index_newest(self, before: str | None) -> str | None:
        """With an index and no version: what `pip install` would pick (a dry run), None if unknown."""
        if self.p["state"] == "present" and before is not None:
            return before
        if before is None:
            return None
        out = self.run(
            [
                self.python,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--quiet",
                "--report",
                "-",
                "--upgrade",
                "--index-url",
                self.p["index_url"],
                self.spec(None),
            ],
            "pip install --dry-run",
        )
        try:
            items = json.loads(out).get("install", [])
        except ValueError:
            return None
        found = [
            i["metadata"]["version"]
            for i in items
            if i.get("metadata", {}).get("name", "").lower() == "safekit"
        ]
        return found[0] if found else before

    def install(self, version: str | None) -> None:
        if not os.access(self.python, os.X_OK):
            rc, _out, err = self.task.module.run_command([self.p["python"], "-c", "import ensurepip, venv"])
            if rc != 0:
                self.task.fail(
                    "{} cannot create a virtualenv ({}): install the Debian package python3-venv "
                    "(apt-get install python3-venv)".format(self.p["python"], one_line(err, "not found"))
                )
            if self.task.check_mode:
                return
            self.run(
                [self.p["python"], "-m", "venv", self.p["venv"]], "python3 -m venv {}".format(self.p["venv"])
            )
        if self.task.check_mode:
            return
        source = (
            ["--no-index", "--find-links", self.p["wheelhouse"]]
            if self.p["wheelhouse"]
            else ["--index-url", self.p["index_url"]]
        )
        upgrade = ["--upgrade"] if self.p["state"] == "latest" else []
        self.run(
            [
                self.python,
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                *source,
                *upgrade,
                self.spec(None if version == "?" else version),
            ],
            f"pip install {self.spec(version)}",
        )

    def running(self) -> bool:
        if self.kind == "systemd":
            return self.systemctl_ok("is-active")
        return self.pid() is not None

    def pid(self) -> int | None:
        try:
            with open(self.p["pidfile"]) as f:
                pid = int(f.read().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def systemctl_ok(self, *args: str) -> bool:
        systemctl = self.task.module.get_bin_path("systemctl", required=True)
        return bool(self.task.module.run_command([systemctl, *args, "safekitd"])[0] == 0)

    def systemctl(self, *args: str) -> None:
        systemctl = self.task.module.get_bin_path("systemctl", required=True)
        if not self.task.check_mode:
            self.run([systemctl, *args], "systemctl {}".format(" ".join(args)))

    def service(self) -> bool:
        """Unit in place and enabled, or the supervised daemon started (with `started`)."""
        changed = False
        if self.kind == "systemd":
            shipped = self.packaged and any(os.path.exists(unit) for unit in PACKAGED_UNITS)
            if not shipped and self.task.ensure_file(
                self.p["unit_path"], systemd_unit(self.p["venv"]), 0o644
            ):
                self.systemctl("daemon-reload")
                changed = True
            if not self.systemctl_ok("is-enabled"):
                self.systemctl("enable", "safekitd")
                changed = True
            if self.p["started"] and not self.running():
                self.systemctl("start", "safekitd")
                changed = True
        elif self.kind == "supervised" and self.p["started"] and self.pid() is None:
            safekitd = os.path.join(self.p["venv"], "bin", "safekitd")
            if not self.task.check_mode:
                self.run([safekitd, "--daemon", "--pidfile", self.p["pidfile"]], "safekitd --daemon")
            changed = True
        return changed

    def remove(self) -> bool:
        changed = False
        if self.kind == "systemd" and os.path.exists(self.p["unit_path"]):
            self.systemctl("disable", "--now", "safekitd")
            self.task.remove_tree(self.p["unit_path"])
            changed = True
            self.systemctl("daemon-reload")
        pid = self.pid()
        if pid is not None:
            changed = True
            if not self.task.check_mode:
                os.kill(pid, signal.SIGTERM)  # the daemon stops every module first
                deadline = time.monotonic() + STOP_SECONDS
                while self.pid() is not None:
                    if time.monotonic() > deadline:
                        self.task.fail(f"safekitd (pid {pid}) did not stop within {STOP_SECONDS} s")
                    time.sleep(0.2)
        return self.task.remove_tree(self.p["venv"]) or changed


def main() -> None:
    task = SafekitModule(
        ARGUMENT_SPEC,
        engine=False,
        supports_check_mode=True,
        mutually_exclusive=[["wheelhouse", "index_url"]],
        required_if=[["state", "latest", ["wheelhouse", "index_url"], True]],
    )
    engine = Engine(task)
    before = engine.version()
    if task.params["state"] == "absent":
        engine.refuse_if_packaged("remove")  # before the daemon is stopped: nothing changes
        changed = engine.remove()
        task.exit(
            changed=changed,
            version_before=before,
            version_after=None,
            service=engine.kind,
            restart_required=False,
        )
        return
    target = engine.target(before)
    extras_added = target is None and before is not None and bool(engine.missing_extras())
    if extras_added:
        target = before  # the same version, with what its extras need
    if target is not None:
        if not engine.packaged:
            engine.refuse_if_packaged("overwrite")  # pip over the package's files
        engine.install(target)
    if task.check_mode:
        after = before if target in (None, "?") else target
        upgraded = target is not None and not extras_added
    else:
        after = engine.version()
        upgraded = after != before
    service_changed = engine.service()
    task.exit(
        changed=upgraded or extras_added or service_changed,
        version_before=before,
        version_after=after,
        service=engine.kind,
        restart_required=upgraded and before is not None and engine.running(),
    )


if __name__ == "__main__":
    main()
