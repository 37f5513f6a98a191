# pgmirror.sh: sourced by the module's scripts (not a script of its own).
# The settings come from <user><var> in userconfig.xml.
PGDATA=${PGDATA:-/srv/pgdata}
PGPORT=${PGPORT:-5432}
# PostgreSQL's programs on this node, found as the postgresql template finds them: bin/pg.sh is that
# template's own file (src/safekit/templates/postgresql/bin/pg.sh; in this checkout a link to it),
# read in a subshell so that only its answer is taken - PG_BIN when set, else the version that made
# $PGDATA (its PG_VERSION), else the newest /usr/lib/postgresql/VERSION/bin with a postgres (15 on
# Debian 12, 17 on Debian 13), else pg_config --bindir; empty when none is found.
PG_BIN=$(. "$SAFEUSERBIN/pg.sh" >/dev/null 2>&1 && printf %s "$PG_BIN") || PG_BIN=
PG_SOCKET_DIR=${PG_SOCKET_DIR:-/run/pgmirror}
PG_OS_USER=${PG_OS_USER:-postgres}
PG_LOG=${PG_LOG:-/var/log/safekit/modules/${SAFEMODULE:-pgmirror}.postgresql.log}
PG_START_TIMEOUT=${PG_START_TIMEOUT:-600}
PG_STOP_TIMEOUT=${PG_STOP_TIMEOUT:-45}
export PGDATA PGPORT
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

as_pg() {
    runuser -u "$PG_OS_USER" -- "$@"
}

# The pid of the postmaster serving $PGDATA on this node, if one runs. Found in /proc, not in
# postmaster.pid: a power cut leaves that file behind with a pid that may belong to anything now
# (and in the lab the hosts share one process table), and while the replication's FUSE process is
# down the data directory cannot be read. Only this host's processes count (its network
# namespace: on a real node, every process outside containers).
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

# Whether a process has ended: no such process, or a zombie - it has exited and holds nothing any
# more (no file, no directory), only its parent has not collected its exit status yet. A daemon's
# parent is init, which may take a while to do so (seconds on a loaded lab machine), and
# `kill -0` succeeds on a zombie.
ended() {
    state=$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)
    [ -z "$state" ] || [ "$state" = Z ] || [ "$state" = X ]
}

# Wait until a process is gone (at most $2 seconds); status 1 if it is still there.
wait_gone() {
    n=0
    while ! ended "$1"; do
        [ "$n" -ge $(($2 * 10)) ] && return 1
        sleep 0.1
        n=$((n + 1))
    done
    return 0
}

# Every address of this node (the VIP included once the engine has set it), comma separated.
node_addresses() {
    ip -4 -o addr show scope global | awk '{ split($4, a, "/"); print a[1] }' | sort -u | paste -sd, -
}
