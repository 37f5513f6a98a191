"""The module template library shipped with the engine, and writing a rendered module to disk.

Each folder here is a template in the `.safe` layout (`conf/userconfig.xml`, `bin/`, `README.md`)
with its `template.yml` (see `safekit.module_templates`, which renders them). `_lib/` is the
library they share: `bin/safekit-template.sh`, the shell library of every script, and files some
templates share (their manifest's `shared:`); rendering copies them into each package's `bin/`.
They are package data: installed nodes have them, `safekit module templates` lists them.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from safekit.module_templates import MANIFEST, Package, Template, TemplateError, parse_manifest

LIBRARY_DIR = "_lib"
"""The folder of the files the templates share (not a template: it has no template.yml)."""

_ZIP_DATE = (2024, 1, 1, 0, 0, 0)
"""Fixed member dates: the same template and values give the same .safe, byte for byte."""


def library() -> dict[str, Template]:
    """Every template shipped in this package, by name."""
    root = resources.files(__name__)
    shared = _read_files(root.joinpath(LIBRARY_DIR))
    templates = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.is_dir() and entry.joinpath(MANIFEST).is_file():
            files = _read_files(entry)
            templates[entry.name] = parse_manifest(entry.name, files[MANIFEST].decode(), files, shared)
    return templates


def get(name: str) -> Template:
    templates = library()
    if name not in templates:
        raise TemplateError(f"no template {name!r} (templates: {', '.join(templates)})")
    return templates[name]


def _read_files(folder: Traversable) -> dict[str, bytes]:
    """Every file below `folder` (relative path -> bytes); none when it is not a folder."""
    files: dict[str, bytes] = {}

    def walk(entry: Traversable, prefix: str) -> None:
        for child in sorted(entry.iterdir(), key=lambda e: e.name):
            if child.name.startswith(".") or child.name == "__pycache__":
                continue
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            else:
                files[f"{prefix}{child.name}"] = child.read_bytes()

    if folder.is_dir():
        walk(folder, "")
    return files


def safe_bytes(package: Package) -> bytes:
    """The package as a .safe: a zip of the module directory, scripts executable."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, item in sorted(package.items()):
            info = zipfile.ZipInfo(path, _ZIP_DATE)
            info.external_attr = (0o100000 | item.mode) << 16  # a regular file with its mode
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, item.content)
    return buffer.getvalue()


def write_safe(package: Package, target: Path) -> None:
    """Write the .safe atomically (a temporary file beside it, then a rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(safe_bytes(package))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_directory(package: Package, target: Path) -> None:
    """Write the module directory; `target` must not exist or be empty."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise TemplateError(f"{target} exists and is not an empty directory")
    for path, item in sorted(package.items()):
        dest = target.joinpath(*path.split("/"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(item.content)
        dest.chmod(item.mode)
