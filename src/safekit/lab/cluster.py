"""A safekit cluster on lab hosts, for tests, benchmarks and fault drills.

It installs a cluster.xml, a cluster key and a module on lab nodes, runs `safekitd` on each as a
supervised process (`--daemon --pidfile`, as on hosts without systemd) and runs `safekit` commands
there. The engine comes from this machine's installation (lab hosts share `/usr` and the project's
virtualenv); the Ansible collection is the way to install it on real hosts.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safekit.lab import system
from safekit.lab.lab import Lab
from safekit.lab.topology import LabError
from safekit.membership import clusterkey

BIN = Path(sys.prefix) / "bin"
PIDFILE = "/run/safekitd.pid"


def cluster_xml(lab: Lab, nodes: Sequence[str], lans: Sequence[str] | None = None) -> str:
    """A cluster.xml for lab nodes, with every LAN of the lab (or the named ones)."""
    plan = lab.plan()
    chosen = [lan for lan in plan.lans if lans is None or lan.name in lans]
    lines = ["<cluster>", "  <lans>"]
    for lan in chosen:
        lines.append(f'    <lan name="{lan.name}">')
        for node in nodes:
            lines.append(f'      <node name="{node}" addr="{plan.host(node).addresses[lan.name].ip}"/>')
        lines.append("    </lan>")
    lines += ["  </lans>", "</cluster>", ""]
    return "\n".join(lines)


class LabCluster:
    def __init__(self, lab: Lab, nodes: Sequence[str] = ("node1", "node2")) -> None:
        self.lab = lab
        self.nodes = list(nodes)

    # ------------------------------------------------------------------ install
    def install(
        self,
        module_dir: Path,
        *,
        name: str | None = None,
        cluster: str | None = None,
        key: bytes | None = None,
    ) -> str:
        """Put cluster.xml, the key and the module on every node (replacing an older copy)."""
        name = name or module_dir.name
        key = key or clusterkey.generate_key()
        key_text = clusterkey.encode_key_file(key)
        xml = cluster or cluster_xml(self.lab, self.nodes)
        for node in self.nodes:
            script = (
                "set -e; umask 077; mkdir -p /etc/safekit /opt/safekit/modules; "
                'printf "%s" "$1" > /etc/safekit/cluster.xml; printf "%s" "$2" > /etc/safekit/cluster.key; '
                f"rm -rf /opt/safekit/modules/{name}; cp -r {shlex.quote(str(module_dir))} "
                f"/opt/safekit/modules/{name}; chmod -R go+rX /opt/safekit"
            )
            self.lab.exec(node, ["sh", "-c", script, "install", xml, key_text], check=True)
        return name

    def write(self, node: str, path: str, content: str, mode: int = 0o644) -> None:
        script = f'umask 022; printf "%s" "$1" > {shlex.quote(path)}; chmod {mode:o} {shlex.quote(path)}'
        self.lab.exec(node, ["sh", "-c", script, "write", content], check=True)

    # ------------------------------------------------------------------ arbiter
    def start_arbiter(
        self, key: bytes, host: str = "witness", port: int = 9455, *, grace: bool = True, fresh: bool = False
    ) -> str:
        """`safekit arbiter serve` on `host` with the key derived from the cluster `key`
        (docs/arbiter.md); returns its ADDR:PORT for `<splitbrain exec="arbitrator" arg=...>`.
        With `grace`, waits out the 10 s during which a fresh arbiter grants nothing. With `fresh`,
        an arbiter already running there is ended and the generations it recorded are forgotten
        (for modules reinstalled from scratch under the same name, as benchmarks do)."""
        address = str(self.lab.plan().host(host).address)
        safekit = str(BIN / "safekit")
        restart = (
            "if p=$(cat /run/safekit-arbiter.pid 2>/dev/null) && kill -0 $p 2>/dev/null; then "
            "kill $p; while kill -0 $p 2>/dev/null; do sleep 0.05; done; fi; "
            "rm -rf /var/safekit/arbiter; "
            if fresh
            else ""
        )
        script = (
            'set -e; umask 077; mkdir -p /etc/safekit; printf "%s" "$1" > /etc/safekit/cluster.key; '
            + restart
            + f"{safekit} arbiter key --cluster-key /etc/safekit/cluster.key "
            + "--out /etc/safekit/arbiter.key --force; "
            f"{safekit} arbiter serve --daemon --listen {address}:{port} --key-file /etc/safekit/arbiter.key "
            "--log-file /var/log/safekit-arbiter.log --pidfile /run/safekit-arbiter.pid "
            "--state-dir /var/safekit/arbiter"  # private to the lab host (/var/lib is the machine's)
        )
        self.lab.exec(
            host, ["sh", "-c", script, "arbiter", clusterkey.encode_key_file(key)], check=True, timeout=30
        )
        if grace:
            time.sleep(10.5)
        return f"{address}:{port}"

    # ------------------------------------------------------------------ daemons
    def start_daemon(self, node: str, *extra: str) -> None:
        result = self.lab.exec(
            node, [str(BIN / "safekitd"), "--daemon", "--pidfile", PIDFILE, *extra], timeout=30
        )
        if result.returncode != 0:
            raise LabError(f"{node}: safekitd did not start: {result.stderr.strip()}")
        self.wait_socket(node)

    def wait_socket(self, node: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.lab.exec(node, ["test", "-S", "/run/safekit/safekitd.sock"]).returncode == 0:
                return
            time.sleep(0.05)
        log = self.lab.exec(node, ["tail", "-20", "/var/log/safekit/safekitd.log"]).stdout
        raise LabError(f"{node}: safekitd has no control socket after {timeout:g} s:\n{log}")

    def stop_daemon(self, node: str, timeout: float = 60.0) -> None:
        """SIGTERM, as systemd would: the daemon stops its modules first."""
        pid = self.daemon_pid(node)
        if pid is None:
            return
        self.lab.exec(node, ["kill", "-TERM", str(pid)])
        deadline = time.monotonic() + timeout
        while self.daemon_pid(node) is not None:
            if time.monotonic() > deadline:
                raise LabError(
                    f"{node}: safekitd (pid {pid}) still runs {timeout:g} s after SIGTERM\n"
                    + self.hang_report(node, pid)
                )
            time.sleep(0.05)

    def stop_daemons(self) -> None:
        """SIGTERM the daemon of every node that still has power (a powered-off node's processes are
        gone already), each waited for: what a test's cluster fixture does at its end."""
        state = self.lab.load_state()
        if state is None:
            return
        for node in self.nodes:
            if node not in state.faults.killed:
                self.stop_daemon(node)

    def hang_report(self, node: str, pid: int) -> str:
        """What a daemon that does not stop is doing: its task and thread stacks (SIGUSR1), the end
        of its log and the node's processes (with the kernel function each one waits in), for the
        error a test prints. Each look is bounded: `ps` itself can block on a process stuck in FUSE."""
        self.lab.exec(node, ["kill", "-USR1", str(pid)])
        time.sleep(1.0)
        pids = ",".join(str(p) for p in system.netns_pids(self.lab.plan().host(node).netns)) or "1"
        looks = {
            "end of safekitd.log": ["tail", "-n", "150", "/var/log/safekit/safekitd.log"],
            "processes": ["ps", "-o", "pid,ppid,stat,wchan:32,etime,comm", "-p", pids],
        }
        parts = []
        for title, argv in looks.items():
            try:
                text = self.lab.exec(node, argv, timeout=15).stdout
            except subprocess.TimeoutExpired:
                text = f"({' '.join(argv)} did not answer in 15 s)\n"
            parts.append(f"--- {title} ---\n{text}")
        return "".join(parts)

    def daemon_pid(self, node: str) -> int | None:
        result = self.lab.exec(node, ["sh", "-c", f"p=$(cat {PIDFILE} 2>/dev/null) && kill -0 $p && echo $p"])
        return int(result.stdout) if result.returncode == 0 and result.stdout.strip() else None

    # ------------------------------------------------------------------ commands
    def safekit(
        self, node: str, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = self.lab.exec(node, [str(BIN / "safekit"), *args], timeout=timeout)
        if check and result.returncode != 0:
            raise LabError(
                f"{node}: safekit {' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def state(self, node: str, module: str) -> dict[str, Any]:
        out = self.safekit(node, "state", "-m", module, "-v", "--json").stdout
        modules: list[dict[str, Any]] = json.loads(out)["modules"]
        return modules[0]

    def wait_state(
        self, node: str, module: str, state: str, *, ready: bool = True, timeout: float = 30.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        current: dict[str, Any] = {}
        while time.monotonic() < deadline:
            current = self.state(node, module)
            if current["state"] == state and (not ready or current["readiness"] == "Ready"):
                return current
            time.sleep(0.1)
        raise LabError(
            f"{node}: {module} is {current.get('state')} ({current.get('readiness')}), not {state} after "
            f"{timeout:g} s: {current.get('reason')}"
        )

    def log(self, node: str, module: str) -> str:
        return self.lab.exec(node, ["cat", f"/var/log/safekit/modules/{module}.log"]).stdout

    def keep_logs(self, module: str) -> list[str]:
        """The module log and safekitd.log of every node still running, in
        /var/tmp/safekit-LAB-logs (replaced at each run) for a post-mortem of a failed run, a CI
        run's included; returns those nodes (a killed one has no logs to read)."""
        keep = Path(f"/var/tmp/safekit-{self.lab.name}-logs")  # noqa: S108 - root-owned, made anew
        shutil.rmtree(keep, ignore_errors=True)
        keep.mkdir()
        living = [node for node in self.nodes if node not in self.lab.require_state().faults.killed]
        for node in living:
            (keep / f"{node}.log").write_text(self.log(node, module))
            daemon = self.lab.exec(node, ["cat", "/var/log/safekit/safekitd.log"]).stdout
            (keep / f"{node}-safekitd.log").write_text(daemon)
        return living
