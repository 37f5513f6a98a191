# pg.sh: PostgreSQL, sourced by the module's scripts after safekit-template.sh (not a script of its
# own). Settings come from <user><var> of userconfig.xml; PG_BIN, when empty, is found on the node
# (pg_bin_dir below: Debian 12's PostgreSQL 15, Debian 13's 17). PostgreSQL's own log is PG_LOG.
PGDATA=${PGDATA:-/srv/pgdata}
PGPORT=${PGPORT:-5432}
PG_LIB_ROOT=${PG_LIB_ROOT:-/usr/lib/postgresql}
PG_CONFIG=${PG_CONFIG:-pg_config}

# The directory of PostgreSQL's programs on this node, in this order:
# - PG_BIN when the site value pg_bin gives one;
# - the version the data directory was made by (PGDATA/PG_VERSION, when it can be read): only that
#   major version can open it, even when a newer one is installed beside it (before pg_upgrade);
#   printed even when not installed, so that prestart names what to install;
# - the newest version of Debian's layout, PG_LIB_ROOT/VERSION/bin with a postgres program (what
#   apt-get install postgresql installs: 15 on Debian 12, 17 on Debian 13);
# - PG_CONFIG --bindir (another layout; pg_config on the PATH by default).
# Nothing printed, exit code 1: no PostgreSQL found.
pg_bin_dir() {
    if [ -n "${PG_BIN:-}" ]; then
        echo "$PG_BIN"
        return 0
    fi
    made_by=$(head -n 1 "$PGDATA/PG_VERSION" 2>/dev/null) || made_by=
    case "$made_by" in
        '' | *[!0-9.]*) ;;
        *)
            echo "$PG_LIB_ROOT/$made_by/bin"
            return 0
            ;;
    esac
    newest=$(for dir in "$PG_LIB_ROOT"/*/bin; do
        [ -x "$dir/postgres" ] && basename "$(dirname "$dir")"
    done | sort -V | tail -n 1)
    if [ -n "$newest" ]; then
        echo "$PG_LIB_ROOT/$newest/bin"
        return 0
    fi
    if command -v "$PG_CONFIG" >/dev/null 2>&1; then
        "$PG_CONFIG" --bindir
        return $?
    fi
    return 1
}
PG_BIN=$(pg_bin_dir) || PG_BIN=
PG_OS_USER=${PG_OS_USER:-postgres}
# in /run: a fresh tmpfs at every boot, so no stale socket lock survives a power cut; not Debian's
# /run/postgresql, so a cluster of the postgresql package may run beside the module's
PG_SOCKET_DIR=${PG_SOCKET_DIR:-/run/safekit-${SAFEMODULE:-postgresql}}
PG_LOG=${PG_LOG:-/var/log/safekit/modules/${SAFEMODULE:-postgresql}.postgresql.log}
PG_START_TIMEOUT=${PG_START_TIMEOUT:-600}
PG_STOP_TIMEOUT=${PG_STOP_TIMEOUT:-30}
export PGDATA PGPORT

as_pg() {
    runuser -u "$PG_OS_USER" -- "$@"
}

# The pid of the postmaster serving $PGDATA on this node, if one runs. Found in /proc, not in
# postmaster.pid: a power cut leaves that file behind, and while the replication is down the data
# directory cannot be read. The postmaster's command line is "postgres -D DIR ..."; its children
# renamed themselves.
postmaster_pid() {
    find_process postgres "$PGDATA"
}

# Every address of this node (the VIP included once the engine has set it), comma separated.
node_addresses() {
    ip -4 -o addr show scope global | awk '{ split($4, a, "/"); print a[1] }' | sort -u | paste -sd, -
}
