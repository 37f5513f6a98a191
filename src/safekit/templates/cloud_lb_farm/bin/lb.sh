# lb.sh: the node's part in the cloud load balancer, sourced by the module's scripts after
# safekit-template.sh and app.sh (not a script of its own). Settings come from <user><var> of
# userconfig.xml. The load balancer probes the engine's health endpoint
# (http://NODE:9010/var/modules/MODULE/ready.txt, 200 while the node is UP Ready in the farm);
# what the node does besides is the VIP provider's (docs/cloud-providers.md), done here through
# the engine's own provider code (python -m safekit.vip):
# - aws_lb with LB_TARGET_GROUP_ARN: this instance registered in the target group while it serves;
# - azure_lb with LB_PROBE_PORT: a TCP port open while it serves (a TCP health probe);
# - otherwise nothing: no cloud call.
WEB_PORT=${WEB_PORT:-80}
HEALTH_PATH=${HEALTH_PATH:-/}
LB_KIND=${LB_KIND:-}
LB_TARGET_GROUP_ARN=${LB_TARGET_GROUP_ARN:-}
LB_PROBE_PORT=${LB_PROBE_PORT:-}
LB_TIMEOUT=${LB_TIMEOUT:-20}
PROBE_PIDFILE=$RUN_DIR/probe.pid
# Load-balancer providers put no address on the node (os_address off): the provider's address is
# only a name for it in its messages, from the documentation range.
LB_LABEL=192.0.2.1

# The engine's Python, with its SDKs and safekit.vip: the interpreter of the safekit command (on
# PATH, or where the wheelhouse and the Debian package install it).
engine_python() {
    for _command in "$(command -v safekit 2>/dev/null)" /opt/safekit/venv/bin/safekit; do
        [ -n "$_command" ] && [ -r "$_command" ] || continue
        _python=$(sed -n '1s/^#![[:space:]]*//p' "$_command")
        case $_python in
            /*python*) echo "$_python"; return 0 ;;
        esac
    done
    echo python3
}

# One operation (acquire or release) of the aws_lb provider on the target group; its one line.
aws_target() {
    timeout -k 5 "$((LB_TIMEOUT + 5))" "$(engine_python)" -m safekit.vip "$1" --provider aws_lb \
        --address "$LB_LABEL" -o target_group_arn="$LB_TARGET_GROUP_ARN" --timeout "$LB_TIMEOUT" 2>&1 | tail -n 1
}

# Wait until the service's health URL answers 200, at most $1 seconds; status 1 when it does not.
wait_healthy() {
    poll "$1" http_ok "$WEB_PORT" "$HEALTH_PATH"
}

# The probe port's listener: accepts and closes, as the azure_lb provider's does.
probe_pid() {
    pidfile_pid "$PROBE_PIDFILE"
}

# Whether the listener has bound the port (status 0), still tries (1), or has ended (2: the port is
# taken, say).
probe_listening() {
    [ -f "$PROBE_PIDFILE.bound" ] && return 0
    probe_pid >/dev/null || return 2
    return 1
}

start_probe() {
    probe_pid >/dev/null && return 0
    mkdir -p "$RUN_DIR"
    rm -f "$PROBE_PIDFILE.bound"
    setsid python3 -c '
import socket, sys
server = socket.create_server(("0.0.0.0", int(sys.argv[1])))
open(sys.argv[2], "w").close()
while True:
    connection, _ = server.accept()
    connection.close()' "$LB_PROBE_PORT" "$PROBE_PIDFILE.bound" </dev/null >/dev/null 2>&1 &
    echo $! > "$PROBE_PIDFILE"
    poll 5 probe_listening
}

stop_probe() {
    if _pid=$(probe_pid); then
        kill -TERM "$_pid" 2>/dev/null
        wait_gone "$_pid" 5 || kill -KILL "$_pid" 2>/dev/null
    fi
    rm -f "$PROBE_PIDFILE" "$PROBE_PIDFILE.bound"
}

# Join the load balancer (the service answers): what the provider's acquire does. Prints what it
# did; status 1 when it could not.
lb_join() {
    case $LB_KIND in
        aws_lb)
            if [ -n "$LB_TARGET_GROUP_ARN" ]; then
                _out=$(aws_target acquire)
                case $_out in
                    acquired*|already*) echo "aws_lb: registered in $LB_TARGET_GROUP_ARN" ;;
                    *) echo "aws_lb: not registered in $LB_TARGET_GROUP_ARN: $_out"; return 1 ;;
                esac
                return 0
            fi ;;
        azure_lb)
            if [ -n "$LB_PROBE_PORT" ]; then
                start_probe || { echo "azure_lb: probe port $LB_PROBE_PORT not open"; return 1; }
                echo "azure_lb: probe port $LB_PROBE_PORT open"
                return 0
            fi ;;
    esac
    echo "$LB_KIND: the load balancer probes the health endpoint (no cloud call)"
}

# Leave the load balancer before the service stops: what the provider's release does.
lb_leave() {
    case $LB_KIND in
        aws_lb)
            if [ -n "$LB_TARGET_GROUP_ARN" ]; then
                _out=$(aws_target release)
                case $_out in
                    released*|not\ held*) echo "aws_lb: deregistered from $LB_TARGET_GROUP_ARN" ;;
                    *) echo "aws_lb: deregistration failed: $_out" ;;
                esac
                return 0
            fi ;;
        azure_lb)
            if [ -n "$LB_PROBE_PORT" ] || [ -f "$PROBE_PIDFILE" ]; then
                stop_probe
                echo "azure_lb: probe port ${LB_PROBE_PORT:-} closed"
                return 0
            fi ;;
    esac
    echo "$LB_KIND: nothing to undo"
}
