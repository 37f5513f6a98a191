"""The modules run as Ansible runs them on a node, against this checkout's engine, in a temporary
tree (the engine's SAFE/SAFEKIT_CONF/... variables move every path): validation by the engine
before any write, idempotence, check mode, diffs, and the cluster key never shown."""

from __future__ import annotations

import base64
import json
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest
from safekit_collection import ENGINE_BIN, run_module

# isort: split
from ansible_collections.safekit.ha.plugins.module_utils.userconfig import canonical_params

KEY = "safekit-cluster-key-v1:" + base64.b64encode(bytes(range(32))).decode()
LANS = [
    {
        "name": "default",
        "nodes": [{"name": "n1", "addr": "198.18.0.11"}, {"name": "n2", "addr": "198.18.0.12"}],
    },
]
WEB = {
    "heartbeats": [{"name": "default", "pulse": "50ms", "timeout": "200ms"}],
    "vip": [{"addr": "198.18.0.100", "netmask": "24"}],
    "errd": {
        "polltimer": "5s",
        "procs": [
            {"name": "python3", "argregex": r"http\.server 8080", "action": "restart", "class": "prim"}
        ],
    },
    "splitbrain": {"witnesses": ["198.18.0.1"]},
}


@pytest.fixture
def node(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    env = {
        "SAFE": str(tmp_path / "opt"),
        "SAFEKIT_CONF": str(tmp_path / "etc"),
        "SAFEVAR": str(tmp_path / "var"),
        "SAFEKIT_LOG": str(tmp_path / "log"),
        "SAFEKIT_RUN": str(tmp_path / "run"),
    }
    return tmp_path, env


def run(name: str, args: dict[str, Any], node: tuple[Path, dict[str, str]], **flags: bool) -> dict[str, Any]:
    tmp, env = node
    engine = {} if name == "engine" else {"engine_bin": str(ENGINE_BIN)}
    return run_module(name, {**engine, **args}, tmp, env, **flags)


def test_cluster_is_validated_written_once_and_never_shows_the_key(node: tuple[Path, dict[str, str]]) -> None:
    etc = node[0] / "etc"
    first = run("cluster", {"lans": LANS, "key": KEY}, node, diff=True)
    assert first["changed"] and first["key_changed"] and not first["restart_required"], first
    assert stat.S_IMODE((etc / "cluster.key").stat().st_mode) == 0o600
    assert (etc / "cluster.key").read_text() == KEY + "\n"
    assert "safekit-cluster-key-v1:" not in json.dumps(first)
    assert [d["after_header"] for d in first["diff"]] == [str(etc / "cluster.xml"), str(etc / "cluster.key")]
    again = run("cluster", {"lans": LANS, "key": KEY}, node)
    assert not again["changed"], again


def test_cluster_check_mode_and_refusals_change_nothing(node: tuple[Path, dict[str, str]]) -> None:
    etc = node[0] / "etc"
    checked = run("cluster", {"lans": LANS, "key": KEY, "port": 4800}, node, check=True)
    assert checked["changed"] and not etc.exists()
    duplicate = [
        {
            "name": "default",
            "nodes": [{"name": "n1", "addr": "198.18.0.11"}, {"name": "n2", "addr": "198.18.0.11"}],
        }
    ]
    refused = run("cluster", {"lans": duplicate}, node)
    assert refused["failed"] and "cluster.xml:" in refused["msg"] and "198.18.0.11" in refused["msg"], refused
    assert not etc.exists()
    bad_key = run("cluster", {"lans": LANS, "key": KEY[:-8] + "AAAA"}, node)
    assert bad_key["failed"] and "genkey" in bad_key["msg"] and KEY[23:40] not in json.dumps(bad_key)


def test_module_is_validated_written_once_with_scripts_and_read_back_by_info(
    node: tuple[Path, dict[str, str]],
) -> None:
    module_dir = node[0] / "opt" / "modules" / "web"
    args = {"name": "web", **WEB, "scripts": {"start_prim": "#!/bin/sh\necho start\n"}}
    first = run("app_module", args, node, diff=True)
    assert first["changed"] and not first["restart_required"] and not first["applied"], first
    assert (module_dir / "conf" / "userconfig.xml").read_text() == first["userconfig"]
    assert "<user/>" in first["userconfig"]  # without <user> no script would run
    assert stat.S_IMODE((module_dir / "bin" / "start_prim").stat().st_mode) == 0o755
    assert len(first["diff"]) == 2
    assert not run("app_module", args, node)["changed"]
    info = run("node_info", {}, node)
    assert info["daemon_running"] is False and info["version"]
    (web,) = info["modules"]
    assert web["name"] == "web" and web["state"] is None
    assert web["params"] == canonical_params({**WEB, "user": {}}) and web["userconfig"] == first["userconfig"]
    # Fed back to safekit.ha.app_module, node_info's params change nothing: the round trip.
    assert not run("app_module", {"name": "web", **web["params"], "scripts": args["scripts"]}, node)[
        "changed"
    ]


def test_module_refused_by_the_engine_writes_nothing(node: tuple[Path, dict[str, str]]) -> None:
    bad = {"name": "web", "heartbeats": [{"name": "default", "pulse": "2s", "timeout": "1s"}]}
    refused = run("app_module", bad, node)
    assert refused["failed"] and "userconfig.xml:" in refused["msg"] and "pulse" in refused["msg"], refused
    assert not (node[0] / "opt").exists()


def test_module_from_raw_xml_then_removed(node: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    xml = (
        '<!DOCTYPE safe>\n<safe>\n<macro name="VIP" value="198.18.0.100"/>\n<service mode="mirror">\n'
        '<heart><heartbeat name="default"/></heart>\n</service>\n</safe>\n'
    )
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "stop_prim").write_text("#!/bin/sh\n")
    first = run("app_module", {"name": "legacy", "userconfig": xml, "scripts_dir": str(scripts)}, node)
    assert first["changed"] and first["userconfig"] == xml
    assert (node[0] / "opt" / "modules" / "legacy" / "bin" / "stop_prim").is_file()
    (legacy,) = run("node_info", {"name": "legacy"}, node)["modules"]
    assert legacy["params"] is None and "macro" in legacy["params_note"]
    assert run("app_module", {"name": "legacy", "state": "absent"}, node, check=True)["changed"]
    assert (node[0] / "opt" / "modules" / "legacy").exists()
    assert run("app_module", {"name": "legacy", "state": "absent"}, node)["changed"]
    assert not (node[0] / "opt" / "modules" / "legacy").exists()
    assert not run("app_module", {"name": "legacy", "state": "absent"}, node)["changed"]


def test_command_reports_the_engines_error_when_safekitd_is_not_running(
    node: tuple[Path, dict[str, str]],
) -> None:
    answer = run("app_module_command", {"name": "web", "command": "prim"}, node)
    assert answer["failed"] and "safekitd is not running" in answer["msg"], answer
    bad_state = run("app_module_command", {"name": "web", "command": "prim", "wait_for": "PRIME"}, node)
    assert bad_state["failed"] and "unknown state PRIME" in bad_state["msg"]


def fake_wheel(directory: Path, version: str) -> None:
    """A safekit wheel with no dependencies: enough for pip to install and report its version."""
    name = f"safekit-{version}"
    with zipfile.ZipFile(directory / (f"{name}-py3-none-any.whl"), "w") as wheel:
        wheel.writestr("safekit/__init__.py", f"__version__ = {version!r}\n")
        wheel.writestr(
            f"{name}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: safekit\nVersion: {version}\n"
        )
        wheel.writestr(
            f"{name}.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        wheel.writestr(f"{name}.dist-info/RECORD", "")


def test_install_from_a_wheelhouse_is_idempotent_upgrades_and_removes(
    node: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    fake_wheel(wheelhouse, "9.1.0")
    venv = tmp_path / "venv"
    args = {"wheelhouse": str(wheelhouse), "venv": str(venv), "service": "none"}
    assert run("engine", args, node, check=True)["version_after"] == "9.1.0"
    assert not venv.exists()
    first = run("engine", args, node)
    assert first["changed"] and (first["version_before"], first["version_after"]) == (None, "9.1.0"), first
    assert not run("engine", args, node)["changed"]
    fake_wheel(wheelhouse, "9.2.0")
    assert not run("engine", args, node)["changed"]  # present: some version is there
    pinned = run("engine", {**args, "version": "9.3"}, node)
    assert pinned["failed"] and "9.2.0, 9.1.0" in pinned["msg"]
    predicted = run("engine", {**args, "state": "latest"}, node, check=True)
    assert predicted["changed"] and predicted["version_after"] == "9.2.0"
    upgraded = run("engine", {**args, "state": "latest"}, node)
    assert (upgraded["version_before"], upgraded["version_after"]) == ("9.1.0", "9.2.0") and upgraded[
        "changed"
    ]
    assert not run("engine", {**args, "version": "9.2.0"}, node)["changed"]
    removed = run("engine", {"venv": str(venv), "service": "none", "state": "absent"}, node)
    assert removed["changed"] and not venv.exists()


def test_install_names_the_debian_package_when_venv_is_missing(
    node: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    fake_wheel(tmp_path, "9.1.0")
    answer = run(
        "engine", {"wheelhouse": str(tmp_path), "venv": str(tmp_path / "v"), "python": "/bin/false"}, node
    )
    assert answer["failed"] and "python3-venv" in answer["msg"], answer


def test_install_without_a_source_uses_the_engine_already_there(
    node: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """safekit_install_source: deb - the Debian package installed the engine; the module only
    sets up the service, and says in one line what is missing when the package is not there."""
    venv = tmp_path / "venv"
    missing = run("engine", {"venv": str(venv), "service": "none"}, node)
    assert missing["failed"] and "install the Debian package first" in missing["msg"], missing
    fake_wheel(tmp_path, "9.1.0")
    assert run("engine", {"wheelhouse": str(tmp_path), "venv": str(venv), "service": "none"}, node)["changed"]
    there = run("engine", {"venv": str(venv), "service": "none"}, node)
    assert not there["changed"] and there["version_after"] == "9.1.0", there
    other = run("engine", {"venv": str(venv), "service": "none", "version": "9.2.0"}, node)
    assert other["failed"] and "9.1.0 is installed, not 9.2.0" in other["msg"], other
    latest = run("engine", {"venv": str(venv), "service": "none", "state": "latest"}, node)
    assert latest["failed"], latest


def test_supervised_daemon_is_started_only_when_asked(
    node: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    pidfile = tmp_path / "safekitd.pid"
    fake_wheel(tmp_path, "9.1.0")
    args = {
        "wheelhouse": str(tmp_path),
        "venv": str(tmp_path / "v"),
        "service": "supervised",
        "pidfile": str(pidfile),
    }
    first = run("engine", args, node)
    assert first["service"] == "supervised" and first["changed"] and not pidfile.exists()
    pidfile.write_text(f"{os.getpid()}\n")  # a live process: the daemon counts as running
    started = run("engine", {**args, "started": True}, node)
    assert not started["changed"], started
