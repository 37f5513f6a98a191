"""Which replication engine runs a mirror module, and where the native programs are.

Two engines speak the same control channel (`safekit.rfs.channel`) and read the same spec file
(`safekit.rfs.spec.RfsSpec` as JSON): the Python data path (`python -m safekit.rfs ROLE SPEC`)
and the native one (native/, docs/adr/0016): `safekit-rfs-primary` and `safekit-rfs-secondary`.
The engine is chosen per module (`<rfs engine="native">`, our extension of SafeKit's userconfig),
else by safekitd's environment (`SAFEKIT_RFS_ENGINE`), else it is the native one (docs/adr/0024,
docs/adr/0028: native is the default engine).

The native programs are looked up, in order: in `SAFEKIT_RFS_NATIVE_DIR` alone when it is set;
else beside this module (`safekit/rfs/native-bin/`, the wheel's package data); else in the
checkout's `native/build/` (a source tree: the lab and the tests).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from safekit.rfs.spec import RfsSpec

Engine = Literal["python", "native"]
Role = Literal["primary", "secondary"]
ENGINES: Final[tuple[Engine, ...]] = ("python", "native")
DEFAULT_ENGINE: Final[Engine] = "native"
"""The engine when neither the module nor safekitd's environment names one (ADR 0028)."""
ENGINE_ENV: Final = "SAFEKIT_RFS_ENGINE"
"""safekitd's environment: the engine of every module whose <rfs> does not name one."""
NATIVE_DIR_ENV: Final = "SAFEKIT_RFS_NATIVE_DIR"
"""safekitd's environment: the one directory holding the native programs (overrides the lookup)."""
PROGRAMS: Final[dict[Role, str]] = {"primary": "safekit-rfs-primary", "secondary": "safekit-rfs-secondary"}
PACKAGE_BIN: Final = Path(__file__).resolve().parent / "native-bin"
"""Where the wheel carries the native programs (setup.py builds them into it)."""
CHECKOUT_BUILD: Final = Path(__file__).resolve().parents[3] / "native" / "build"
"""A source checkout's build directory (`make -C native`): src/safekit/rfs -> the repository."""


class EngineError(Exception):
    """The engine setting is wrong, or the native program it needs is missing (the message says)."""


def parse_engine(value: str, where: str) -> Engine:
    """An engine name as written in `where` (a setting), or EngineError naming the choices."""
    text = value.strip().lower()
    if text not in ENGINES:
        raise EngineError(f"{where}={value!r}: give {' or '.join(ENGINES)}")
    return text


def choose_engine(module_setting: Engine | None, environ: Mapping[str, str]) -> Engine:
    """The engine of a module: its own <rfs engine>, else safekitd's SAFEKIT_RFS_ENGINE, else the
    default (native). An empty SAFEKIT_RFS_ENGINE counts as unset."""
    if module_setting is not None:
        return module_setting
    value = environ.get(ENGINE_ENV, "")
    if not value.strip():
        return DEFAULT_ENGINE
    return parse_engine(value, ENGINE_ENV)


def search_dirs(
    environ: Mapping[str, str], package_bin: Path = PACKAGE_BIN, checkout_build: Path = CHECKOUT_BUILD
) -> list[Path]:
    """Where the native programs are looked for, in order."""
    override = environ.get(NATIVE_DIR_ENV, "")
    if override:
        return [Path(override)]
    return [package_bin, checkout_build]


def find_program(
    role: Role,
    environ: Mapping[str, str],
    package_bin: Path = PACKAGE_BIN,
    checkout_build: Path = CHECKOUT_BUILD,
) -> Path:
    """The native program of `role`: the first executable file of that name in `search_dirs`."""
    name = PROGRAMS[role]
    dirs = search_dirs(environ, package_bin, checkout_build)
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


@dataclass(frozen=True)
class Launch:
    """How safekitd starts a replication process: its command line and environment additions."""

    engine: Engine
    argv: tuple[str, ...]
    env: dict[str, str]


def launch(
    engine: Engine,
    role: Role,
    spec: RfsSpec,
    spec_file: Path,
    environ: Mapping[str, str],
    *,
    python: str = sys.executable,
) -> Launch:
    """The command line of the replication process of `role` on `engine` (EngineError when its
    program is missing)."""
    if engine == "python":
        argv: tuple[str, ...] = (python, "-m", "safekit.rfs", role, str(spec_file))
        return Launch(engine, argv, {"PYTHONUNBUFFERED": "1"})
    program = str(find_program(role, environ))
    # Both roles serve the spec's directories in place (the primary: one FUSE mount at
    # <state_dir>/mnt, mnt/i bound over dirs[i], as the Python primary does).
    return Launch(engine, (program, str(spec_file)), {})


def role_of_argv(argv: list[str] | tuple[str, ...]) -> Role | None:
    """The role of a replication process's command line on either engine, or None for another
    process: `python -m safekit.rfs ROLE SPEC` or `.../safekit-rfs-ROLE [options] SPEC`."""
    for at, word in enumerate(argv):
        if word == "safekit.rfs" and at > 0 and argv[at - 1] == "-m" and at + 1 < len(argv):
            following = argv[at + 1]
            return following if following in PROGRAMS else None
    if argv:
        first = os.path.basename(argv[0])
        for role, name in PROGRAMS.items():
            if first == name:
                return role
    return None
