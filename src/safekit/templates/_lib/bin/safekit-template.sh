# safekit-template.sh: the shell library of the module templates. Sourced by every script of the
# module, from the script's own directory (`. "$(dirname "$0")/safekit-template.sh"`); not a script
# of its own. `safekit module new` copies it into the module's bin/, so a .safe needs nothing else
# on the node. What the scripts share: one line to the user log saying what the script did,
# processes found in /proc within this node's network namespace, bounded waits, the steps of an
# idempotent start and stop. (Variables of its own start with `_`: sh has no local variables.)
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
SCRIPT=${SAFEKIT_SCRIPT:-$(basename "$0")}  # start_second calls stop_prim under its own name

# One line to the user log (the script's output): what the script did, or why it could not.
say() {
    echo "$SCRIPT: $*"
}

# ---------------------------------------------------------------------- processes

# Whether a process has ended: gone, or a zombie (exited, not yet collected; `kill -0` succeeds on
# a zombie).
ended() {
    _state=$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)
    [ -z "$_state" ] || [ "$_state" = Z ] || [ "$_state" = X ]
}

# Whether process $1 is one of this node's: in its network namespace (on a lab host the other
# nodes' processes are in /proc too; on a real node every process is).
this_node() {
    [ "$(readlink "/proc/$1/ns/net" 2>/dev/null)" = "$(readlink /proc/self/ns/net)" ]
}

# The pid in the pid file $1 when that process runs on this node; status 1 otherwise. A pid file
# left by a power cut may name another process now: it must be alive and one of this node's.
pidfile_pid() {
    _pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$_pid" ] && ! ended "$_pid" || return 1
    this_node "$_pid" || return 1
    echo "$_pid"
}

# Whether the command line of process $1 (its arguments joined by spaces) contains $2 (a grep
# pattern).
cmdline_has() {
    tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2"
}

# The pid of the process named $1 (pgrep -x) that runs on this node with $2 as one of its arguments,
# exactly; status 1 when none does. Found in /proc, not in a pid file: a power cut leaves that file
# behind with a pid that may belong to anything now.
find_process() {
    for _pid in $(pgrep -x "$1"); do
        this_node "$_pid" || continue
        if tr '\0' '\n' < "/proc/$_pid/cmdline" 2>/dev/null | grep -qx -- "$2"; then
            echo "$_pid"
            return 0
        fi
    done
    return 1
}

# ---------------------------------------------------------------------- bounded waits

# Hundredths of a second since the node booted (/proc/uptime: a monotonic clock; dash has no
# $SECONDS): what poll measures its limit with.
centis() {
    read -r _up _rest </proc/uptime
    echo $((${_up%.*} * 100 + 1${_up#*.} - 100))
}

# poll SECONDS COMMAND...: run COMMAND every 0.1 s until it succeeds, for at most SECONDS of wall
# time (a slow COMMAND - an HTTP check that waits 2 s - does not stretch it). Status 0 once it has;
# 1 when the time ran out; COMMAND's own status when that is 2 or more (it gave up: waiting longer
# is of no use). POLLED is the number of tries before the current one.
poll() {
    _deadline=$(($(centis) + $1 * 100))
    shift
    POLLED=0
    while :; do
        if "$@"; then return 0; else _status=$?; fi
        [ "$_status" -ge 2 ] && return "$_status"
        [ "$(centis)" -ge "$_deadline" ] && return 1
        sleep 0.1
        POLLED=$((POLLED + 1))
    done
}

# Wait until process $1 has ended, at most $2 seconds; status 1 if it still runs.
wait_gone() {
    poll "$2" ended "$1"
}

# Whether something accepts TCP connections on port $1 of this node (status 0 or 1).
port_open() {
    python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close()' "$1" \
        2>/dev/null || return 1
}

# Whether http://127.0.0.1:$1$2 answers 200 (status 0 or 1).
http_ok() {
    python3 -c '
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}{sys.argv[2]}", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)' "$1" "$2" 2>/dev/null || return 1
}

# ---------------------------------------------------------------------- idempotent start and stop

# A start of what already runs is a no-op that says so: when COMMAND ($3...) finds the process,
# say "$1 ($2 PID)" (e.g. "nginx already runs (master pid 123)") and end the script, status 0.
exit_if_running() {
    _what=$1
    _label=$2
    shift 2
    if _pid=$("$@"); then
        say "$_what ($_label $_pid)"
        exit 0
    fi
}

# The gentle part of a stop: signal $2 to process $1, and when it ends within $3 seconds, say $4
# and end the script, status 0. Status 1 when it still runs: a harder stop follows.
stop_gently() {
    kill "-$2" "$1" 2>/dev/null
    if wait_gone "$1" "$3"; then
        say "$4"
        exit 0
    fi
    return 1
}
