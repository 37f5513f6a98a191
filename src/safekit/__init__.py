"""safekit: open, software-only high availability for Linux applications."""

from __future__ import annotations

import tomllib
from pathlib import Path


def _version() -> str:
    """The version has one source, pyproject.toml's [project] version (docs/adr/0032).

    From a checkout (src/safekit next to pyproject.toml) that file is read, so a version set
    there shows at once, even through an editable install whose metadata was written before;
    installed (wheel, Debian package), the distribution's metadata, which the wheel build
    copied from it. "0+unknown" where neither is there (a copied tree without metadata).
    """
    here = Path(__file__).resolve().parent
    if here.parent.name == "src":
        pyproject = here.parent.parent / "pyproject.toml"
        try:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        except (OSError, tomllib.TOMLDecodeError):
            project = {}
        if project.get("name") == "safekit" and isinstance(project.get("version"), str):
            return str(project["version"])
    import importlib.metadata  # noqa: PLC0415 - costs tens of milliseconds; only an installed engine needs it

    try:
        return importlib.metadata.version("safekit")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


__version__: str
"""Read on first use (module `__getattr__`): a command that does not print it does not pay for it."""


def __getattr__(name: str) -> str:
    if name == "__version__":
        version = globals()["__version__"] = _version()
        return version
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
