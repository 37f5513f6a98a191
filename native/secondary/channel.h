/* The secondary's side of the control channel (docs/replication.md, "Control channel"): events as
 * JSON lines on stdout, byte for byte what safekit.rfs.channel.encode_event writes (field order,
 * separators, escaping), and log lines on stderr ("LEVEL rfs secondary: message", which safekitd
 * copies into the module log). Commands are read by the server loop (sks_command_name). */
#ifndef SKS_CHANNEL_H
#define SKS_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"

/* Where events go (default: fd 1). Tests may point it elsewhere. */
void sks_channel_set_fd(int fd);

/* Write all of p[0..n) to fd, going on after EINTR; a closed reader (safekitd gone) ends it
 * quietly. Shared with the primary's events. */
void sks_write_all(int fd, const char *p, size_t n);
void sks_log_set_debug(bool on);

void sks_emit_listening(const char *addr, int port);
void sks_emit_ready(bool in_sync, const char *epoch, bool trusted);
void sks_emit_connected(const char *peer, const char *epoch);
void sks_emit_disconnected(const char *reason);
void sks_emit_resyncing(const char *mode);
void sks_emit_progress(int percent);
void sks_emit_in_sync(int64_t generation);
void sks_emit_error(const char *reason, int errnum);
void sks_emit_failed(const char *reason);
/* An event line made elsewhere (the split-brain step's, safekit.rfs.channel's own encoding), whole. */
void sks_emit_line(const char *line, size_t len);

/* The line's encoding, for tests: event lines are built here then written whole. */
void sks_event_line(skj_buf *b, const char *name, const char *fields_json);

enum sks_level { SKS_DEBUG, SKS_INFO, SKS_WARNING, SKS_ERROR };
void sks_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The "cmd" of one command line: 1 and the name in out; 0 not a command (logged); the line is
 * decoded as safekit.rfs.channel.decode_command would (a JSON object with a string "cmd"). */
int sks_command_name(const char *line, size_t len, char *out, size_t cap);

#endif
