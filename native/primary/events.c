/* Events and the log of the primary (see events.h). */
#include "events.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "channel.h"
#include "json.h"

static int event_fd = 1;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

void skp_events_set_fd(int fd)
{
    event_fd = fd;
}

static void emit(const char *name, skj_buf *fields)
{
    skj_buf line = {0};
    sks_event_line(&line, name, fields ? fields->p : NULL);
    if (!line.bad && (!fields || !fields->bad)) {
        pthread_mutex_lock(&out_lock);
        sks_write_all(event_fd, line.p, line.len);
        pthread_mutex_unlock(&out_lock);
    }
    skj_buf_free(&line);
    if (fields)
        skj_buf_free(fields);
}

static void field(skj_buf *b, const char *name)
{
    if (b->len)
        skj_rawz(b, ",");
    skj_stringz(b, name);
    skj_rawz(b, ":");
}

static void reason_event(const char *name, const char *reason)
{
    skj_buf f = {0};
    field(&f, "reason");
    skj_stringz(&f, reason);
    emit(name, &f);
}

void skp_emit_mounted(const char *const *dirs, int ndirs)
{
    skj_buf f = {0};
    field(&f, "dirs");
    skj_rawz(&f, "[");
    for (int i = 0; i < ndirs; i++) {
        if (i)
            skj_rawz(&f, ",");
        skj_stringz(&f, dirs[i]);
    }
    skj_rawz(&f, "]");
    emit("mounted", &f);
}

void skp_emit_degraded(const char *reason)
{
    reason_event("degraded", reason);
}

void skp_emit_disconnected(const char *reason)
{
    reason_event("disconnected", reason);
}

void skp_emit_failed(const char *reason)
{
    reason_event("failed", reason);
}

void skp_emit_resyncing(const char *mode)
{
    skj_buf f = {0};
    field(&f, "mode");
    skj_stringz(&f, mode);
    emit("resyncing", &f);
}

void skp_format_seconds(double x, char *out, size_t cap)
{
    snprintf(out, cap, "%.3f", x);
    size_t n = strlen(out);
    while (n > 2 && out[n - 1] == '0' && out[n - 2] != '.')
        out[--n] = '\0';
}

void skp_emit_in_sync(const char *mode, double seconds, int64_t bytes)
{
    char secs[64];
    skp_format_seconds(seconds, secs, sizeof secs);
    skj_buf f = {0};
    field(&f, "generation");
    skj_rawz(&f, "null");
    field(&f, "mode");
    skj_stringz(&f, mode);
    field(&f, "seconds");
    skj_rawz(&f, secs);
    field(&f, "bytes");
    skj_i64(&f, bytes);
    emit("in_sync", &f);
}

void skp_emit_verify_unsupported(const char *reason)
{
    skj_buf f = {0};
    skj_rawz(&f, "\"ok\":false,\"checked\":0,\"differences\":[]");
    field(&f, "reason");
    skj_stringz(&f, reason);
    emit("verify", &f);
}

void skp_emit_verify(bool ok, uint64_t checked, char *const *differences, size_t n, const char *reason)
{
    skj_buf f = {0};
    field(&f, "ok");
    skj_boolean(&f, ok);
    field(&f, "checked");
    skj_u64(&f, checked);
    field(&f, "differences");
    skj_rawz(&f, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            skj_rawz(&f, ",");
        skj_stringz(&f, differences[i]);
    }
    skj_rawz(&f, "]");
    field(&f, "reason");
    skj_stringz(&f, reason);
    emit("verify", &f);
}

void skp_emit_status(const char *state, uint64_t seq, uint64_t journal, const char *stats_json)
{
    skj_buf f = {0};
    field(&f, "state");
    skj_stringz(&f, state);
    field(&f, "seq");
    skj_u64(&f, seq);
    field(&f, "journal");
    skj_u64(&f, journal);
    if (stats_json && *stats_json) {
        skj_rawz(&f, ",");
        skj_rawz(&f, stats_json);
    }
    emit("status", &f);
}

void skp_log(int level, const char *fmt, ...)
{
    static const char *const names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
    char msg[2048];
    int n = snprintf(msg, sizeof msg, "%s rfs primary: ", names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg + n, sizeof msg - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m < sizeof msg - (size_t)n - 1 ? (size_t)m : sizeof msg - (size_t)n - 2);
    for (size_t i = (size_t)n; i < len; i++)
        if (msg[i] == '\n')
            msg[i] = ' ';
    msg[len++] = '\n';
    pthread_mutex_lock(&out_lock);
    sks_write_all(2, msg, len);
    pthread_mutex_unlock(&out_lock);
}
