"""Where the native replication programs are, and how safekitd starts them.

The native programs (native/, docs/adr/0016) are the replication data path of a mirror module, the
only one (docs/adr/0029): `safekit-rfs-primary` and `safekit-rfs-secondary`. They read the spec file
safekitd writes (`safekit.rfs.spec.RfsSpec` as JSON) and speak the control channel
(`safekit.rfs.channel`). The former engine choice is read only to say it no longer chooses anything:
`<rfs engine="python">` is a configuration warning (config/module_parser.py), a `SAFEKIT_RFS_ENGINE`
other than `native` in safekitd's environment a warning at each start (`environment_notice`).

The native programs are looked up, in order: in `SAFEKIT_RFS_NATIVE_DIR` alone when it is set;
else beside this module (`safekit/rfs/native-bin/`, the wheel's package data); else in
`/opt/safekit/libexec` (the Debian package's layout, ADR 0027); else in the checkout's
`native/build/` (a source tree: the lab and the tests).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal

Role = Literal["primary", "secondary"]
ENGINE: Final = "native"
"""What `safekit state -v` and the process record name as the engine (there is one)."""
ENGINE_ENV: Final = "SAFEKIT_RFS_ENGINE"
"""The former node-wide engine choice in safekitd's environment: only `native` is quiet now."""
NATIVE_DIR_ENV: Final = "SAFEKIT_RFS_NATIVE_DIR"
"""safekitd's environment: the one directory holding the native programs (overrides the lookup)."""
PROGRAMS: Final[dict[Role, str]] = {"primary": "safekit-rfs-primary", "secondary": "safekit-rfs-secondary"}
PACKAGE_BIN: Final = Path(__file__).resolve().parent / "native-bin"
"""Where the wheel carries the native programs (setup.py builds them into it)."""
DEB_LIBEXEC: Final = Path("/opt/safekit/libexec")
"""Where the Debian package installs the native programs (packaging/build_deb.py, ADR 0027)."""
CHECKOUT_BUILD: Final = Path(__file__).resolve().parents[3] / "native" / "build"
"""A source checkout's build directory (`make -C native`): src/safekit/rfs -> the repository."""


class EngineError(Exception):
    """The native program a role needs is missing (the message says where it was looked for)."""


def environment_notice(environ: Mapping[str, str]) -> str | None:
    """The warning safekitd logs when its environment still chooses an engine other than the
    native one (ADR 0029: accepted and ignored), or None (unset, empty or `native`)."""
    value = environ.get(ENGINE_ENV, "")
    if not value.strip() or value.strip().lower() == ENGINE:
        return None
    return (
        f"{ENGINE_ENV}={value!r} is ignored: the native programs are the only replication data path "
        f"(the Python one was removed); remove {ENGINE_ENV} from safekitd's environment"
    )


def search_dirs(
    environ: Mapping[str, str],
    package_bin: Path = PACKAGE_BIN,
    checkout_build: Path = CHECKOUT_BUILD,
    deb_libexec: Path = DEB_LIBEXEC,
) -> list[Path]:
    """Where the native programs are looked for, in order."""
    override = environ.get(NATIVE_DIR_ENV, "")
    if override:
        return [Path(override)]
    return [package_bin, deb_libexec, checkout_build]


def find_program(
    role: Role,
    environ: Mapping[str, str],
    package_bin: Path = PACKAGE_BIN,
    checkout_build: Path = CHECKOUT_BUILD,
    deb_libexec: Path = DEB_LIBEXEC,
) -> Path:
    """The native program of `role`: the first executable file of that name in `search_dirs`."""
    name = PROGRAMS[role]
    dirs = search_dirs(environ, package_bin, checkout_build, deb_libexec)
    for directory in dirs:
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    where = ", ".join(str(d) for d in dirs)
    hint = (
        f"put it there or unset {NATIVE_DIR_ENV}"
        if environ.get(NATIVE_DIR_ENV)
        else f"install a safekit wheel that carries it, build it (`make -C native`), or set {NATIVE_DIR_ENV}"
    )
    raise EngineError(f"the native replication program {name} ({role}) is not in {where}: {hint}")


def command_line(role: Role, spec_file: Path, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The command line of the replication process of `role` (EngineError when its program is
    missing). Both roles serve the spec's directories in place (the primary: one FUSE mount at
    <state_dir>/mnt, mnt/i bound over dirs[i])."""
    return (str(find_program(role, environ)), str(spec_file))


def role_of_argv(argv: list[str] | tuple[str, ...]) -> Role | None:
    """The role of a replication process's command line (`.../safekit-rfs-ROLE [options] SPEC`),
    or None for another process."""
    if argv:
        first = os.path.basename(argv[0])
        for role, name in PROGRAMS.items():
            if first == name:
                return role
    return None
