"""The wheel carries the native replication programs (native/, docs/adr/0024-replication-engines.md).

Everything else is declared in pyproject.toml. Building a wheel (`pip wheel .`, what the Ansible
roles do on the controller) builds `safekit-rfs-primary` and `safekit-rfs-secondary` with
`make -C native` and puts them in the package (`safekit/rfs/native-bin/`, where
`safekit.rfs.native` looks first); the wheel is then tagged for this platform (py3-none-linux_*:
the programs do not depend on Python's ABI). The build needs build-essential, pkg-config,
libfuse3-dev and libssl-dev (`make native-deps`); the nodes need only fuse3 and libssl3.
`SAFEKIT_WHEEL_NATIVE=0` builds a pure wheel without them: such a node replicates only with the
programs installed apart (SAFEKIT_RFS_NATIVE_DIR, or /opt/safekit/libexec as the .deb does). An editable
install (`pip install -e .`) builds nothing: the checkout's native/build is found directly.
A machine without that toolchain gets one line naming the Debian packages it lacks. `make` rebuilds
nothing when native/build is up to date (a copy of the tree that keeps the files' times, as the
Ansible tests make, builds its wheel without compiling).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
NATIVE = HERE / "native"
PROGRAMS = ("safekit-rfs-primary", "safekit-rfs-secondary")
SKIP_ENV = "SAFEKIT_WHEEL_NATIVE"


def with_native() -> bool:
    return os.environ.get(SKIP_ENV, "1") != "0" and (NATIVE / "Makefile").is_file()


def missing_toolchain() -> list[str]:
    """The Debian packages that building the native programs needs and this machine lacks
    (the same check as the safekit.ha.node role's pre-flight on the controller)."""
    missing = [] if shutil.which("make") and shutil.which("gcc") else ["build-essential"]
    if not shutil.which("pkg-config"):
        return [*missing, "pkg-config", "libfuse3-dev", "libssl-dev"]
    for module, package in (("fuse3", "libfuse3-dev"), ("libcrypto", "libssl-dev")):
        if subprocess.run(["pkg-config", "--exists", module], check=False).returncode != 0:
            missing.append(package)
    return missing


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False) or not with_native():
            return
        missing = missing_toolchain()
        if missing:
            raise SystemExit(
                "safekit: the engine's wheel carries the native replication programs and this machine "
                f"cannot build them: missing {' '.join(missing)} (apt-get install build-essential pkg-config "
                f"libfuse3-dev libssl-dev, or make native-deps; {SKIP_ENV}=0 builds a wheel without them)"
            )
        built = [NATIVE / "build" / name for name in PROGRAMS]
        result = subprocess.run(
            ["make", "-C", str(NATIVE), *map(str, built)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise SystemExit(
                "safekit: building the native replication programs failed (they need build-essential "
                f"pkg-config libfuse3-dev libssl-dev; {SKIP_ENV}=0 builds a wheel without them):\n"
                + result.stdout[-2000:]
                + result.stderr[-4000:]
            )
        target = Path(self.build_lib) / "safekit" / "rfs" / "native-bin"
        target.mkdir(parents=True, exist_ok=True)
        for program in built:
            shutil.copyfile(program, target / program.name)
            (target / program.name).chmod(0o755)


class BdistWheel(bdist_wheel):
    def finalize_options(self) -> None:
        super().finalize_options()
        if with_native():
            self.root_is_pure = False  # a platform wheel: it holds this machine's executables

    def get_tag(self) -> tuple[str, str, str]:
        python, abi, platform = super().get_tag()
        return ("py3", "none", platform) if with_native() else (python, abi, platform)


setup(cmdclass={"build_py": BuildPy, "bdist_wheel": BdistWheel})
