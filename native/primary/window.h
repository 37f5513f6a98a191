/* The primary's replication window as a pure state machine: events in (submit, ack, barrier,
 * loss, safekitd's commands, time), decisions out. No I/O, no threads, no clock: the caller
 * passes `now` (seconds, monotonic) and holds the lock that serialises the calls.
 *
 * Tickets are the front's sequence numbers (sink.h): one per operation or control frame, from 1,
 * consecutive. Within a session every ticket from `first` on is in the stream, in order; the
 * wire's sequence numbers are the tickets shifted by a per-session constant (the link's job).
 *
 * Link states (the names the control channel and safekitd use):
 *   degrading  the link was lost while in sync (or the process starts): barriers are held until
 *              safekitd's degrade_ok (then degraded) or fence (then they fail with EIO)
 *   degraded   no secondary follows: operations are journaled, barriers succeed (local only)
 *   resync     a session is bringing the secondary's copy in line: operations are streamed,
 *              barriers are local only (the copy is not in sync yet)
 *   in_sync    every operation is streamed; a barrier returns once the secondary acknowledged
 *              everything up to it (applied; durable with async="none")
 */
#ifndef SKP_WINDOW_H
#define SKP_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pstatus.h"

enum skp_state { SKP_DEGRADING = 0, SKP_DEGRADED, SKP_RESYNC, SKP_IN_SYNC };

/* submit decisions */
enum { SKP_SEND = 0, SKP_JOURNAL = 1, SKP_FULL = 2 };
/* barrier decisions: 0 done, SKP_WAIT, or -EIO */
enum { SKP_WAIT = 1 };
/* what a loss means for safekitd */
enum { SKP_EV_NONE = 0, SKP_EV_DEGRADED, SKP_EV_DISCONNECTED };

typedef struct skp_inflight {
    uint64_t ticket, bytes;
    double at;    /* when it entered the window (pstatus.h: lag and ack latency) */
    uint8_t kind; /* SKP_CARRIES_*: what it carries */
} skp_inflight;

/* skp_inflight.kind: a control frame (PING, SYNC_BEGIN, ...: no data the copy lacks), an
 * operation of the front (skp_submit), a resynchronisation frame (skp_sync_op) */
enum { SKP_CARRIES_CONTROL = 0, SKP_CARRIES_OP = 1, SKP_CARRIES_RESYNC = 2 };

typedef struct skp_window {
    /* configuration */
    uint64_t max_bytes, max_ops; /* in flight: streamed and not yet applied */
    bool async_none;
    double sendtimeout;
    /* state */
    int state;
    bool fenced;
    bool closed;       /* the process is stopping: uncovered barriers fail (EIO) */
    bool dirty;        /* the secondary's copy misses operations: it needs a resynchronisation */
    uint64_t last;     /* last ticket given */
    uint64_t first;    /* first ticket of the current session's stream (0: no session) */
    uint64_t received, applied, durable; /* the secondary's acknowledgements, as tickets */
    uint64_t bytes, ops;                 /* in flight */
    skp_inflight *ring;
    size_t cap, head, count;
    double progress_at; /* last time the acknowledgements moved (or the window became busy) */
    /* counters */
    uint64_t journaled; /* operations not streamed since the copy last was in sync */
    uint64_t streamed, streamed_bytes, sessions, losses;
    /* the status's time figures (pstatus.h) */
    skp_latency ack_latency; /* submit to applied, operations of the front */
    bool behind;             /* the copy misses operations outside the ring since behind_since */
    bool lag_unknown;        /* it may miss operations of an earlier process (until in sync) */
    double behind_since;
} skp_window;

/* 0, or -1 (out of memory). */
int skp_window_init(skp_window *w, uint64_t max_bytes, uint64_t max_ops, bool async_none, double sendtimeout);
void skp_window_free(skp_window *w);

/* An operation of `bytes` payload bytes: SKP_SEND (stream it: *ticket set), SKP_JOURNAL (no
 * session: *ticket set, the copy now misses it) or SKP_FULL (the window is full: wait for an
 * acknowledgement or a loss, then ask again; *ticket not set). */
int skp_submit(skp_window *w, uint64_t bytes, double now, uint64_t *ticket);
/* A streamed operation of `bytes` would fit in the window now (skp_submit would not say SKP_FULL). */
bool skp_has_room(const skp_window *w, uint64_t bytes);

/* A control frame of the session (PING, SYNC_BEGIN, MANIFEST_REQ, SYNC_END, BYE): its ticket.
 * Not limited by the window (it carries no data). Only while a session streams; 0 otherwise. */
uint64_t skp_control(skp_window *w, double now);

/* A resynchronisation frame of `bytes` payload bytes: its ticket (0 when no resynchronisation
 * streams). Not limited by the window: the resynchronisation waits for room itself before it
 * reads a batch (it reads and queues under the front's ordering lock, where it must not block). */
uint64_t skp_sync_op(skp_window *w, uint64_t bytes, double now);

/* 0: every operation up to `ticket` is acknowledged as the contract needs (or nothing is to wait
 * for); SKP_WAIT: not yet; -EIO: fenced, or the process stops without the acknowledgement. */
int skp_barrier(const skp_window *w, uint64_t ticket);

/* The secondary's ACK, as tickets. 0, or -1 when it is impossible (acknowledges what was never
 * sent, goes backwards, durable > applied > received): the link must end. */
int skp_ack(skp_window *w, uint64_t received, uint64_t applied, uint64_t durable, double now);

/* Something was streamed and nothing was acknowledged for sendtimeout: the link must end. */
bool skp_stalled(const skp_window *w, double now);
/* Nothing is in flight: the link may send a PING to hear from the secondary. */
static inline bool skp_idle(const skp_window *w) { return w->ops == 0; }

/* The session ended (any reason). Returns what to tell safekitd: SKP_EV_DEGRADED (it was in
 * sync: barriers held until degrade_ok/fence), SKP_EV_DISCONNECTED (it was resyncing), or
 * SKP_EV_NONE (no session). */
int skp_lost(skp_window *w);

/* A session may start: degraded, not fenced, not closed. */
bool skp_may_connect(const skp_window *w);
/* Start streaming: from the next ticket on, everything is in the stream. 0, or -1 if not allowed. */
int skp_session_start(skp_window *w, double now);
/* SYNC_END is in the stream: from now on the window is in sync. The secondary marks its copy in
 * sync when it applies SYNC_END, possibly before its acknowledgement arrives (or a loss comes
 * first): so a barrier on a later ticket must wait for the secondary like any in-sync barrier,
 * and losing the session now is losing an in-sync secondary (degrading: safekitd's handshake
 * before anything is acknowledged alone). Before this, barriers of a resync are local. */
void skp_sync_end_queued(skp_window *w);
/* The resynchronisation is complete (its SYNC_END acknowledged): in sync, nothing missing. */
void skp_session_synced(skp_window *w);

void skp_degrade_ok(skp_window *w);
void skp_fence(skp_window *w);
void skp_close(skp_window *w);

const char *skp_state_name(int state);

#endif
