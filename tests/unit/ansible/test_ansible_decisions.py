"""The collection's decisions as pure functions: command idempotence, applying a module
configuration, choosing the engine version and the service."""

from __future__ import annotations

import pytest
from safekit_collection import REPO

# isort: split
from ansible_collections.safekit.ha.plugins.module_utils.decisions import (
    MODULE_COMMANDS,
    STATES,
    command_changes,
    config_action,
    reached,
    service_kind,
    systemd_unit,
    version_key,
    wheel_versions,
)

from safekit.commands import MODULE_COMMANDS as ENGINE_COMMANDS
from safekit.commands import STATE_EXIT_CODES

NO_CHANGE = {
    ("prim", "PRIM"), ("prim", "ALONE"), ("second", "SECOND"), ("stop", "STOP"),
    ("start", "WAIT"), ("start", "ALONE"), ("start", "PRIM"), ("start", "SECOND"),
}  # fmt: skip


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("command", MODULE_COMMANDS)
def test_a_command_changes_nothing_only_where_its_goal_holds(command: str, state: str) -> None:
    assert command_changes(command, state) is ((command, state) not in NO_CHANGE)


@pytest.mark.parametrize("command", ["restart", "stopstart", "swap", "forcestop", "primforce"])
def test_commands_without_a_goal_state_always_act(command: str) -> None:
    assert all(command_changes(command, state) for state in STATES)


def test_the_collection_knows_the_engines_commands_and_states() -> None:
    assert set(MODULE_COMMANDS) == set(ENGINE_COMMANDS)
    assert set(STATES) == set(STATE_EXIT_CODES) - {"UP"}  # UP is a farm state


def test_waiting_needs_the_state_and_readiness() -> None:
    prim_ready = {"state": "PRIM", "readiness": "Ready"}
    assert reached(prim_ready, ["PRIM", "ALONE"], ready=True)
    assert not reached(dict(prim_ready, readiness="NotReady"), ["PRIM"], ready=True)
    assert reached(dict(prim_ready, readiness="NotReady"), ["PRIM"], ready=False)
    assert not reached(prim_ready, ["SECOND"], ready=False)
    assert not reached(None, ["STOP"], ready=False)
    # STOP and WAIT are never Ready: waiting for them ignores readiness.
    assert reached({"state": "STOP", "readiness": "NotReady"}, ["STOP"], ready=True)


@pytest.mark.parametrize(
    ("changed", "running", "state", "action"),
    [
        (True, False, None, "none"),  # safekitd reads the file when it starts
        (False, False, None, "none"),
        (True, True, None, "apply"),  # the daemon does not know the module yet
        (False, True, None, "apply"),
        (True, True, "STOP", "apply"),
        (False, True, "STOP", "none"),
        (True, True, "PRIM", "restart_required"),  # never behind a running application
        (True, True, "SECOND", "restart_required"),
        (True, True, "WAIT", "restart_required"),
        (True, True, "ALONE", "restart_required"),
        (False, True, "PRIM", "none"),
    ],
)
def test_a_new_configuration_is_applied_only_to_a_stopped_module(
    changed: bool, running: bool, state: str | None, action: str
) -> None:
    assert config_action(changed, running, state) == action


def test_versions_are_ordered_as_pep_440_says() -> None:
    ordered = [
        "0.0.9",
        "0.1.0.dev0",
        "0.1.0a1",
        "0.1.0b2",
        "0.1.0rc1",
        "0.1.0",
        "0.1.0.post1",
        "0.1.1",
        "0.10.0",
        "1.0",
    ]
    assert sorted(reversed(ordered), key=version_key) == ordered
    assert version_key("1.0") == version_key("1.0.0")


def test_the_wheelhouse_offers_its_safekit_wheels_newest_first() -> None:
    files = [
        "safekit-0.1.0-py3-none-any.whl",
        "safekit-0.2.0.dev3-py3-none-any.whl",
        "safekit-0.1.1-1-py3-none-any.whl",  # a build tag
        "PyYAML-6.0.2-cp311-cp311-manylinux_2_17_x86_64.whl",
        "safekit_extras-9.0-py3-none-any.whl",
        "safekit-0.3.0.tar.gz",
    ]
    assert wheel_versions(files) == ["0.2.0.dev3", "0.1.1", "0.1.0"]
    assert wheel_versions([]) == []


def test_auto_service_is_systemd_only_where_systemd_runs() -> None:
    assert service_kind("auto", systemd_booted=True) == "systemd"
    assert service_kind("auto", systemd_booted=False) == "supervised"
    assert service_kind("none", systemd_booted=True) == "none"


def test_the_unit_is_the_engines_unit_with_the_venv() -> None:
    shipped = (REPO / "packaging" / "systemd" / "safekitd.service").read_text()
    assert systemd_unit("/opt/safekit/venv") == shipped
    assert "ExecStart=/srv/ha/venv/bin/safekitd\n" in systemd_unit("/srv/ha/venv/")
