/* The primary's replication link: the window (window.h) driven by a thread that connects to the
 * secondary, runs the v2 HELLO, brings the copy in line, streams the operations in ticket order
 * and ends the session when the secondary stops answering; and a receiver thread per session
 * that reads its ACK, ERROR and MANIFEST frames. The FUSE front's workers call submit and
 * barrier (through netsink.c); safekitd's commands arrive through control.c.
 *
 * Locking: one mutex over the window and the send queue. Submit is called with the front's
 * ordering locks held and only waits for a full window; the link thread takes the front's
 * ordering lock (the pause hook) before this mutex, never after it. */
#ifndef SKP_LINK_H
#define SKP_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal.h"
#include "pwire.h"

#define SKP_KEY_MAX 128
#define SKP_MAX_DIRS 64

struct sks_excl;

typedef struct skp_link_config {
    char module[256], node[256], peer[256], epoch[256];
    char local_addr[64], peer_addr[64];
    int port;
    uint8_t key[SKP_KEY_MAX];
    size_t key_len;
    bool async_none;
    double sendtimeout;      /* seconds without an acknowledgement before the link is lost */
    double connect_interval; /* between connection attempts */
    uint64_t window_bytes, window_ops;
    int ndirs;               /* replicated directories: frames carry their index */
    int dir_fds[SKP_MAX_DIRS]; /* each opened before anything was mounted over it (borrowed) */
    const struct sks_excl *excl; /* ndirs <notreplicated> matchers (borrowed), or NULL */
    const char *dir_paths[SKP_MAX_DIRS]; /* their paths, for verify's report (borrowed) */
    int64_t generation;      /* the replica generation sent at the end of a resync */
    /* Stop and resume every change of the front (its ordering lock, exclusive): the link reads
     * the directory and starts the stream at one point of the order. May be NULL (tests). */
    void (*pause)(void *arg);
    void (*resume)(void *arg);
    void *hook_arg;
} skp_link_config;

struct skp_link;

/* NULL on failure (out of memory). */
struct skp_link *skp_link_open(const skp_link_config *cfg);
/* Start connecting (after the mount is up). 0 or -errno. */
int skp_link_start(struct skp_link *l);

uint64_t skp_link_submit(struct skp_link *l, const skp_op *op);
int skp_link_barrier(struct skp_link *l, uint64_t ticket);

/* safekitd's commands. */
void skp_link_degrade_ok(struct skp_link *l);
void skp_link_fence(struct skp_link *l);
void skp_link_lose(struct skp_link *l, const char *reason);
void skp_link_set_generation(struct skp_link *l, int64_t generation);
void skp_link_emit_status(struct skp_link *l);
/* safekitd's `verify` (`safekit rfs verify`): in sync only, each directory's manifest
 * with block checksums taken here in the step that queues the MANIFEST_REQ, compared with the
 * secondary's answer; emits the `verify` event. Blocks the caller until the answer (resync.c). */
void skp_link_verify(struct skp_link *l);
/* safekitd's `fullsync`: the session ends and the next one copies everything. */
void skp_link_fullsync(struct skp_link *l);

/* The journal this process starts with (loaded from journal.json, or new): moved into the link
 * (*j is left empty); its epoch is the history sent in HELLO, its seq the last ticket. Before
 * skp_link_start. */
void skp_link_set_journal(struct skp_link *l, skp_journal *j);
/* Save the journal (with every unacknowledged operation in it once the link stopped). 0 or -errno. */
int skp_link_save_journal(struct skp_link *l, const char *path, bool clean);

/* Stop: flush to an in-sync secondary (at most flush_seconds), then end the link; barriers not
 * yet covered fail with EIO. Idempotent. */
void skp_link_stop(struct skp_link *l, double flush_seconds);
/* Stops (no flush) if needed, frees. */
void skp_link_free(struct skp_link *l);

#endif
