"""The systemd unit safekitd ships (packaging/systemd/safekitd.service, the one the roles install):
what a user relies on when systemd stops, restarts or watches safekitd."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
UNIT = REPO / "packaging" / "systemd" / "safekitd.service"
MODULE_UTILS = REPO / "collections" / "ansible_collections" / "safekit" / "ha" / "plugins" / "module_utils"

# Directives that give the service its own mount namespace: the FUSE mounts of the replication
# process would then be invisible to the rest of the host (and to applications started with
# `systemctl start` from a script), and an application started by a script would get a private
# /tmp or a read-only /usr. None of them may appear.
MOUNT_NAMESPACE_DIRECTIVES = (
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "PrivateMounts",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectProc",
    "ProcSubset",
    "ReadOnlyPaths",
    "InaccessiblePaths",
    "TemporaryFileSystem",
    "BindPaths",
    "BindReadOnlyPaths",
    "MountFlags",
    "RootDirectory",
)
# Directives whose restriction the applications started by the scripts would inherit and that
# break common ones: namespaces (the lab, containers), new privileges (SELinux transitions, su),
# devices (/dev/fuse), address families, W^X (JITs), realtime, the hostname namespace.
INHERITED_BREAKERS = (
    "RestrictNamespaces",
    "NoNewPrivileges",
    "DevicePolicy",
    "DeviceAllow",
    "RestrictAddressFamilies",
    "MemoryDenyWriteExecute",
    "RestrictRealtime",
    "ProtectHostname",
    "ProtectClock",
    "PrivateNetwork",
    "PrivateUsers",
    "CapabilityBoundingSet",
    "SystemCallFilter",
    "User",
    "DynamicUser",
    "UMask",
)


def parse(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit or "s"]
    return total


@pytest.fixture(scope="module")
def unit() -> configparser.ConfigParser:
    return parse(UNIT.read_text())


def test_notify_with_watchdog(unit: configparser.ConfigParser) -> None:
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"  # a script's READY=1 is not safekitd's
    assert 10 <= seconds(service["WatchdogSec"]) <= 120


def test_stop_and_restart_signal_only_safekitd_with_time_for_the_stop_scripts(
    unit: configparser.ConfigParser,
) -> None:
    service = unit["Service"]
    assert service["KillMode"] == "process"
    assert service["KillSignal"] == "SIGTERM"
    # nicestoptimeout + forcestoptimeout, 300 s each by default (docs/config.md), and a margin.
    assert seconds(service["TimeoutStopSec"]) >= 600 + 60
    # Before READY=1 a crashed daemon's application is stopped, forced (forcestoptimeout).
    assert seconds(service["TimeoutStartSec"]) >= 300 + 60


def test_restarted_on_failure_but_not_on_a_configuration_error(unit: configparser.ConfigParser) -> None:
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    assert 0 < seconds(service["RestartSec"]) <= 10
    assert set(service["RestartPreventExitStatus"].split()) == {"77", "78"}
    assert service["TasksMax"] == "infinity"
    assert service.get("RuntimeDirectoryPreserve") == "restart"


def test_hardening_leaves_fuse_namespaces_nftables_and_scripts_alone(unit: configparser.ConfigParser) -> None:
    service = unit["Service"]
    assert not [d for d in MOUNT_NAMESPACE_DIRECTIVES if d in service]
    assert not [d for d in INHERITED_BREAKERS if d in service]
    assert service["LockPersonality"] == "yes"


def test_the_unit_runs_after_the_network_and_is_enabled_at_boot(unit: configparser.ConfigParser) -> None:
    assert "network-online.target" in unit["Unit"]["After"]
    assert "network-online.target" in unit["Unit"]["Wants"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert unit["Service"]["ExecStart"] == "/opt/safekit/venv/bin/safekitd"


def test_the_roles_install_this_unit() -> None:
    sys.path.insert(0, str(MODULE_UTILS))
    try:
        import decisions  # noqa: PLC0415  (the collection's module_utils, as Ansible loads them)
    finally:
        sys.path.remove(str(MODULE_UTILS))
    assert decisions.systemd_unit("/opt/safekit/venv") == UNIT.read_text()


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (make test-deps)"
)
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    # ExecStart must exist for verify: this interpreter's environment has safekitd.
    venv = Path(sys.prefix)
    if not (venv / "bin" / "safekitd").exists():
        pytest.skip(f"no safekitd in {venv}")
    path = tmp_path / "safekitd.service"
    path.write_text(UNIT.read_text().replace("/opt/safekit/venv", str(venv)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""
    # The check is not blind: an unknown key or a bad kill mode is reported.
    path.write_text(path.read_text().replace("KillMode=process", "KillMode=bogus"))
    bad = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert "kill mode" in bad.stderr
