/* Control channel events and the log (see channel.h). */
#include "channel.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int event_fd = 1;
static bool debug_on;

void sks_channel_set_fd(int fd)
{
    event_fd = fd;
}

void sks_log_set_debug(bool on)
{
    debug_on = on;
}

void sks_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* safekitd is gone: nothing more to tell it */
        p += w;
        n -= (size_t)w;
    }
}

void sks_event_line(skj_buf *b, const char *name, const char *fields_json)
{
    skj_rawz(b, "{\"event\":");
    skj_stringz(b, name);
    if (fields_json && *fields_json) {
        skj_rawz(b, ",");
        skj_rawz(b, fields_json);
    }
    skj_rawz(b, "}\n");
}

void sks_emit_line(const char *line, size_t len)
{
    sks_write_all(event_fd, line, len);
}

static void emit(const char *name, skj_buf *fields)
{
    skj_buf line = {0};
    sks_event_line(&line, name, fields ? fields->p : NULL);
    if (!line.bad && (!fields || !fields->bad))
        sks_write_all(event_fd, line.p, line.len);
    skj_buf_free(&line);
    if (fields)
        skj_buf_free(fields);
}

static void field_str(skj_buf *b, const char *name, const char *value)
{
    if (b->len)
        skj_rawz(b, ",");
    skj_stringz(b, name);
    skj_rawz(b, ":");
    skj_stringz(b, value);
}

static void field_raw(skj_buf *b, const char *name)
{
    if (b->len)
        skj_rawz(b, ",");
    skj_stringz(b, name);
    skj_rawz(b, ":");
}

void sks_emit_listening(const char *addr, int port)
{
    skj_buf f = {0};
    field_str(&f, "addr", addr);
    field_raw(&f, "port");
    skj_i64(&f, port);
    emit("listening", &f);
}

void sks_emit_ready(bool in_sync, const char *epoch, bool trusted)
{
    skj_buf f = {0};
    field_raw(&f, "in_sync");
    skj_boolean(&f, in_sync);
    field_str(&f, "epoch", epoch);
    field_raw(&f, "trusted");
    skj_boolean(&f, trusted);
    emit("ready", &f);
}

void sks_emit_connected(const char *peer, const char *epoch)
{
    skj_buf f = {0};
    field_str(&f, "peer", peer);
    field_str(&f, "epoch", epoch);
    emit("connected", &f);
}

void sks_emit_disconnected(const char *reason)
{
    skj_buf f = {0};
    field_str(&f, "reason", reason);
    emit("disconnected", &f);
}

void sks_emit_resyncing(const char *mode)
{
    skj_buf f = {0};
    field_str(&f, "mode", mode);
    emit("resyncing", &f);
}

void sks_emit_progress(int percent)
{
    skj_buf f = {0};
    field_raw(&f, "percent");
    skj_i64(&f, percent);
    emit("progress", &f);
}

void sks_emit_in_sync(int64_t generation)
{
    skj_buf f = {0};
    field_raw(&f, "generation");
    skj_i64(&f, generation);
    skj_rawz(&f, ",\"mode\":\"\",\"seconds\":null,\"bytes\":null");
    emit("in_sync", &f);
}

void sks_emit_error(const char *reason, int errnum)
{
    skj_buf f = {0};
    field_str(&f, "reason", reason);
    field_raw(&f, "errno");
    skj_i64(&f, errnum);
    emit("error", &f);
}

void sks_emit_failed(const char *reason)
{
    skj_buf f = {0};
    field_str(&f, "reason", reason);
    emit("failed", &f);
}

void sks_log(int level, const char *fmt, ...)
{
    if (level == SKS_DEBUG && !debug_on)
        return;
    static const char *const names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
    char msg[2048];
    int n = snprintf(msg, sizeof msg, "%s rfs secondary: ", names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg + n, sizeof msg - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m < sizeof msg - (size_t)n - 1 ? (size_t)m : sizeof msg - (size_t)n - 2);
    for (size_t i = (size_t)n; i < len; i++)
        if (msg[i] == '\n')
            msg[i] = ' '; /* one event per line in the module log */
    msg[len++] = '\n';
    sks_write_all(2, msg, len);
}

int sks_command_name(const char *line, size_t len, char *out, size_t cap)
{
    skj_tok toks[256];
    if (skj_parse(line, len, toks, 256) < 0 || toks[0].type != SKJ_OBJ) {
        sks_log(SKS_WARNING, "unreadable command from safekitd: %.200s", line);
        return 0;
    }
    if (!skj_str(line, toks, skj_get(line, toks, 0, "cmd"), out, cap)) {
        sks_log(SKS_WARNING, "unreadable command from safekitd (no 'cmd' name): %.200s", line);
        return 0;
    }
    return 1;
}
