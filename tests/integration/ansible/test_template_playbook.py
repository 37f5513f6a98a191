"""playbooks/examples/mirror.yml on fresh lab hosts: the generic mirror module of the template library
(safekit_module_template: mirror, its site values as safekit_template_* variables) deployed by the
roles, serving its replicated directory through the VIP; a second run changes nothing; under wrk,
the primary's power cut leaves the client unanswered only until the secondary serves the page.

Then the other templates through their example playbooks, each on a lab of its own, the
application's own load tool running through the VIP while the serving node loses power (pgbench,
a MariaDB commit loop, wrk for the farms): the client's count of acknowledged commits all on the
new primary, the farms' clients unanswered only during the outage."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from ansible_lab_runs import ROOT, Recap, fresh_lab, run_playbook
from template_power_cut import (
    PGBENCH_TABLE,
    Pgbench,
    WrkRuns,
    changed_tasks,
    deploy,
    farm_members,
    http_get,
    missing_commits,
    missing_ids,
    outage_of,
    power_cut,
    psql,
    state,
    wait_for,
)

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.writers import mariadb_writer

sys.path.insert(0, str(ROOT / "tests" / "integration" / "modules"))
from tpl_lab import save_logs  # type: ignore[import-not-found]

MODULE = "app"  # safekit_module_name in playbooks/examples/mirror.yml
PAGE = "/srv/data/index.html"  # in the template's replicated_dir, served by its app_command


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    yield from fresh_lab("md16tpl")


def playbook(lab: Lab, *extra: str) -> tuple[subprocess.CompletedProcess[str], Recap]:
    return run_playbook(lab, "examples/mirror.yml", *extra)


@pytest.mark.timeout(900)  # two whole deployments (191 s then 143 s at load 12) and a power cut
def test_template_module_deployed_by_the_playbook_serves_through_the_vip_and_after_a_power_cut(
    lab: Lab,
) -> None:
    started = time.monotonic()
    first, recap = playbook(lab)
    first_run = time.monotonic() - started
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert recap["node1"]["failed"] == 0 and recap["node1"]["changed"] > 0
    # The module on the node is the template's, its macros set to the playbook's site values.
    config = lab.exec(
        "node1", ["cat", f"/opt/safekit/modules/{MODULE}/conf/userconfig.xml"], check=True
    ).stdout
    vip = lab.plan().vips[0]
    assert f'<macro name="VIRTUAL_IP" value="{vip}"/>' in config, config
    assert '<macro name="REPLICATED_DIR" value="/srv/data"/>' in config
    assert lab.exec("node1", ["test", "-x", f"/opt/safekit/modules/{MODULE}/bin/start_prim"]).returncode == 0
    assert state(lab, "node1", MODULE) == ("PRIM", "Ready")
    assert state(lab, "node2", MODULE) == ("SECOND", "Ready")

    # A page written on the primary is served by the template's application through the VIP and
    # is on the secondary too (the directory is replicated).
    write = f"echo 'app on node1' > {PAGE}.tmp && sync && mv {PAGE}.tmp {PAGE}"
    lab.exec("node1", ["sh", "-c", write], check=True)
    url = f"http://{vip}:8080/index.html"
    wait_for("the page through the VIP", lambda: http_get(lab, url) == "app on node1", 30)
    wait_for(
        "the page on the secondary",
        lambda: lab.exec("node2", ["cat", PAGE]).stdout.strip() == "app on node1",
        30,
    )

    started = time.monotonic()
    second, recap = playbook(lab)
    second_run = time.monotonic() - started
    assert second.returncode == 0, second.stdout[-4000:]
    assert all(host["changed"] == 0 for host in recap.values()), (recap, changed_tasks(second.stdout))
    assert state(lab, "node1", MODULE) == ("PRIM", "Ready"), "a second run restarts nothing"
    assert http_get(lab, url) == "app on node1"
    print(f"first run: {first_run:.1f} s, second run: {second_run:.1f} s")

    # The primary loses power under wrk: node2 serves the replicated page once it is primary alone,
    # the client unanswered only from the cut until then.
    load = WrkRuns(lab, url)
    try:
        time.sleep(5)
        cut_from = time.time()
        cut_to = power_cut(lab, "node1")
        wait_for("node2 primary alone", lambda: state(lab, "node2", MODULE)[0] == "ALONE", 120)
        time.sleep(8)
    finally:
        timeline = load.stop()
    outage = outage_of(timeline, cut_from, cut_to)
    print(f"mirror: wrk: {timeline.answered} answers; {outage.describe()}")
    assert any(t / 10 < cut_from for t in timeline.ok), "wrk had no answer before the cut"
    assert outage.failed_before == [] and outage.failed_after == [], outage
    assert outage.served_again is not None and outage.served_again - cut_to < 60, outage
    assert http_get(lab, url) == "app on node1"  # node2's copy


# ---------------------------------------------------------------------------- power cuts under load
# Each template through its playbooks/examples/<template>.yml on a lab of its own (names `mp...`),
# then the application's own load tool from the client through the VIP while the serving node
# loses power. Nothing else of the deployment is asserted again here (the test above and
# test_kvm_vm_playbook.py check a deployment's details and a second run).

PG_PASSWORD = "mppg"  # a lab database, gone with the lab
DB_PASSWORD = "mpdb"
POWER_CUT_TIMEOUT = 900  # a deployment (120 to 190 s measured), the cut and the take-over


@contextmanager
def deployed(name: str, playbook: str, module: str, *extra: str, pages: bool = False) -> Iterator[Lab]:
    """A fresh lab NAME with playbooks/examples/PLAYBOOK deployed; `pages`: each node's /srv/www/who
    names it (put there first: the farms serve it). The module's logs kept for a post-mortem."""
    with contextmanager(fresh_lab)(name) as lab:  # the lab goes down at the end
        if pages:
            for node in ("node1", "node2"):
                lab.exec(node, ["sh", "-c", f"mkdir -p /srv/www && echo {node} > /srv/www/who"], check=True)
        took = deploy(lab, f"examples/{playbook}", *extra)
        print(f"{playbook}: deployed in {took:.1f} s")
        try:
            yield lab
        finally:
            save_logs(
                lab,
                LabCluster(lab),
                [module],
                extra=("postgresql.log", "mariadb.log", "nginx.log", "apache.log"),
            )


@pytest.mark.timeout(POWER_CUT_TIMEOUT)
def test_postgresql_playbook_keeps_every_pgbench_commit_through_a_power_cut(root_required: None) -> None:
    module = "postgresql"  # safekit_module_name in playbooks/examples/postgresql.yml
    with deployed("mppg", "postgresql.yml", module, "-e", f"safekit_pg_password={PG_PASSWORD}") as lab:
        assert state(lab, "node1", module) == ("PRIM", "Ready")
        wait_for("node2 secondary", lambda: state(lab, "node2", module) == ("SECOND", "Ready"), 120)
        vip = str(lab.plan().vips[0])
        assert psql(lab, vip, PG_PASSWORD, PGBENCH_TABLE) == ""
        load = Pgbench(lab, vip, PG_PASSWORD)
        wait_for(
            "pgbench committing",
            lambda: int(psql(lab, vip, PG_PASSWORD, "SELECT count(*) FROM acked") or 0) >= 200,
            60,
        )
        killed = power_cut(lab, "node1")
        wait_for("node2 primary alone", lambda: state(lab, "node2", module)[0] == "ALONE", 120)
        run = load.wait(timeout=120)
        assert sum(run.acknowledged.values()) >= 200, run.output[-2000:]
        rows = wait_for(
            "PostgreSQL through the VIP on node2",
            lambda: psql(lab, vip, PG_PASSWORD, "SELECT client, n FROM acked"),
            60,
        )
        present = [(int(c), int(n)) for c, n in (line.split() for line in rows.splitlines())]
        missing = missing_commits(run.acknowledged, present)
        assert missing == [], f"{len(missing)} acknowledged pgbench transactions lost: {missing[:10]}"
        back = psql(lab, vip, PG_PASSWORD, "INSERT INTO acked VALUES (-1, 1) RETURNING n")
        print(
            f"pgbench acknowledged {sum(run.acknowledged.values())} transactions "
            f"({len(run.acknowledged)} clients), all on node2 ({len(present)} rows); "
            f"answering again {time.time() - killed:.1f} s after the cut at the latest"
        )
        assert back == "1"


@pytest.mark.timeout(POWER_CUT_TIMEOUT)
def test_mariadb_playbook_keeps_every_acknowledged_commit_through_a_power_cut(root_required: None) -> None:
    module = "mariadb"  # safekit_module_name in playbooks/examples/mariadb.yml
    with deployed("mpdb", "mariadb.yml", module, "-e", f"safekit_db_password={DB_PASSWORD}") as lab:
        assert state(lab, "node1", module) == ("PRIM", "Ready")
        wait_for("node2 secondary", lambda: state(lab, "node2", module) == ("SECOND", "Ready"), 120)
        vip = str(lab.plan().vips[0])
        client = [
            "mariadb",
            "--no-defaults",
            "-h",
            vip,
            "-u",
            "app",
            f"-p{DB_PASSWORD}",
            "--connect-timeout=2",
            "-N",
            "-B",
        ]

        def sql(query: str) -> str | None:
            done = lab.exec("client", [*client, "-e", query], timeout=30)
            return done.stdout.strip() if done.returncode == 0 else None

        assert sql("CREATE DATABASE mp; CREATE TABLE mp.writes (id int PRIMARY KEY) ENGINE=InnoDB") == ""
        writer = mariadb_writer(lab, vip, user="app", password=DB_PASSWORD, database="mp", table="writes")
        try:
            wait_for("the commit loop committing", lambda: len(writer.acked) >= 100, 60)
            killed = power_cut(lab, "node1")
            wait_for("node2 primary alone", lambda: state(lab, "node2", module)[0] == "ALONE", 120)
        finally:
            writer.stop()
        rows = wait_for("MariaDB through the VIP on node2", lambda: sql("SELECT id FROM mp.writes"), 60)
        missing = missing_ids(writer.acked, (int(r) for r in rows.split()))
        assert missing == [], f"{len(missing)} acknowledged commits lost: {missing[:10]} ({writer!r})"
        acked_after = [t for t in writer.acked_at if t > killed + 1]  # none expected: its primary died
        assert (
            sql(f"INSERT INTO mp.writes VALUES ({10**6}); SELECT count(*) FROM mp.writes WHERE id = {10**6}")
            == "1"
        )
        print(
            f"commit loop acknowledged {len(writer.acked)} commits, all on node2 ({len(rows.split())} rows; "
            f"{len(acked_after)} acknowledged after the cut); answering again "
            f"{time.time() - killed:.1f} s after the cut at the latest"
        )


FARMS = {
    # template: (playbook's safekit_module_name, port, extra variables)
    "nginx_farm": ("nginx", 80, ("-e", "safekit_template_docroot=/srv/www")),
    "apache_farm": ("apache", 80, ("-e", "safekit_template_docroot=/srv/www")),
    "farm": ("appfarm", 8080, ()),  # its app_command serves /srv/www
}


@pytest.mark.timeout(POWER_CUT_TIMEOUT)
@pytest.mark.parametrize("template", list(FARMS))
def test_farm_playbook_fails_requests_only_during_a_power_cut(root_required: None, template: str) -> None:
    module, port, extra = FARMS[template]
    name = {"nginx_farm": "mpngx", "apache_farm": "mpapa", "farm": "mpfarm"}[template]
    with deployed(name, f"{template}.yml", module, *extra, pages=True) as lab:
        both = ["node1", "node2"]
        wait_for("both nodes UP", lambda: all(state(lab, n, module) == ("UP", "Ready") for n in both), 120)
        wait_for(
            "both in the balancing set", lambda: all(farm_members(lab, n, module) == both for n in both), 60
        )
        url = f"http://{lab.plan().vips[0]}:{port}/who"
        # The farm gives the client's address to one node: that one loses power.
        victim = http_get(lab, url)
        assert victim in ("node1", "node2"), victim
        survivor = "node2" if victim == "node1" else "node1"
        load = WrkRuns(lab, url)
        try:
            time.sleep(5)
            cut_from = time.time()
            cut_to = power_cut(lab, victim)
            wait_for(
                f"{survivor} alone in the balancing set",
                lambda: farm_members(lab, survivor, module) == [survivor],
                60,
            )
            time.sleep(8)
        finally:
            timeline = load.stop()
        outage = outage_of(timeline, cut_from, cut_to)
        print(
            f"{template}: wrk: {timeline.answered} answers, {timeline.socket_errors} socket errors; "
            f"{outage.describe()}"
        )
        assert any(t / 10 < cut_from for t in timeline.ok), "wrk had no answer before the cut"
        assert outage.failed_before == [], outage
        assert outage.served_again is not None and outage.served_again - cut_to < 30, outage
        assert outage.failed_after == [], outage
        # the client's node lost power: the other one answers it now
        assert {http_get(lab, url) for _ in range(5)} == {survivor}
