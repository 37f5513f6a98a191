/* The link's state, shared by link.c (the link and receiver threads, submit, commands) and
 * resync.c (the resynchronisation thread of a session). Everything below `mu` is under it. */
#ifndef SKP_LINK_PRIV_H
#define SKP_LINK_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal.h"
#include "link.h"
#include "sk_frame.h"
#include "window.h"

/* One frame waiting to be sealed and sent: its payload in clear, with room around it for the
 * frame's header (frame_head, right before the payload) and its tag (SK_TAG_SIZE bytes after the
 * buffer's capacity), so that a large one is sealed where it is and sent from there (ADR 0044). */
struct item {
    struct item *next;
    int cls; /* pool class, -1: plain malloc */
    uint64_t ticket;
    uint8_t type;
    uint16_t flags;
    uint32_t dir;
    size_t len;
    uint8_t frame_head[SK_HEADER_SIZE];
    uint8_t payload[];
};
_Static_assert(offsetof(struct item, payload) == offsetof(struct item, frame_head) + SK_HEADER_SIZE,
               "an item's header room lies right before its payload");


/* The journal marks of an operation streamed and not yet applied by the secondary: they return
 * to the journal if the session ends first. */
struct pmark {
    struct pmark *next;
    uint64_t ticket;
    skp_mark m; /* m.path points to path */
    char path[];
};

/* A path to send whole again at the end of a resynchronisation (renamed into place meanwhile). */
struct pending {
    struct pending *next;
    uint32_t dir;
    size_t len;
    char path[];
};

/* A MANIFEST chunk's payload, as received (resync.c decodes it). */
struct mchunk {
    struct mchunk *next;
    uint64_t answer; /* which MANIFEST_REQ of the session it answers (0: the first) */
    size_t len;
    uint8_t p[];
};

enum { SKP_MODE_JOURNAL = 1, SKP_MODE_CHECKSUM = 2, SKP_MODE_FULL = 3 }; /* = SYNC_BEGIN's */

/* Payload buffers of queued frames are recycled by size class (64 KiB to 2 MiB, each with room
 * for an operation's header and path besides its data: a 1 MiB write takes a 1 MiB buffer, not a
 * 2 MiB one): a 1 MiB write's copy then lands in pages already mapped (no page faults, no zeroing).
 * At most SKP_POOL_MAX_BYTES stay pooled while idle (resident memory; see docs/replication.md,
 * "Memory and descriptors"). */
#define SKP_POOL_CLASSES 6
#define SKP_POOL_MIN_SHIFT 16
#define SKP_POOL_SLACK (8u << 10)
#ifndef SKP_POOL_MAX_BYTES
#define SKP_POOL_MAX_BYTES (4u << 20)
#endif
/* Payload bytes queued and not yet sealed and sent: a submit waits above this (the window itself
 * counts bytes not yet applied, which cost no memory once sent). Bounds the process's memory: a
 * large operation (above SKP_RESERVE_ABOVE bytes) waits for room before its copy is made, so
 * threads waiting for room hold no copies. */
#ifndef SKP_QUEUE_MAX_BYTES
#define SKP_QUEUE_MAX_BYTES (4u << 20)
#endif
#define SKP_RESERVE_ABOVE (64u << 10)

struct skp_link {
    skp_link_config cfg;
    pthread_mutex_t mu;
    pthread_mutex_t join_mu;
    pthread_cond_t cv_state; /* acknowledgements, losses, commands: full windows, resync, stop */
    pthread_cond_t cv_send;  /* frames queued, answers for the link thread */
    pthread_condattr_t cattr; /* CLOCK_MONOTONIC, for each barrier's own condition variable */
    /* Barriers waiting (each on its own condition variable): an acknowledgement wakes only those
     * it covers; any other change wakes them all (skp_wake_all_locked). */
    struct skp_bwaiter *bwaiters;
    unsigned state_waiters; /* threads in skp_state_wait: an acknowledgement wakes cv_state only then */
    skp_window w;
    struct item *head, *tail;
    atomic_bool streaming;   /* a hint for submit: encode before taking the lock */

    /* the current session (under mu) */
    bool in_session, lost, stopping, no_retry, started, thread_up;
    uint64_t session;
    char lost_reason[512];
    int lost_event;
    int fd;
    int64_t delta; /* wire sequence number - ticket */
    uint64_t first_wire;
    /* MANIFEST_REQs of the session queued, answers complete (the secondary answers in order);
     * first_manifest: the answer to directory 0's first manifest request, queued with SYNC_BEGIN
     * (checksum and full: directory d's is first_manifest + d) */
    uint64_t manifests_asked, manifests_done, first_manifest;
    double sync_started, held_logged;
    int64_t generation;
    uint64_t resyncs, frames_sent, bytes_sent;

    /* the journal (what the secondary may miss), the one a resynchronisation reintegrates (j0) */
    skp_journal journal, j0;
    bool have_j0, j0_done, fullsync_requested; /* j0_done: merged back or reintegrated */
    struct pmark *mhead, *mtail;
    struct pending *pending;
    struct mchunk *mchunks, *mchunks_tail;
    int mode;                  /* of the current session's resynchronisation */
    bool peer_in_sync;         /* the secondary's HELLO_OK: its copy is a prefix of a history */
    uint64_t progress_done, progress_total, data_bytes, sync_end_ticket;
    bool resync_up;

    uint64_t queued_bytes;
    uint64_t reserved_bytes; /* room taken by large operations whose copy is being made */
    pthread_mutex_t pool_mu;
    struct item *pool[SKP_POOL_CLASSES];
    size_t pooled_bytes;

    pthread_t thread, receiver, resync;
    sk_tx tx;
    sk_rx rx;
    uint8_t *out, *in;
    size_t in_len;
    size_t in_high; /* how far `in` was filled since its pages were last given back */
};

/* A barrier waiting for its ticket (on its waiter's stack, in l->bwaiters while it waits). */
struct skp_bwaiter {
    uint64_t ticket;
    pthread_cond_t cv;
    struct skp_bwaiter *next;
};

/* link.c, under mu */
/* What barriers or cv_state's waiters look at changed: every one of them looks again. */
void skp_wake_all_locked(struct skp_link *l);
/* Wait on cv_state (counted in state_waiters), until `deadline` (CLOCK_MONOTONIC) if not NULL. */
void skp_state_wait_locked(struct skp_link *l, const struct timespec *deadline);
void skp_lose_locked(struct skp_link *l, const char *reason);
uint64_t skp_queue_sync_locked(struct skp_link *l, uint32_t dir, uint8_t type, uint16_t flags, const uint8_t *payload, size_t len,
                               size_t data_len);
/* A resynchronisation frame whose payload the caller wrote into an item in place (a WRITE read
 * straight into its frame buffer: no copy of the data). skp_item_new: a buffer for at least `len`
 * payload bytes (NULL: out of memory; any thread, no lock needed); skp_item_drop frees one not
 * queued; skp_queue_item_locked (under mu) queues `it` with `len` payload bytes and takes it in
 * every case. Its ticket, 0 if the session is lost. */
struct item *skp_item_new(struct skp_link *l, size_t len);
void skp_item_drop(struct skp_link *l, struct item *it);
uint64_t skp_queue_item_locked(struct skp_link *l, uint32_t dir, uint8_t type, uint16_t flags, struct item *it, size_t len,
                               size_t data_len);
void skp_free_chunks(struct skp_link *l);
/* A control frame (PING, MANIFEST_REQ, ...) of directory `dir` in the current session, whatever
 * its state. Its ticket, 0 if the session is lost. */
uint64_t skp_queue_control_locked(struct skp_link *l, uint32_t dir, uint8_t type, uint16_t flags,
                                  const uint8_t *payload, size_t len);

/* A MANIFEST_REQ of directory `dir` queued (control: in any state of the session, else as a
 * resynchronisation frame). The index of its answer, or UINT64_MAX (the session is lost). */
uint64_t skp_ask_manifest_locked(struct skp_link *l, uint32_t dir, const uint8_t *payload, size_t len, bool control);
/* Waits for answer `index` of session `session` and moves its chunks to *out (in order). 0, or
 * -1 (that session is lost or over). */
int skp_take_manifest_locked(struct skp_link *l, uint64_t session, uint64_t index, struct mchunk **out);
/* The chunks of answer `index` received so far and not yet taken, into *out (waits for at least
 * one, or for the answer's end); *complete once its last chunk is among those taken. For a
 * consumer that compares as the answer arrives. 0, or -1 (lost, another session). */
int skp_take_manifest_part_locked(struct skp_link *l, uint64_t session, uint64_t index, struct mchunk **out,
                                  bool *complete);

/* resync.c: a session's resynchronisation (the thread started once the stream began). */
void *skp_resync_main(void *arg);

#endif
