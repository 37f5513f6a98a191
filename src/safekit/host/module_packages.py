"""A module's files on a host, shared by `safekit` and safekitd: module names, .safe packages
(checked and extracted), configuration fingerprints, and the `boot` setting.

Pure functions over files: no daemon, no event loop, so they are tested on their own.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

MAX_SAFE_BYTES = 256 * 1024 * 1024
"""Uncompressed size a .safe package may expand to (a module is scripts and a configuration)."""
MAX_SAFE_MEMBERS = 10_000
MODULE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class AdminError(Exception):
    """A package, file or name that cannot be used; one line for the user."""


def check_module_name(name: str) -> str:
    if not MODULE_NAME.match(name or ""):
        raise AdminError(
            f"{name!r} is not a module name: letters, digits, '_', '.', '-' (not first), at most 64"
        )
    return name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def file_info(path: Path) -> dict[str, Any]:
    """Path, sha256 and last modification (UTC, ISO 8601) of a configuration file."""
    st = path.stat()
    return {
        "path": str(path),
        "sha256": sha256_file(path),
        "modified": datetime.fromtimestamp(st.st_mtime, UTC).isoformat(timespec="seconds"),
        "size": st.st_size,
    }


# ---------------------------------------------------------------------- .safe packages


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The member's relative path, or None for a directory entry; refuses what could escape."""
    name = info.filename
    mode = info.external_attr >> 16
    if "\\" in name or "\x00" in name:
        raise AdminError(f"{name!r}: backslashes and NUL are not allowed in a .safe package")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise AdminError(f"{name!r}: absolute path in the package")
    path = PurePosixPath(name)
    if ".." in path.parts:
        raise AdminError(f"{name!r}: '..' in the package would write outside the module")
    if stat.S_ISLNK(mode):
        raise AdminError(f"{name!r}: symbolic links are not allowed in a .safe package")
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise AdminError(f"{name!r}: only files and directories are allowed in a .safe package")
    if info.is_dir():
        return None
    if not path.parts or path.parts == (".",):
        raise AdminError(f"{name!r}: empty member name")
    return path


def extract_safe(archive: Path, dest: Path) -> Path:
    """Unzip a .safe package into the empty directory `dest`, safely; return the module root.

    The package is the module directory (`conf/userconfig.xml`, `bin/...`), either at the top of
    the zip or inside one top-level directory. Refused before anything is written: absolute paths,
    `..`, symbolic links and special files, more than MAX_SAFE_BYTES or MAX_SAFE_MEMBERS.
    Files become 0755 when executable in the zip, else 0644 (never setuid, never private to a user:
    scripts run as root); without Unix permissions in the zip, what bin/ holds is executable.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise AdminError(f"{archive}: not a .safe package (a zip file): {exc}") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_SAFE_MEMBERS:
            raise AdminError(f"{archive}: more than {MAX_SAFE_MEMBERS} files")
        members = [(info, _member_path(info)) for info in infos]
        if sum(info.file_size for info in infos) > MAX_SAFE_BYTES:
            raise AdminError(f"{archive}: expands to more than {MAX_SAFE_BYTES // (1024 * 1024)} MiB")
        files = [(info, path) for info, path in members if path is not None]
        root = _package_root([path for _, path in files])
        for info, path in files:
            target = dest.joinpath(*path.parts)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                _extract_member(zf, info, target, path)
            except (OSError, zipfile.BadZipFile) as exc:
                raise AdminError(f"{archive}: cannot extract {info.filename!r}: {exc}") from exc
    for directory in [dest, *(p for p in dest.rglob("*") if p.is_dir())]:
        directory.chmod(0o755)
    return dest.joinpath(*root.parts)


def _package_root(paths: list[PurePosixPath]) -> PurePosixPath:
    userconfig = ("conf", "userconfig.xml")
    if any(p.parts == userconfig for p in paths):
        return PurePosixPath(".")
    tops = {p.parts[0] for p in paths}
    if len(tops) == 1:
        top = tops.pop()
        if any(p.parts == (top, *userconfig) for p in paths):
            return PurePosixPath(top)
    raise AdminError("no conf/userconfig.xml in the package (a .safe is a zip of the module directory)")


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, path: PurePosixPath) -> None:
    unix_mode = info.external_attr >> 16
    # Written by a Unix zip: its permissions are the module's; else scripts are what bin/ holds.
    executable = bool(unix_mode & 0o111) if stat.S_IFMT(unix_mode) else "bin" in path.parts[:-1]
    # O_EXCL|O_NOFOLLOW: nothing already there (a duplicate member, a link) is written through.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError as exc:
        raise AdminError(f"{info.filename!r}: twice in the package") from exc
    with os.fdopen(fd, "wb") as out, zf.open(info) as src:
        written = 0
        for block in iter(lambda: src.read(1 << 16), b""):
            written += len(block)
            if written > info.file_size:  # a header that lies about the size
                raise AdminError(f"{info.filename!r}: larger than the package says")
            out.write(block)
        os.fchmod(out.fileno(), 0o755 if executable else 0o644)


# ---------------------------------------------------------------------- boot


@dataclass(frozen=True)
class BootStatus:
    effective: bool
    """Whether the module starts with the daemon."""
    saved: bool
    """What boot.json says (`safekit boot on|off`, or the last start/stop)."""
    config_boot: str
    """`<service boot=...>`: on, off, ignore, or auto (boot.json decides)."""

    @property
    def overridden(self) -> bool:
        return self.config_boot != "auto"

    def describe(self, module: str) -> str:
        word = "on" if self.effective else "off"
        if not self.overridden:
            return f"{module}: boot {word}"
        return (
            f'{module}: boot {word} (<service boot="{self.config_boot}"> in userconfig.xml overrides '
            f"'safekit boot', which says {'on' if self.saved else 'off'})"
        )

    def as_dict(self, module: str) -> dict[str, Any]:
        return {
            "module": module,
            "boot": "on" if self.effective else "off",
            "saved": "on" if self.saved else "off",
            "config_boot": self.config_boot,
            "overridden": self.overridden,
        }


def boot_status(config_boot: str, saved: bool) -> BootStatus:
    """SafeKit's `boot` of `<service>`: on always, off/ignore never, auto as boot.json says."""
    if config_boot == "on":
        effective = True
    elif config_boot == "auto":
        effective = saved
    else:
        effective = False
    return BootStatus(effective=effective, saved=saved, config_boot=config_boot)
