# app.sh: the application of the generic templates (mirror and farm, the same file in both),
# sourced by the module's scripts after safekit-template.sh; not a script of its own. Settings come
# from <user><var> of userconfig.xml.
RUN_DIR=/run/safekit-${SAFEMODULE:-app}
APP_PIDFILE=$RUN_DIR/app.pid
APP_LOG=/var/log/safekit/modules/${SAFEMODULE:-app}.app.log
APP_COMMAND=${APP_COMMAND:-}
START_COMMAND=${START_COMMAND:-}
STOP_COMMAND=${STOP_COMMAND:-}
CHECK_PORT=${CHECK_PORT:-}
START_TIMEOUT=${START_TIMEOUT:-60}
STOP_TIMEOUT=${STOP_TIMEOUT:-30}

# The pid of the application this module started on this node, if it runs.
app_pid() {
    pidfile_pid "$APP_PIDFILE"
}

# Run a shell command of the site's, killed after $1 seconds.
run_bounded() {
    timeout -k 5 "$1" sh -c "$2"
}

# Whether the application started as pid $1 is ready: still running after half a second and, with
# CHECK_PORT, the port accepts connections. Status 2 when it has exited.
app_ready() {
    ended "$1" && return 2
    if [ -n "$CHECK_PORT" ]; then
        port_open "$CHECK_PORT"
    else
        [ "$POLLED" -ge 5 ]
    fi
}

# Start APP_COMMAND in the background (its own session: it outlives this script); ready when
# app_ready says so, within START_TIMEOUT.
start_app() {
    if pid=$(app_pid); then
        echo "already running (pid $pid)"
        return 0
    fi
    mkdir -p "$RUN_DIR" "$(dirname "$APP_LOG")"
    (cd "${APP_DIR:-/}" 2>/dev/null || cd /; exec setsid sh -c "exec $APP_COMMAND" </dev/null >>"$APP_LOG" 2>&1) &
    pid=$!
    echo "$pid" > "$APP_PIDFILE"
    poll "$START_TIMEOUT" app_ready "$pid"
    case $? in
        0) echo "started (pid $pid)" ;;
        2) echo "exited at once (see $APP_LOG)"; return 1 ;;
        *) echo "pid $pid does not listen on port $CHECK_PORT after ${START_TIMEOUT} s"; return 1 ;;
    esac
}

# Stop the application: SIGTERM to its process group, SIGKILL after STOP_TIMEOUT seconds (at once
# with $1 = force).
stop_app() {
    pid=$(app_pid) || { rm -f "$APP_PIDFILE"; echo "not running"; return 0; }
    how="stopped"
    if [ "${1:-}" != force ]; then
        kill -TERM "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
        wait_gone "$pid" "$STOP_TIMEOUT" || how="killed after ${STOP_TIMEOUT} s"
    else
        how="killed (forced stop)"
    fi
    kill -KILL "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
    wait_gone "$pid" 5
    rm -f "$APP_PIDFILE"
    echo "$how (pid $pid)"
}

# What start_prim (mirror) and start_both (farm) do: start_command, then the application.
start_module() {
    done=""
    if [ -n "$START_COMMAND" ]; then
        if ! run_bounded "$START_TIMEOUT" "$START_COMMAND"; then
            say "start_command failed or took more than ${START_TIMEOUT} s: $START_COMMAND"
            exit 1
        fi
        done="start_command ok"
    fi
    if [ -n "$APP_COMMAND" ]; then
        result=$(start_app) || { say "application $result"; exit 1; }
        done="${done:+$done, }application $result"
    fi
    say "${done:-nothing to start (no app_command, no start_command)}"
}

# What stop_prim (mirror) and stop_both (farm) do, with their arguments: stop the application
# (SIGTERM, SIGKILL after STOP_TIMEOUT; at once when forced), then stop_command.
stop_module() {
    force=""
    [ "${1:-}" = force ] && force=force
    done=""
    if [ -n "$APP_COMMAND" ] || [ -f "$APP_PIDFILE" ]; then
        done="application $(stop_app $force)"
    fi
    if [ -n "$STOP_COMMAND" ]; then
        if run_bounded "$STOP_TIMEOUT" "$STOP_COMMAND"; then
            done="${done:+$done, }stop_command ok"
        else
            done="${done:+$done, }stop_command failed or took more than ${STOP_TIMEOUT} s"
        fi
    fi
    say "${done:-nothing to stop}"
}
