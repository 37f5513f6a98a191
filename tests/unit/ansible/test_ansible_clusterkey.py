"""The cluster key on the controller with Python's standard library only (safekit.ha.cluster_key).

The collection's key helper (plugins/module_utils/clusterkey.py) and the engine
(safekit.membership.clusterkey, safekit.arbiter.keys) must read each other's files and agree on the
arbiter key derivation and the fingerprints: a key made on a controller without the engine must be
accepted by every node's engine. The module runs as Ansible runs it on the controller.
"""

from __future__ import annotations

import ast
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from safekit_collection import COLLECTION, run_module

from safekit.arbiter import keys as engine_arbiter
from safekit.membership import clusterkey as engine

# isort: split
from ansible_collections.safekit.ha.plugins.module_utils import clusterkey as helper

KEYS = [bytes(range(32)), bytes(32), b"\xff" * 32, os.urandom(32)]


@pytest.mark.parametrize("key", KEYS)
def test_the_engine_reads_the_collections_cluster_key_files_and_back(key: bytes) -> None:
    assert engine.decode_key_file(helper.encode(key)) == key
    assert helper.decode(engine.encode_key_file(key)) == key
    assert helper.encode(key) == engine.encode_key_file(key)
    assert helper.fingerprint(key) == engine.fingerprint(key)


@pytest.mark.parametrize("key", KEYS)
def test_the_arbiter_key_is_derived_and_written_as_the_engine_does(key: bytes) -> None:
    derived = helper.derive_arbiter_key(key)
    assert derived == engine_arbiter.derive_arbiter_key(key)
    text = helper.encode(derived, helper.ARBITER_KEY_PREFIX)
    assert text == engine_arbiter.encode_key_file(derived)
    assert engine_arbiter.decode_key_file(text) == derived
    assert helper.arbiter_cluster_id(derived) == engine_arbiter.cluster_id(derived).hex()


def test_the_constants_of_the_format_are_the_engines() -> None:
    assert helper.KEY_SIZE == engine.KEY_SIZE
    assert helper.CLUSTER_KEY_PREFIX == engine.KEY_FILE_PREFIX
    assert helper.ARBITER_KEY_PREFIX == engine_arbiter.ARBITER_KEY_PREFIX
    assert helper.MAX_KEY_FILE_BYTES == engine.MAX_KEY_FILE_BYTES


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# only a comment\n",
        "safekit-cluster-key-v1:" + "A" * 43 + "=\nsafekit-cluster-key-v1:" + "A" * 43 + "=\n",  # two keys
        "safekit-arbiter-key-v1:" + "A" * 43 + "=\n",  # the arbiter's file is not a cluster key
        "safekit-cluster-key-v1:AAAA\n",  # 3 bytes
        "safekit-cluster-key-v1:not base64!\n",
        "safekit-cluster-key-v2:" + "A" * 43 + "=\n",
    ],
)
def test_both_refuse_the_same_files_without_quoting_them(text: str) -> None:
    with pytest.raises(engine.ClusterKeyError):
        engine.decode_key_file(text)
    with pytest.raises(helper.KeyFileError) as refused:
        helper.decode(text)
    body = text.partition(":")[2].strip()
    assert not body or body not in str(refused.value)


def test_both_accept_comments_and_blank_lines() -> None:
    text = "# prod cluster, made 2026-12-05\n\n" + engine.encode_key_file(bytes(range(32))) + "\n"
    assert helper.decode(text) == engine.decode_key_file(text) == bytes(range(32))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_key_generation_needs_only_the_standard_library_and_ansible() -> None:
    helper_imports = _imports(COLLECTION / "plugins" / "module_utils" / "clusterkey.py")
    assert helper_imports - {"__future__"} <= set(sys.stdlib_module_names), helper_imports
    module_imports = _imports(COLLECTION / "plugins" / "modules" / "cluster_key.py")
    base_imports = _imports(COLLECTION / "plugins" / "module_utils" / "safekit.py")
    outside = (module_imports | base_imports) - set(sys.stdlib_module_names) - {"__future__"}
    assert outside == {"ansible", "ansible_collections"}, outside


# ------------------------------------------------------------------- the module on the controller
def run(args: dict[str, Any], tmp: Path, **flags: bool) -> dict[str, Any]:
    return run_module("cluster_key", args, tmp, {}, **flags)


def test_the_key_is_made_once_mode_0600_and_never_shown(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "prod.key"
    first = run({"path": str(path)}, tmp_path, diff=True)
    assert first["changed"] and first["key_created"], first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    key = engine.load_key(path)  # the engine accepts it, with its own safety checks
    assert first["fingerprint"] == engine.fingerprint(key)
    assert "safekit-cluster-key-v1:" not in json.dumps(first)
    assert first["diff"][0]["after"] == "(secret, changed)\n"
    again = run({"path": str(path)}, tmp_path)
    assert not again["changed"] and not again["key_created"], again
    assert engine.load_key(path) == key and again["fingerprint"] == first["fingerprint"]


def test_an_existing_engine_key_is_kept_and_its_arbiter_key_derived(tmp_path: Path) -> None:
    path = tmp_path / "prod.key"
    key = engine.generate_key()
    engine.save_key(path, key)
    arbiter = tmp_path / "arbiter" / "prod.key"
    first = run({"path": str(path), "arbiter_key_path": str(arbiter)}, tmp_path)
    assert first["changed"] and not first["key_created"] and first["arbiter_key_changed"], first
    assert engine.load_key(path) == key
    assert engine_arbiter.load_key(arbiter) == engine_arbiter.derive_arbiter_key(key)
    assert stat.S_IMODE(arbiter.stat().st_mode) == 0o600
    derived = engine_arbiter.derive_arbiter_key(key)
    assert first["arbiter_cluster_id"] == engine_arbiter.cluster_id(derived).hex()
    assert "safekit-arbiter-key-v1:" not in json.dumps(first)
    again = run({"path": str(path), "arbiter_key_path": str(arbiter)}, tmp_path)
    assert not again["changed"], again
    # a stale arbiter key (another cluster key) is replaced
    arbiter.write_text(engine_arbiter.encode_key_file(bytes(32)))
    fixed = run({"path": str(path), "arbiter_key_path": str(arbiter)}, tmp_path)
    assert fixed["arbiter_key_changed"] and not fixed["key_created"], fixed
    assert engine_arbiter.load_key(arbiter) == engine_arbiter.derive_arbiter_key(key)


def test_check_mode_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "prod.key"
    checked = run({"path": str(path), "arbiter_key_path": str(tmp_path / "a.key")}, tmp_path, check=True)
    assert checked["changed"] and checked["key_created"] and checked["arbiter_key_changed"], checked
    assert not path.parent.exists() and not (tmp_path / "a.key").exists()


def test_an_unsafe_or_foreign_key_file_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "prod.key"
    text = engine.encode_key_file(bytes(range(32)))
    path.write_text(text)
    path.chmod(0o644)
    refused = run({"path": str(path)}, tmp_path)
    assert refused.get("failed") and "chmod 600" in refused["msg"], refused
    path.chmod(0o600)
    path.write_text("safekit-arbiter-key-v1:" + text.partition(":")[2])
    wrong = run({"path": str(path)}, tmp_path)
    assert wrong.get("failed") and "safekit-cluster-key-v1:" in wrong["msg"], wrong
    assert text.partition(":")[2].strip() not in json.dumps(wrong)
    assert path.read_text().startswith("safekit-arbiter-key-v1:")  # never replaced
