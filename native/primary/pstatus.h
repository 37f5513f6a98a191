/* What the primary's `status` answer says of how far behind the secondary is, in time (safekitd's
 * daemon/rfs_figures.py reads it; docs/metrics.md): pure, no clock of its own (the caller passes
 * `now`, seconds on the window's monotonic clock).
 *
 * - Ack latency: for each operation the FUSE front submitted and the secondary acknowledged as
 *   applied, the time from its submit to that acknowledgement, counted in fixed buckets since the
 *   process started (a count per bucket, a sum and a count: a Prometheus histogram). safekitd
 *   turns two successive reports into percentiles of the recent past; nothing here keeps a
 *   window, sorts or resets on a query (a constant cost per acknowledged operation).
 * - Lag: the age of the oldest operation the secondary's copy does not have yet - streamed and
 *   not yet applied, or journaled while no secondary followed (or lost in flight with a session).
 *   Not known (null) when the copy misses operations of an earlier process (the journal it
 *   loaded), whose times were not kept. */
#ifndef SKP_PSTATUS_H
#define SKP_PSTATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SKP_LAT_BOUNDS 16
/* Upper bounds (seconds) of the ack latency buckets; one more bucket above the last (+Inf). */
extern const double skp_lat_bounds[SKP_LAT_BOUNDS];

typedef struct skp_latency {
    uint64_t counts[SKP_LAT_BOUNDS + 1]; /* per bucket, not cumulative; [SKP_LAT_BOUNDS]: above */
    uint64_t count;
    double sum;
} skp_latency;

void skp_latency_observe(skp_latency *h, double seconds);

struct skp_window;
/* When the oldest frame in flight that carries data (an operation or a resynchronisation frame,
 * not a PING) entered the window, into *at: 1, or 0 when none is in flight. */
int skp_oldest_data(const struct skp_window *w, double *at);
/* Seconds of lag (see above) into *out: 1 when known, 0 when not. */
int skp_lag_seconds(const struct skp_window *w, double now, double *out);
/* The status fields of this file, each with a leading comma ("," "\"lag_seconds\":0.012,..."),
 * appended to out (NUL-terminated, at most cap bytes in all). Returns the length written, or -1
 * if it does not fit (out is left as it was). */
int skp_status_fields(const struct skp_window *w, double now, char *out, size_t cap);

/* A finite double as Python's json.dumps writes it (repr: the shortest digits that read back to the
 * same double; fixed notation for exponents -4..15 with at least one decimal, else d.ddde+XX), so
 * that the control channel's events stay byte-identical through a decode and an encode. A value
 * that is not finite is written as 0.0. Returns false when `cap` is too small. */
bool skp_format_number(double x, char *out, size_t cap);

#endif
