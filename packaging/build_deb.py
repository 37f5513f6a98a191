#!/usr/bin/env python3
"""Build the self-contained Debian package of the engine: build/deb/safekit_VERSION_ARCH.deb.

    python3 packaging/build_deb.py [--suite bookworm|trixie] [--out build/deb] [--force] [--version V]

Run as root (debootstrap, mounts, chroot). The layout and why: docs/adr/0027-debian-package-layout.md;
installing it: docs/install.md. In short:

- a Debian root of the target suite, made once by debootstrap with the build tools (the compiler
  and headers never reach the nodes) and cached under /var/tmp/safekit-deb (SAFEKIT_DEB_CACHE);
- every build runs in a throwaway overlay of that root (`unshare --mount` + chroot), so the
  virtualenv /opt/safekit/venv is made by the target's own Python (Debian 12: /usr/bin/python3.11)
  at the very path it is installed to, and the compiled pieces (the native replication programs)
  link against the target's libraries;
- three caches keyed by their inputs: the dependencies' virtualenv (the dependency list of
  pyproject.toml and this recipe), the native programs (native/'s sources) and the package itself
  (everything: src/, pyproject.toml, packaging/, ...). A change of the engine's Python code only
  reinstalls the engine into a copy of the cached dependencies;
- the package's Depends come from what its ELF files link to in the target root (ldd + dpkg -S),
  plus the programs the engine runs (fusermount3, ip, nft);
- dpkg-deb builds it (no debhelper); the maintainer scripts are packaging/debian/.

Prints one line per step and, at the end, the package's path, size and build time.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGING = REPO / "packaging"
# root-owned, made by root: the same place as the systemd tests' roots
CACHE = Path(os.environ.get("SAFEKIT_DEB_CACHE", "/var/tmp/safekit-deb"))  # noqa: S108
MIRROR = os.environ.get("SAFEKIT_DEB_MIRROR", "http://deb.debian.org/debian")
# Build tools of the build root; none of them is a dependency of the package (gcc, make, pkg-config,
# libfuse3-dev, libssl-dev: the native replication programs; no Python extension is compiled).
BUILD_PACKAGES = "python3,python3-venv,gcc,libc6-dev,make,pkg-config,libfuse3-dev,libssl-dev,ca-certificates"
READY_MARK = ".safekit-root-complete"
HOST_CA = os.environ.get("SAFEKIT_DEB_CA", "/etc/ssl/certs/ca-certificates.crt")
# Bump when the recipe of the dependencies' virtualenv changes (invalidates that cache).
DEPS_RECIPE = "1"
VENV = "/opt/safekit/venv"
LIBEXEC = "/opt/safekit/libexec"
NATIVE_PROGRAMS = ("safekit-rfs-primary", "safekit-rfs-secondary")
# Programs the engine runs, whose packages ldd cannot find: fusermount3 (replication), ip
# (virtual IPs, interfaces), nft (farm modules' rules).
PROGRAM_DEPENDS = ("fuse3", "iproute2", "nftables")
# The engine's inputs besides src/ (hashed into the package's cache key).
SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE", "docs/systemd.md")


@dataclass(frozen=True)
class Suite:
    name: str
    debian: str
    python: str
    unit_dir: str
    """Where the suite's packages put systemd units (trixie finished the move to /usr)."""
    build_extra: str = ""
    """Build packages debootstrap does not find by itself (it does not resolve virtual packages)."""


SUITES = {
    # In both suites libfuse3-dev depends on the virtual libselinux-dev: without the real package
    # named, debootstrap leaves libfuse3-dev unconfigured and fails (a machine without the cached
    # build root found it for bookworm).
    "bookworm": Suite("bookworm", "12", "3.11", "lib/systemd/system", ",libselinux1-dev"),
    "trixie": Suite("trixie", "13", "3.13", "usr/lib/systemd/system", ",libselinux1-dev"),
}

# Mounts the throwaway overlay of the build root, binds what the step needs, chroots and runs the
# step's script. Runs under `unshare --mount --fork`: every mount disappears with the process.
IN_ROOT = r"""
set -eu
R=$MERGED
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$UPPER,workdir=$WORKDIR" "$R"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount --bind /etc/resolv.conf "$R/etc/resolv.conf"
touch "$R/etc/safekit-build-ca.pem"; mount --bind "$HOST_CA" "$R/etc/safekit-build-ca.pem"
set -- $BINDS
while [ $# -gt 0 ]; do
  mkdir -p "$R$2"; mount --bind "$1" "$R$2"; shift 2
done
exec chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
  SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" PIP_CERT=/etc/safekit-build-ca.pem \
  ${PIP_INDEX_URL:+PIP_INDEX_URL="$PIP_INDEX_URL"} /bin/sh -euc "$SCRIPT"
"""


class BuildError(RuntimeError):
    pass


STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"build_deb: {time.monotonic() - STARTED:5.0f} s  {message}", flush=True)


def sha256_files(paths: Iterable[Path], base: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(base)).encode() + b"\0")
        digest.update(path.read_bytes() if not path.is_symlink() else os.readlink(path).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def tree_files(top: Path, skip: Iterable[str] = ()) -> list[Path]:
    skipped = {"__pycache__", ".mypy_cache", ".pytest_cache", *skip}
    found = []
    for path in top.rglob("*"):
        if any(part in skipped or part.endswith(".egg-info") for part in path.relative_to(top).parts):
            continue
        if path.is_file() and path.suffix not in (".pyc", ".pyo"):
            found.append(path)
    return found


def dependencies() -> list[str]:
    """The engine's runtime requirements (pyproject.toml's [project] dependencies)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def upstream_version() -> str:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return str(project["version"])


def set_version(pyproject: str, version: str) -> str:
    """PYPROJECT (pyproject.toml's text) with [project] version VERSION (--version: a package of
    another version from the same tree, such as the newer one a rolling-upgrade test installs)."""
    text, count = re.subn(r'(?m)^version = "[^"]*"$', f'version = "{version}"', pyproject, count=1)
    if count != 1 or tomllib.loads(text)["project"]["version"] != version:
        raise BuildError(f"cannot set the version {version!r} in pyproject.toml")
    return text


def debian_version(upstream: str, suite: Suite) -> str:
    """PEP 440 to Debian: pre-releases sort before the release (`~`), and development releases
    before the pre-releases (`~~`), as pip orders them."""
    version = re.sub(r"(a|b|rc)(\d*)", r"~\1\2", upstream)
    version = re.sub(r"\.?dev(\d*)", r"~~dev\1", version)
    return f"{version}-1+deb{suite.debian}"


def build_root(suite: Suite) -> Path:
    """The suite's build root, made once (debootstrap, a few minutes) and reused."""
    root = CACHE / f"{suite.name}-build"
    CACHE.mkdir(parents=True, exist_ok=True)
    with locked(CACHE / f".{suite.name}-build.lock"):
        if (root / READY_MARK).exists():
            return root
        if shutil.which("debootstrap") is None:
            raise BuildError("debootstrap is not installed (apt-get install debootstrap)")
        say(f"debootstrap {suite.name} into {root} (once)")
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={BUILD_PACKAGES}{suite.build_extra}",
                suite.name,
                str(root),
                MIRROR,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=1800,
        )
        (root / READY_MARK).write_text("debootstrap done\n")
        return root


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def in_root(root: Path, script: str, binds: dict[Path, str], epoch: int) -> str:
    """Run SCRIPT (sh) as root in a throwaway overlay of ROOT with BINDS {host path: path inside}."""
    with tempfile.TemporaryDirectory(prefix="safekit-deb-", dir=CACHE) as tmp:
        for sub in ("upper", "work", "merged"):
            (Path(tmp) / sub).mkdir()
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LOWER": str(root),
            "UPPER": f"{tmp}/upper",
            "WORKDIR": f"{tmp}/work",
            "MERGED": f"{tmp}/merged",
            "BINDS": " ".join(f"{host} {inside}" for host, inside in binds.items()),
            "SCRIPT": script,
            "SOURCE_DATE_EPOCH": str(epoch),
            # pip in the root trusts what this machine trusts (a proxy's own CA, say)
            "HOST_CA": HOST_CA,
        }
        if os.environ.get("PIP_INDEX_URL"):
            env["PIP_INDEX_URL"] = os.environ["PIP_INDEX_URL"]
        result = subprocess.run(
            ["unshare", "--mount", "--fork", "sh", "-c", IN_ROOT],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BuildError(
                f"in the {root.name} root: exit {result.returncode}\n{result.stdout}{result.stderr}"
            )
        # The overlay's upper directory holds root-owned files of the step: removed with tmp.
        return result.stdout


def forget_stale(entries: Iterable[Path], keep: Path, days: float = 2) -> None:
    """Old cache entries go once unused for DAYS (not at once: another checkout building at the
    same time with other inputs may be using one)."""
    for old in entries:
        if old != keep and time.time() - old.stat().st_mtime > days * 86400:
            shutil.rmtree(old, ignore_errors=True)


def deps_venv(root: Path, suite: Suite, epoch: int) -> Path:
    """The virtualenv with the engine's dependencies (not the engine), cached by their list."""
    requirements = "\n".join(dependencies()) + "\n"
    key = hashlib.sha256(f"{DEPS_RECIPE}\n{suite.name}\n{requirements}".encode()).hexdigest()[:16]
    venv = CACHE / f"{suite.name}-deps-{key}"
    with locked(CACHE / f".{suite.name}-deps.lock"):
        if (venv / READY_MARK).exists():
            say(f"dependencies: cached ({venv.name})")
            os.utime(venv)  # in use: see forget_stale
            return venv
        say(f"dependencies: pip install into a new {VENV} with {suite.name}'s python{suite.python}")
        started = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)
        venv.mkdir()
        with tempfile.TemporaryDirectory(prefix="safekit-deb-req-", dir=CACHE) as req:
            (Path(req) / "requirements.txt").write_text(requirements)
            in_root(
                root,
                f"python{suite.python} -m venv {VENV}\n"
                f"{VENV}/bin/pip install --quiet --no-cache-dir --disable-pip-version-check "
                "-r /build/req/requirements.txt\n",
                {venv: VENV, Path(req): "/build/req"},
                epoch,
            )
        (venv / READY_MARK).write_text(requirements)
        forget_stale(CACHE.glob(f"{suite.name}-deps-*"), keep=venv)
        say(f"dependencies: built in {time.monotonic() - started:.0f} s")
        return venv


def native_programs(root: Path, suite: Suite, epoch: int) -> Path | None:
    """native/'s replication programs built in the target root, cached by native/'s sources."""
    native = REPO / "native"
    if not (native / "Makefile").exists():
        say("native: no native/ in this tree, the package has no native programs")
        return None
    files = tree_files(native, skip=("build",))
    key = sha256_files(files, native)[:16]
    out = CACHE / f"{suite.name}-native-{key}"
    with locked(CACHE / f".{suite.name}-native.lock"):
        if (out / READY_MARK).exists():
            say(f"native: cached ({out.name})")
            os.utime(out)
            return out
        say("native: make in the build root")
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        with tempfile.TemporaryDirectory(prefix="safekit-deb-native-", dir=CACHE) as src:
            shutil.copytree(native, Path(src) / "native", ignore=shutil.ignore_patterns("build"))
            targets = " ".join(f"/build/out/{p}" for p in NATIVE_PROGRAMS)
            in_root(
                root,
                f"make -s -C /build/src/native -j2 B=/build/out {targets}\n",
                {Path(src): "/build/src", out: "/build/out"},
                epoch,
            )
        for entry in out.iterdir():
            if entry.name not in NATIVE_PROGRAMS:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        (out / READY_MARK).write_text(key + "\n")
        forget_stale(CACHE.glob(f"{suite.name}-native-*"), keep=out)
        return out


def package_key(suite: Suite, deps: Path, native: Path | None, version: str | None = None) -> str:
    files = [*tree_files(REPO / "src"), *tree_files(PACKAGING)]
    files += [REPO / f for f in SOURCE_FILES if (REPO / f).exists()]
    digest = hashlib.sha256(
        f"{suite.name}\n{deps.name}\n{native.name if native else '-'}\n{version or '-'}\n".encode()
    )
    digest.update(sha256_files(files, REPO).encode())
    return digest.hexdigest()


def elf_files(top: Path) -> list[Path]:
    found = []
    for path in top.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                if f.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def strip(root: Path, stage: Path, epoch: int) -> None:
    """Debug symbols out of the ELF files (the target's binutils, as Debian's own packages are)."""
    files = [f"/build/stage/{p.relative_to(stage)}" for p in elf_files(stage)]
    if files:
        in_root(root, f"strip --strip-unneeded {' '.join(files)}\n", {stage: "/build/stage"}, epoch)


def shlib_depends(root: Path, stage: Path, epoch: int) -> list[str]:
    """The packages of the target root that own the shared libraries the package's ELF files load."""
    files = [f"/build/stage/{p.relative_to(stage)}" for p in elf_files(stage)]
    if not files:
        return []
    script = (
        'for f in "$@"; do ldd "$f"; done |\n'
        "  awk '$2 == \"=>\" && $3 ~ /^\\// {print $3} $1 ~ /^\\// {print $1}' |\n"
        "  sort -u | while read -r lib; do\n"
        '  case "$lib" in /build/stage/*) continue ;; esac\n'
        '  real=$(readlink -f "$lib")\n'
        '  for p in "$lib" "$real" "/usr$lib" "${lib#/usr}" "/usr$real" "${real#/usr}"; do\n'
        # "diversion by ..." lines are not owners; "pkg1, pkg2: path" has two, the first will do
        '    pkg=$(dpkg -S "$p" 2>/dev/null | grep -v "^diversion " | head -n1 | cut -d: -f1 | cut -d, -f1)\n'
        '    if [ -n "$pkg" ]; then echo "$pkg"; break; fi\n'
        "  done\n"
        "done | sort -u\n"
    )
    out = in_root(root, f"set -- {' '.join(files)}\n{script}", {stage: "/build/stage"}, epoch)
    return sorted(set(out.split()))


def control_text(suite: Suite, version: str, arch: str, depends: list[str], installed_kib: int) -> str:
    return (
        "Package: safekit\n"
        f"Version: {version}\n"
        f"Architecture: {arch}\n"
        "Maintainer: safekit contributors <safekit@users.noreply.github.com>\n"
        f"Installed-Size: {installed_kib}\n"
        f"Depends: {', '.join(depends)}\n"
        "Section: admin\n"
        "Priority: optional\n"
        "Description: open software-only high availability for Linux (the engine)\n"
        " safekit mirrors an application between two servers (real-time file\n"
        " replication and failover) or spreads it over a farm behind a virtual IP.\n"
        " .\n"
        " This package is self-contained: the engine and every Python library it\n"
        f" needs live in {VENV}, made with Debian {suite.debian}'s python{suite.python};\n"
        " the native replication programs are in /opt/safekit/libexec. It installs\n"
        " the safekitd.service unit but never enables nor starts it.\n"
    )


def write_doc(doc: Path, suite: Suite, version: str, freeze: list[str], epoch: int) -> None:
    """/usr/share/doc/safekit: copyright, changelog, the Python libraries' versions."""
    doc.mkdir(parents=True)
    (doc / "requirements.txt").write_text(
        f"# The Python libraries in {VENV} (pip freeze at the build)\n" + "\n".join(freeze) + "\n"
    )
    shutil.copy2(PACKAGING / "debian" / "copyright", doc / "copyright")
    changelog = (
        f"safekit ({version}) {suite.name}; urgency=medium\n\n"
        "  * Built from the safekit source tree by packaging/build_deb.py.\n\n"
        f" -- safekit contributors <safekit@users.noreply.github.com>  "
        f"{time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime(epoch))}\n"
    )
    with (
        (doc / "changelog.Debian.gz").open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=epoch, filename="") as gz,
    ):
        gz.write(changelog.encode())


def copy_source(dest: Path, upstream: str | None) -> None:
    """The engine's source tree into DEST, of version UPSTREAM if given (in the copy only)."""
    shutil.copytree(REPO / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, dest / name)
    if upstream is not None:
        pyproject = dest / "pyproject.toml"
        pyproject.write_text(set_version(pyproject.read_text(), upstream))


def stage_package(
    suite: Suite,
    root: Path,
    *,
    deps: Path,
    native: Path | None,
    stage: Path,
    epoch: int,
    upstream: str | None = None,
) -> str:
    """Fill STAGE with the package's tree, of version UPSTREAM (PEP 440; default pyproject.toml's);
    returns the Debian version."""
    venv = stage / VENV.lstrip("/")
    venv.parent.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(deps), str(venv)], check=True)
    (venv / READY_MARK).unlink()
    with tempfile.TemporaryDirectory(prefix="safekit-deb-src-", dir=CACHE) as src:
        copy_source(Path(src), upstream)
        say("engine: pip install into a copy of the dependencies")
        out = in_root(
            root,
            f"{VENV}/bin/pip install --quiet --no-cache-dir --disable-pip-version-check --no-deps "
            "/build/src\n"
            f"{VENV}/bin/safekit --version\n"
            f"{VENV}/bin/pip freeze --all --exclude safekit > /build/src/freeze.txt\n"
            "dpkg --print-architecture > /build/src/arch\n",
            {venv: VENV, Path(src): "/build/src"},
            epoch,
        )
        say(f"engine: {out.strip()}")
        freeze = (Path(src) / "freeze.txt").read_text().split()
        arch = (Path(src) / "arch").read_text().strip()
    version = debian_version(upstream or upstream_version(), suite)
    write_doc(stage / "usr/share/doc/safekit", suite, version, freeze, epoch)
    if native is not None:
        libexec = stage / LIBEXEC.lstrip("/")
        libexec.mkdir(parents=True)
        for program in NATIVE_PROGRAMS:
            shutil.copy2(native / program, libexec / program)
            (libexec / program).chmod(0o755)
        # where safekit.rfs.native looks first (the wheel's place for them): the programs are the
        # only engine (docs/adr/0029, 0033), safekitd finds them without SAFEKIT_RFS_NATIVE_DIR (a
        # relative link: lintian's symlink-should-be-relative)
        rfs = f"{VENV}/lib/python{suite.python}/site-packages/safekit/rfs"
        (stage / rfs.lstrip("/") / "native-bin").symlink_to(os.path.relpath(LIBEXEC, rfs))
    docs = stage / "opt/safekit/docs"
    docs.mkdir(parents=True)
    shutil.copy2(REPO / "docs" / "systemd.md", docs / "systemd.md")
    bindir = stage / "usr/bin"
    bindir.mkdir(parents=True)
    for program in ("safekit", "safekitd"):
        (bindir / program).symlink_to(f"{VENV}/bin/{program}")
    units = stage / suite.unit_dir
    units.mkdir(parents=True)
    shutil.copy2(PACKAGING / "systemd" / "safekitd.service", units / "safekitd.service")
    (units / "safekitd.service").chmod(0o644)

    overrides = stage / "usr/share/lintian/overrides"
    overrides.mkdir(parents=True)
    shutil.copy2(PACKAGING / "debian" / "lintian-overrides", overrides / "safekit")
    strip(root, stage, epoch)
    needed = {*shlib_depends(root, stage, epoch), "python3", f"python{suite.python}", *PROGRAM_DEPENDS}
    depends = sorted(needed)
    installed = int(
        subprocess.run(["du", "-sk", str(stage)], capture_output=True, text=True, check=True).stdout.split()[
            0
        ]
    )
    control = stage / "DEBIAN"
    control.mkdir()
    (control / "control").write_text(control_text(suite, version, arch, depends, installed))
    for script in ("postinst", "prerm", "postrm"):
        shutil.copy2(PACKAGING / "debian" / script, control / script)
        (control / script).chmod(0o755)
    sums = []
    for path in sorted(stage.rglob("*")):
        if path.is_file() and not path.is_symlink() and control not in path.parents:
            sums.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {path.relative_to(stage)}")  # noqa: S324 - dpkg's format
    (control / "md5sums").write_text("\n".join(sums) + "\n")
    return version + " " + arch


def build(suite: Suite, out_dir: Path, force: bool, upstream: str | None = None) -> Path:
    started = time.monotonic()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))
    root = build_root(suite)
    deps = deps_venv(root, suite, epoch)
    native = native_programs(root, suite, epoch)
    key = package_key(suite, deps, native, upstream)
    out_dir.mkdir(parents=True, exist_ok=True)
    marker = out_dir / f".safekit-{suite.name}.key"
    with locked(out_dir / f".safekit-{suite.name}.lock"):
        if not force and marker.exists():
            recorded_key, _, recorded = marker.read_text().partition("\n")
            if recorded_key == key and (out_dir / recorded.strip()).exists():
                deb = out_dir / recorded.strip()
                say(f"cached: {deb} ({deb.stat().st_size / 1e6:.1f} MB, inputs unchanged)")
                return deb
        with tempfile.TemporaryDirectory(prefix="safekit-deb-stage-", dir=CACHE) as tmp:
            stage = Path(tmp) / "stage"
            stage.mkdir()
            version, arch = stage_package(
                suite, root, deps=deps, native=native, stage=stage, epoch=epoch, upstream=upstream
            ).split()
            deb = out_dir / f"safekit_{version}_{arch}.deb"
            say(f"dpkg-deb --build {deb.name}")
            subprocess.run(
                ["dpkg-deb", "--root-owner-group", "-Zzstd", "-z9", "--build", str(stage), str(deb)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        marker.write_text(f"{key}\n{deb.name}\n")
        for older in out_dir.glob(f"safekit_*+deb{suite.debian}_*.deb"):
            if older != deb:
                older.unlink()
    say(f"built {deb} ({deb.stat().st_size / 1e6:.1f} MB) in {time.monotonic() - started:.0f} s")
    return deb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="bookworm")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "deb")
    parser.add_argument("--force", action="store_true", help="rebuild the package even if cached")
    parser.add_argument(
        "--version",
        help="the engine's version in the package (PEP 440; default pyproject.toml's, which is not changed)",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("build_deb: run as root (debootstrap, mounts, chroot)", file=sys.stderr)
        return 1
    try:
        deb = build(SUITES[args.suite], args.out, args.force, args.version)
    except (BuildError, subprocess.CalledProcessError) as e:
        print(f"build_deb: {e}", file=sys.stderr)
        return 1
    print(deb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
