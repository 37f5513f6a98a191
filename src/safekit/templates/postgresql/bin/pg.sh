# pg.sh: sourced by the module's scripts (not a script of its own). Settings come from <user><var>
# of userconfig.xml; the defaults are Debian 12's PostgreSQL 15. Every script prints one line that
# says what it did (the userlog); PostgreSQL's own log is PG_LOG.
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
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
SCRIPT=${SAFEKIT_SCRIPT:-$(basename "$0")}  # start_second calls stop_prim under its own name

say() {
    echo "$SCRIPT: $*"
}

as_pg() {
    runuser -u "$PG_OS_USER" -- "$@"
}

# The pid of the postmaster serving $PGDATA on this node, if one runs. Found in /proc, not in
# postmaster.pid: a power cut leaves that file behind with a pid that may belong to anything now,
# and while the replication is down the data directory cannot be read. Only this node's processes
# count (its network namespace: every process outside containers on a real node).
postmaster_pid() {
    mine=$(readlink /proc/self/ns/net)
    for pid in $(pgrep -x postgres); do
        [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$mine" ] || continue
        # the postmaster's command line is "postgres -D DIR ..."; its children renamed themselves
        if tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qx -- "$PGDATA"; then
            echo "$pid"
            return 0
        fi
    done
    return 1
}

# Whether a process has ended: gone, or a zombie (exited, not yet collected by init; `kill -0`
# succeeds on a zombie).
ended() {
    state=$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)
    [ -z "$state" ] || [ "$state" = Z ] || [ "$state" = X ]
}

# Wait until process $1 has ended, at most $2 seconds; status 1 if it still runs.
wait_gone() {
    n=0
    while ! ended "$1"; do
        [ "$n" -ge $(($2 * 10)) ] && return 1
        sleep 0.1
        n=$((n + 1))
    done
}

# Every address of this node (the VIP included once the engine has set it), comma separated.
node_addresses() {
    ip -4 -o addr show scope global | awk '{ split($4, a, "/"); print a[1] }' | sort -u | paste -sd, -
}
