"""A database on a mirror module: how close to local speed, and what a client sees at a power cut.

- pgbench TPS (TPC-B-like, every commit fsynced) against the `postgresql` template's module - its
  data directory and WAL replicated to the secondary - and against a PostgreSQL with the same
  settings whose data directory is on the same node's local disk, in the same run, through the
  same network from the client. The ratio is the figure (issue 15's "nearly local speed").
- A power cut of the primary while a client commits one row at a time: the outage the client sees
  (from the cut to its first commit acknowledged by the new primary) and the acknowledged commits
  lost (must be 0), counted by the client.
- Budgets: safekitd's RSS, open files and CPU on the primary at the end of the pgbench run.

Writes bench/results/modules.json. `make bench-modules`; about 3 minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result
from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.modules import install_modules
from safekit.lab.writers import postgresql_writer

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
fsync = on
synchronous_commit = on
full_page_writes = on
wal_sync_method = fdatasync
CONF
install -d -o postgres -g postgres /run/pglocal
runuser -u postgres -- {PG_BIN}/pg_ctl start -s -w -D {LOCAL_DIR} -l /run/pglocal/postgresql.log \
    -o "-c listen_addresses='$2' -c port={LOCAL_PORT} -c unix_socket_directories='/run/pglocal'"
"""


def pgbench(lab: Lab, address: str, port: int, *, scale: int, clients: int, seconds: int) -> float:
    """TPS of a pgbench run from the client (initialised first), excluding connection time."""
    env = ["env", f"PGPASSWORD={PASSWORD}"]
    target = ["-h", address, "-p", str(port), "-U", "postgres", "postgres"]
    lab.exec("client", [*env, "pgbench", "-i", "-q", "-s", str(scale), *target], check=True, timeout=600)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=5, help="pgbench scale (default 5, ~75 MiB)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=30, help="each pgbench run (default 30)")
    args = parser.parse_args()
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
        sizes = {"scale": args.scale, "clients": args.clients, "seconds": args.seconds}
        local = pgbench(lab, node1, LOCAL_PORT, **sizes)
        replicated = pgbench(lab, vip, 5432, **sizes)
        budget = daemon_budget(cluster, "node1")
        cut = power_cut_under_load(lab, cluster, vip)
        result = {
            "pgbench": {
                **sizes,
                "local_tps": round(local, 1),
                "replicated_tps": round(replicated, 1),
                "replicated_over_local": round(replicated / local, 3),
            },
            "power_cut_under_load": cut,
            "budgets": {**budget, "limits": {"safekitd_rss_mib": 80, "safekitd_idle_cpu_percent": 1.0}},
            "note": "local and replicated data directories are on the same node and the same disk; "
            "in the lab the secondary's copy also lands on this machine's disk",
        }
        path = write_result("modules", result)
        print(f"{path}: pgbench {replicated:.0f} TPS replicated vs {local:.0f} local "
              f"({replicated / local:.2f}x); power cut: {cut}")  # fmt: skip
        return 0 if cut["acknowledged_lost"] == 0 else 1
    finally:
        lab.down()


if __name__ == "__main__":
    sys.exit(main())
