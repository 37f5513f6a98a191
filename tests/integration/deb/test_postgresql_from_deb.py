"""playbooks/examples/postgresql.yml from the Debian package: the template "postgresql" deployed onto
two Debian lab hosts booting systemd, with Debian's own PostgreSQL (`apt-get install postgresql`:
15 on Debian 12, 17 on Debian 13; SAFEKIT_DEB_SUITE=bookworm|trixie) and no compiler.

The lab is tests/integration/deb's (test_deploy_mirror_from_deb.py: its hosts, network, inventory
and package), on a root that also has the postgresql package, its own cluster disabled as the
template's README tells (/etc/postgresql/VERSION/main/start.conf). The playbook names no PostgreSQL
version (safekit_template_pg_bin empty): the test checks the postmaster runs the node's version,
a row committed through the VIP is on the peer after a swap, and a second run changes nothing.

`make test-deb-postgresql` (DEB_SUITE=trixie for Debian 13; lab name h17pg; about 5 minutes, more
the first time: the root is made by debootstrap once and reused).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("SAFEKIT_DEB_DEPLOY_LAB", "h17pg")  # before the lab's module reads it
import test_deploy_mirror_from_deb as deblab
from test_deploy_mirror_from_deb import deb  # noqa: F401 - the package fixture

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

MODULE = "postgresql"  # safekit_module_name in playbooks/examples/postgresql.yml
PG_VERSION = {"bookworm": "15", "trixie": "17"}[deblab.SUITE]
PG_ROOT = Path(
    os.environ.get("SAFEKIT_DEB_PG_ROOT", f"/var/tmp/safekit-systemd/{deblab.SUITE}-ssh-postgresql")
)
PASSWORD = "change-me"  # the example's default safekit_pg_password


def postgresql_root() -> Path:
    root = deblab.build_ssh_root(PG_ROOT, deblab.SUITE, ("postgresql",))
    # Debian's own cluster would take port 5432 at boot: disabled, as the template's README says.
    for start_conf in root.glob("etc/postgresql/*/main/start.conf"):
        start_conf.write_text("disabled\n")
    return root


@pytest.fixture(scope="module")
def lab(deb: Path) -> Iterator[deblab.DebLab]:  # noqa: F811 - deb is the package fixture
    for running in deblab.running_lab(deb, postgresql_root()):
        # The lab's inventory, without its webmirror's replicated directory: the template brings its own.
        inventory = running.workdir / "inventory.yml"
        groups = json.loads(inventory.read_text())
        del groups["safekit_nodes"]["vars"]["safekit_replication"]
        inventory.write_text(json.dumps(groups, indent=2))
        yield running


def state(lab: deblab.DebLab, node: str) -> tuple[str, str]:
    out = lab.nodes[node].run([deblab.ENGINE, "state", "-m", MODULE, "--json"]).stdout
    module = json.loads(out)["modules"][0]
    return module["state"], module["readiness"]


def wait_state(lab: deblab.DebLab, node: str, wanted: tuple[str, str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (now := state(lab, node)) != wanted:
        assert time.monotonic() < deadline, f"{node}: {now}, not {wanted} after {timeout:g} s"
        time.sleep(1)


def psql(lab: deblab.DebLab, sql: str) -> subprocess.CompletedProcess[str]:
    """psql from the client, through the VIP, with the password auth of pg_hba (samenet)."""
    conninfo = f"host={deblab.VIP} port=5432 user=postgres dbname=postgres connect_timeout=3"
    env = {**os.environ, "PGPASSWORD": PASSWORD}
    return lab.client(
        ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", conninfo, "-c", sql], timeout=30, env=env
    )


def postmaster(lab: deblab.DebLab, node: str) -> str:
    """The command line of the postmaster serving the module's data directory on NODE ('' if none)."""
    found = lab.nodes[node].sh("ps -o args= -C postgres | grep -- '-D /srv/pgdata' | head -n 1 || true")
    return found.strip()


def test_postgresql_template_from_the_package_runs_the_nodes_version(lab: deblab.DebLab) -> None:
    n1, n2 = deblab.NODES
    for host in lab.nodes.values():
        assert host.sh("command -v gcc cc || true") == "", "a compiler on a node"
        assert host.sh("ls /usr/lib/postgresql").split() == [PG_VERSION]

    first, recap, first_seconds = lab.playbook("examples/postgresql.yml")
    assert first.returncode == 0, first.stdout[-5000:] + first.stderr[-2000:]
    assert all(recap[n]["failed"] == 0 and recap[n]["changed"] > 0 for n in (n1, n2)), recap
    for host in lab.nodes.values():  # the engine is the package's (safekit_install_source auto)
        assert host.sh("dpkg-query -W -f '${Status}' safekit") == "install ok installed"
    config = lab.nodes[n1].sh(f"cat /opt/safekit/modules/{MODULE}/conf/userconfig.xml")
    assert '<macro name="PG_BIN" value=""/>' in config  # the choice is the node's

    wait_state(lab, n1, ("PRIM", "Ready"))
    wait_state(lab, n2, ("SECOND", "Ready"))
    assert postmaster(lab, n1).startswith(f"/usr/lib/postgresql/{PG_VERSION}/bin/postgres -D /srv/pgdata")
    assert postmaster(lab, n2) == ""

    made = psql(lab, "CREATE TABLE drill (n int); INSERT INTO drill VALUES (42); SHOW server_version_num")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().startswith(PG_VERSION)

    swap = lab.nodes[n1].run([deblab.ENGINE, "swap", "-m", MODULE], check=False)
    assert swap.returncode == 0, swap.stdout + swap.stderr
    wait_state(lab, n2, ("PRIM", "Ready"))
    wait_state(lab, n1, ("SECOND", "Ready"))
    assert postmaster(lab, n2).startswith(f"/usr/lib/postgresql/{PG_VERSION}/bin/postgres")
    read = psql(lab, "SELECT n FROM drill")
    assert read.returncode == 0 and read.stdout.strip() == "42", read.stdout + read.stderr

    again, recap, again_seconds = lab.playbook("examples/postgresql.yml")
    assert again.returncode == 0, again.stdout[-5000:]
    assert all(host["changed"] == 0 and host["failed"] == 0 for host in recap.values()), recap
    assert state(lab, n2) == ("PRIM", "Ready"), "a second run restarts nothing"
    print(
        f"Debian {deblab.RELEASE}, PostgreSQL {PG_VERSION}: first run {first_seconds:.1f} s, "
        f"second run {again_seconds:.1f} s (changed=0)"
    )
