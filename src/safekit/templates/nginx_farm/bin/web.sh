# web.sh: nginx, sourced by the module's scripts after safekit-template.sh (not a script of its
# own). Settings come from <user><var> of userconfig.xml.
WEB_PORT=${WEB_PORT:-80}
DOCROOT=${DOCROOT:-/var/www/html}
HEALTH_PATH=${HEALTH_PATH:-/safekit-health}
NGINX_INCLUDE=${NGINX_INCLUDE:-}
WEB_STOP_TIMEOUT=${WEB_STOP_TIMEOUT:-15}
# The module's own nginx: its configuration, pid file and logs, named by the port (one module per
# port on a node), away from Debian's /etc/nginx/nginx.conf and /run/nginx.pid.
WEB_RUN=/run/safekit-nginx-$WEB_PORT
WEB_CONF=$WEB_RUN/nginx.conf
WEB_PIDFILE=$WEB_RUN/nginx.pid
WEB_LOG_DIR=/var/log/safekit/modules
WEB_LOG=$WEB_LOG_DIR/${SAFEMODULE:-nginx}.nginx.log

# The master process of this module's nginx on this node, if it runs (alive, in this node's
# network namespace, started with this configuration).
master_pid() {
    pid=$(pidfile_pid "$WEB_PIDFILE") && cmdline_has "$pid" "-c $WEB_CONF" || return 1
    echo "$pid"
}

write_conf() {
    mkdir -p "$WEB_RUN" "$WEB_LOG_DIR"
    include=""
    [ -n "$NGINX_INCLUDE" ] && include="include $NGINX_INCLUDE;"
    cat > "$WEB_CONF.new" <<CONF
# written by the safekit module ${SAFEMODULE:-nginx} (bin/start_both) at each start: edit the module
pid $WEB_PIDFILE;
worker_processes auto;
error_log $WEB_LOG;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    keepalive_timeout 30;
    server {
        listen $WEB_PORT reuseport;
        root $DOCROOT;
        index index.html index.htm;
        location = $HEALTH_PATH {
            default_type text/plain;
            return 200 "ok \$hostname\n";
        }
    }
    $include
}
CONF
    mv "$WEB_CONF.new" "$WEB_CONF"
}
