# db.sh: sourced by the module's scripts (not a script of its own). Settings come from <user><var>
# of userconfig.xml; the defaults are Debian 12's MariaDB 10.11. Every script prints one line that
# says what it did (the userlog); MariaDB's own log is DB_LOG.
DATADIR=${DATADIR:-/srv/mariadb}
DB_PORT=${DB_PORT:-3306}
DB_OS_USER=${DB_OS_USER:-mysql}
DB_RUN=${DB_RUN:-/run/safekit-${SAFEMODULE:-mariadb}}
DB_SOCKET=$DB_RUN/mysqld.sock
DB_LOG=${DB_LOG:-/var/log/safekit/modules/${SAFEMODULE:-mariadb}.mariadb.log}
DB_CNF=${DB_CNF:-$SAFEUSERBIN/mariadb.cnf}
DB_START_TIMEOUT=${DB_START_TIMEOUT:-600}
DB_STOP_TIMEOUT=${DB_STOP_TIMEOUT:-30}
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
SCRIPT=${SAFEKIT_SCRIPT:-$(basename "$0")}  # start_second calls stop_prim under its own name

say() {
    echo "$SCRIPT: $*"
}

# The pid of the mariadbd serving $DATADIR on this node, if one runs (found in /proc: the pid file
# of a power cut may name anything now). Only this node's processes count (its network namespace).
server_pid() {
    mine=$(readlink /proc/self/ns/net)
    for pid in $(pgrep -x mariadbd); do
        [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$mine" ] || continue
        if tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qx -- "--datadir=$DATADIR"; then
            echo "$pid"
            return 0
        fi
    done
    return 1
}

# Whether a process has ended: gone, or a zombie (`kill -0` succeeds on a zombie).
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

# SQL as root through the socket (root authenticates as the system's root: unix_socket).
db_sql() {
    mariadb --no-defaults --socket="$DB_SOCKET" -u root -e "$1"
}

# MariaDB's host pattern for a network: 192.168.1.0/24 -> 192.168.1.0/255.255.255.0; empty -> %.
client_host() {
    [ -z "${DB_CLIENTS:-}" ] && { echo "%"; return; }
    python3 -c 'import ipaddress, sys; n = ipaddress.IPv4Network(sys.argv[1], strict=False); print(f"{n.network_address}/{n.netmask}")' \
        "$DB_CLIENTS"
}
