"""The fault-injection run on lab hosts: deploy chaosapp (its append service and PostgreSQL), run
the client's workloads (appends, PostgreSQL commits) and ARP probe, inject the nemesis's faults
round after round, judge each round, write the report.

This module does the I/O (lab commands, processes, HTTP through the VIP); what a round's evidence
means is decided in `judge`, what the run sums up to in `report`. docs/chaos.md describes the
procedure and the invariants.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from safekit.chaos import judge, pgworkload
from safekit.chaos.nemesis import ALL_KINDS, SAFEKITD_RESTART_DELAY, Fault, FaultKind, schedule
from safekit.chaos.procstats import EngineFigures, engine_figures, netns_processes, role_of
from safekit.chaos.report import RECOVERY_BOUND, RFS_STOP_BOUND, RoundResult, passed, summarise
from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.system import netns_pids
from safekit.lab.topology import LabError
from safekit.membership import clusterkey

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "modules" / "chaosapp"
PG_SCRIPTS = ROOT / "examples" / "modules" / "pgmirror" / "bin"
"""pgmirror's restart scripts: copied into the staged module's bin/pg/, called by chaosapp's."""
MODULE = "chaosapp"
PORT = 8090
DISK_IMAGE = "/srv/chaos.img"
DISK_MOUNT = "/srv/chaos"
DATA = "/srv/chaos/data"
PG_DATA = "/srv/chaos/pgdata"
PG_PORT = 5432
PG_PASSWORD = "chaosapp"  # noqa: S105 - the lab's superuser password, given to initdb at the first start
PG_STOP_TIMEOUT = 3
"""Seconds of PostgreSQL's fast shutdown before an immediate one: below nicestoptimeout (10 s)."""
PG_START_TIMEOUT = 120
PG_SETTINGS = {
    # WAL segments are 16 MiB and the disk is small: recycle a few rather than keep 1 GiB of them
    "max_wal_size": "64MB",
    "min_wal_size": "32MB",
}
PG_READ_TIMEOUT = 30.0
"""How long the check after a round retries reading the ids (PostgreSQL may still be starting)."""
DISK_SIZE_MB = 256
FILLER = "/srv/chaos/filler"
DISK_FULL_WAIT = 20.0
ARBITER_PORT = 9455
WITNESS_MODES = ("ping", "arbitrator", "none")
NODES = ("node1", "node2")
LOG_DIR = Path("/var/tmp/safekit-chaos-logs")  # noqa: S108 - root-owned, removed and made anew


def log_dir(lab: str) -> Path:
    """Where a run on lab `lab` keeps the nodes' logs (one directory per lab: runs on other labs
    at the same time do not overwrite them)."""
    return LOG_DIR / lab


def arbitrator_available() -> bool:
    """Whether this checkout has the arbitrating witness (src/safekit/arbiter)."""
    return importlib.util.find_spec("safekit.arbiter") is not None


def default_witness_mode() -> str:
    return "arbitrator" if arbitrator_available() else "ping"


def userconfig(vip: str, witness: str, mode: str, *, postgres: bool = True) -> str:
    """chaosapp's userconfig.xml for this lab (examples/modules/chaosapp/conf, with its values);
    with `postgres`, PostgreSQL runs beside the append service on a second replicated directory."""
    if mode == "ping":
        splitbrain = f'<splitbrain ident="witness" exec="ping" arg="{witness}"/>'
    elif mode == "arbitrator":
        splitbrain = f'<splitbrain ident="witness" exec="arbitrator" arg="{witness}:{ARBITER_PORT}"/>'
    elif mode == "none":
        splitbrain = ""
    else:
        raise ValueError(f"witness mode {mode!r}: one of {', '.join(WITNESS_MODES)}")
    pg_dir = pg_vars = pg_errd = ""
    if postgres:
        # postmaster.pid names a process of the node that wrote it (pgmirror's userconfig.xml)
        pg_dir = f"""
    <replicated dir="{PG_DATA}">
      <notreplicated path="postmaster.pid"/>
    </replicated>"""
        pg_vars = f"""
    <var name="CHAOS_PG" value="1"/>
    <var name="PGDATA" value="{PG_DATA}"/>
    <var name="PGPORT" value="{PG_PORT}"/>
    <var name="PG_SOCKET_DIR" value="/run/chaosapp-pg"/>
    <var name="PG_VIP" value="{vip}"/>
    <var name="PG_CLIENTS" value="198.18.0.0/15"/>
    <var name="PG_PASSWORD" value="{PG_PASSWORD}"/>
    <var name="PG_STOP_TIMEOUT" value="{PG_STOP_TIMEOUT}"/>
    <var name="PG_START_TIMEOUT" value="{PG_START_TIMEOUT}"/>"""
        pg_errd = (
            f'\n    <proc name="postgres" argregex="-D {PG_DATA}( |$)" atleast="1"'
            ' action="restart" class="prim"/>'
        )
    return f"""<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone" failover="on" maxloop="1000" loop_interval="24h">
  <heart>
    <heartbeat name="default"/>
    <heartbeat name="lan1"/>
  </heart>
  <vip>
    <interface_list>
      <interface check="on">
        <real_interface>
          <virtual_addr addr="{vip}" where="one_side_alias"/>
        </real_interface>
      </interface>
    </interface_list>
  </vip>
  <rfs async="second" sendtimeout="5s">
    <replicated dir="{DATA}"/>{pg_dir}
  </rfs>
  <user nicestoptimeout="10s" forcestoptimeout="10s" logging="userlog">
    <var name="CHAOS_PORT" value="{PORT}"/>
    <var name="CHAOS_DATA" value="{DATA}"/>{pg_vars}
  </user>
  <errd polltimer="1s">
    <proc name="python3" argregex="appendsvc\\.py {PORT}" atleast="1" action="restart" class="prim"/>{pg_errd}
  </errd>
  <check>
    {splitbrain}
  </check>
</service>
</safe>
"""


class Stream:
    """The lines a long-running process on a lab host prints, collected by a thread."""

    def __init__(
        self, lab: Lab, host: str, argv: list[str], name: str, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.lines: list[str] = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            lab.exec_argv(host, argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env={**os.environ, **env} if env else None,
        )
        self.thread = threading.Thread(target=self._read, name=name, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    def snapshot(self) -> list[str]:
        """The lines printed and not taken yet."""
        with self.lock:
            return list(self.lines)

    def take(self) -> list[str]:
        """The lines printed since the last call (forgotten here: memory stays flat)."""
        with self.lock:
            new, self.lines = self.lines, []
            return new

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> str:
        """Stop the process; returns what it said on stderr (for an error message)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.thread.join(5)
        return self.proc.stderr.read() if self.proc.stderr else ""


@dataclass
class Progress:
    """Where a run writes its running commentary (stderr by default)."""

    out: TextIO = field(default_factory=lambda: sys.stderr)

    def __call__(self, text: str) -> None:
        self.out.write(f"[chaos {time.strftime('%H:%M:%S')}] {text}\n")
        self.out.flush()


class ChaosCluster:
    """chaosapp on a 2-node lab (2 LANs, witness, client), and the nemesis's hands on it. With
    `postgres` (the default) the module runs PostgreSQL too, and the client commits to it."""

    def __init__(
        self,
        lab: Lab,
        *,
        witness_mode: str,
        arbiter_argv: list[str] | None = None,
        say: Callable[[str], None] | None = None,
        postgres: bool = True,
    ) -> None:
        if witness_mode not in WITNESS_MODES:
            raise ValueError(f"witness mode {witness_mode!r}: one of {', '.join(WITNESS_MODES)}")
        self.lab = lab
        self.cluster = LabCluster(lab, NODES)
        self.witness_mode = witness_mode
        self.arbiter_argv = arbiter_argv or [
            str(Path(sys.prefix) / "bin" / "safekit"),
            "arbiter",
            "serve",
        ]
        self.say = say or Progress()
        self.postgres = postgres
        self.arbiter: Stream | None = None
        self.probe: Stream | None = None
        self.workload: Stream | None = None
        self.pgworkload: Stream | None = None
        self.vip = ""
        self.macs: dict[str, str] = {}
        self.python = str(Path(sys.prefix) / "bin" / "python")

    # ------------------------------------------------------------------ set up
    def up(self) -> None:
        """A fresh lab, the module installed and started: node1 PRIM, node2 SECOND, in sync."""
        self.lab.down()
        self.lab.up(nodes=2, lans=2, witness=True, client=True)
        plan = self.lab.plan()
        self.vip = str(plan.vips[0])
        for host in plan.hosts:
            for lan in plan.host_lans(host):
                self.macs[host.mac(lan)] = host.name
        witness = str(plan.host("witness").address)
        key = clusterkey.generate_key()
        if self.witness_mode == "arbitrator":
            self.start_arbiter(witness, key)
        staging = Path(tempfile.mkdtemp(prefix="safekit-chaos-", dir="/var/tmp"))
        try:
            module = staging / MODULE
            shutil.copytree(EXAMPLE, module)
            if self.postgres:
                # the real pgmirror scripts, called by chaosapp's with SAFEUSERBIN=bin/pg
                shutil.copytree(PG_SCRIPTS, module / "bin" / "pg")
            (module / "conf" / "userconfig.xml").write_text(
                userconfig(self.vip, witness, self.witness_mode, postgres=self.postgres), encoding="utf-8"
            )
            staging.chmod(0o755)
            self.cluster.install(module, key=key)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for node in NODES:
            self.sh(
                node,
                f"truncate -s {DISK_SIZE_MB}M {DISK_IMAGE} && mkfs.ext4 -q -F -m 0 {DISK_IMAGE}",
            )
            self.mount_disk(node)
            self.cluster.start_daemon(node)
        # Both at once, as the playbook does: node1's data (none yet) is the reference.
        self.cluster.safekit("node1", "prim", "-m", MODULE)
        self.cluster.safekit("node2", "second", "-m", MODULE)
        self.cluster.wait_state("node1", MODULE, "PRIM", timeout=90)
        self.cluster.wait_state("node2", MODULE, "SECOND", timeout=90)
        if self.postgres:
            self.prepare_postgres()

    # ------------------------------------------------------------------ PostgreSQL
    def psql(self, *commands: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """psql on the client host, through the VIP, as the superuser: each command on its own
        (autocommit)."""
        argv = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", pgworkload.conninfo(self.vip, PG_PORT)]
        for command in commands:
            argv += ["-c", command]
        return self.lab.exec("client", argv, timeout=timeout, env={**os.environ, "PGPASSWORD": PG_PASSWORD})

    def prepare_postgres(self, timeout: float = 60.0) -> None:
        """Once PostgreSQL answers through the VIP: its settings for a small disk, and the table
        the client's commits go to."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = self.psql("SELECT 1", timeout=10)
                if result.returncode == 0:
                    break
                why = result.stderr.strip()[-500:]
            except subprocess.TimeoutExpired:
                why = "no answer in 10 s"
            if time.monotonic() >= deadline:
                raise LabError(f"PostgreSQL does not answer through the VIP: {why}")
            time.sleep(0.5)
        settings = [f"ALTER SYSTEM SET {name} = '{value}'" for name, value in PG_SETTINGS.items()]
        table = f"CREATE TABLE IF NOT EXISTS {pgworkload.TABLE} (id bigint PRIMARY KEY)"
        result = self.psql(*settings, "SELECT pg_reload_conf()", table)
        if result.returncode != 0:
            raise LabError(f"preparing PostgreSQL: {result.stderr.strip()[-500:]}")

    def ids_on_primary(self, timeout: float = PG_READ_TIMEOUT) -> tuple[set[int] | None, str]:
        """The ids committed in the primary's PostgreSQL, read through the VIP from the client
        host, or None and why (retried for `timeout` s: PostgreSQL may still be starting)."""
        deadline = time.monotonic() + timeout
        why = ""
        while time.monotonic() < deadline:
            try:
                result = self.psql(f"COPY {pgworkload.TABLE} (id) TO STDOUT", timeout=30)
            except subprocess.TimeoutExpired:
                why = "psql: no answer in 30 s"
            else:
                if result.returncode == 0:
                    return judge.parse_ids(result.stdout), ""
                why = f"psql: exit {result.returncode}: {result.stderr.strip()[-300:]}"
            time.sleep(0.5)
        return None, why

    def start_arbiter(self, witness: str, key: bytes) -> None:
        """The arbitrating witness on the witness host (`safekit arbiter serve`), with the key
        derived from the cluster key (src/safekit/arbiter, docs/arbiter.md)."""
        from safekit.arbiter import keys  # noqa: PLC0415 - only the arbitrator mode needs it

        key_file = "/etc/safekit/arbiter.key"
        self.lab.exec(
            "witness",
            ["sh", "-c", f'umask 077; mkdir -p /etc/safekit; printf "%s\\n" "$1" > {key_file}', "key",
             keys.encode_key_file(keys.derive_arbiter_key(key)).strip()],
            check=True,
        )  # fmt: skip
        argv = [
            *self.arbiter_argv,
            "--listen",
            f"{witness}:{ARBITER_PORT}",
            "--key-file",
            key_file,
            "--state-dir",
            "/var/safekit/arbiter",  # private to the lab host (/var/lib is the machine's own)
        ]
        self.arbiter = Stream(self.lab, "witness", argv, "arbiter")
        time.sleep(1.0)
        if not self.arbiter.alive():
            raise LabError(f"the arbiter did not start on the witness: {self.arbiter.stop().strip()[-500:]}")

    def mount_disk(self, node: str) -> None:
        """The node's replicated directory lives on a small file system of its own (a loop-mounted
        image in the node's private /srv): filling it cannot fill this machine's disk. Mounted at
        every boot, before safekitd starts, like an /etc/fstab entry."""
        self.sh(
            node,
            f"mkdir -p {DISK_MOUNT} && (mountpoint -q {DISK_MOUNT} || mount -o loop {DISK_IMAGE} "
            f"{DISK_MOUNT}) && mkdir -p {DATA}",
        )

    def start_clients(self, first_record: int = 0, *, commits: bool = False) -> None:
        """The client's ARP probe and append workload; with `commits` (a module with PostgreSQL),
        the PostgreSQL workload too - whose lines the caller must take (`pgworkload.take()`, or
        `Evidence.update`), or they pile up here."""
        self.probe = Stream(
            self.lab,
            "client",
            [self.python, "-m", "safekit.chaos.arpprobe", "eth0", self.vip],
            "arpprobe",
        )
        self.workload = Stream(
            self.lab,
            "client",
            [self.python, "-m", "safekit.chaos.workload", self.vip, str(PORT), str(first_record)],
            "workload",
        )
        if commits:
            if not self.postgres:
                raise ValueError("the PostgreSQL workload needs a module with PostgreSQL (postgres=True)")
            self.pgworkload = Stream(
                self.lab,
                "client",
                [self.python, "-m", "safekit.chaos.pgworkload", self.vip, str(PG_PORT), str(first_record)],
                "pgworkload",
                env={"PGPASSWORD": PG_PASSWORD},
            )

    def down(self) -> None:
        for stream in (self.pgworkload, self.workload, self.probe, self.arbiter):
            if stream is not None:
                stream.stop()
        with contextlib.suppress(LabError, OSError, subprocess.SubprocessError):
            if self.lab.load_state() is not None:
                self.save_logs()
        with contextlib.suppress(LabError, subprocess.SubprocessError):
            state = self.lab.load_state()
            if state is not None and state.status == "up":
                for node in NODES:
                    if node not in state.faults.killed:
                        with contextlib.suppress(LabError, subprocess.SubprocessError):
                            self.cluster.stop_daemon(node, timeout=60)
        self.lab.down()

    def save_logs(self) -> None:
        """Keep the nodes' logs for a post-mortem (LOG_DIR/<lab>), before the lab is removed."""
        where = log_dir(self.lab.name)
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir(parents=True)
        for node in NODES:
            if node in self.killed():
                continue
            for name in (
                f"modules/{MODULE}.log",
                f"modules/{MODULE}.userlog",
                f"modules/{MODULE}.postgresql.log",
                "safekitd.log",
            ):
                text = self.lab.exec(node, ["cat", f"/var/log/safekit/{name}"]).stdout
                (where / f"{node}.{Path(name).name}").write_text(text, encoding="utf-8")

    # ------------------------------------------------------------------ reading
    def sh(self, node: str, script: str, timeout: float = 60) -> str:
        result = self.lab.exec(node, ["sh", "-c", script], timeout=timeout)
        if result.returncode != 0:
            raise LabError(f"{node}: {script}: {(result.stderr or result.stdout).strip()}")
        return result.stdout

    def states(self) -> dict[str, tuple[str, str]]:
        """node -> (state, readiness); ("DOWN", "") for a node or daemon that does not answer."""
        out: dict[str, tuple[str, str]] = {}
        killed = self.killed()
        for node in NODES:
            if node in killed:
                out[node] = ("DOWN", "powered off")
                continue
            try:
                state = self.cluster.state(node, MODULE)
                out[node] = (str(state["state"]), str(state["readiness"]))
            except (LabError, subprocess.SubprocessError, ValueError, KeyError, IndexError) as exc:
                out[node] = ("DOWN", str(exc).splitlines()[0][:120] if str(exc) else "no answer")
        return out

    def killed(self) -> set[str]:
        state = self.lab.load_state()
        return set(state.faults.killed) if state is not None else set()

    def roles(self) -> tuple[str, str] | None:
        """(primary, secondary) when the cluster is PRIM/SECOND, both Ready; else None."""
        states = self.states()
        prim = [n for n, s in states.items() if s == ("PRIM", "Ready")]
        second = [n for n, s in states.items() if s == ("SECOND", "Ready")]
        if len(prim) == 1 and len(second) == 1:
            return prim[0], second[0]
        return None

    def wait_recovered(self, bound: float) -> tuple[tuple[str, str] | None, dict[str, tuple[str, str]]]:
        """Wait (at most `bound` s) until PRIM/SECOND, both Ready; returns the roles (or None) and
        the last states seen."""
        deadline = time.monotonic() + bound
        while True:
            states = self.states()
            prim = [n for n, s in states.items() if s == ("PRIM", "Ready")]
            second = [n for n, s in states.items() if s == ("SECOND", "Ready")]
            if len(prim) == 1 and len(second) == 1:
                return (prim[0], second[0]), states
            if time.monotonic() >= deadline:
                return None, states
            time.sleep(0.5)

    def records_on_primary(self, timeout: float = 30.0) -> tuple[set[int] | None, str]:
        """The records the primary holds, read through the VIP (GET /records), or None and why."""
        deadline = time.monotonic() + timeout
        why = ""
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection(self.vip, PORT, timeout=10)
            try:
                conn.request("GET", "/records")
                response = conn.getresponse()
                body = response.read()
                if response.status == 200:
                    return judge.parse_records(body), ""
                why = f"GET /records: {response.status} {body[:200]!r}"
            except OSError as exc:
                why = f"GET /records: {exc}"
            finally:
                conn.close()
            time.sleep(0.5)
        return None, why

    def module_log(self, node: str) -> str:
        if node in self.killed():
            return ""
        try:
            return self.cluster.log(node, MODULE)
        except (LabError, subprocess.SubprocessError):
            return ""

    def figures(self) -> dict[str, EngineFigures]:
        plan = self.lab.plan()
        killed = self.killed()
        return {node: engine_figures(plan.host(node).netns) for node in NODES if node not in killed}

    # ------------------------------------------------------------------ the nemesis's hands
    def pids(self, node: str, marker: str) -> list[int]:
        """Pids of the node's processes whose command line contains `marker`."""
        netns = self.lab.plan().host(node).netns
        return [pid for pid, cmdline in netns_processes(netns) if marker in cmdline]

    def rfs_pids(self, node: str) -> list[int]:
        """Pids of the node's replication processes, on either engine (`procstats.role_of`)."""
        netns = self.lab.plan().host(node).netns
        return [pid for pid, cmdline in netns_processes(netns) if (role_of(cmdline) or "").startswith("rfs ")]

    def kill_marker(self, node: str, marker: str) -> list[int]:
        return self._kill(self.pids(node, marker))

    def kill_rfs(self, node: str) -> list[int]:
        """SIGKILL the node's replication processes (Python or native); returns their pids."""
        return self._kill(self.rfs_pids(node))

    @staticmethod
    def _kill(pids: list[int]) -> list[int]:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def boot(self, node: str) -> None:
        """Power on a node that was off: its disk mounted, safekitd started (boot="auto")."""
        self.lab.start(node)
        self.mount_disk(node)
        self.cluster.start_daemon(node)

    def ensure_running(self) -> list[str]:
        """Undo every fault that is still in place (the heal step of a round that went wrong):
        cables, killed nodes, daemons, the filler. Returns what it had to do."""
        done = []
        state = self.lab.require_state()
        if state.faults.cuts or state.faults.isolations:
            self.lab.heal()
            done.append("lab heal")
        for node in NODES:
            if node in self.killed():
                self.boot(node)
                done.append(f"boot {node}")
            elif self.cluster.daemon_pid(node) is None:
                self.mount_disk(node)
                self.cluster.start_daemon(node)
                done.append(f"start safekitd on {node}")
            if self.lab.exec(node, ["test", "-e", FILLER]).returncode == 0:
                self.sh(node, f"rm -f {FILLER} {FILLER}.2")
                done.append(f"remove the filler on {node}")
        return done


@contextlib.contextmanager
def running(chaos: ChaosCluster) -> Iterator[ChaosCluster]:
    try:
        chaos.up()
        yield chaos
    finally:
        chaos.down()


Notes = dict[str, Any]


def _power_cut(chaos: ChaosCluster, fault: Fault, primary: str, secondary: str, notes: Notes) -> None:
    node = primary if fault.kind is FaultKind.POWER_CUT_PRIMARY else secondary
    chaos.lab.kill(node)
    time.sleep(fault.hold)
    notes["heal_at"] = time.monotonic()
    chaos.boot(node)


def _partition(chaos: ChaosCluster, fault: Fault, primary: str, secondary: str, notes: Notes) -> None:
    lab, kind = chaos.lab, fault.kind
    lab.isolate(primary, secondary)
    if kind in (FaultKind.PARTITION_WITNESS_PRIMARY_SIDE, FaultKind.PARTITION_WITNESS_NEITHER):
        lab.isolate(secondary, "witness")
    if kind in (FaultKind.PARTITION_WITNESS_SECONDARY_SIDE, FaultKind.PARTITION_WITNESS_NEITHER):
        lab.isolate(primary, "witness")
    time.sleep(fault.hold)
    notes["heal_at"] = time.monotonic()
    lab.heal()


def _lan_cut(chaos: ChaosCluster, fault: Fault, primary: str, secondary: str, notes: Notes) -> None:
    node = primary if fault.target == "primary" else secondary
    notes["node"] = node
    chaos.lab.cut(node, fault.lan)
    time.sleep(fault.hold)
    notes["heal_at"] = time.monotonic()
    chaos.lab.heal(node)


def _cut_primary(chaos: ChaosCluster, fault: Fault, primary: str, secondary: str, notes: Notes) -> None:
    notes["node"] = primary
    chaos.lab.cut(primary)  # every LAN of the node
    time.sleep(fault.hold)
    notes["heal_at"] = time.monotonic()
    chaos.lab.heal(primary)


def _drop(chaos: ChaosCluster, fault: Fault, primary: str, secondary: str, notes: Notes) -> None:
    """A one-way cut between the nodes (every frame of one direction), or a lossy link (a share of
    the frames, both ways), on every LAN; the witness and the client are not touched."""
    lab = chaos.lab
    if fault.kind is FaultKind.LOSSY_LINKS:
        notes["loss_percent"] = fault.loss
        lab.drop(primary, secondary, fault.loss, both_ways=True)
    elif fault.kind is FaultKind.ONE_WAY_FROM_PRIMARY:
        lab.drop(primary, secondary)
    else:
        lab.drop(secondary, primary)
    time.sleep(fault.hold)
    notes["heal_at"] = time.monotonic()
    lab.heal()


def _safekitd_kill(chaos: ChaosCluster, fault: Fault, primary: str, secondary: str, notes: Notes) -> None:
    pid = chaos.cluster.daemon_pid(primary)
    if pid is None:
        raise LabError(f"{primary}: no safekitd to kill")
    os.kill(pid, signal.SIGKILL)
    notes["killed"] = [pid]
    time.sleep(SAFEKITD_RESTART_DELAY)
    notes["heal_at"] = time.monotonic()
    chaos.cluster.start_daemon(primary)
    time.sleep(max(0.0, fault.hold - SAFEKITD_RESTART_DELAY))


def _rfs_kill(chaos: ChaosCluster, fault: Fault, primary: str, secondary: str, notes: Notes) -> None:
    node = primary if fault.kind is FaultKind.RFS_KILL_PRIMARY else secondary
    killed = chaos.kill_rfs(node)
    if not killed:
        raise LabError(f"{node}: no replication process to kill")
    notes["killed"] = killed
    notes["heal_at"] = time.monotonic()  # nothing to heal: the engine must recover by itself
    time.sleep(fault.hold)


def _clean_restart(chaos: ChaosCluster, fault: Fault, primary: str, secondary: str, notes: Notes) -> None:
    node = primary if fault.kind is FaultKind.CLEAN_RESTART_PRIMARY else secondary
    began = time.monotonic()
    result = chaos.cluster.safekit(node, "shutdown", "--timeout", "120", check=False, timeout=150)
    notes["shutdown_s"] = round(time.monotonic() - began, 2)
    notes["shutdown_exit"] = result.returncode
    chaos.lab.kill(node)  # the node goes down once safekit has stopped: a reboot
    time.sleep(fault.hold)
    notes["heal_at"] = time.monotonic()
    chaos.boot(node)


def _disk_full(chaos: ChaosCluster, fault: Fault, primary: str, secondary: str, notes: Notes) -> None:
    lab = chaos.lab
    began = time.monotonic()
    # dd stops at ENOSPC (exit 1): that is the point; the second one takes what 1 MiB blocks left
    fill = (
        f"dd if=/dev/zero of={FILLER} bs=1M 2>/dev/null; "
        f"dd if=/dev/zero of={FILLER}.2 bs=1k 2>/dev/null; sync"
    )
    lab.exec(secondary, ["sh", "-c", fill])
    notes["filled_s"] = round(time.monotonic() - began, 2)
    free = lab.exec(secondary, ["df", "--output=avail", "-k", DISK_MOUNT]).stdout.split()
    notes["free_kib_after_fill"] = int(free[-1]) if free and free[-1].isdigit() else None
    said_before = chaos.module_log(secondary).count("disk is full")
    # the workload's small records take a while to need a block the file system no longer has:
    # hold until the secondary says its disk is full (at most DISK_FULL_WAIT s more than the hold)
    hold_until = time.monotonic() + fault.hold
    give_up = hold_until + DISK_FULL_WAIT
    said = False
    while time.monotonic() < give_up and not (said and time.monotonic() >= hold_until):
        time.sleep(0.5)
        said = said or chaos.module_log(secondary).count("disk is full") > said_before
    notes["secondary_said_full"] = said
    notes["heal_at"] = time.monotonic()
    chaos.sh(secondary, f"rm -f {FILLER} {FILLER}.2")


def _stopstart(chaos: ChaosCluster, fault: Fault, primary: str, secondary: str, notes: Notes) -> None:
    result = chaos.cluster.safekit(primary, "stopstart", "-m", MODULE, check=False, timeout=60)
    notes["stopstart_exit"] = result.returncode
    if result.returncode != 0:
        raise LabError(f"{primary}: stopstart refused: {(result.stdout + result.stderr).strip()[-300:]}")
    notes["heal_at"] = time.monotonic()  # nothing to heal: the secondary takes over by itself
    time.sleep(fault.hold)


def _stop_all(netns: str, stopped: list[int]) -> None:
    """SIGSTOP every process of `netns` not stopped yet, until none is left running: a process
    that forked meanwhile (a script) is caught by the next look."""
    for _ in range(20):
        fresh = [pid for pid in netns_pids(netns) if pid not in stopped]
        if not fresh:
            return
        for pid in fresh:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
    raise LabError(f"{netns}: processes keep appearing while the node is being frozen")


def _freeze(chaos: ChaosCluster, fault: Fault, primary: str, secondary: str, notes: Notes) -> None:
    """SIGSTOP, hold, SIGCONT: safekitd alone (a hung daemon) or every process of the node (a
    paused VM). The processes are continued even if the hold is interrupted."""
    on_secondary = fault.kind in (FaultKind.FREEZE_SECONDARY, FaultKind.FREEZE_RFS_SECONDARY)
    node = secondary if on_secondary else primary
    notes["node"] = node
    stopped: list[int] = []
    try:
        if fault.kind is FaultKind.FREEZE_RFS_SECONDARY:
            pids = chaos.rfs_pids(node)
            if not pids:
                raise LabError(f"{node}: no replication process to freeze")
            for rfs in pids:
                os.kill(rfs, signal.SIGSTOP)
                stopped.append(rfs)
        elif fault.kind is FaultKind.FREEZE_SAFEKITD_PRIMARY:
            pid = chaos.cluster.daemon_pid(node)
            if pid is None:
                raise LabError(f"{node}: no safekitd to freeze")
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        else:
            _stop_all(chaos.lab.plan().host(node).netns, stopped)
        notes["frozen"] = len(stopped)
        time.sleep(fault.hold)
    finally:
        notes["heal_at"] = time.monotonic()
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


INJECTIONS: dict[FaultKind, Callable[[ChaosCluster, Fault, str, str, Notes], None]] = {
    FaultKind.POWER_CUT_PRIMARY: _power_cut,
    FaultKind.POWER_CUT_SECONDARY: _power_cut,
    FaultKind.PARTITION_WITNESS_BOTH: _partition,
    FaultKind.PARTITION_WITNESS_PRIMARY_SIDE: _partition,
    FaultKind.PARTITION_WITNESS_SECONDARY_SIDE: _partition,
    FaultKind.PARTITION_WITNESS_NEITHER: _partition,
    FaultKind.LAN_CUT: _lan_cut,
    FaultKind.CUT_PRIMARY: _cut_primary,
    FaultKind.SAFEKITD_KILL_PRIMARY: _safekitd_kill,
    FaultKind.RFS_KILL_PRIMARY: _rfs_kill,
    FaultKind.RFS_KILL_SECONDARY: _rfs_kill,
    FaultKind.CLEAN_RESTART_PRIMARY: _clean_restart,
    FaultKind.CLEAN_RESTART_SECONDARY: _clean_restart,
    FaultKind.DISK_FULL_SECONDARY: _disk_full,
    FaultKind.STOPSTART_PRIMARY: _stopstart,
    FaultKind.FREEZE_SAFEKITD_PRIMARY: _freeze,
    FaultKind.FREEZE_PRIMARY: _freeze,
    FaultKind.FREEZE_SECONDARY: _freeze,
    FaultKind.FREEZE_RFS_SECONDARY: _freeze,
    FaultKind.ONE_WAY_FROM_PRIMARY: _drop,
    FaultKind.ONE_WAY_TO_PRIMARY: _drop,
    FaultKind.LOSSY_LINKS: _drop,
}


def inject(chaos: ChaosCluster, fault: Fault, primary: str, secondary: str) -> Notes:
    """Inject one fault, hold it, heal it (docs/chaos.md, "The nemesis"). Returns what was done,
    with monotonic times: fault_at, heal_at (the heal began), healed_at."""
    notes: Notes = {"primary": primary, "secondary": secondary, "fault_at": time.monotonic()}
    INJECTIONS[fault.kind](chaos, fault, primary, secondary, notes)
    notes["healed_at"] = time.monotonic()
    return notes


class Evidence:
    """What the client's workloads and probe have said so far, parsed as it arrives."""

    def __init__(self) -> None:
        self.acks: list[judge.Ack] = []
        self.not_acknowledged = 0
        self.pg_acks: list[judge.Ack] = []
        self.pg_not_acknowledged = 0
        self.probe = judge.ProbeEvidence()

    def update(self, chaos: ChaosCluster) -> None:
        assert chaos.workload is not None and chaos.probe is not None
        acks, failed = judge.parse_workload(chaos.workload.take())
        self.acks += acks
        self.not_acknowledged += failed
        streams = [chaos.workload, chaos.probe]
        if chaos.pgworkload is not None:
            acks, failed = judge.parse_workload(chaos.pgworkload.take())
            self.pg_acks += acks
            self.pg_not_acknowledged += failed
            streams.append(chaos.pgworkload)
        more = judge.parse_probe(chaos.probe.take())
        self.probe.sends.update(more.sends)
        for seq, macs in more.answers.items():
            self.probe.answers.setdefault(seq, set()).update(macs)
        self.probe.gratuitous.extend(more.gratuitous)
        for stream in streams:
            if not stream.alive():
                raise LabError(f"the client's {stream.name} stopped: {stream.stop().strip()[-500:]}")


@dataclass
class RunState:
    """What a run carries from round to round."""

    evidence: Evidence = field(default_factory=Evidence)
    lost: set[int] = field(default_factory=set)
    pg_lost: set[int] = field(default_factory=set)
    wall_to_monotonic: float = field(default_factory=lambda: time.monotonic() - time.time())


def play_round(
    chaos: ChaosCluster, fault: Fault, run: RunState, *, bound: float = RECOVERY_BOUND
) -> RoundResult:
    """One round: settle, inject, heal, wait for recovery (bounded), judge."""
    say = chaos.say
    roles = chaos.roles()
    if roles is None:
        raise LabError(
            f"round {fault.round}: the cluster is not PRIM/SECOND before the fault: {chaos.states()}"
        )
    primary, secondary = roles
    result = RoundResult(
        round=fault.round,
        kind=str(fault.kind),
        fault=fault.to_json(),
        primary_before=primary,
        secondary_before=secondary,
    )
    start = time.monotonic()
    time.sleep(fault.settle)
    say(f"round {fault.round}: {fault.kind} (primary {primary}, hold {fault.hold:g} s)")
    try:
        notes = inject(chaos, fault, primary, secondary)
    except (LabError, OSError, subprocess.SubprocessError) as exc:
        notes = {"fault_at": start, "heal_at": time.monotonic()}
        result.error = f"injecting {fault.kind}: {exc}"
        say(f"round {fault.round}: {result.error}")
    if fault.kind in (FaultKind.POWER_CUT_PRIMARY, FaultKind.CLEAN_RESTART_PRIMARY):
        result.rebooted.append(primary)
    elif fault.kind in (FaultKind.POWER_CUT_SECONDARY, FaultKind.CLEAN_RESTART_SECONDARY):
        result.rebooted.append(secondary)
    heal_at = float(notes.get("heal_at", time.monotonic()))
    recovered, states = chaos.wait_recovered(max(0.0, bound - (time.monotonic() - heal_at)))
    recovered_at = time.monotonic()
    result.recovered = recovered is not None
    result.recovery_s = round(recovered_at - heal_at, 2) if recovered else None
    result.roles_after = {n: list(s) for n, s in states.items()}
    if recovered is None:
        say(f"round {fault.round}: not recovered within {bound:g} s: {states}")
        result.repairs = repair(chaos, bound)
    time.sleep(1.0)  # the probe and the workloads see the recovered cluster for a moment
    check_lost(chaos, result, run)
    judge_round(chaos, result, run, window=(start, time.monotonic()), notes=notes)
    verdict = result.violations()
    pg = (
        f"; PostgreSQL: acked {result.pg_acknowledged}, lost {len(result.pg_lost)}, longest wait "
        f"{result.pg_longest_unavailability_s:.2f} s"
        if chaos.pgworkload is not None
        else ""
    )
    say(
        f"round {fault.round}: {fault.kind}: {'FAILED' if verdict else 'ok'}; "
        f"acked {result.acknowledged}, "
        f"lost {len(result.lost)}, two owners {result.two_owner_s:.2f} s, longest wait "
        f"{result.longest_unavailability_s:.2f} s, recovery {result.recovery_s} s{pg}"
        + "".join(f"\n    - {v}" for v in verdict)
    )
    return result


def check_lost(chaos: ChaosCluster, result: RoundResult, run: RunState) -> None:
    """Read back what the primary holds through the VIP - the append service's records, then
    PostgreSQL's committed ids - and record in the round what was acknowledged before each read
    began and is missing (cumulative: each missing one is counted once, in the round it went)."""
    checked_at = time.monotonic()
    run.evidence.update(chaos)
    present, why = chaos.records_on_primary()
    run.evidence.update(chaos)
    if present is None:
        _add_error(result, f"cannot read the records: {why}")
    else:
        result.lost = _newly_lost(run.evidence.acks, checked_at, present, run.lost)
    if chaos.pgworkload is None:
        return
    checked_at = time.monotonic()
    ids, why = chaos.ids_on_primary()
    run.evidence.update(chaos)
    if ids is None:
        _add_error(result, f"cannot read the commits: {why}")
    else:
        result.pg_lost = _newly_lost(run.evidence.pg_acks, checked_at, ids, run.pg_lost)


def _newly_lost(acks: list[judge.Ack], checked_at: float, present: set[int], known: set[int]) -> list[int]:
    """What was acknowledged before `checked_at`, is not `present`, and was not known lost yet
    (added to `known`)."""
    lost_now = set(judge.lost_records((a for a in acks if a.acked < checked_at), present))
    new = sorted(lost_now - known)
    known |= lost_now
    return new


def _add_error(result: RoundResult, text: str) -> None:
    result.error = (result.error + "; " if result.error else "") + text


def judge_round(
    chaos: ChaosCluster, result: RoundResult, run: RunState, *, window: tuple[float, float], notes: Notes
) -> None:
    """Fill a round's result with what the client's evidence and the module logs say of the
    round's window [start, end)."""
    start, end = window
    acks = run.evidence.acks
    in_round = [a for a in acks if start <= a.acked < end]
    result.acknowledged = len(in_round)
    owners = judge.vip_owners(run.evidence.probe, start, end)
    result.two_owner_s = owners.two_owner_seconds
    names = chaos.macs
    result.owner_episodes = [
        judge.OwnerEpisode(e.start - start, e.end - start, tuple(names.get(m, m) for m in e.macs))
        for e in owners.episodes
    ]
    result.owners = {names.get(m, m): n for m, n in owners.owners.items()}
    result.gratuitous = {names.get(m, m): n for m, n in owners.gratuitous.items()}
    result.longest_unavailability_s = judge.longest_wait([a.acked for a in acks], start, end)
    result.acknowledging_nodes = judge.acknowledging_nodes(acks, start, end)
    if chaos.pgworkload is not None:
        pg_acks = run.evidence.pg_acks
        result.pg_acknowledged = sum(1 for a in pg_acks if start <= a.acked < end)
        result.pg_longest_unavailability_s = judge.longest_wait([a.acked for a in pg_acks], start, end)
    for node in NODES:
        lines = judge.log_lines(chaos.module_log(node), run.wall_to_monotonic)
        result.rfs_stops += judge.rfs_stops(node, lines, start, end)
    result.notes = {
        k: (round(v - start, 3) if k.endswith("_at") and isinstance(v, float) else v)
        for k, v in notes.items()
    }


def repair(chaos: ChaosCluster, bound: float) -> list[str]:
    """Bring a cluster that did not recover back to PRIM/SECOND as an operator would, so that the
    run can go on; every step is recorded in the round (the round has failed already)."""
    done = chaos.ensure_running()
    recovered, states = chaos.wait_recovered(bound / 2)
    if recovered is not None:
        return done
    prim = [n for n, s in states.items() if s[0] in ("PRIM", "ALONE")]
    others = [n for n in NODES if n not in prim]
    if len(prim) != 1:
        # no primary, or two: stop both, then the node with the newer replica first (prim is
        # refused on a stale one)
        for node in NODES:
            chaos.cluster.safekit(node, "stop", "-m", MODULE, check=False, timeout=120)
        done.append("safekit stop on both nodes")
        for node in NODES:
            if chaos.cluster.safekit(node, "prim", "-m", MODULE, check=False).returncode == 0:
                other = next(n for n in NODES if n != node)
                chaos.cluster.safekit(other, "second", "-m", MODULE, check=False)
                done.append(f"safekit prim on {node}, second on {other}")
                break
    else:
        for node in others:
            chaos.cluster.safekit(node, "stop", "-m", MODULE, check=False, timeout=120)
            chaos.cluster.safekit(node, "second", "-m", MODULE, check=False)
            done.append(f"safekit stop, then second on {node}")
    recovered, states = chaos.wait_recovered(bound)
    if recovered is None:
        raise LabError(f"the cluster did not come back even after an operator's repair: {states}")
    return done


def run_suite(
    *,
    seed: int,
    rounds: int,
    kinds: tuple[FaultKind, ...] | None = None,
    witness_mode: str | None = None,
    lab_name: str = "chaos",
    bound: float = RECOVERY_BOUND,
    say: Callable[[str], None] | None = None,
    postgres: bool = True,
) -> dict[str, Any]:
    """Build the lab, play `rounds` rounds of the nemesis from `seed`, remove the lab; returns the
    report (docs/chaos.md, "The report"). With `postgres`, the module runs PostgreSQL and the
    client commits to it too (the second workload)."""
    say = say or Progress()
    mode = witness_mode or default_witness_mode()
    faults = schedule(seed, rounds, kinds=kinds or ALL_KINDS)
    chaos = ChaosCluster(Lab(lab_name), witness_mode=mode, say=say, postgres=postgres)
    results: list[RoundResult] = []
    aborted = ""
    started = time.monotonic()
    with running(chaos):
        say(
            f"lab {lab_name} up, witness mode {mode}, seed {seed}, {rounds} rounds"
            + (", PostgreSQL" if postgres else "")
        )
        chaos.start_clients(commits=postgres)
        run = RunState()
        time.sleep(3.0)
        run.evidence.update(chaos)
        if not run.evidence.acks:
            raise LabError("the workload got no acknowledgement in 3 s on a healthy cluster")
        if postgres and not run.evidence.pg_acks:
            raise LabError("the PostgreSQL workload got no acknowledgement in 3 s on a healthy cluster")
        figures_start = {n: f.to_json() for n, f in chaos.figures().items()}
        for fault in faults:
            try:
                results.append(play_round(chaos, fault, run, bound=bound))
            except LabError as exc:
                aborted = f"round {fault.round} ({fault.kind}): {exc}"
                say(f"run aborted: {aborted}")
                break
        figures_end = {n: f.to_json() for n, f in chaos.figures().items()}
    summary = summarise(results)
    return {
        "seed": seed,
        "rounds_planned": rounds,
        "rounds": len(results),
        "witness_mode": mode,
        "postgres": postgres,
        "recovery_bound_s": bound,
        "rfs_stop_bound_s": RFS_STOP_BOUND,
        "duration_s": round(time.monotonic() - started, 1),
        "faults_by_kind": {k: v["rounds"] for k, v in summary["by_kind"].items()},
        **summary,
        "engine": {"start": figures_start, "end": figures_end},
        "passed": passed(results) and not aborted,
        "aborted": aborted,
        "round_results": [r.to_json() for r in results],
    }
