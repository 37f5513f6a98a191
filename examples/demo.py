"""The demo (`make demo`): PostgreSQL in a mirror cluster on lab hosts, deployed by the playbook,
then a power cut in the middle of a stream of commits.

1. a lab: node1, node2, a witness and a client;
2. `ansible-playbook playbooks/deploy-mirror.yml` with the module examples/modules/pgmirror:
   cluster.xml, the cluster key, the module (a VIP, `<rfs>` replicating PostgreSQL's data
   directory /srv/pgdata), safekitd on both nodes, `prim` on node1 (initdb of the empty directory)
   and `second` on node2 (it receives a copy);
3. the client creates a table and commits transactions through the virtual IP, one by one, and
   records every commit PostgreSQL acknowledged;
4. `safekit lab kill node1` while the client is committing: every process of node1 is killed and
   its cables pulled;
5. node2 takes over the VIP and starts PostgreSQL on its copy: every acknowledged commit must be
   there (the demo exits 1 otherwise);
6. node1 boots again, the playbook runs again, node1 rejoins as secondary, its copy is
   resynchronised, and `safekit rfs verify` compares both copies.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.system import netns_pids

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.prefix) / "bin"
LAB = sys.argv[1] if len(sys.argv) > 1 else "demo"
MODULE = "pgmirror"
PACKAGE = ROOT / "examples" / "modules" / MODULE
# the module's PG_PASSWORD: initdb gives it to the superuser at the first start (a lab-only password)
PASSWORD = "pgmirror"  # noqa: S105
SAFEKIT = "/opt/safekit/venv/bin/safekit"  # where the playbook installs the engine on the nodes
BATCH = 200
COUNT_ROWS = "SELECT count(*) FROM ledger"
LEDGER = (
    "CREATE TABLE ledger (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), "
    "served_by inet NOT NULL DEFAULT inet_server_addr())"
)
# One INSERT per transaction (autocommit), ids FIRST, FIRST+1, ...; psql prints the id once the
# server has answered the commit (line-buffered: the demo sees each at once).
WRITER = (
    "seq {first} {last} | sed 's/.*/INSERT INTO ledger (id) VALUES (&) RETURNING id;/' | "
    "stdbuf -oL psql -X -q -At -v ON_ERROR_STOP=1 '{conninfo}'"
)


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def module_vars(lab: Lab) -> dict[str, object]:
    """The playbook's module variables, overridden for pgmirror: its userconfig.xml (with this
    lab's VIP and witness: a lab gets other addresses when other labs run) and its scripts."""
    plan = lab.plan()
    xml = (PACKAGE / "conf" / "userconfig.xml").read_text()
    for macro, value in (("VIRTUAL_IP", plan.vips[0]), ("WITNESS", plan.host("witness").address)):
        xml = re.sub(rf'(<macro name="{macro}" value=")[^"]*', rf"\g<1>{value}", xml)
    scripts = {p.name: p.read_text() for p in sorted((PACKAGE / "bin").iterdir()) if p.is_file()}
    return {
        "safekit_module_name": MODULE,
        "safekit_module": {"userconfig": xml},
        "safekit_module_scripts": scripts,
    }


def playbook(lab: Lab) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="pgmirror-vars-") as extra:
        json.dump(module_vars(lab), extra)
        extra.flush()
        subprocess.run(
            [
                str(BIN / "ansible-playbook"),
                "-i",
                str(lab.inventory_path),
                "-e",
                f"@{extra.name}",
                "playbooks/deploy-mirror.yml",
            ],
            cwd=ROOT,
            check=True,
        )


def conninfo(lab: Lab) -> str:
    return f"host={lab.plan().vips[0]} port=5432 user=postgres dbname=postgres connect_timeout=2"


def sql(lab: Lab, query: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A query from the client through the virtual IP."""
    argv = ["env", f"PGPASSWORD={PASSWORD}", "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
    return lab.exec("client", [*argv, conninfo(lab), "-c", query], check=check, timeout=30)


class Writer:
    """Commits from the client, one transaction at a time; `acknowledged` holds the ids whose
    commit PostgreSQL answered."""

    def __init__(self, lab: Lab, first: int, last: int) -> None:
        command = WRITER.format(first=first, last=last, conninfo=conninfo(lab))
        self.proc = subprocess.Popen(
            lab.exec_argv("client", ["env", f"PGPASSWORD={PASSWORD}", "sh", "-c", command]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, ended by its id
        )
        self.acknowledged: list[int] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.acknowledged.append(int(line))

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)


def states(cluster: LabCluster, lab: Lab) -> None:
    for node in cluster.nodes:
        try:
            st = cluster.state(node, MODULE)
            pg = "PostgreSQL runs" if postmaster(lab, node) else "no PostgreSQL"
            print(f"   {node}: {st['state']} ({st['readiness']}), {pg} - {st['reason']}")
            replication = st.get("replication") or {}
            if replication:
                running = ", ".join(replication_programs(lab, node)) or "no replication process seen"
                engine = f"{replication.get('role')} ({replication.get('engine')} engine)"
                print(f"      replication {engine}: {running}")
        except Exception as exc:  # a killed node cannot answer: say so and go on
            print(f"   {node}: no answer ({exc.__class__.__name__})")


def postmaster(lab: Lab, node: str) -> str:
    """The pid of the postmaster of one lab host (the hosts share one process table)."""
    script = (
        "me=$(readlink /proc/self/ns/net); for p in $(pgrep -x postgres); do "
        '[ "$(readlink /proc/$p/ns/net 2>/dev/null)" = "$me" ] && '
        'tr "\\0" " " < /proc/$p/cmdline | grep -q -- "-D " && echo $p; done; true'
    )
    return lab.exec(node, ["sh", "-c", script], check=True).stdout.strip()


def replication_programs(lab: Lab, node: str) -> list[str]:
    """The replication processes of one lab host, "/path/of/program (pid N)", from its process list."""
    found = []
    for pid in netns_pids(lab.plan().host(node).netns):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue  # gone meanwhile
        if Path(argv[0]).name in ("safekit-rfs-primary", "safekit-rfs-secondary"):
            found.append(f"{argv[0]} (pid {pid})")
        elif argv[1:3] == ["-m", "safekit.rfs"] and len(argv) > 3:
            found.append(f"python -m safekit.rfs {argv[3]} (pid {pid})")
    return found


def log_lines(lab: Lab, node: str, path: str, pattern: str, last: int = 6) -> list[str]:
    text = lab.exec(node, ["cat", path]).stdout
    return [line for line in text.splitlines() if re.search(pattern, line)][-last:]


def main() -> int:  # noqa: PLR0912, PLR0915 - a demo reads best as one story
    lab = Lab(LAB)
    say(f"lab '{LAB}': 2 nodes, a witness and a client (safekit lab up)")
    plan, created = lab.up(nodes=2, witness=True, client=True)
    for host in plan.hosts:
        print(f"   {host.name:<8} {host.address}")
    if not created:
        print("   (the lab was already up)")
    vip = str(lab.plan().vips[0])

    say(f"deploy PostgreSQL as the mirror module {MODULE} with Ansible (playbooks/deploy-mirror.yml)")
    print(f"   module package: {PACKAGE.relative_to(ROOT)} (data directory /srv/pgdata replicated by <rfs>)")
    playbook(lab)
    cluster = LabCluster(lab)
    say("the module on each node (safekit state)")
    states(cluster, lab)
    primary = next(n for n in cluster.nodes if cluster.state(n, MODULE)["state"] in ("PRIM", "ALONE"))
    survivor = next(n for n in cluster.nodes if n != primary)
    denied = lab.exec(survivor, ["sh", "-c", "touch /srv/pgdata/x"])
    print(f"   {survivor}'s copy of /srv/pgdata is read-only: {denied.stderr.strip()}")

    say(f"the client commits {BATCH} transactions through the virtual IP {vip}")
    print("   " + sql(lab, "SELECT version()").stdout.strip())
    if sql(lab, "SELECT to_regclass('ledger') IS NULL").stdout.strip() == "t":
        sql(lab, LEDGER)
    first = int(sql(lab, "SELECT coalesce(max(id), 0) + 1 FROM ledger").stdout)
    started = time.monotonic()
    batch = Writer(lab, first, first + BATCH - 1)
    if batch.wait(timeout=120) != 0 or len(batch.acknowledged) != BATCH:
        print(f"   the writer failed: {batch.proc.stderr.read() if batch.proc.stderr else ''}")
        return 1
    elapsed = time.monotonic() - started
    print(
        f"   {BATCH} commits acknowledged in {elapsed:.2f} s ({BATCH / elapsed:.0f} commits/s, one at a time)"
    )

    say(f"the client keeps committing; power cut on {primary} (safekit lab kill {primary})")
    writer = Writer(lab, first + BATCH, first + 10_000_000)
    time.sleep(3.0)
    before = len(writer.acknowledged)
    killed = time.monotonic()
    lab.kill(primary)
    time.sleep(0.5)  # an answer already on its way lands; nothing comes from the dead node after that
    writer.stop()
    acked = batch.acknowledged + writer.acknowledged
    if acked != list(range(first, first + len(acked))):
        print("   acknowledgements out of order: the client is broken")
        return 1
    last_acked = acked[-1]
    print(
        f"   {len(writer.acknowledged)} more commits acknowledged ({before} in the 3 s before the cut); "
        f"the last acknowledged id is {last_acked}"
    )

    say(f"{survivor} takes over: the VIP, then PostgreSQL on its copy (crash recovery)")
    takeover = None
    answer = None
    while time.monotonic() - killed < 120:
        if takeover is None:
            try:
                if cluster.state(survivor, MODULE)["state"] == "ALONE":
                    takeover = time.monotonic() - killed
            except Exception:  # noqa: S110 - keep asking
                pass
        answer = sql(lab, "SELECT count(*), min(id), max(id) FROM ledger", check=False)
        if answer.returncode == 0:
            break
        time.sleep(0.2)
    serving = time.monotonic() - killed
    if answer is None or answer.returncode != 0:
        print(f"   no PostgreSQL behind the VIP {serving:.0f} s after the power cut")
        states(cluster, lab)
        return 1
    count, low, high = (int(v or 0) for v in answer.stdout.strip().split("|"))
    query = f"SELECT count(*) FROM ledger WHERE id BETWEEN {first} AND {last_acked}"  # noqa: S608 - integers
    present = int(sql(lab, query).stdout)
    expected = last_acked - first + 1
    if takeover is not None:
        print(f"   {survivor} is primary {takeover:.2f} s after the power cut")
    print(f"   PostgreSQL answers through the VIP {serving:.2f} s after the power cut")
    states(cluster, lab)
    print(f"\n   {survivor}'s log of the takeover:")
    for line in cluster.log(survivor, MODULE).splitlines()[-8:]:
        print(f"   | {line}")
    print(f"\n   PostgreSQL's log on {survivor}:")
    pglog = f"/var/log/safekit/modules/{MODULE}.postgresql.log"
    for line in log_lines(lab, survivor, pglog, r"was interrupted|redo (starts|done)|ready to accept", 4):
        print(f"   | {line}")
    print(f"\n   ids {first}..{last_acked}: {expected} commits acknowledged to the client this run")
    print(f"   on {survivor}: {present} of them; the table holds {count} rows (ids {low}..{high})")
    if present != expected:
        print(f"\n\033[1;31m   LOST {expected - present} ACKNOWLEDGED COMMITS\033[0m")
        return 1
    beyond = high - last_acked
    print(
        "\033[1;32m   every acknowledged commit is on the new primary\033[0m"
        + (f" (plus {beyond} in flight at the cut: committed, its answer lost)" if beyond else "")
    )
    sql(lab, f"INSERT INTO ledger (id) VALUES ({high + 1})")  # noqa: S608 - an integer
    print(f"   and it takes new commits (id {high + 1})")

    say(f"{primary} boots again; the playbook runs again and starts safekitd there")
    lab.start(primary)
    playbook(lab)
    cluster.wait_state(primary, MODULE, "SECOND", timeout=120)
    states(cluster, lab)
    print(f"\n   the resynchronisation of {primary} ({survivor}'s log):")
    for line in log_lines(
        lab, survivor, f"/var/log/safekit/modules/{MODULE}.log", r"replication: .* in sync \(", 1
    ):
        print(f"   | {line}")
    verify = lab.exec(survivor, [SAFEKIT, "rfs", "verify", "-m", MODULE], timeout=300)
    print(f"   safekit rfs verify -m {MODULE} (on {survivor}): exit {verify.returncode}")
    for line in (verify.stdout + verify.stderr).strip().splitlines()[-5:]:
        print(f"   | {line}")
    if verify.returncode != 0:
        return 1

    say("done")
    inventory = json.dumps(str(lab.inventory_path))
    primary_after = "?" if takeover is None else f"{takeover:.2f} s"
    print(
        f"   {present} of {expected} acknowledged commits survived the power cut; {survivor} primary after "
        f"{primary_after}, PostgreSQL serving after {serving:.2f} s.\n"
        f"   The lab '{LAB}' is still up. Look around:\n"
        f"     .venv/bin/safekit lab exec --name {LAB} client -- env PGPASSWORD={PASSWORD} "
        f"psql -h {vip} -U postgres -c {COUNT_ROWS!r}\n"
        f"     .venv/bin/safekit lab exec --name {LAB} {survivor} -- {SAFEKIT} state -v\n"
        f"     ansible -i {inventory} safekit_nodes -m ping\n"
        f"   Remove it with: make lab-down LAB={LAB}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
