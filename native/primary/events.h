/* The primary's side of the control channel (docs/replication.md, "Control channel"): events on
 * stdout as the exact lines safekit.rfs.channel.encode_event writes, log lines on stderr
 * ("LEVEL rfs primary: message", copied by safekitd into the module log). Writes are serialised:
 * several threads emit. */
#ifndef SKP_EVENTS_H
#define SKP_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { SKP_DEBUG, SKP_INFO, SKP_WARNING, SKP_ERROR };

void skp_events_set_fd(int fd);
void skp_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void skp_emit_mounted(const char *const *dirs, int ndirs);
void skp_emit_degraded(const char *reason);
void skp_emit_disconnected(const char *reason);
void skp_emit_resyncing(const char *mode);
void skp_emit_in_sync(const char *mode, double seconds, int64_t bytes);
void skp_emit_failed(const char *reason);
void skp_emit_verify_unsupported(const char *reason);
/* channel.VerifyResult: ok, checked, differences (n strings), reason. */
void skp_emit_verify(bool ok, uint64_t checked, char *const *differences, size_t n, const char *reason);
/* status: `stats_json` is the flattened counters without braces ("\"a\":1,\"b\":2"), or "". */
void skp_emit_status(const char *state, uint64_t seq, uint64_t journal, const char *stats_json);

/* Python's repr of round(x, 3) (shortest form: 0.5, 1.0, 0.012) into out. */
void skp_format_seconds(double x, char *out, size_t cap);

#endif
