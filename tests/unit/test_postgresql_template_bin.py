"""The postgresql template finds PostgreSQL's programs on each node (pg.sh's pg_bin_dir): Debian 12
ships PostgreSQL 15 and Debian 13 ships 17, and one site.yml deploys to both.

Each case builds a fake Debian layout (PG_LIB_ROOT/VERSION/bin/postgres) and runs the rendered
package's own scripts with sh, as safekitd would.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from safekit import templates
from safekit.module_templates import render


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """The rendered postgresql package's bin/, written out (the scripts source files beside them)."""
    rendered = render(templates.get("postgresql"), "db", {"virtual_ip": "192.0.2.10", "pg_password": "x"})
    root = tmp_path / "db"
    for path, item in rendered.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(item.content)
        target.chmod(item.mode)
    return root / "bin"


def install(lib: Path, *versions: str, server: bool = True) -> None:
    """Fake `apt-get install postgresql-VERSION` (server=False: only postgresql-client-VERSION's psql)."""
    for version in versions:
        bin_dir = lib / version / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        program = bin_dir / ("postgres" if server else "psql")
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)


def pg_bin(
    package: Path, lib: Path, pgdata: Path, pg_bin_value: str = "", pg_config: str = "/nonexistent/pg_config"
) -> str:
    """PG_BIN as the scripts see it (pg_config: none unless given; this machine may have one)."""
    env = {"PG_LIB_ROOT": str(lib), "PGDATA": str(pgdata), "PG_BIN": pg_bin_value, "PG_CONFIG": pg_config}
    done = subprocess.run(
        ["sh", "-c", '. "$0/safekit-template.sh"; . "$0/pg.sh"; printf %s "$PG_BIN"', str(package)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def test_the_template_leaves_the_choice_to_the_node() -> None:
    template = templates.get("postgresql")
    value = template.value("pg_bin")
    assert value is not None and not value.default
    assert template.needs == ("postgresql",)  # Debian's metapackage: the release's own version


def test_debian_12_gets_15_and_debian_13_gets_17(package: Path, tmp_path: Path) -> None:
    bookworm, trixie = tmp_path / "bookworm", tmp_path / "trixie"
    install(bookworm, "15")
    install(trixie, "17")
    assert pg_bin(package, bookworm, tmp_path / "none") == f"{bookworm}/15/bin"
    assert pg_bin(package, trixie, tmp_path / "none") == f"{trixie}/17/bin"


def test_the_newest_is_chosen_by_version_not_by_spelling(package: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    install(lib, "9.6", "10", "15")
    assert pg_bin(package, lib, tmp_path / "none") == f"{lib}/15/bin"


def test_a_client_only_version_is_not_a_server(package: Path, tmp_path: Path) -> None:
    """postgresql-client-17 brings /usr/lib/postgresql/17/bin/psql, no postgres."""
    lib = tmp_path / "lib"
    install(lib, "15")
    install(lib, "17", server=False)
    assert pg_bin(package, lib, tmp_path / "none") == f"{lib}/15/bin"


def test_the_data_directory_keeps_the_version_that_made_it(package: Path, tmp_path: Path) -> None:
    """17 installed beside 15 before a pg_upgrade: a data directory of 15 is opened by 15's programs."""
    lib, pgdata = tmp_path / "lib", tmp_path / "pgdata"
    install(lib, "15", "17")
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("15\n")
    assert pg_bin(package, lib, pgdata) == f"{lib}/15/bin"
    (pgdata / "PG_VERSION").write_text("not a version\n")
    assert pg_bin(package, lib, pgdata) == f"{lib}/17/bin"


def test_a_site_value_wins(package: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    install(lib, "17")
    assert pg_bin(package, lib, tmp_path / "none", "/opt/pg/bin") == "/opt/pg/bin"


def test_pg_config_answers_for_another_layout_and_nothing_found_is_empty(
    package: Path, tmp_path: Path
) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "pg_config").write_text('#!/bin/sh\n[ "$1" = --bindir ] && echo /usr/pgsql-17/bin\n')
    (tools / "pg_config").chmod(0o755)
    empty = tmp_path / "empty"
    assert (
        pg_bin(package, empty, tmp_path / "none", pg_config=str(tools / "pg_config")) == "/usr/pgsql-17/bin"
    )
    assert pg_bin(package, empty, tmp_path / "none") == ""


def _prestart(package: Path, lib: Path, pgdata: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PG_LIB_ROOT": str(lib),
        "PGDATA": str(pgdata),
        "PG_BIN": "",
        "PG_CONFIG": "/nonexistent/pg_config",
        "PG_OS_USER": "root",
        "SAFEUSERBIN": str(package),
        "SAFEMODULE": "db",
    }
    return subprocess.run(
        [str(package / "prestart"), "STOP", "ALONE", "start"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_prestart_names_the_version_to_install(package: Path, tmp_path: Path) -> None:
    """A data directory of 17 replicated to a node that has only 15: prestart says to install 17."""
    lib, pgdata = tmp_path / "lib", tmp_path / "pgdata"
    install(lib, "15")
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("17\n")
    done = _prestart(package, lib, pgdata)
    assert done.returncode == 1
    assert "postgresql-17" in done.stdout + done.stderr
    done = _prestart(package, tmp_path / "empty", tmp_path / "none")
    assert done.returncode == 1
    assert "no PostgreSQL found" in done.stdout + done.stderr
