"""examples/modules/pgmirror finds the node's PostgreSQL as the postgresql template does (Debian 12's
15, Debian 13's 17, the data directory's version first, a site value over all): its pgmirror.sh
takes the answer of the template's own pg.sh (bin/pg.sh is that file, not a copy of it).

Each case builds a fake Debian layout (PG_LIB_ROOT/VERSION/bin/postgres) and sources the example's
pgmirror.sh with sh, as its scripts do under safekitd (SAFEUSERBIN: the module's bin/).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from test_postgresql_template_bin import install  # the same fake Debian layout

REPO = Path(__file__).resolve().parents[2]
PGMIRROR_BIN = REPO / "examples" / "modules" / "pgmirror" / "bin"
TEMPLATE_PG_SH = REPO / "src" / "safekit" / "templates" / "postgresql" / "bin" / "pg.sh"


@pytest.fixture
def module_bin(tmp_path: Path) -> Path:
    """The example's bin/ as an installed module has it (copied, the link to pg.sh followed)."""
    target = tmp_path / "pgmirror" / "bin"
    shutil.copytree(PGMIRROR_BIN, target)
    return target


def pg_bin(module_bin: Path, lib: Path, pgdata: Path, pg_bin_value: str = "") -> str:
    """PG_BIN as pgmirror's scripts see it (no pg_config: this machine may have one)."""
    env = {
        "SAFEUSERBIN": str(module_bin),
        "PG_LIB_ROOT": str(lib),
        "PGDATA": str(pgdata),
        "PG_BIN": pg_bin_value,
        "PG_CONFIG": "/nonexistent/pg_config",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        ["sh", "-c", 'set -eu; . "$SAFEUSERBIN/pgmirror.sh"; printf %s "$PG_BIN"'],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def test_pg_sh_is_the_templates_own_file() -> None:
    assert (PGMIRROR_BIN / "pg.sh").resolve() == TEMPLATE_PG_SH.resolve()


def test_debian_12_gets_15_and_debian_13_gets_17(module_bin: Path, tmp_path: Path) -> None:
    bookworm, trixie = tmp_path / "bookworm", tmp_path / "trixie"
    install(bookworm, "15")
    install(trixie, "17")
    pgdata = tmp_path / "pgdata"
    assert pg_bin(module_bin, bookworm, pgdata) == f"{bookworm}/15/bin"
    assert pg_bin(module_bin, trixie, pgdata) == f"{trixie}/17/bin"


def test_the_data_directory_keeps_the_version_that_made_it(module_bin: Path, tmp_path: Path) -> None:
    lib, pgdata = tmp_path / "lib", tmp_path / "pgdata"
    install(lib, "15", "17")
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("15\n")
    assert pg_bin(module_bin, lib, pgdata) == f"{lib}/15/bin"


def test_a_site_value_wins(module_bin: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    install(lib, "17")
    assert pg_bin(module_bin, lib, tmp_path / "pgdata", "/opt/pg/bin") == "/opt/pg/bin"


def test_nothing_found_and_prestart_says_what_to_install(module_bin: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    install(lib, "17", server=False)  # a client only: no server to run
    assert pg_bin(module_bin, lib, tmp_path / "pgdata") == ""
    env = {
        "SAFEUSERBIN": str(module_bin),
        "PG_LIB_ROOT": str(lib),
        "PGDATA": str(tmp_path / "pgdata"),
        "PG_CONFIG": "/nonexistent/pg_config",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        ["sh", str(module_bin / "prestart"), "STOP", "ALONE", "start"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert "no PostgreSQL server found" in done.stderr and "apt-get install postgresql" in done.stderr
    assert not (tmp_path / "pgdata").exists(), "prestart created the data directory without a PostgreSQL"
