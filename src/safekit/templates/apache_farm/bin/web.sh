# web.sh: Apache httpd, sourced by the module's scripts after safekit-template.sh (not a script of
# its own). Settings come from <user><var> of userconfig.xml.
WEB_PORT=${WEB_PORT:-80}
DOCROOT=${DOCROOT:-/var/www/html}
HEALTH_PATH=${HEALTH_PATH:-/safekit-health}
APACHE_INCLUDE=${APACHE_INCLUDE:-}
WEB_STOP_TIMEOUT=${WEB_STOP_TIMEOUT:-15}
# The module's own httpd: its configuration, pid file and logs, named by the port (one module per
# port on a node), away from Debian's /etc/apache2 setup (apache2ctl, envvars, /run/apache2).
WEB_RUN=/run/safekit-apache-$WEB_PORT
WEB_CONF=$WEB_RUN/apache2.conf
WEB_PIDFILE=$WEB_RUN/apache2.pid
WEB_LOG_DIR=/var/log/safekit/modules
WEB_LOG=$WEB_LOG_DIR/${SAFEMODULE:-apache}.apache.log
MODULES=/usr/lib/apache2/modules

# The parent process of this module's httpd on this node, if it runs (alive, in this node's network
# namespace, started with this configuration).
master_pid() {
    pid=$(pidfile_pid "$WEB_PIDFILE") && cmdline_has "$pid" "-f $WEB_CONF" || return 1
    echo "$pid"
}

write_conf() {
    mkdir -p "$WEB_RUN" "$WEB_LOG_DIR"
    echo "ok $(hostname)" > "$WEB_RUN/health.txt"
    include=""
    [ -n "$APACHE_INCLUDE" ] && include="Include $APACHE_INCLUDE"
    cat > "$WEB_CONF.new" <<CONF
# written by the safekit module ${SAFEMODULE:-apache} (bin/start_both) at each start: edit the module
ServerRoot /etc/apache2
ServerName localhost
PidFile $WEB_PIDFILE
DefaultRuntimeDir $WEB_RUN
Mutex file:$WEB_RUN default
Listen $WEB_PORT
User www-data
Group www-data
ErrorLog $WEB_LOG
LogLevel warn
LoadModule mpm_event_module $MODULES/mod_mpm_event.so
LoadModule authz_core_module $MODULES/mod_authz_core.so
LoadModule mime_module $MODULES/mod_mime.so
LoadModule dir_module $MODULES/mod_dir.so
LoadModule alias_module $MODULES/mod_alias.so
TypesConfig /etc/mime.types
KeepAliveTimeout 5
DocumentRoot $DOCROOT
DirectoryIndex index.html
<Directory />
    Require all denied
    AllowOverride None
</Directory>
<Directory $DOCROOT>
    Require all granted
</Directory>
Alias $HEALTH_PATH $WEB_RUN/health.txt
<Location $HEALTH_PATH>
    Require all granted
</Location>
<Directory $WEB_RUN>
    Require all granted
</Directory>
$include
CONF
    mv "$WEB_CONF.new" "$WEB_CONF"
}
