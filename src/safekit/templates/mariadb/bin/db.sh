# db.sh: MariaDB, sourced by the module's scripts after safekit-template.sh (not a script of its
# own). Settings come from <user><var> of userconfig.xml; the defaults are Debian 12's MariaDB
# 10.11. MariaDB's own log is DB_LOG.
DATADIR=${DATADIR:-/srv/mariadb}
DB_PORT=${DB_PORT:-3306}
DB_OS_USER=${DB_OS_USER:-mysql}
DB_RUN=${DB_RUN:-/run/safekit-${SAFEMODULE:-mariadb}}
DB_SOCKET=$DB_RUN/mysqld.sock
DB_LOG=${DB_LOG:-/var/log/safekit/modules/${SAFEMODULE:-mariadb}.mariadb.log}
DB_CNF=${DB_CNF:-$SAFEUSERBIN/mariadb.cnf}
DB_START_TIMEOUT=${DB_START_TIMEOUT:-600}
DB_STOP_TIMEOUT=${DB_STOP_TIMEOUT:-30}

# The pid of the mariadbd serving $DATADIR on this node, if one runs (found in /proc: the pid file
# of a power cut may name anything now). Only this node's processes count (its network namespace).
server_pid() {
    find_process mariadbd "--datadir=$DATADIR"
}

# Whether the mariadbd started as pid $1 answers on the socket; status 2 when it has exited.
db_answers() {
    mariadb-admin --no-defaults --socket="$DB_SOCKET" -u root ping >/dev/null 2>&1 && return 0
    ended "$1" && return 2
    return 1
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
