"""A database on a mirror module: how close to local speed, and what a client sees at a power cut.

- pgbench TPS (TPC-B-like, every commit fsynced) against the `postgresql` template's module - its
  data directory and WAL replicated to the secondary - and against a PostgreSQL with the same
  settings whose data directory is on the same node's local disk, in the same run, through the
  same network from the client. The ratio is the figure (issue 15's "nearly local speed").
- A power cut of the primary while a client commits one row at a time: the outage the client sees
  (from the cut to its first commit acknowledged by the new primary) and the acknowledged commits
  lost (must be 0), counted by the client.
- The replication processes during the replicated run (the native programs, the only data path
  since ADR 0029): CPU seconds of each side, the bytes each dirtied (/proc/PID/io write_bytes) and so
  CPU per GiB, RSS and open files before and after (flat). PostgreSQL's own view of its WAL on both
  instances (pg_stat_wal with track_wal_io_timing: syncs, mean sync time, WAL bytes).
- Budgets: safekitd's RSS, open files and CPU on the primary at the end of the pgbench run.

Full mode is issue 15's: 4 clients, 60 s per pgbench run (`make bench-modules`, about 5 minutes);
`--quick`: 15 s. Writes bench/results/modules.json, one row per engine (`runs`): the `python` row is
the removed Python data path's last measurement, kept with its own date and load - only ratios taken
in the same run (replicated over local) compare, the machine being shared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine, write_result
from safekit.lab import Lab, system
from safekit.lab.cluster import LabCluster
from safekit.lab.modules import install_modules
from safekit.lab.writers import postgresql_writer
from safekit.rfs import native

REPO = Path(__file__).resolve().parents[1]

LAB = "bmods"
MODULE = "benchpg"
PASSWORD = "benchpg"  # noqa: S105 - a lab database, gone with the lab
LOCAL_DIR = "/srv/pglocal"
LOCAL_PORT = 5433
PG_BIN = "/usr/lib/postgresql/15/bin"

# The local instance: the template's settings (start_prim), its data on the node's own disk.
LOCAL_SETUP = f"""
set -e
rm -rf {LOCAL_DIR}; install -d -o postgres -g postgres -m 700 {LOCAL_DIR}
pw=$(mktemp); printf '%s\\n' "$1" > "$pw"; chown postgres "$pw"
runuser -u postgres -- {PG_BIN}/initdb -D {LOCAL_DIR} -U postgres --pwfile="$pw" --auth-local=peer \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
rm -f "$pw"
echo "host all all samenet scram-sha-256" >> {LOCAL_DIR}/pg_hba.conf
cat >> {LOCAL_DIR}/postgresql.conf <<CONF
track_wal_io_timing = on
fsync = on
synchronous_commit = on
full_page_writes = on
wal_sync_method = fdatasync
CONF
install -d -o postgres -g postgres /run/pglocal
runuser -u postgres -- {PG_BIN}/pg_ctl start -s -w -D {LOCAL_DIR} -l /run/pglocal/postgresql.log \
    -o "-c listen_addresses='$2' -c port={LOCAL_PORT} -c unix_socket_directories='/run/pglocal'"
"""


def pgbench_init(lab: Lab, address: str, port: int, *, scale: int) -> None:
    target = ["-h", address, "-p", str(port), "-U", "postgres", "postgres"]
    argv = ["env", f"PGPASSWORD={PASSWORD}", "pgbench", "-i", "-q", "-s", str(scale), *target]
    lab.exec("client", argv, check=True, timeout=600)


def pgbench(lab: Lab, address: str, port: int, *, clients: int, seconds: int) -> float:
    """TPS of a pgbench run from the client (initialised before), excluding connection time."""
    env = ["env", f"PGPASSWORD={PASSWORD}"]
    target = ["-h", address, "-p", str(port), "-U", "postgres", "postgres"]
    out = lab.exec(
        "client",
        [*env, "pgbench", "-n", "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(seconds), *target],
        check=True,
        timeout=seconds + 120,
    ).stdout
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    if match is None:
        raise RuntimeError(f"no TPS in pgbench's output:\n{out}")
    return float(match.group(1))


def streamed_bytes(lab: Lab) -> float:
    """The data the primary streamed to the secondary so far (safekitd's safekit_rfs_streamed_bytes
    of the module, from node1's metrics port)."""
    text = lab.exec("node1", ["curl", "-sf", "http://127.0.0.1:9010/metrics"], check=True).stdout
    for line in text.splitlines():
        if line.startswith("safekit_rfs_streamed_bytes") and f'module="{MODULE}"' in line:
            return float(line.rsplit(None, 1)[1])
    raise RuntimeError("no safekit_rfs_streamed_bytes for the module in safekitd's metrics")


def psql(lab: Lab, address: str, port: int, sql: str) -> str:
    argv = ["env", f"PGPASSWORD={PASSWORD}", "psql", "-X", "-At", "-h", address, "-p", str(port),
            "-U", "postgres", "postgres", "-c", sql]  # fmt: skip
    return lab.exec("client", argv, check=True, timeout=60).stdout.strip()


def wal_reset(lab: Lab, address: str, port: int) -> None:
    """WAL I/O timing on (the replicated instance: the template's settings do not have it) and
    pg_stat_wal zeroed, so the next run's syncs are counted alone."""
    psql(lab, address, port, "ALTER SYSTEM SET track_wal_io_timing = on")
    psql(lab, address, port, "SELECT pg_reload_conf()")
    psql(lab, address, port, "SELECT pg_stat_reset_shared('wal')")


def wal_stats(lab: Lab, address: str, port: int) -> dict[str, float]:
    """pg_stat_wal since wal_reset: WAL bytes, writes, syncs and the mean time of one sync (the
    WAL's fdatasync: through the mirror, the round trip to the secondary)."""
    row = psql(
        lab,
        address,
        port,
        "SELECT wal_bytes, wal_write, wal_sync, wal_write_time, wal_sync_time FROM pg_stat_wal",
    )
    wal_bytes, writes, syncs, write_ms, sync_ms = (float(x) for x in row.split("|"))
    return {
        "wal_mib": round(wal_bytes / 2**20, 1),
        "wal_writes": int(writes),
        "wal_syncs": int(syncs),
        "wal_write_mean_ms": round(write_ms / writes, 3) if writes else 0.0,
        "wal_sync_mean_ms": round(sync_ms / syncs, 3) if syncs else 0.0,
    }


def replication_pids(lab: Lab) -> dict[str, int]:
    """{"primary": pid on node1, "secondary": pid on node2} of the module's replication processes."""
    found: dict[str, int] = {}
    for node, role in (("node1", "primary"), ("node2", "secondary")):
        for pid in system.netns_pids(lab.plan().host(node).netns):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            except OSError:
                continue
            if native.role_of_argv([a.decode(errors="replace") for a in argv]) == role:
                found[role] = pid
    missing = {"primary", "secondary"} - set(found)
    if missing:
        raise RuntimeError(f"no replication process for {sorted(missing)} in the lab")
    return found


def process_sample(pid: int) -> dict[str, float]:
    """CPU seconds (utime + stime, its threads included), RSS, open files, threads."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {
        "cpu_s": (int(fields[11]) + int(fields[12])) / ticks,
        "rss_mib": round(int(status["VmRSS"].split()[0]) / 1024, 1),
        "peak_rss_mib": round(int(status["VmHWM"].split()[0]) / 1024, 1),
        "open_files": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(status["Threads"].split()[0]),
    }


def process_delta(
    before: dict[str, float], after: dict[str, float], streamed: float, transactions: float
) -> dict[str, float | None]:
    """One process over the run; CPU per GiB of the data streamed (what the application wrote) and
    per pgbench transaction (small writes: the per-operation cost, which a GiB figure hides)."""
    cpu = after["cpu_s"] - before["cpu_s"]
    gib = streamed / 2**30
    return {
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_transaction": round(1000 * cpu / transactions, 3) if transactions else 0.0,
        "cpu_s_per_gib": round(cpu / gib, 2) if gib > 0 else None,  # None: the engine reports no bytes
        "rss_mib_before": before["rss_mib"],
        "rss_mib_after": after["rss_mib"],
        "peak_rss_mib": after["peak_rss_mib"],
        "open_files_before": int(before["open_files"]),
        "open_files_after": int(after["open_files"]),
        "threads": int(after["threads"]),
    }


def daemon_budget(cluster: LabCluster, node: str) -> dict[str, float]:
    pid = cluster.daemon_pid(node)
    assert pid is not None
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    before = cpu()
    time.sleep(10)
    return {
        "safekitd_rss_mib": round(rss_kib / 1024, 1),
        "safekitd_open_files": len(os.listdir(f"/proc/{pid}/fd")),
        "safekitd_idle_cpu_percent": round(100 * (cpu() - before) / 10, 2),
    }


def power_cut_under_load(lab: Lab, cluster: LabCluster, vip: str) -> dict[str, Any]:
    lab.exec(
        "client",
        ["env", f"PGPASSWORD={PASSWORD}", "psql", "-X", "-q", "-h", vip, "-U", "postgres", "postgres",
         "-c", "CREATE TABLE writes (id int PRIMARY KEY)"],
        check=True,
    )  # fmt: skip
    first = postgresql_writer(lab, vip, PASSWORD, "writes")
    deadline = time.monotonic() + 30
    while len(first.acked) < 50:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the writer does not commit: {first!r}")
        time.sleep(0.05)
    lab.kill("node1")
    cut = time.monotonic()
    first.stop()  # its connection died with node1: every id it printed was committed
    above = 1_000_000  # the writers after the cut number their rows far above the first one's
    second = postgresql_writer(lab, vip, PASSWORD, "writes", first=above)
    while not second.acked:
        if time.monotonic() - cut > 120:
            raise RuntimeError(f"no commit through the VIP 120 s after the cut: {second!r}")
        if second.exited:  # its connection failed (the VIP not yet moved): a new client, as an app would
            above += 100_000
            second = postgresql_writer(lab, vip, PASSWORD, "writes", first=above)
        time.sleep(0.05)
    outage = second.acked_at[0] - cut
    time.sleep(2)
    second.stop()
    rows = lab.exec(
        "client",
        ["env", f"PGPASSWORD={PASSWORD}", "psql", "-X", "-At", "-h", vip, "-U", "postgres", "postgres",
         "-c", "SELECT id FROM writes"],
        check=True,
    ).stdout.split()  # fmt: skip
    present = {int(r) for r in rows}
    lost = sorted(set(first.acked) - present) + sorted(set(second.acked) - present)
    return {
        "acknowledged_before_cut": len(first.acked),
        "acknowledged_after_cut": len(second.acked),
        "acknowledged_lost": len(lost),
        "outage_seen_by_client_s": round(outage, 2),
    }


def measure(lab: Lab, node1: str, vip: str, args: argparse.Namespace) -> dict[str, Any]:
    """pgbench on the local instance, then on the module's (each initialised first), with the WAL's
    figures of both and the replication processes over the replicated run."""
    sizes = {"scale": args.scale, "clients": args.clients, "seconds": args.seconds}
    run = {"clients": args.clients, "seconds": args.seconds}
    pgbench_init(lab, node1, LOCAL_PORT, scale=args.scale)
    wal_reset(lab, node1, LOCAL_PORT)
    local = pgbench(lab, node1, LOCAL_PORT, **run)
    local_wal = wal_stats(lab, node1, LOCAL_PORT)
    pgbench_init(lab, vip, 5432, scale=args.scale)
    wal_reset(lab, vip, 5432)
    pids = replication_pids(lab)
    before = {role: process_sample(pid) for role, pid in pids.items()}
    streamed = streamed_bytes(lab)
    replicated = pgbench(lab, vip, 5432, **run)
    streamed = streamed_bytes(lab) - streamed
    after = {role: process_sample(pid) for role, pid in pids.items()}
    replicated_wal = wal_stats(lab, vip, 5432)
    return {
        "pgbench": {
            **sizes,
            "local_tps": round(local, 1),
            "replicated_tps": round(replicated, 1),
            "replicated_over_local": round(replicated / local, 3),
            "target_replicated_over_local": 0.6,
        },
        "wal": {"local": local_wal, "replicated": replicated_wal},
        "streamed_mib": round(streamed / 2**20, 1) if streamed else None,
        "replication_processes": {
            role: process_delta(before[role], after[role], streamed, replicated * args.seconds)
            for role in pids
        },
    }


def previous_runs() -> dict[str, Any]:
    """The rows of bench/results/modules.json by engine (a file from before rows: the Python one)."""
    try:
        old = json.loads((RESULTS / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if "runs" in old:
        return dict(old["runs"])
    if "pgbench" in old:  # the single-row format: the Python data path, 30 s runs
        keep = ("pgbench", "power_cut_under_load", "budgets", "machine", "when")
        return {"python": {k: old[k] for k in keep if k in old} | {"mode": "30 s runs"}}
    return {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=5, help="pgbench scale (default 5, ~75 MiB)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=None, help="each pgbench run (default 60, --quick 15)")
    parser.add_argument(
        "--quick", action="store_true", help="15 s pgbench runs (a quick look, not the figure)"
    )
    parser.add_argument(
        "--native-dir",
        type=Path,
        default=REPO / "native" / "build",
        help="the native programs (default: this checkout's native/build; another build to compare)",
    )
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 15 if args.quick else 60
    # Lab hosts inherit this environment (nsenter): safekitd runs this checkout's native programs
    # (`make -C native`), or the build --native-dir names.
    os.environ[native.NATIVE_DIR_ENV] = str(args.native_dir.resolve())
    lab = Lab(LAB)
    lab.down()
    lab.up(nodes=2, witness=True, client=True)
    try:
        plan = lab.plan()
        vip = str(plan.vips[0])
        cluster = LabCluster(lab)
        values = {
            "virtual_ip": vip,
            "witness": str(plan.host("witness").address),
            "pg_password": PASSWORD,
            "heartbeat_port": "4860",
            "pg_clients": str(plan.lans[0].network),
        }
        install_modules(cluster, {MODULE: ("postgresql", values)})
        for node in cluster.nodes:
            cluster.start_daemon(node)
        cluster.safekit("node1", "prim", "-m", MODULE)
        cluster.safekit("node2", "second", "-m", MODULE)
        cluster.wait_state("node1", MODULE, "PRIM", timeout=120)
        cluster.wait_state("node2", MODULE, "SECOND", timeout=120)
        node1 = str(plan.host("node1").address)
        lab.exec("node1", ["sh", "-c", LOCAL_SETUP, "local", PASSWORD, node1], check=True, timeout=120)
        measured = measure(lab, node1, vip, args)
        budget = daemon_budget(cluster, "node1")
        cut = power_cut_under_load(lab, cluster, vip)
        row = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(),
            "mode": "quick" if args.quick else "full",
            "native_dir": str(args.native_dir),
            **measured,
            "power_cut_under_load": cut,
            "budgets": {**budget, "limits": {"safekitd_rss_mib": 80, "safekitd_idle_cpu_percent": 1.0}},
        }
        runs = previous_runs()
        runs["native"] = row
        result = {
            "runs": runs,
            "note": "local and replicated data directories are on the same node and the same disk; "
            "in the lab the secondary's copy also lands on this machine's disk. The machine is shared "
            "and loaded (each row records its load): compare the ratio replicated/local within a row, "
            "not TPS across rows. replication_processes: the replicated pgbench run only (after its "
            "pgbench -i); cpu_s is each process's utime + stime, cpu_s_per_gib per GiB streamed "
            "(safekit_rfs_streamed_bytes over the run: the data the application wrote; under pgbench's 8 KiB "
            "writes a per-operation cost, not issue 15's sequential-write figure: bench/native_cpu.py).",
        }
        with contextlib.suppress(OSError, ValueError):  # bench/module_outage.py's section: kept
            old = json.loads((RESULTS / "modules.json").read_text(encoding="utf-8"))
            if "outage_after_power_cut" in old:
                result["outage_after_power_cut"] = old["outage_after_power_cut"]
        path = write_result("modules", result)
        print(f"{path}: native: {json.dumps(measured)}; power cut: {cut}")
        return 0 if cut["acknowledged_lost"] == 0 else 1
    finally:
        lab.down()


if __name__ == "__main__":
    sys.exit(main())
