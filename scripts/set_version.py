"""The project's one version, read or set in every place that has to spell it (docs/adr/0032).

pyproject.toml's [project] version is the source: the engine (safekit.__version__, through the
file in a checkout or the installed metadata) and the Debian package (packaging/build_deb.py)
read it. The collection's galaxy.yml cannot read another file, so it holds the same version in
the spelling Galaxy wants (semantic versioning) and this script writes both:

    python3 scripts/set_version.py            # prints the version; exit 1 if the places disagree
    python3 scripts/set_version.py 0.2.0      # sets it everywhere (make version VERSION=0.2.0)

Versions are X.Y.Z, a pre-release X.Y.ZaN / bN / rcN, or a development release X.Y.Z.devN;
Galaxy gets X.Y.Z, X.Y.Z-aN, X.Y.Z-devN. Standard library only.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = Path("pyproject.toml")
GALAXY = Path("collections/ansible_collections/safekit/ha/galaxy.yml")

VERSION = re.compile(r"(?P<release>\d+\.\d+\.\d+)(?:(?P<pre>(?:a|b|rc)\d+)|\.(?P<dev>dev\d+))?")
PYPROJECT_LINE = re.compile(r'^version = "[^"\n]*"$', re.MULTILINE)
GALAXY_LINE = re.compile(r"^version: *\S.*$", re.MULTILINE)


class VersionError(ValueError):
    """A version this project does not spell, or a file without its version line."""


def galaxy_version(version: str) -> str:
    """The PEP 440 version in semantic versioning, as galaxy.yml needs it."""
    match = VERSION.fullmatch(version)
    if match is None:
        raise VersionError(f"{version!r}: expected X.Y.Z, X.Y.ZaN, X.Y.ZbN, X.Y.ZrcN or X.Y.Z.devN (PEP 440)")
    suffix = match["pre"] or match["dev"]
    return match["release"] + (f"-{suffix}" if suffix else "")


def read(root: Path = REPO) -> dict[str, str]:
    """The version as each place spells it, keyed by the file's path in the repository."""
    project = tomllib.loads((root / PYPROJECT).read_text(encoding="utf-8"))["project"]
    galaxy = GALAXY_LINE.search((root / GALAXY).read_text(encoding="utf-8"))
    if galaxy is None:
        raise VersionError(f"{GALAXY}: no version line")
    return {
        str(PYPROJECT): str(project["version"]),
        str(GALAXY): galaxy.group(0).split(":", 1)[1].strip().strip("'\""),
    }


def disagreements(root: Path = REPO) -> list[str]:
    """One line per place whose version is not pyproject.toml's; empty when they agree."""
    found = read(root)
    source = found[str(PYPROJECT)]
    wanted = galaxy_version(source)
    if found[str(GALAXY)] != wanted:
        return [f"{GALAXY}: version {found[str(GALAXY)]}, expected {wanted} ({PYPROJECT}: {source})"]
    return []


def _replace_once(pattern: re.Pattern[str], text: str, line: str, path: Path) -> str:
    # pyproject's first `version = "..."` line is [project]'s: it comes right after the name
    new, count = pattern.subn(line.replace("\\", "\\\\"), text, count=1)
    if count != 1:
        raise VersionError(f"{path}: no version line")
    return new


def write(version: str, root: Path = REPO) -> None:
    """Set VERSION in every place; nothing is written when it is not a version we spell."""
    semver = galaxy_version(version)
    pyproject = (root / PYPROJECT).read_text(encoding="utf-8")
    galaxy = (root / GALAXY).read_text(encoding="utf-8")
    new_pyproject = _replace_once(PYPROJECT_LINE, pyproject, f'version = "{version}"', PYPROJECT)
    new_galaxy = _replace_once(GALAXY_LINE, galaxy, f"version: {semver}", GALAXY)
    if tomllib.loads(new_pyproject)["project"]["version"] != version:
        raise VersionError(f"{PYPROJECT}: the first version line is not [project]'s")
    (root / PYPROJECT).write_text(new_pyproject, encoding="utf-8")
    (root / GALAXY).write_text(new_galaxy, encoding="utf-8")


def main(argv: list[str]) -> int:
    try:
        if argv:
            write(argv[0])
        problems = disagreements()
    except VersionError as e:
        print(f"set_version: {e}", file=sys.stderr)
        return 2
    for line in problems:
        print(f"set_version: {line}", file=sys.stderr)
    if not problems:
        print(read()[str(PYPROJECT)])
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
