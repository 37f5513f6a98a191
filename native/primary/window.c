/* The primary's replication window (see window.h). */
#include "window.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int skp_window_init(skp_window *w, uint64_t max_bytes, uint64_t max_ops, bool async_none, double sendtimeout)
{
    memset(w, 0, sizeof *w);
    w->max_bytes = max_bytes ? max_bytes : 1;
    w->max_ops = max_ops ? max_ops : 1;
    w->async_none = async_none;
    w->sendtimeout = sendtimeout;
    w->state = SKP_DEGRADING; /* nothing is acknowledged alone before safekitd says so */
    w->dirty = true;          /* nothing is known of the secondary's copy yet */
    w->lag_unknown = true;    /* nor since when it misses what it misses */
    w->cap = 1024;
    w->ring = malloc(w->cap * sizeof *w->ring);
    return w->ring ? 0 : -1;
}

void skp_window_free(skp_window *w)
{
    free(w->ring);
    w->ring = NULL;
}

static bool streaming(const skp_window *w)
{
    return w->state == SKP_RESYNC || w->state == SKP_IN_SYNC;
}

/* The ring grows to the largest window used (max_ops plus control frames), then stays. */
static int grow(skp_window *w)
{
    if (w->count == w->cap) {
        size_t cap = w->cap * 2;
        skp_inflight *ring = malloc(cap * sizeof *ring);
        if (!ring)
            return -1;
        for (size_t i = 0; i < w->count; i++)
            ring[i] = w->ring[(w->head + i) % w->cap];
        free(w->ring);
        w->ring = ring;
        w->cap = cap;
        w->head = 0;
    }
    return 0;
}

static int push(skp_window *w, uint64_t ticket, uint64_t bytes, double now, uint8_t kind)
{
    if (grow(w) != 0)
        return -1;
    if (w->ops == 0)
        w->progress_at = now; /* the clock of sendtimeout starts with the first frame waiting */
    w->ring[(w->head + w->count) % w->cap] = (skp_inflight){ticket, bytes, now, kind};
    w->count++;
    w->ops++;
    w->bytes += bytes;
    return 0;
}

bool skp_has_room(const skp_window *w, uint64_t bytes)
{
    /* one operation larger than the window still goes alone */
    return w->ops < w->max_ops && (w->ops == 0 || w->bytes + bytes <= w->max_bytes);
}

int skp_submit(skp_window *w, uint64_t bytes, double now, uint64_t *ticket)
{
    if (!streaming(w)) {
        *ticket = ++w->last;
        w->journaled++;
        w->dirty = true;
        if (!w->behind) {
            w->behind = true;
            w->behind_since = now;
        }
        return SKP_JOURNAL;
    }
    if (!skp_has_room(w, bytes))
        return SKP_FULL;
    if (grow(w) != 0)
        return SKP_FULL; /* out of memory: wait for acknowledgements to free room */
    *ticket = ++w->last;
    push(w, *ticket, bytes, now, SKP_CARRIES_OP);
    w->streamed++;
    w->streamed_bytes += bytes;
    return SKP_SEND;
}

uint64_t skp_control(skp_window *w, double now)
{
    if (!streaming(w))
        return 0;
    uint64_t ticket = w->last + 1;
    if (push(w, ticket, 0, now, SKP_CARRIES_CONTROL) != 0)
        return 0;
    w->last = ticket;
    return ticket;
}

uint64_t skp_sync_op(skp_window *w, uint64_t bytes, double now)
{
    if (w->state != SKP_RESYNC)
        return 0;
    uint64_t ticket = w->last + 1;
    if (push(w, ticket, bytes, now, SKP_CARRIES_RESYNC) != 0)
        return 0;
    w->last = ticket;
    w->streamed++;
    w->streamed_bytes += bytes;
    return ticket;
}

int skp_barrier(const skp_window *w, uint64_t ticket)
{
    if (w->fenced)
        return -EIO;
    if (w->state == SKP_DEGRADED || w->state == SKP_RESYNC)
        return 0; /* local only: the secondary is not in sync (safekitd knows) */
    /* in sync, or held after a loss: what the secondary acknowledged is done (the values are kept
     * after a loss; a session starts with everything before it counted as acknowledged, as those
     * barriers were answered alone then) */
    uint64_t covered = w->async_none ? w->durable : w->applied;
    if (ticket <= covered)
        return 0;
    return w->closed ? -EIO : SKP_WAIT;
}

int skp_ack(skp_window *w, uint64_t received, uint64_t applied, uint64_t durable, double now)
{
    if (!streaming(w))
        return 0; /* a late ACK of a session already lost: nothing waits for it */
    if (durable > applied || applied > received || received > w->last || received + 1 < w->first ||
        received < w->received || applied < w->applied || durable < w->durable)
        return -1;
    if (received > w->received || applied > w->applied || durable > w->durable)
        w->progress_at = now;
    w->received = received;
    w->applied = applied;
    w->durable = durable;
    while (w->count && w->ring[w->head].ticket <= applied) {
        if (w->ring[w->head].kind == SKP_CARRIES_OP)
            skp_latency_observe(&w->ack_latency, now - w->ring[w->head].at);
        w->ops--;
        w->bytes -= w->ring[w->head].bytes;
        w->head = (w->head + 1) % w->cap;
        w->count--;
    }
    return 0;
}

bool skp_stalled(const skp_window *w, double now)
{
    return streaming(w) && w->ops > 0 && now - w->progress_at > w->sendtimeout;
}

int skp_lost(skp_window *w)
{
    int ev = SKP_EV_NONE;
    if (w->state == SKP_IN_SYNC) {
        w->state = SKP_DEGRADING;
        ev = SKP_EV_DEGRADED;
    } else if (w->state == SKP_RESYNC) {
        w->state = SKP_DEGRADED;
        ev = SKP_EV_DISCONNECTED;
    }
    if (ev != SKP_EV_NONE) {
        w->losses++;
        if (w->ops > 0 || w->applied < w->last)
            w->dirty = true; /* what was not applied is not on the copy */
    }
    double oldest;
    if (skp_oldest_data(w, &oldest) && (!w->behind || oldest < w->behind_since)) {
        w->behind = true; /* what was in flight is missing since it was sent */
        w->behind_since = oldest;
    }
    w->first = 0;
    w->head = w->count = 0;
    w->ops = w->bytes = 0;
    return ev;
}

bool skp_may_connect(const skp_window *w)
{
    return w->state == SKP_DEGRADED && !w->fenced && !w->closed;
}

int skp_session_start(skp_window *w, double now)
{
    if (!skp_may_connect(w))
        return -1;
    w->state = SKP_RESYNC;
    w->first = w->last + 1;
    w->received = w->applied = w->durable = w->last;
    w->head = w->count = 0;
    w->ops = w->bytes = 0;
    w->progress_at = now;
    w->sessions++;
    return 0;
}

void skp_sync_end_queued(skp_window *w)
{
    if (w->state == SKP_RESYNC)
        w->state = SKP_IN_SYNC;
}

void skp_session_synced(skp_window *w)
{
    if (w->state != SKP_RESYNC && w->state != SKP_IN_SYNC)
        return;
    w->state = SKP_IN_SYNC;
    w->dirty = false;
    w->journaled = 0;
    w->behind = w->lag_unknown = false;
}

void skp_degrade_ok(skp_window *w)
{
    if (w->state == SKP_DEGRADING)
        w->state = SKP_DEGRADED;
}

void skp_fence(skp_window *w)
{
    w->fenced = true;
}

void skp_close(skp_window *w)
{
    w->closed = true;
}

const char *skp_state_name(int state)
{
    switch (state) {
    case SKP_DEGRADING: return "degrading";
    case SKP_DEGRADED: return "degraded";
    case SKP_RESYNC: return "resync";
    case SKP_IN_SYNC: return "in_sync";
    }
    return "?";
}
