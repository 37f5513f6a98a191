# pg.sh: PostgreSQL, sourced by the module's scripts after safekit-template.sh (not a script of its
# own). Settings come from <user><var> of userconfig.xml; the defaults are Debian 12's PostgreSQL
# 15. PostgreSQL's own log is PG_LOG.
PGDATA=${PGDATA:-/srv/pgdata}
PGPORT=${PGPORT:-5432}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
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
