"""One version for the engine, the collection and the Debian package (docs/adr/0032).

pyproject.toml's [project] version is the source; galaxy.yml spells the same version for Galaxy
and scripts/set_version.py (make version VERSION=X.Y.Z) writes both.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
import yaml

import safekit

REPO = Path(__file__).resolve().parents[3]


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


set_version = load("set_version", REPO / "scripts" / "set_version.py")
build_deb = load("build_deb", REPO / "packaging" / "build_deb.py")


def pyproject_version(root: Path = REPO) -> str:
    return str(tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"])


def galaxy(root: Path = REPO) -> dict[str, object]:
    loaded = yaml.safe_load((root / set_version.GALAXY).read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_engine_collection_and_package_have_pyprojects_version() -> None:
    version = pyproject_version()
    assert safekit.__version__ == version
    assert build_deb.upstream_version() == version
    assert galaxy()["version"] == set_version.galaxy_version(version)
    assert set_version.disagreements() == []


@pytest.mark.parametrize(
    ("pep440", "semver"),
    [
        ("0.2.0", "0.2.0"),
        ("0.2.0.dev0", "0.2.0-dev0"),
        ("1.0.0a1", "1.0.0-a1"),
        ("1.0.0b2", "1.0.0-b2"),
        ("1.0.0rc1", "1.0.0-rc1"),
        ("10.20.30", "10.20.30"),
    ],
)
def test_galaxy_spelling(pep440: str, semver: str) -> None:
    assert set_version.galaxy_version(pep440) == semver


@pytest.mark.parametrize("bad", ["0.2", "v0.2.0", "0.2.0.post1", "0.2.0-dev0", "0.2.0a1.dev0", "0.2.0 ", ""])
def test_versions_the_project_does_not_spell_are_refused(bad: str) -> None:
    with pytest.raises(set_version.VersionError):
        set_version.galaxy_version(bad)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The two files that spell the version, copied as they are."""
    for path in (set_version.PYPROJECT, set_version.GALAXY):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / path, tmp_path / path)
    return tmp_path


def test_set_version_writes_every_place_and_nothing_else(tree: Path) -> None:
    before = {p: (tree / p).read_text().splitlines() for p in (set_version.PYPROJECT, set_version.GALAXY)}
    set_version.write("3.4.5rc2", tree)
    assert pyproject_version(tree) == "3.4.5rc2"
    assert galaxy(tree)["version"] == "3.4.5-rc2"
    assert set_version.disagreements(tree) == []
    for path, lines in before.items():
        after = (tree / path).read_text().splitlines()
        changed = [(old, new) for old, new in zip(lines, after, strict=True) if old != new]
        assert len(changed) == 1 and changed[0][1].startswith("version")


def test_a_refused_version_leaves_the_files_as_they_were(tree: Path) -> None:
    before = {p: (tree / p).read_bytes() for p in (set_version.PYPROJECT, set_version.GALAXY)}
    with pytest.raises(set_version.VersionError):
        set_version.write("0.3", tree)
    assert {p: (tree / p).read_bytes() for p in before} == before


def test_disagreement_is_reported_with_both_versions(tree: Path) -> None:
    path = tree / set_version.GALAXY
    path.write_text(path.read_text().replace(f"version: {galaxy(tree)['version']}", "version: 9.9.9"))
    (problem,) = set_version.disagreements(tree)
    assert "9.9.9" in problem and set_version.galaxy_version(pyproject_version(tree)) in problem


def test_set_version_command_exits_nonzero_on_disagreement(tree: Path) -> None:
    script = tree / "scripts" / "set_version.py"
    script.parent.mkdir()
    shutil.copy(REPO / "scripts" / "set_version.py", script)
    agree = subprocess.run([sys.executable, script], capture_output=True, text=True, check=False)
    assert (agree.returncode, agree.stdout.strip()) == (0, pyproject_version())
    path = tree / set_version.GALAXY
    path.write_text(path.read_text().replace(f"version: {galaxy(tree)['version']}", "version: 9.9.9"))
    disagree = subprocess.run([sys.executable, script], capture_output=True, text=True, check=False)
    assert disagree.returncode == 1 and "9.9.9" in disagree.stderr


def _version_of_copy(root: Path) -> str:
    """safekit.__version__ of a copy of the package's __init__.py under ROOT, in a new Python."""
    out = subprocess.run(
        [sys.executable, "-c", "import safekit; print(safekit.__version__)"],
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_a_checkout_reads_its_pyproject_not_stale_metadata(tmp_path: Path) -> None:
    # an editable install's metadata keeps the version of its install; the checkout's file wins
    package = tmp_path / "src" / "safekit"
    package.mkdir(parents=True)
    shutil.copy(Path(safekit.__file__), package / "__init__.py")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "safekit"\nversion = "7.8.9"\n')
    assert _version_of_copy(tmp_path / "src") == "7.8.9"


def test_installed_the_version_is_the_distributions(tmp_path: Path) -> None:
    # not under src/ next to a pyproject.toml (a wheel's site-packages): the installed metadata
    package = tmp_path / "site-packages" / "safekit"
    package.mkdir(parents=True)
    shutil.copy(Path(safekit.__file__), package / "__init__.py")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "safekit"\nversion = "7.8.9"\n')
    assert _version_of_copy(tmp_path / "site-packages") == importlib.metadata.version("safekit")
