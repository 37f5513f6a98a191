"""PostgreSQL on a replicated data directory (examples/modules/pgmirror) on real lab hosts.

The module is installed as it ships (its userconfig.xml and restart scripts, only the VIP and the
witness set to this lab's), PostgreSQL 15 from Debian runs on the primary over the FUSE front of
`<rfs>`, a client commits one transaction after another through the virtual IP, and the primary
loses power in the middle. The secondary must take over, start PostgreSQL on its copy, and hold
every transaction whose commit the client saw acknowledged - and nothing that is not a prefix of
what the client sent. The replication runs on the native programs of this checkout (native/build).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.run_names import run_lab_name
from safekit.membership import clusterkey

MODULE = "pgmirror"
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "modules" / MODULE
PSQL = "/usr/bin/psql"
PASSWORD = "pgmirror"  # the module's PG_PASSWORD (used by initdb at the first start)
LEDGER = "CREATE TABLE IF NOT EXISTS ledger (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
# The writer, on the client: one INSERT per transaction (autocommit), ids 1, 2, 3, ... in order;
# psql prints an id when the server answered its commit (line-buffered, so we see it at once).
WRITER = (
    "seq 1 10000000 | sed 's/.*/INSERT INTO ledger (id) VALUES (&) RETURNING id;/' | "
    "stdbuf -oL {psql} -X -q -At -v ON_ERROR_STOP=1 '{conninfo}'"
)
# The postmasters of one lab host: the hosts share the process table, each has its own netns.
POSTMASTERS = (
    "me=$(readlink /proc/self/ns/net); for p in $(pgrep -x postgres); do "
    '[ "$(readlink /proc/$p/ns/net 2>/dev/null)" = "$me" ] && '
    'tr "\\0" " " < /proc/$p/cmdline | grep -q -- "-D " && echo $p; done; true'
)


def conninfo(vip: str) -> str:
    return f"host={vip} port=5432 user=postgres dbname=postgres connect_timeout=2"


def module_for(lab: Lab, where: Path) -> Path:
    """The shipped module with this lab's VIP and witness (labs get other addresses when several run)."""
    plan = lab.plan()
    module = where / MODULE
    shutil.copytree(EXAMPLE, module)
    conf = module / "conf" / "userconfig.xml"
    xml = conf.read_text()
    for macro, value in (("VIRTUAL_IP", plan.vips[0]), ("WITNESS", plan.host("witness").address)):
        xml, n = re.subn(rf'(<macro name="{macro}" value=")[^"]*', rf"\g<1>{value}", xml)
        assert n == 1, f"no {macro} macro in {conf}"
    conf.write_text(xml)
    return module


def sql(lab: Lab, query: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    vip = str(lab.plan().vips[0])
    return lab.exec(
        "client",
        [
            "env",
            f"PGPASSWORD={PASSWORD}",
            PSQL,
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            conninfo(vip),
            "-c",
            query,
        ],
        check=check,
        timeout=30,
    )


def postmasters(lab: Lab, node: str) -> list[str]:
    return lab.exec(node, ["sh", "-c", POSTMASTERS], check=True).stdout.split()


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    lab = Lab(run_lab_name("itpg"))
    lab.down()  # leftovers of an interrupted earlier run
    lab.up(nodes=2, witness=True, client=True)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[LabCluster]:
    root = Path(tempfile.mkdtemp(prefix="safekit-itpg-", dir="/var/tmp"))  # the lab hosts see /var/tmp
    root.chmod(0o755)
    cluster = LabCluster(lab)
    key = clusterkey.generate_key()
    cluster.install(module_for(lab, root), key=key)
    shutil.rmtree(root, ignore_errors=True)
    cluster.start_arbiter(key)  # the module's split-brain witness is the arbitrator, on the witness host
    for node in cluster.nodes:
        cluster.start_daemon(node)
    try:
        yield cluster
    finally:
        keep = Path("/var/tmp/safekit-itpg-logs")  # for a post-mortem of a failed run
        shutil.rmtree(keep, ignore_errors=True)
        keep.mkdir()
        for node in cluster.nodes:
            if node not in lab.require_state().faults.killed:
                for suffix in ("log", "userlog", "postgresql.log"):
                    out = lab.exec(node, ["cat", f"/var/log/safekit/modules/{MODULE}.{suffix}"]).stdout
                    (keep / f"{node}.{suffix}").write_text(out)


def test_first_start_runs_postgresql_on_the_primary_only(lab: Lab, cluster: LabCluster) -> None:
    # First start, as the playbook does it: node1 has the data (initdb of an empty directory),
    # node2 copies it.
    cluster.safekit("node1", "prim", "-m", MODULE)
    cluster.safekit("node2", "second", "-m", MODULE)
    cluster.wait_state("node1", MODULE, "PRIM", timeout=60)
    cluster.wait_state("node2", MODULE, "SECOND", timeout=60)
    assert postmasters(lab, "node1"), "PostgreSQL does not run on the primary"
    assert postmasters(lab, "node2") == [], "PostgreSQL runs on the secondary"
    sql(lab, LEDGER)


def test_the_secondarys_copy_is_read_only(lab: Lab, cluster: LabCluster) -> None:
    denied = lab.exec("node2", ["sh", "-c", "echo x > /srv/pgdata/intruder"])
    if denied.returncode == 0:  # the copy diverged: put it back for the tests that follow
        lab.exec("node2", ["rm", "-f", "/srv/pgdata/intruder"], check=True)
    assert denied.returncode != 0 and "Read-only" in denied.stderr


def test_every_acknowledged_commit_survives_the_primarys_power_loss(lab: Lab, cluster: LabCluster) -> None:
    # A client commits through the VIP while node1 loses power.
    vip = str(lab.plan().vips[0])
    command = WRITER.format(psql=PSQL, conninfo=conninfo(vip))
    writer = subprocess.Popen(
        lab.exec_argv("client", ["env", f"PGPASSWORD={PASSWORD}", "sh", "-c", command]),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group: ended below by its id
    )
    assert writer.stdout is not None
    acknowledged: list[int] = []
    reader = threading.Thread(target=lambda: acknowledged.extend(int(line) for line in writer.stdout or ()))
    reader.start()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and writer.poll() is None:
        time.sleep(0.05)
    assert writer.poll() is None, "the writer stopped before the power cut"
    lab.kill("node1")
    killed = time.monotonic()
    time.sleep(0.5)  # an answer already on its way to the client lands; nothing comes from node1 after
    os.killpg(writer.pid, signal.SIGKILL)
    writer.wait(timeout=10)
    reader.join(timeout=10)
    assert acknowledged == list(range(1, len(acknowledged) + 1)), "acknowledgements out of order"
    last = len(acknowledged)
    assert last > 50, f"only {last} commits acknowledged in 3 s"

    # node2 takes over and starts PostgreSQL on its copy (crash recovery of the WAL it received).
    cluster.wait_state("node2", MODULE, "ALONE", timeout=60)
    answer = None
    while time.monotonic() - killed < 60:
        answer = sql(
            lab, "SELECT count(*), coalesce(max(id), 0), count(DISTINCT id) FROM ledger", check=False
        )
        if answer.returncode == 0:
            break
        time.sleep(0.2)
    assert answer is not None and answer.returncode == 0, f"no PostgreSQL behind the VIP: {answer}"
    outage = time.monotonic() - killed
    rows, highest, distinct = (int(v) for v in answer.stdout.strip().split("|"))
    present = int(sql(lab, f"SELECT count(*) FROM ledger WHERE id <= {last}").stdout)
    report = json.dumps({"acknowledged": last, "rows": rows, "max_id": highest, "outage_s": round(outage, 2)})
    assert present == last, f"{last - present} acknowledged commits lost: {report}"
    # a prefix of what the client sent: at most the one commit in flight at the power cut beyond it
    assert rows == distinct == highest and highest in (last, last + 1), report
    assert postmasters(lab, "node2"), "PostgreSQL does not run on the new primary"
    # the new primary takes writes
    inserted = sql(lab, f"INSERT INTO ledger (id) VALUES ({highest + 1}) RETURNING id").stdout.strip()
    assert inserted == str(highest + 1)


def test_the_old_primary_rejoins_as_secondary_without_postgresql(lab: Lab, cluster: LabCluster) -> None:
    lab.start("node1")
    cluster.start_daemon("node1")
    cluster.safekit("node1", "start", "-m", MODULE, check=False)  # it may start at boot by itself
    cluster.wait_state("node1", MODULE, "SECOND", timeout=60)
    cluster.wait_state("node2", MODULE, "PRIM", timeout=30)
    assert postmasters(lab, "node1") == [], "PostgreSQL runs on the secondary"
    sql(lab, "INSERT INTO ledger (id) SELECT max(id) + 1 FROM ledger")  # a write after the resync


def test_both_copies_are_identical_after_the_rejoin(lab: Lab, cluster: LabCluster) -> None:
    out = cluster.safekit("node2", "rfs", "verify", "-m", MODULE, "--json", timeout=120).stdout
    result = json.loads(out)
    assert result["identical"] is True, result
