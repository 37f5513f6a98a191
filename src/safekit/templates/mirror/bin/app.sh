# app.sh: sourced by the module's scripts (not a script of its own). Settings come from
# <user><var> of userconfig.xml; every script prints one line that says what it did (the userlog).
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
RUN_DIR=/run/safekit-${SAFEMODULE:-app}
APP_PIDFILE=$RUN_DIR/app.pid
APP_LOG=/var/log/safekit/modules/${SAFEMODULE:-app}.app.log
APP_COMMAND=${APP_COMMAND:-}
START_COMMAND=${START_COMMAND:-}
STOP_COMMAND=${STOP_COMMAND:-}
CHECK_PORT=${CHECK_PORT:-}
START_TIMEOUT=${START_TIMEOUT:-60}
STOP_TIMEOUT=${STOP_TIMEOUT:-30}
SCRIPT=${SAFEKIT_SCRIPT:-$(basename "$0")}  # start_second calls stop_prim under its own name

say() {
    echo "$SCRIPT: $*"
}

# Whether a process has ended: gone, or a zombie (exited, not yet collected; `kill -0` succeeds on
# a zombie).
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

# The pid of the application this module started on this node, if it runs. A pid file left by a
# power cut may name another process now: it must be alive and in this node's network namespace.
app_pid() {
    pid=$(cat "$APP_PIDFILE" 2>/dev/null) || return 1
    [ -n "$pid" ] && ! ended "$pid" || return 1
    [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$(readlink /proc/self/ns/net)" ] || return 1
    echo "$pid"
}

port_open() {
    python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close()' "$1" \
        2>/dev/null
}

# Run a shell command of the site's, killed after $1 seconds.
run_bounded() {
    timeout -k 5 "$1" sh -c "$2"
}

# Start APP_COMMAND in the background (its own session: it outlives this script); ready when it
# still runs after a moment and, with CHECK_PORT, when the port accepts connections.
start_app() {
    if pid=$(app_pid); then
        echo "already running (pid $pid)"
        return 0
    fi
    mkdir -p "$RUN_DIR" "$(dirname "$APP_LOG")"
    (cd "${APP_DIR:-/}" 2>/dev/null || cd /; exec setsid sh -c "exec $APP_COMMAND" </dev/null >>"$APP_LOG" 2>&1) &
    pid=$!
    echo "$pid" > "$APP_PIDFILE"
    n=0
    while [ "$n" -lt $((START_TIMEOUT * 10)) ]; do
        if ended "$pid"; then
            echo "exited at once (see $APP_LOG)"
            return 1
        fi
        if [ -z "$CHECK_PORT" ] && [ "$n" -ge 5 ]; then break; fi
        if [ -n "$CHECK_PORT" ] && port_open "$CHECK_PORT"; then break; fi
        sleep 0.1
        n=$((n + 1))
    done
    if [ -n "$CHECK_PORT" ] && ! port_open "$CHECK_PORT"; then
        echo "pid $pid does not listen on port $CHECK_PORT after ${START_TIMEOUT} s"
        return 1
    fi
    echo "started (pid $pid)"
}

# Stop the application: SIGTERM to its process group, SIGKILL after STOP_TIMEOUT seconds (at once
# with $1 = force).
stop_app() {
    pid=$(app_pid) || { rm -f "$APP_PIDFILE"; echo "not running"; return 0; }
    how="stopped"
    if [ "${1:-}" != force ]; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
        wait_gone "$pid" "$STOP_TIMEOUT" || how="killed after ${STOP_TIMEOUT} s"
    else
        how="killed (forced stop)"
    fi
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
    wait_gone "$pid" 5
    rm -f "$APP_PIDFILE"
    echo "$how (pid $pid)"
}
