"""safekit.ha.engine with `extras` (what the safekit.ha.cloud role relies on): an extra added to an
engine already installed at the wanted version is installed, once; and a play in check mode on a
new node, before the wheelhouse was copied, reports the install instead of failing."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from safekit_collection import run_module


def wheel(directory: Path, name: str, version: str, metadata: str = "") -> None:
    """A pure-Python wheel with no code that matters: enough for pip to install and list it."""
    dist = f"{name}-{version}"
    with zipfile.ZipFile(directory / f"{dist}-py3-none-any.whl", "w") as whl:
        whl.writestr(f"{name}/__init__.py", "")
        whl.writestr(
            f"{dist}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{metadata}",
        )
        whl.writestr(
            f"{dist}.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        whl.writestr(f"{dist}.dist-info/RECORD", "")


def install(tmp_path: Path, args: dict[str, Any], check: bool = False) -> dict[str, Any]:
    return run_module(
        "engine", {"service": "none", **args}, tmp_path, {"SAFE": str(tmp_path / "opt")}, check=check
    )


def test_an_extra_is_added_to_an_installed_engine_once(tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    wheel(
        wheelhouse,
        "safekit",
        "9.1.0",
        'Provides-Extra: demo\nRequires-Dist: safekitdemosdk>=1; extra == "demo"\n',
    )
    wheel(wheelhouse, "safekitdemosdk", "1.0")
    venv = tmp_path / "venv"
    args = {"wheelhouse": str(wheelhouse), "venv": str(venv)}
    first = install(tmp_path, args)
    assert first["changed"] and first["version_after"] == "9.1.0", first
    sdk = list((venv / "lib").glob("python3*/site-packages/safekitdemosdk"))
    assert not sdk, "installed without the extra"

    predicted = install(tmp_path, {**args, "extras": ["demo"]}, check=True)
    assert predicted["changed"] and predicted["version_after"] == "9.1.0", predicted
    assert not list((venv / "lib").glob("python3*/site-packages/safekitdemosdk"))
    added = install(tmp_path, {**args, "extras": ["demo"]})
    assert added["changed"] and (added["version_before"], added["version_after"]) == ("9.1.0", "9.1.0"), added
    assert list((venv / "lib").glob("python3*/site-packages/safekitdemosdk"))
    assert not install(tmp_path, {**args, "extras": ["demo"]})["changed"]


def test_check_mode_before_the_wheelhouse_is_copied_reports_the_install(tmp_path: Path) -> None:
    args = {"wheelhouse": str(tmp_path / "not-copied-yet"), "venv": str(tmp_path / "venv")}
    predicted = install(tmp_path, args, check=True)
    assert not predicted.get("failed") and predicted["changed"], predicted
    assert "not on this node yet" in str(predicted.get("warnings")), predicted
    assert not (tmp_path / "venv").exists()
    real = install(tmp_path, args)
    assert real["failed"] and "is not a directory on this node" in real["msg"], real
