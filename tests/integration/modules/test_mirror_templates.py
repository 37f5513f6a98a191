"""Mirror templates on real lab hosts: the generic mirror, PostgreSQL and MariaDB modules, made with
`safekit module new` and installed with `safekit module install`, all three on the same two nodes
(one lab, one power cut for the three: the suite's time budget).

The generic and PostgreSQL modules start primary on node1, MariaDB primary on node2 (two mirrors
whose primaries are on different nodes). Data is committed through each module's virtual IP from
the client, and client-side writers keep committing to PostgreSQL and MariaDB while node1 loses
power. Every module must then be primary (ALONE) on node2 with its application running there from
the replicated copy, holding every write the client saw acknowledged; MariaDB, whose primary lost
only its secondary, keeps acknowledging writes through the cut.
"""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Iterator

import pytest
from tpl_lab import save_logs, wait_for

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.modules import install_modules
from safekit.lab.run_names import run_lab_name
from safekit.lab.writers import AckedWriter, mariadb_writer, postgresql_writer

PG_PASSWORD = "tplpg"
DB_PASSWORD = "tpldb"
ROWS = 200
GENERIC_PORT = 8081
PRIMARY_NODES = {"tplapp": ("node1", "node2"), "tplpg": ("node1", "node2"), "tpldb": ("node2", "node1")}


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    lab = Lab(run_lab_name("tplmirror"))
    lab.down()  # leftovers of an interrupted earlier run
    lab.up(nodes=2, witness=True, client=True)
    try:
        yield lab
    finally:
        lab.down()


def vip(lab: Lab, index: int) -> str:
    return str(lab.plan().vips[index])


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[LabCluster]:
    witness = str(lab.plan().host("witness").address)
    clients = str(lab.plan().lans[0].network)
    cluster = LabCluster(lab)
    modules = install_modules(
        cluster,
        {
            "tplapp": (
                "mirror",
                {
                    "virtual_ip": vip(lab, 0),
                    "witness": witness,
                    "replicated_dir": "/srv/tplapp",
                    "heartbeat_port": "4810",
                    "app_command": f"python3 -m http.server {GENERIC_PORT}",
                    "check_port": str(GENERIC_PORT),
                },
            ),
            "tplpg": (
                "postgresql",
                {
                    "virtual_ip": vip(lab, 1),
                    "witness": witness,
                    "pg_password": PG_PASSWORD,
                    "heartbeat_port": "4820",
                    "pg_clients": clients,
                },
            ),
            "tpldb": (
                "mariadb",
                {
                    "virtual_ip": vip(lab, 2),
                    "witness": witness,
                    "db_password": DB_PASSWORD,
                    "heartbeat_port": "4830",
                    "db_clients": clients,
                },
            ),
        },
    )
    for node in cluster.nodes:
        cluster.start_daemon(node)
    try:
        # First start, as the playbook does it: the first primary has the data (empty: initialised
        # there). MariaDB's primary is node2, the others' node1.
        for module in modules:
            primary, secondary = PRIMARY_NODES[module]
            cluster.safekit(primary, "prim", "-m", module)
            cluster.safekit(secondary, "second", "-m", module)
        for module in modules:
            primary, secondary = PRIMARY_NODES[module]
            cluster.wait_state(primary, module, "PRIM", timeout=120)
            cluster.wait_state(secondary, module, "SECOND", timeout=60)
        yield cluster
    finally:
        save_logs(lab, cluster, list(modules), extra=("postgresql.log", "mariadb.log", "app.log"))


def psql(lab: Lab, query: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    conninfo = f"host={vip(lab, 1)} port=5432 user=postgres dbname=postgres connect_timeout=2"
    argv = ["env", f"PGPASSWORD={PG_PASSWORD}", "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
    return lab.exec("client", [*argv, conninfo, "-c", query], check=check, timeout=30)


def mariadb(lab: Lab, query: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["mariadb", "--no-defaults", "-h", vip(lab, 2), "-P", "3306", "-u", "app", f"-p{DB_PASSWORD}"]
    return lab.exec(
        "client", [*argv, "--connect-timeout=2", "-N", "-B", "-e", query], check=check, timeout=30
    )


def http_get(lab: Lab, url: str) -> str | None:
    script = (
        "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())"
    )
    done = lab.exec("client", ["python3", "-c", script, url], timeout=30)
    return done.stdout.strip() if done.returncode == 0 else None


def pids(lab: Lab, node: str, name: str) -> list[str]:
    """Processes called `name` of one lab host (the hosts share the process table)."""
    script = (
        'me=$(readlink /proc/self/ns/net); for p in $(pgrep -x "$1"); do '
        '[ "$(readlink /proc/$p/ns/net 2>/dev/null)" = "$me" ] && echo $p; done; true'
    )
    return lab.exec(node, ["sh", "-c", script, "pids", name], check=True).stdout.split()


def pg_writer(lab: Lab) -> AckedWriter:
    return postgresql_writer(lab, vip(lab, 1), PG_PASSWORD, "writes")


def db_writer(lab: Lab) -> AckedWriter:
    return mariadb_writer(lab, vip(lab, 2), user="app", password=DB_PASSWORD, database="tpl", table="writes")


@pytest.fixture(scope="module")
def failed_over(lab: Lab, cluster: LabCluster) -> Iterator[dict[str, object]]:
    """Data committed in the three modules through their VIPs, then node1's power cut while a
    PostgreSQL and a MariaDB writer commit; yields, once node2 is primary of every module, the time
    of the cut and both writers (stopped)."""
    lab.exec(
        "node1",
        ["sh", "-c", "echo committed-before-the-cut > /srv/tplapp/page.txt && sync /srv/tplapp/page.txt"],
        check=True,
    )
    psql(lab, "CREATE TABLE ledger (id int PRIMARY KEY, note text NOT NULL)")
    psql(lab, f"INSERT INTO ledger SELECT i, 'row ' || i FROM generate_series(1, {ROWS}) i")
    psql(lab, "CREATE TABLE writes (id int PRIMARY KEY)")
    mariadb(lab, "CREATE DATABASE tpl; CREATE TABLE tpl.ledger (id int PRIMARY KEY, note text) ENGINE=InnoDB")
    mariadb(lab, "CREATE TABLE tpl.writes (id int PRIMARY KEY) ENGINE=InnoDB")
    inserts = ";".join(f"INSERT INTO tpl.ledger VALUES ({i}, 'row {i}')" for i in range(1, ROWS + 1))
    mariadb(lab, f"SET autocommit=1; {inserts}")
    writers = {"pg": pg_writer(lab), "mariadb": db_writer(lab)}
    try:
        deadline = time.monotonic() + 30
        while not all(len(w.acked) >= 20 for w in writers.values()):
            assert time.monotonic() < deadline, f"the writers do not commit: {list(writers.values())}"
            time.sleep(0.1)
        lab.kill("node1")
        killed = time.monotonic()
        for module in ("tplapp", "tplpg", "tpldb"):
            cluster.wait_state("node2", module, "ALONE", timeout=90)
        time.sleep(2)  # MariaDB's writer commits on node2 alone for a while
    finally:
        for writer in writers.values():
            writer.stop()
    yield {"killed": killed, **writers}


def test_each_application_runs_on_the_primary_only(lab: Lab, cluster: LabCluster) -> None:
    assert pids(lab, "node1", "postgres") and pids(lab, "node2", "mariadbd")
    assert pids(lab, "node2", "postgres") == [] and pids(lab, "node1", "mariadbd") == []
    assert http_get(lab, f"http://{vip(lab, 0)}:{GENERIC_PORT}/") is not None  # the generic app, via its VIP
    denied = lab.exec("node2", ["sh", "-c", "echo x > /srv/pgdata/intruder"])
    assert denied.returncode != 0, "the secondary's copy of PGDATA is writable"
    assert cluster.state("node2", "tpldb")["state"] == "PRIM"  # two mirrors, primaries on two nodes
    assert cluster.state("node1", "tpldb")["state"] == "SECOND"
    userlog = lab.exec("node1", ["cat", "/var/log/safekit/modules/tplpg.userlog"]).stdout
    assert "start_prim: PostgreSQL initialised (initdb: first start of the module) and started" in userlog


def test_a_client_that_sends_nothing_does_not_restart_postgresql(lab: Lab, cluster: LabCluster) -> None:
    """A connection that has not sent PostgreSQL's startup packet yet (a slow client, a port scan,
    the module's own tcp checker) has a backend that still carries the postmaster's command line:
    process monitoring must not take it for a second postmaster and restart the database."""
    postmaster = lab.exec("node1", ["head", "-1", "/srv/pgdata/postmaster.pid"], check=True).stdout.strip()
    hold = "import socket, sys, time; s = socket.create_connection((sys.argv[1], 5432)); time.sleep(7)"
    lab.exec("client", ["python3", "-c", hold, vip(lab, 1)], check=True, timeout=30)  # > errd's 5 s poll
    time.sleep(1)
    after = lab.exec("node1", ["head", "-1", "/srv/pgdata/postmaster.pid"], check=True).stdout.strip()
    log = lab.exec("node1", ["cat", "/var/log/safekit/modules/tplpg.log"]).stdout
    assert after == postmaster, f"PostgreSQL was restarted: {[x for x in log.splitlines() if 'errd' in x]}"
    assert cluster.state("node1", "tplpg")["state"] == "PRIM"


def test_generic_mirror_serves_the_replicated_file_after_a_power_cut(
    lab: Lab, failed_over: dict[str, object]
) -> None:
    url = f"http://{vip(lab, 0)}:{GENERIC_PORT}/page.txt"
    page = wait_for("the generic application on node2", lambda: http_get(lab, url), timeout=30)
    assert page == "committed-before-the-cut"


def test_postgresql_committed_rows_survive_a_power_cut(lab: Lab, failed_over: dict[str, object]) -> None:
    def answer() -> str | None:
        done = psql(lab, "SELECT count(*), min(id), max(id) FROM ledger", check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    assert wait_for("PostgreSQL behind the VIP on node2", answer, timeout=60) == f"{ROWS}|1|{ROWS}"
    assert pids(lab, "node2", "postgres"), "PostgreSQL does not run on the new primary"
    assert psql(lab, f"INSERT INTO ledger VALUES ({ROWS + 1}, 'after') RETURNING id").stdout.strip() == str(
        ROWS + 1
    )


def test_mariadb_committed_rows_survive_a_power_cut(lab: Lab, failed_over: dict[str, object]) -> None:
    def answer() -> str | None:
        done = mariadb(lab, "SELECT count(*), min(id), max(id) FROM tpl.ledger", check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    assert wait_for("MariaDB behind the VIP on node2", answer, timeout=60).split() == ["200", "1", "200"]
    assert pids(lab, "node2", "mariadbd"), "MariaDB does not run on the new primary"
    mariadb(lab, f"INSERT INTO tpl.ledger VALUES ({ROWS + 1}, 'after')")
    assert mariadb(lab, "SELECT count(*) FROM tpl.ledger").stdout.strip() == str(ROWS + 1)


def test_every_write_acknowledged_under_load_survives_the_power_cut(
    lab: Lab, failed_over: dict[str, object]
) -> None:
    pg, db = failed_over["pg"], failed_over["mariadb"]
    killed = failed_over["killed"]
    assert isinstance(pg, AckedWriter) and isinstance(db, AckedWriter) and isinstance(killed, float)
    assert len(pg.acked) >= 20 and len(db.acked) >= 20
    rows = psql(lab, "SELECT id FROM writes ORDER BY id").stdout.split()
    missing = sorted(set(pg.acked) - {int(r) for r in rows})
    assert missing == [], f"PostgreSQL lost {len(missing)} acknowledged writes: {missing[:10]}"
    rows = mariadb(lab, "SELECT id FROM tpl.writes ORDER BY id").stdout.split()
    missing = sorted(set(db.acked) - {int(r) for r in rows})
    assert missing == [], f"MariaDB lost {len(missing)} acknowledged writes: {missing[:10]}"
    # MariaDB's primary (node2) lost only its secondary: it went on acknowledging after the cut.
    after = [t for t in db.acked_at if t > killed]
    assert after, "MariaDB acknowledged nothing after its secondary lost power"
    print(
        f"acknowledged: PostgreSQL {len(pg.acked)} (all kept), MariaDB {len(db.acked)} (all kept, "
        f"{len(after)} after the cut; longest pause {longest_pause(db.acked_at):.2f} s)"
    )


def longest_pause(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)
