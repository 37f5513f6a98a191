"""The Debian package's recipe (packaging/build_deb.py) and maintainer scripts (packaging/debian/),
without building anything: what an operator relies on when apt installs, upgrades or removes it."""

from __future__ import annotations

import importlib.util
import itertools
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from safekit.rfs import native

REPO = Path(__file__).resolve().parents[3]
DEBIAN = REPO / "packaging" / "debian"
SCRIPTS = ("postinst", "prerm", "postrm")


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_deb", REPO / "packaging" / "build_deb.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_deb"] = module
    spec.loader.exec_module(module)
    return module


build_deb = load()


@pytest.mark.parametrize(
    ("upstream", "debian"),
    [
        ("0.1.0", "0.1.0-1+deb12"),
        ("0.1.0.dev0", "0.1.0~~dev0-1+deb12"),
        ("1.2.0rc1", "1.2.0~rc1-1+deb12"),
        ("1.2.0b2", "1.2.0~b2-1+deb12"),
        ("1.2.0rc1.dev3", "1.2.0~rc1~~dev3-1+deb12"),
    ],
)
def test_debian_version_of_a_pep440_version(upstream: str, debian: str) -> None:
    assert build_deb.debian_version(upstream, build_deb.SUITES["bookworm"]) == debian


def test_debian_versions_sort_as_the_python_versions_do() -> None:
    """apt upgrades a dev or release-candidate package to the release, and Debian 12's to 13's."""
    ordered = ["0.1.0.dev0", "0.1.0a1.dev1", "0.1.0a1", "0.1.0b1", "0.1.0rc1", "0.1.0", "0.1.1.dev0", "0.2.0"]
    bookworm = [build_deb.debian_version(v, build_deb.SUITES["bookworm"]) for v in ordered]
    for low, high in itertools.pairwise(bookworm):
        assert subprocess.run(["dpkg", "--compare-versions", low, "lt", high], check=False).returncode == 0
    trixie = build_deb.debian_version("0.1.0", build_deb.SUITES["trixie"])
    assert (
        subprocess.run(["dpkg", "--compare-versions", bookworm[5], "lt", trixie], check=False).returncode == 0
    )


def test_each_suite_uses_its_own_python_and_unit_directory() -> None:
    assert build_deb.SUITES["bookworm"].python == "3.11"
    assert build_deb.SUITES["trixie"].python == "3.13"
    assert build_deb.SUITES["bookworm"].unit_dir == "lib/systemd/system"
    assert build_deb.SUITES["trixie"].unit_dir == "usr/lib/systemd/system"


def test_the_package_carries_the_engines_runtime_dependencies_only() -> None:
    deps = build_deb.dependencies()
    assert any(d.startswith("cryptography") for d in deps)
    assert not any(d.startswith(("pyfuse3", "trio")) for d in deps)  # the Python data path is gone
    assert not any(d.split(">")[0].split("<")[0] in ("pytest", "ansible-core", "boto3") for d in deps)


def test_safekitd_finds_the_native_programs_where_the_package_puts_them() -> None:
    assert Path(build_deb.LIBEXEC) == native.DEB_LIBEXEC
    assert tuple(native.PROGRAMS.values()) == build_deb.NATIVE_PROGRAMS


def test_control_file() -> None:
    text = build_deb.control_text(
        build_deb.SUITES["bookworm"], "0.1.0-1+deb12", "amd64", ["fuse3", "python3.11"], 100
    )
    fields = dict(line.split(": ", 1) for line in text.splitlines() if not line.startswith(" "))
    assert fields["Package"] == "safekit"
    assert fields["Architecture"] == "amd64"
    assert fields["Depends"] == "fuse3, python3.11"
    assert "never enables nor starts" in text


def test_package_cache_key_follows_its_inputs(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.py").write_text("1")
    (tmp_path / "a" / "__pycache__").mkdir()
    (tmp_path / "a" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    files = build_deb.tree_files(tmp_path)
    assert [p.name for p in files] == ["x.py"]  # bytecode does not invalidate the cache
    before = build_deb.sha256_files(files, tmp_path)
    (tmp_path / "a" / "x.py").write_text("2")
    assert build_deb.sha256_files(files, tmp_path) != before


@pytest.mark.parametrize("script", SCRIPTS)
def test_maintainer_scripts_never_start_a_cluster(script: str) -> None:
    """Only the roles or the operator start safekitd, once the node is configured."""
    code = "\n".join(
        line for line in (DEBIAN / script).read_text().splitlines() if not line.lstrip().startswith("#")
    )
    assert not re.search(r"systemctl\s+(start|restart|enable|reload-or-restart|try-restart)", code)
    assert "safekitd --daemon" not in code
    assert (DEBIAN / script).stat().st_mode & 0o111


def test_maintainer_scripts_pass_shellcheck() -> None:
    result = subprocess.run(
        ["shellcheck", "-s", "sh", *(str(DEBIAN / s) for s in SCRIPTS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_upgrade_keeps_the_venv_and_remove_takes_what_python_left() -> None:
    """postrm removes the virtualenv's leftovers on remove/purge only: during an upgrade the new
    package's files are already in place."""
    postrm = (DEBIAN / "postrm").read_text()
    remove_branch = postrm.split("remove | purge)")[1].split(";;")[0]
    assert "rm -rf /opt/safekit/venv" in remove_branch
    upgrade_branch = postrm.split("upgrade | failed-upgrade")[1].split(";;")[0]
    assert "rm" not in upgrade_branch
    purge = postrm.split('if [ "$1" = purge ]')[1]
    assert "/etc/safekit" in purge and "/opt/safekit/modules" not in purge.split("rm -rf")[1].split("\n")[0]


def test_a_version_override_changes_the_project_version_only() -> None:
    """--version builds a package of another version from the same tree (pyproject.toml unchanged)."""
    pyproject = (REPO / "pyproject.toml").read_text()
    changed = build_deb.set_version(pyproject, "9.8.7.dev6")
    assert build_deb.tomllib.loads(changed)["project"]["version"] == "9.8.7.dev6"
    assert [a for a in pyproject.splitlines() if a not in changed.splitlines()] == [
        f'version = "{build_deb.upstream_version()}"'
    ]
    with pytest.raises(build_deb.BuildError):
        build_deb.set_version("[project]\nname = 'x'\n", "1.0")
