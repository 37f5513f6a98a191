"""A lab host whose PID 1 is systemd, without systemd-nspawn and without systemd on the machine.

How (docs/systemd.md, "Testing under a real systemd"):

1. a Debian root made once by debootstrap (systemd, dbus, python3, iproute2, nftables, fuse3),
   cached under /var/tmp; each host boots an overlay of it (a throwaway upper directory);
2. a network namespace named after the host (`ip netns add NAME`), so the lab's networking is
   plain `ip` inside it;
3. a child cgroup of the machine's cgroup2 hierarchy (`/sys/fs/cgroup` or, on a hybrid machine,
   `/sys/fs/cgroup/unified`) that the launcher moves itself into;
4. `ip netns exec NAME unshare --pid --fork --mount --cgroup --uts --ipc` runs INIT as PID 1 of
   new namespaces: it mounts the overlay, /proc, a read-only /sys, cgroup2 (whose root is now the
   host's cgroup, thanks to the cgroup namespace), a small /dev (null, zero, random, tty, fuse,
   net/tun and a devpts instance), binds the directories given read-only (the venv, its Python and
   the source under test), `pivot_root`s into the overlay and execs /lib/systemd/systemd with
   `container=safekit-lab` (systemd's container interface: it skips what a container must not do).

Commands run inside with `nsenter --target PID --all` (every namespace and the root of PID 1).
Ending: `systemctl poweroff` inside (systemd stops its units and exits, which ends the PID
namespace), else SIGKILL to PID 1 from outside; then the netns, the cgroups and the overlay go.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ROOT = Path("/var/tmp/safekit-systemd/bookworm")
MIRROR = "http://deb.debian.org/debian"
PACKAGES = "systemd,systemd-sysv,dbus,python3,iproute2,procps,fuse3,libfuse3-3,nftables,iputils-ping,kmod"
# Units that have nothing to do in a lab host (a console login, time sync from the internet).
MASKED = ("console-getty.service", "getty@.service", "systemd-timesyncd.service")
READY_MARK = ".safekit-root-complete"

INIT = r"""
set -eu
R=$MERGED
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$UPPER,workdir=$WORKDIR" "$R"
mount -t proc proc "$R/proc"
mount -t sysfs -o ro sysfs "$R/sys"
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"
mount -t tmpfs -o mode=755,size=16m tmpfs "$R/dev"
for d in null zero full random urandom tty fuse net/tun; do
  [ -e "/dev/$d" ] || continue
  mkdir -p "$(dirname "$R/dev/$d")"; touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"
done
mkdir -p "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
touch "$R/dev/console"; mount --bind "$CONSOLE" "$R/dev/console"
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"
for b in $BINDS; do
  mkdir -p "$R$b"; mount --rbind "$b" "$R$b"; mount -o remount,bind,ro "$R$b"
done
hostname "$HOST"
cd "$R"; mkdir -p .oldroot; pivot_root . .oldroot; umount -l /.oldroot; rmdir /.oldroot
exec env -i container=safekit-lab TERM=dumb /lib/systemd/systemd
"""


class HostError(RuntimeError):
    pass


def cgroup2_base() -> Path:
    """Where the machine's cgroup2 hierarchy is mounted (unified, or hybrid's `unified`)."""
    for path in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        if (path / "cgroup.procs").exists() and (path / "cgroup.subtree_control").exists():
            return path
    raise HostError("no cgroup2 hierarchy on this machine: systemd (v252) cannot run a container without one")


def build_root(root: Path = DEFAULT_ROOT, *, suite: str = "bookworm") -> Path:
    """The base root, made once (debootstrap, a few minutes) and reused; safe to call concurrently."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / f".{root.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / READY_MARK).exists():
            return root
        if shutil.which("debootstrap") is None:
            raise HostError("debootstrap is not installed (make test-deps installs it)")
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", suite, str(root), MIRROR],
            check=True,
            capture_output=True,
            timeout=1800,
        )
        prepare_root(root)
        return root


def prepare_root(root: Path) -> None:
    for unit in MASKED:
        link = root / "etc" / "systemd" / "system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    # Each boot makes its own machine id (in its overlay).
    (root / "etc" / "machine-id").write_text("")
    shutil.rmtree(root / "var" / "log" / "journal", ignore_errors=True)
    (root / "var" / "log" / "journal").mkdir()
    (root / READY_MARK).write_text("debootstrap done\n")


@dataclass
class SystemdHost:
    name: str
    base_root: Path
    state_dir: Path
    binds: Sequence[Path] = ()
    pid: int | None = None
    """systemd's PID as the machine sees it."""
    launcher: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def cgroup(self) -> Path:
        return cgroup2_base() / f"safekit-{self.name}"

    @property
    def root(self) -> Path:
        """The host's root as the machine sees it (through PID 1)."""
        assert self.pid is not None
        return Path(f"/proc/{self.pid}/root")

    def boot(self, timeout: float = 60) -> None:
        self.destroy()  # leftovers of an interrupted earlier run
        for sub in ("upper", "work", "merged"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        console = self.state_dir / "console.log"
        console.write_text("")
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.cgroup.mkdir()
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LOWER": str(self.base_root),
            "UPPER": str(self.state_dir / "upper"),
            "WORKDIR": str(self.state_dir / "work"),
            "MERGED": str(self.state_dir / "merged"),
            "CONSOLE": str(console),
            "BINDS": " ".join(str(b) for b in self.binds),
            "HOST": self.name,
        }
        launch = (
            f"echo $$ > {shlex.quote(str(self.cgroup / 'cgroup.procs'))} && exec ip netns exec "
            f"{shlex.quote(self.name)} unshare --pid --fork --mount --cgroup --uts --ipc "
            f"bash -c {shlex.quote(INIT)}"
        )
        with (self.state_dir / "launcher.log").open("wb") as out:
            self.launcher = subprocess.Popen(
                ["sh", "-c", launch],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while self.pid is None:
            self.pid = self._systemd_pid()
            if self.launcher.poll() is not None:
                raise HostError(f"{self.name} did not boot: {(self.state_dir / 'launcher.log').read_text()}")
            if time.monotonic() > deadline:
                raise HostError(f"{self.name}: no systemd after {timeout} s")
            time.sleep(0.1)
        while True:
            state = self.run(["systemctl", "is-system-running"], check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                raise HostError(f"{self.name}: systemd is {state!r} after {timeout} s")
            time.sleep(0.2)

    def _systemd_pid(self) -> int | None:
        """PID 1 of the host: the process named systemd in the host's cgroup."""
        for line in (self.cgroup / "cgroup.procs").read_text().split() if self.cgroup.exists() else []:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{line}/comm").read_text().strip() == "systemd":
                    return int(line)
        with contextlib.suppress(OSError):
            for path in self.cgroup.glob("init.scope/cgroup.procs"):
                for line in path.read_text().split():
                    return int(line)
        return None

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        assert self.pid is not None
        result = subprocess.run(
            ["nsenter", f"--target={self.pid}", "--all", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
        if check and result.returncode != 0:
            raise HostError(
                f"{self.name}: {' '.join(argv)}: exit {result.returncode}: {result.stderr}{result.stdout}"
            )
        return result

    def sh(self, script: str, *, check: bool = True, timeout: float = 120) -> str:
        return self.run(["sh", "-c", script], check=check, timeout=timeout).stdout

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        self.run(
            ["sh", "-c", f'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod {mode:o} "$1"', "write", path],
            input=text,
        )

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run(["systemctl", "show", unit, *(f"--property={p}" for p in props)]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def poweroff(self, timeout: float = 60) -> None:
        if self.pid is None or self.launcher is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired, HostError):
            self.run(["systemctl", "poweroff"], check=False, timeout=10)
            self.launcher.wait(timeout=timeout)
        if self.launcher.poll() is None:
            # PID 1 of a PID namespace: SIGKILL ends every process of the host.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.launcher.wait(timeout=30)
        self.pid = None

    def _kill_leftovers(self, timeout: float = 30) -> None:
        """A host left by an interrupted run (its launcher belongs to a dead test process): every
        process in the host's own cgroup is killed (cgroup.kill), which ends its PID namespace."""
        events = self.cgroup / "cgroup.events"
        if "populated 1" not in events.read_text():
            return
        (self.cgroup / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + timeout
        while "populated 1" in events.read_text():
            if time.monotonic() > deadline:
                raise HostError(f"{self.name}: processes left in {self.cgroup} after cgroup.kill")
            time.sleep(0.1)

    def destroy(self) -> None:
        """Remove the netns, the cgroups and the overlay (the processes must be gone)."""
        if self.launcher is not None and self.launcher.poll() is None:
            self.poweroff()
        if self.cgroup.exists():
            self._kill_leftovers()
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)
        if self.cgroup.exists():
            for path in sorted(self.cgroup.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if path.is_dir():
                    with contextlib.suppress(OSError):
                        path.rmdir()
            with contextlib.suppress(OSError):
                self.cgroup.rmdir()
        merged = self.state_dir / "merged"
        if merged.exists() and os.path.ismount(merged):
            subprocess.run(["umount", "-l", str(merged)], check=False)
        shutil.rmtree(self.state_dir, ignore_errors=True)


@contextlib.contextmanager
def booted(name: str, base_root: Path, binds: Sequence[Path]) -> Iterator[SystemdHost]:
    host = SystemdHost(name, base_root, Path("/var/tmp") / f"safekit-systemd-{name}", binds)
    try:
        host.boot()
        yield host
    finally:
        host.destroy()
