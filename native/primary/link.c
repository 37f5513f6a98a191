/* The primary's replication link (see link.h). */
#include "link.h"
#include "link_priv.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "events.h"
#include "sk_frame.h"
#include "sk_hello.h"
#include "sk_mem.h"
#include "sk_ops.h"
#include "sk_wire.h"
#include "window.h"

#define SK_XATTR_VALUE_MAX_BYTES 65536

#define PING_INTERVAL 1.0
#define BATCH_BYTES (1u << 20)
#define OUT_CAP (SK_FRAME_OVERHEAD + SK_MAX_PAYLOAD + BATCH_BYTES)
#define IN_CAP (SK_FRAME_OVERHEAD + SK_MAX_PAYLOAD)
/* The receive buffer keeps this much resident; the pages a larger frame (the secondary's MANIFEST
 * chunks, up to 3 MiB) filled beyond it are given back once it is consumed (ADR 0044). */
#define IN_KEEP (256u << 10)
#define HELD_LOG_EVERY 5.0

static const char *mode_name(int mode)
{
    return mode == SKP_MODE_JOURNAL ? "journal" : mode == SKP_MODE_FULL ? "full" : "checksum";
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void deadline_in(struct timespec *ts, double seconds)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    double s = (double)ts->tv_sec + (double)ts->tv_nsec / 1e9 + seconds;
    ts->tv_sec = (time_t)s;
    ts->tv_nsec = (long)((s - (double)ts->tv_sec) * 1e9);
}

static void wait_for(pthread_cond_t *cv, pthread_mutex_t *mu, double seconds)
{
    struct timespec ts;
    deadline_in(&ts, seconds);
    pthread_cond_timedwait(cv, mu, &ts);
}

void skp_state_wait_locked(struct skp_link *l, const struct timespec *deadline)
{
    l->state_waiters++;
    if (deadline)
        pthread_cond_timedwait(&l->cv_state, &l->mu, deadline);
    else
        pthread_cond_wait(&l->cv_state, &l->mu);
    l->state_waiters--;
}

static void state_wait_for(struct skp_link *l, double seconds)
{
    struct timespec ts;
    deadline_in(&ts, seconds);
    skp_state_wait_locked(l, &ts);
}

void skp_wake_all_locked(struct skp_link *l)
{
    pthread_cond_broadcast(&l->cv_state);
    for (struct skp_bwaiter *b = l->bwaiters; b; b = b->next)
        pthread_cond_signal(&b->cv);
}

/* An acknowledgement moved the window (under mu): the barriers it covers return, the others sleep
 * on (one wake-up per fsync answered, not one per waiting writer); cv_state only if someone waits
 * there (a full window, the resync, a stop). The link thread is not woken: what it does next
 * (pings, the stall check) is timed. */
static void wake_acked_locked(struct skp_link *l)
{
    for (struct skp_bwaiter *b = l->bwaiters; b; b = b->next)
        if (skp_barrier(&l->w, b->ticket) != SKP_WAIT)
            pthread_cond_signal(&b->cv);
    if (l->state_waiters)
        pthread_cond_broadcast(&l->cv_state);
}

/* The payload capacity of pool class k: a power of two of data plus room for the header. */
static size_t pool_class_bytes(int k)
{
    return ((size_t)1 << (SKP_POOL_MIN_SHIFT + k)) + SKP_POOL_SLACK;
}

/* A frame buffer for `len` payload bytes (see SKP_POOL_*). */
static struct item *item_alloc(struct skp_link *l, size_t len)
{
    int cls = -1;
    for (int k = 0; k < SKP_POOL_CLASSES; k++) {
        if (len > (16u << 10) && len <= pool_class_bytes(k)) {
            cls = k;
            break;
        }
    }
    struct item *it = NULL;
    if (cls >= 0) {
        pthread_mutex_lock(&l->pool_mu);
        it = l->pool[cls];
        if (it) {
            l->pool[cls] = it->next;
            l->pooled_bytes -= pool_class_bytes(cls);
        }
        pthread_mutex_unlock(&l->pool_mu);
        if (!it)
            it = malloc(sizeof *it + pool_class_bytes(cls) + SK_TAG_SIZE);
    } else {
        it = malloc(sizeof *it + len + SK_TAG_SIZE);
    }
    if (it)
        it->cls = cls;
    return it;
}

static void item_free(struct skp_link *l, struct item *it)
{
    if (!it)
        return;
    if (it->cls >= 0) {
        size_t cap = pool_class_bytes(it->cls);
        pthread_mutex_lock(&l->pool_mu);
        if (l->pooled_bytes + cap <= SKP_POOL_MAX_BYTES) {
            it->next = l->pool[it->cls];
            l->pool[it->cls] = it;
            l->pooled_bytes += cap;
            it = NULL;
        }
        pthread_mutex_unlock(&l->pool_mu);
    }
    free(it);
}

static void free_queue(struct skp_link *l)
{
    while (l->head) {
        struct item *it = l->head;
        l->head = it->next;
        item_free(l, it);
    }
    l->tail = NULL;
    l->queued_bytes = 0;
}

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void free_marks_upto(struct skp_link *l, uint64_t applied)
{
    while (l->mhead && l->mhead->ticket <= applied) {
        struct pmark *m = l->mhead;
        l->mhead = m->next;
        free(m);
    }
    if (!l->mhead)
        l->mtail = NULL;
}

void skp_free_chunks(struct skp_link *l)
{
    while (l->mchunks) {
        struct mchunk *c = l->mchunks;
        l->mchunks = c->next;
        free(c);
    }
    l->mchunks_tail = NULL;
}

/* What the secondary may not have goes back to the journal (under mu, the session ended):
 * the marks of every operation not acknowledged as applied, what a resynchronisation was
 * sending, and the paths renamed during it: the next session's journal resync covers them. */
static void journal_the_rest(struct skp_link *l)
{
    double t = wall();
    while (l->mhead) {
        struct pmark *m = l->mhead;
        l->mhead = m->next;
        skp_journal_mark(&l->journal, &m->m, t);
        free(m);
    }
    l->mtail = NULL;
    if (l->have_j0 && !l->j0_done) { /* (the session frees j0 once its resync thread ended) */
        if (l->mode == SKP_MODE_JOURNAL)
            skp_journal_merge(&l->journal, &l->j0, t);
        else
            l->journal.trusted = false; /* what it sent is unknown: compare checksums next time */
        l->j0_done = true;
    }
    while (l->pending) {
        struct pending *p = l->pending;
        l->pending = p->next;
        skp_mark m = {SKP_M_REPLACED, p->dir, p->path, p->len, 0, 0};
        skp_journal_mark(&l->journal, &m, t);
        free(p);
    }
    skp_free_chunks(l);
}

/* End the session (under mu): the window decides what safekitd is told; nothing queued is sent. */
void skp_lose_locked(struct skp_link *l, const char *reason)
{
    if (!l->in_session || l->lost)
        return;
    l->lost = true;
    snprintf(l->lost_reason, sizeof l->lost_reason, "%s", reason);
    l->lost_event = skp_lost(&l->w);
    journal_the_rest(l);
    atomic_store(&l->streaming, false);
    free_queue(l);
    if (l->fd >= 0)
        shutdown(l->fd, SHUT_RDWR); /* wakes the receiver and a blocked send */
    skp_wake_all_locked(l);
    pthread_cond_broadcast(&l->cv_send);
}

static void enqueue(struct skp_link *l, struct item *it)
{
    it->next = NULL;
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    l->queued_bytes += it->len;
    pthread_cond_signal(&l->cv_send);
}

/* A control frame in the stream (under mu). Returns its ticket, 0 if it could not be queued
 * (then the session is lost). */
static uint64_t control_locked(struct skp_link *l, uint8_t type, uint16_t flags, const uint8_t *payload, size_t len)
{
    struct item *it = item_alloc(l, len);
    if (!it) {
        skp_lose_locked(l, "out of memory");
        return 0;
    }
    uint64_t ticket = skp_control(&l->w, now());
    if (!ticket) {
        item_free(l, it);
        skp_lose_locked(l, "out of memory");
        return 0;
    }
    it->ticket = ticket;
    it->type = type;
    it->flags = flags;
    it->dir = 0;
    it->len = len;
    if (len)
        memcpy(it->payload, payload, len);
    enqueue(l, it);
    return ticket;
}

uint64_t skp_queue_control_locked(struct skp_link *l, uint32_t dir, uint8_t type, uint16_t flags,
                                  const uint8_t *payload, size_t len)
{
    if (l->lost || !l->in_session)
        return 0;
    uint64_t t = control_locked(l, type, flags, payload, len);
    if (t && l->tail && l->tail->ticket == t)
        l->tail->dir = dir;
    return t;
}

uint64_t skp_ask_manifest_locked(struct skp_link *l, uint32_t dir, const uint8_t *payload, size_t len, bool control)
{
    uint64_t t = control ? skp_queue_control_locked(l, dir, SK_T_MANIFEST_REQ, 0, payload, len)
                         : skp_queue_sync_locked(l, dir, SK_T_MANIFEST_REQ, 0, payload, len, 0);
    return t ? l->manifests_asked++ : UINT64_MAX;
}

int skp_take_manifest_locked(struct skp_link *l, uint64_t session, uint64_t index, struct mchunk **out)
{
    *out = NULL;
    while (index != UINT64_MAX && l->session == session && !l->lost && l->manifests_done <= index)
        skp_state_wait_locked(l, NULL);
    if (index == UINT64_MAX || l->session != session || l->lost)
        return -1;
    /* the answers are in order: earlier ones nobody took go, this one's chunks move to *out */
    struct mchunk **tail = out;
    while (l->mchunks && l->mchunks->answer <= index) {
        struct mchunk *c = l->mchunks;
        l->mchunks = c->next;
        c->next = NULL;
        if (c->answer == index) {
            *tail = c;
            tail = &c->next;
        } else {
            free(c);
        }
    }
    if (!l->mchunks)
        l->mchunks_tail = NULL;
    return 0;
}

int skp_take_manifest_part_locked(struct skp_link *l, uint64_t session, uint64_t index, struct mchunk **out,
                                  bool *complete)
{
    *out = NULL;
    *complete = false;
    for (;;) {
        if (index == UINT64_MAX || l->session != session || l->lost)
            return -1;
        /* the answers are in order: earlier ones nobody took go */
        while (l->mchunks && l->mchunks->answer < index) {
            struct mchunk *c = l->mchunks;
            l->mchunks = c->next;
            free(c);
        }
        if (!l->mchunks)
            l->mchunks_tail = NULL;
        if ((l->mchunks && l->mchunks->answer == index) || l->manifests_done > index)
            break;
        skp_state_wait_locked(l, NULL);
    }
    /* a chunk is listed before the count of complete answers moves past it: complete means that
     * every chunk of this answer is in *out or was taken before */
    *complete = l->manifests_done > index;
    struct mchunk **tail = out;
    while (l->mchunks && l->mchunks->answer == index) {
        struct mchunk *c = l->mchunks;
        l->mchunks = c->next;
        c->next = NULL;
        *tail = c;
        tail = &c->next;
    }
    if (!l->mchunks)
        l->mchunks_tail = NULL;
    return 0;
}

/* ------------------------------------------------------------------ the FUSE side */

static struct item *make_item(struct skp_link *l, const skp_op *op, size_t len)
{
    struct item *it = item_alloc(l, len);
    if (!it)
        return NULL;
    size_t got;
    if (skp_op_encode(op, it->payload, len, &got, NULL) != SK_OK || got != len) {
        item_free(l, it);
        return NULL;
    }
    it->type = op->type;
    it->flags = skp_op_frame_flags(op);
    it->dir = op->dir;
    it->len = len;
    return it;
}

uint64_t skp_link_submit(struct skp_link *l, const skp_op *op)
{
    size_t len = 0;
    sk_err e = {0, ""};
    bool encodable = skp_op_size(op, &len, &e) == SK_OK;
    struct item *it = NULL;
    bool large = len > SKP_RESERVE_ABOVE;
    if (encodable && !large && atomic_load_explicit(&l->streaming, memory_order_relaxed))
        it = make_item(l, op, len); /* outside the lock: the copy of the data costs most */
    skp_mark mk[2];
    int nm = skp_marks_of(op, mk);
    struct pmark *pm[2] = {NULL, NULL};
    for (int i = 0; i < nm; i++) {
        pm[i] = malloc(sizeof *pm[i] + mk[i].path_len + 1);
        if (pm[i]) {
            pm[i]->next = NULL;
            pm[i]->m = mk[i];
            memcpy(pm[i]->path, mk[i].path, mk[i].path_len);
            pm[i]->path[mk[i].path_len] = '\0';
            pm[i]->m.path = pm[i]->path;
        }
    }
    uint64_t ticket = 0;
    pthread_mutex_lock(&l->mu);
    if (!encodable && l->in_session && !l->lost) {
        char why[400];
        snprintf(why, sizeof why, "an operation cannot be replicated (%s): the secondary's copy needs a resync",
                 e.reason);
        skp_log(SKP_ERROR, "%s", why);
        skp_lose_locked(l, why);
    }
    /* the sender is behind: wait (memory stays bounded; the window counts what is not applied) */
    while (l->queued_bytes + l->reserved_bytes >= SKP_QUEUE_MAX_BYTES && l->in_session && !l->lost)
        skp_state_wait_locked(l, NULL);
    if (encodable && large && l->in_session && !l->lost && l->w.state >= SKP_RESYNC) {
        /* A large operation's copy is made once the queue and the window have room for it: a
         * thread that waits holds no copy (16 FUSE threads each holding a 1 MiB write while the
         * sender is behind was 16 MiB more). One larger than the whole queue goes alone. */
        while (l->in_session && !l->lost && l->w.state >= SKP_RESYNC &&
               ((l->queued_bytes + l->reserved_bytes > 0 &&
                 l->queued_bytes + l->reserved_bytes + len > SKP_QUEUE_MAX_BYTES) ||
                !skp_has_room(&l->w, len)))
            skp_state_wait_locked(l, NULL);
        l->reserved_bytes += len;
        pthread_mutex_unlock(&l->mu);
        it = make_item(l, op, len);
        pthread_mutex_lock(&l->mu);
        l->reserved_bytes -= len;
    }
    int rc;
    while ((rc = skp_submit(&l->w, len, now(), &ticket)) == SKP_FULL)
        skp_state_wait_locked(l, NULL);
    if (rc == SKP_SEND) {
        if (!it)
            it = make_item(l, op, len);
        if (!it) {
            skp_lose_locked(l, "out of memory: the operation could not be queued");
        } else {
            it->ticket = ticket;
            enqueue(l, it);
            it = NULL;
            /* its marks wait for the secondary's acknowledgement */
            for (int i = 0; i < nm; i++) {
                if (!pm[i]) {
                    skp_journal_mark(&l->journal, &mk[i], wall()); /* out of memory: journaled now */
                    continue;
                }
                pm[i]->ticket = ticket;
                if (l->mtail)
                    l->mtail->next = pm[i];
                else
                    l->mhead = pm[i];
                l->mtail = pm[i];
                pm[i] = NULL;
            }
            /* renamed or linked into place during a resynchronisation: the pass may have
             * visited that place already (or will not find the source): sent again at its end */
            if (l->w.state == SKP_RESYNC && (op->type == SK_T_RENAME || op->type == SK_T_LINK)) {
                for (int i = 0; i < nm; i++) {
                    if (mk[i].kind != SKP_M_REPLACED && mk[i].kind != SKP_M_LINKED)
                        continue;
                    struct pending *p = malloc(sizeof *p + mk[i].path_len + 1);
                    if (!p) {
                        skp_lose_locked(l, "out of memory");
                        break;
                    }
                    p->len = mk[i].path_len;
                    p->dir = mk[i].dir;
                    memcpy(p->path, mk[i].path, p->len);
                    p->path[p->len] = '\0';
                    p->next = l->pending;
                    l->pending = p;
                }
            }
        }
    } else if (rc == SKP_JOURNAL) {
        double t = wall();
        for (int i = 0; i < nm; i++)
            skp_journal_mark(&l->journal, &mk[i], t);
    }
    pthread_mutex_unlock(&l->mu);
    item_free(l, it);
    free(pm[0]);
    free(pm[1]);
    return ticket;
}

int skp_link_barrier(struct skp_link *l, uint64_t ticket)
{
    pthread_mutex_lock(&l->mu);
    int rc = skp_barrier(&l->w, ticket);
    if (rc == SKP_WAIT) {
        struct skp_bwaiter me = {.ticket = ticket, .next = l->bwaiters};
        pthread_cond_init(&me.cv, &l->cattr);
        l->bwaiters = &me;
        while ((rc = skp_barrier(&l->w, ticket)) == SKP_WAIT) {
            wait_for(&me.cv, &l->mu, HELD_LOG_EVERY);
            double t = now();
            if (l->w.state == SKP_DEGRADING && t - l->held_logged >= HELD_LOG_EVERY - 0.5) {
                l->held_logged = t;
                skp_log(SKP_WARNING, "writes wait for fsync: safekitd has not yet confirmed that the secondary "
                                     "knows its copy is stale (it must say so, or be lost, before this node "
                                     "acknowledges alone)");
            }
        }
        struct skp_bwaiter **p = &l->bwaiters;
        while (*p != &me)
            p = &(*p)->next;
        *p = me.next;
        pthread_cond_destroy(&me.cv);
    }
    pthread_mutex_unlock(&l->mu);
    return rc;
}

/* ------------------------------------------------------------------ commands */

void skp_link_degrade_ok(struct skp_link *l)
{
    pthread_mutex_lock(&l->mu);
    if (l->w.state == SKP_DEGRADING)
        skp_log(SKP_INFO, "safekitd confirmed: the secondary cannot take over with its stale copy; fsync is local");
    skp_degrade_ok(&l->w);
    skp_wake_all_locked(l);
    pthread_mutex_unlock(&l->mu);
}

void skp_link_fence(struct skp_link *l)
{
    pthread_mutex_lock(&l->mu);
    if (!l->w.fenced)
        skp_log(SKP_WARNING, "fenced: this node stopped serving without the secondary; held and new fsync "
                             "calls fail with EIO (nothing is acknowledged alone)");
    skp_fence(&l->w);
    skp_wake_all_locked(l);
    pthread_mutex_unlock(&l->mu);
}

void skp_link_lose(struct skp_link *l, const char *reason)
{
    pthread_mutex_lock(&l->mu);
    skp_lose_locked(l, reason);
    pthread_mutex_unlock(&l->mu);
}

void skp_link_set_generation(struct skp_link *l, int64_t generation)
{
    pthread_mutex_lock(&l->mu);
    l->generation = generation;
    pthread_mutex_unlock(&l->mu);
}

void skp_link_fullsync(struct skp_link *l)
{
    pthread_mutex_lock(&l->mu);
    l->fullsync_requested = true;
    skp_lose_locked(l, "full resynchronisation requested");
    pthread_mutex_unlock(&l->mu);
}

void skp_link_set_journal(struct skp_link *l, skp_journal *j)
{
    pthread_mutex_lock(&l->mu);
    skp_journal_free(&l->journal);
    l->journal = *j;
    memset(j, 0, sizeof *j);
    l->w.last = l->journal.seq;
    snprintf(l->cfg.epoch, sizeof l->cfg.epoch, "%s", l->journal.epoch);
    pthread_mutex_unlock(&l->mu);
}

int skp_link_save_journal(struct skp_link *l, const char *path, bool clean)
{
    pthread_mutex_lock(&l->mu);
    l->journal.seq = l->w.last;
    int rc = skp_journal_save(&l->journal, path, clean, wall());
    pthread_mutex_unlock(&l->mu);
    return rc;
}

void skp_link_emit_status(struct skp_link *l)
{
    pthread_mutex_lock(&l->mu);
    const skp_window *w = &l->w;
    char stats[2048];
    snprintf(stats, sizeof stats,
             "\"resyncs\":%llu,\"sessions\":%llu,\"losses\":%llu,\"streamed\":%llu,\"streamed_bytes\":%llu,"
             "\"in_flight_ops\":%llu,\"in_flight_bytes\":%llu,\"acked_applied\":%llu,\"acked_durable\":%llu,"
             "\"frames_sent\":%llu,\"bytes_sent\":%llu,\"resync_needed\":%s,\"fenced\":%s,"
             "\"journal_trusted\":%s,\"journal_bytes\":%llu,\"resync_mode\":\"%s\",\"resync_done\":%llu,"
             "\"resync_total\":%llu,\"resync_data_bytes\":%llu",
             (unsigned long long)l->resyncs, (unsigned long long)w->sessions, (unsigned long long)w->losses,
             (unsigned long long)w->streamed, (unsigned long long)w->streamed_bytes, (unsigned long long)w->ops,
             (unsigned long long)w->bytes, (unsigned long long)w->applied, (unsigned long long)w->durable,
             (unsigned long long)l->frames_sent, (unsigned long long)l->bytes_sent, w->dirty ? "true" : "false",
             w->fenced ? "true" : "false", l->journal.trusted ? "true" : "false",
             (unsigned long long)skp_journal_dirty_bytes(&l->journal), l->in_session ? mode_name(l->mode) : "",
             (unsigned long long)l->progress_done, (unsigned long long)l->progress_total,
             (unsigned long long)l->data_bytes);
    skp_status_fields(w, now(), stats, sizeof stats); /* lag and ack latency (pstatus.c) */
    char state[32];
    snprintf(state, sizeof state, "%s", skp_state_name(w->state));
    uint64_t seq = w->last, journal = skp_journal_len(&l->journal);
    pthread_mutex_unlock(&l->mu);
    skp_emit_status(state, seq, journal, stats);
}

/* ------------------------------------------------------------------ the session */

static int connect_to(const skp_link_config *c, char *why, size_t cap)
{
    struct sockaddr_in peer, local;
    memset(&peer, 0, sizeof peer);
    peer.sin_family = AF_INET;
    peer.sin_port = htons((uint16_t)c->port);
    if (inet_pton(AF_INET, c->peer_addr, &peer.sin_addr) != 1) {
        snprintf(why, cap, "the peer address %s is not an IPv4 address", c->peer_addr);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(why, cap, "socket: %s", strerror(errno));
        return -1;
    }
    memset(&local, 0, sizeof local);
    local.sin_family = AF_INET;
    if (c->local_addr[0] && inet_pton(AF_INET, c->local_addr, &local.sin_addr) == 1 &&
        bind(fd, (struct sockaddr *)&local, sizeof local) != 0) {
        snprintf(why, cap, "cannot bind %s: %s", c->local_addr, strerror(errno));
        close(fd);
        return -1;
    }
    int rc = connect(fd, (struct sockaddr *)&peer, sizeof peer);
    if (rc != 0 && errno == EINPROGRESS) {
        struct pollfd p = {fd, POLLOUT, 0};
        double limit = c->sendtimeout < 10 ? c->sendtimeout : 10;
        rc = poll(&p, 1, (int)(limit * 1000));
        int err = 0;
        socklen_t len = sizeof err;
        if (rc == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
            rc = 0;
        } else {
            errno = rc == 0 ? ETIMEDOUT : err ? err : errno;
            rc = -1;
        }
    }
    if (rc != 0) {
        why[0] = '\0';
        if (errno != ECONNREFUSED) /* refused: the secondary is not listening yet (quiet, as Python) */
            snprintf(why, cap, "cannot connect to the secondary: %s", strerror(errno));
        close(fd);
        return -1;
    }
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* a send blocked on a secondary that stopped reading comes back to check sendtimeout */
    struct timeval tv = {0, 200 * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

/* 0 sent; -1 the session is lost (why set, or lost already). */
/* A send that moved nothing (w <= 0): 0 to try again, -1 (why set) when the session is lost. */
static int send_retry_or_lose(struct skp_link *l, ssize_t w, char *why, size_t cap)
{
    if (w < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
        pthread_mutex_lock(&l->mu);
        bool lost = l->lost;
        if (!lost && skp_stalled(&l->w, now())) {
            snprintf(why, cap, "no acknowledgement from the secondary within %g s (sendtimeout)", l->cfg.sendtimeout);
            skp_lose_locked(l, why);
            lost = true;
        }
        pthread_mutex_unlock(&l->mu);
        return lost ? -1 : 0;
    }
    snprintf(why, cap, "connection lost: %s", w == 0 ? "closed" : strerror(errno));
    return -1;
}

static int send_all(struct skp_link *l, const uint8_t *p, size_t n, char *why, size_t cap)
{
    while (n > 0) {
        ssize_t w = send(l->fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (send_retry_or_lose(l, w, why, cap) != 0) {
            return -1;
        }
    }
    return 0;
}

/* send_all over n pieces, in order (iov is consumed). */
static int send_iov_all(struct skp_link *l, struct iovec *iov, int n, char *why, size_t cap)
{
    while (n > 0) {
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_iov = iov;
        m.msg_iovlen = (size_t)n;
        ssize_t w = sendmsg(l->fd, &m, MSG_NOSIGNAL);
        if (w > 0) {
            size_t left = (size_t)w;
            while (n > 0 && left >= iov->iov_len) {
                left -= iov->iov_len;
                iov++;
                n--;
            }
            if (n > 0) {
                iov->iov_base = (uint8_t *)iov->iov_base + left;
                iov->iov_len -= left;
            }
        } else if (send_retry_or_lose(l, w, why, cap) != 0) {
            return -1;
        }
    }
    return 0;
}

/* The v2 HELLO as the primary. 0, or -1 with why set. */
static int handshake(struct skp_link *l, uint64_t first_wire, sk_hello_peer *peer, char *why, size_t cap)
{
    const skp_link_config *c = &l->cfg;
    sk_err e = {0, ""};
    sk_hello hs;
    sk_hello_config hc;
    memset(&hc, 0, sizeof hc);
    hc.role = SK_ROLE_PRIMARY;
    hc.cluster_key = c->key;
    hc.cluster_key_len = c->key_len;
    hc.module = c->module;
    hc.node = c->node;
    hc.peer = c->peer;
    hc.dirs = (uint32_t)(c->ndirs > 0 ? c->ndirs : 1);
    hc.epoch = c->epoch;
    hc.first_seq = first_wire;
    hc.async_none = c->async_none;
    uint8_t nonce[SK_HELLO_NONCE_SIZE], out[SK_HELLO_OUT_MAX];
    size_t olen;
    if (sk_hello_nonce(nonce, &e) != SK_OK || sk_hello_init(&hs, &hc, nonce, &e) != SK_OK ||
        sk_hello_start(&hs, out, sizeof out, &olen, &e) != SK_OK) {
        snprintf(why, cap, "handshake: %s", e.reason);
        sk_hello_wipe(&hs);
        return -1;
    }
    if (send_all(l, out, olen, why, cap) != 0) {
        sk_hello_wipe(&hs);
        return -1;
    }
    double deadline = now() + c->sendtimeout;
    l->in_len = 0;
    int rc = -1;
    while (sk_hello_state(&hs) != SK_HS_DONE) {
        double left = deadline - now();
        struct pollfd p = {l->fd, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) == 0) {
            snprintf(why, cap, "no answer to HELLO within %g s (sendtimeout)", c->sendtimeout);
            goto out;
        }
        ssize_t n = recv(l->fd, l->in + l->in_len, SK_HELLO_OUT_MAX, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            sk_hello_eof(&hs, &e);
            snprintf(why, cap, "%s", n == 0 ? e.reason : strerror(errno));
            goto out;
        }
        l->in_len += (size_t)n;
        for (;;) {
            size_t used = 0;
            int r = sk_hello_receive(&hs, l->in, l->in_len, &used, out, sizeof out, &olen, &e);
            if (r == SK_AGAIN)
                break;
            if (r != SK_OK) {
                snprintf(why, cap, "handshake refused: %s", e.reason);
                goto out;
            }
            memmove(l->in, l->in + used, l->in_len - used);
            l->in_len -= used;
            if (olen && send_all(l, out, olen, why, cap) != 0)
                goto out;
            if (sk_hello_state(&hs) == SK_HS_DONE)
                break;
        }
    }
    if (sk_hello_session(&hs, &l->tx, &l->rx, &e) != SK_OK) {
        snprintf(why, cap, "session keys: %s", e.reason);
        goto out;
    }
    skp_log(SKP_INFO, "connected to %s (%s:%d), epoch %s, from sequence %llu, async=%s", hs.peer.node,
            c->peer_addr, c->port, c->epoch, (unsigned long long)first_wire, c->async_none ? "none" : "second");
    *peer = hs.peer;
    rc = 0;
out:
    sk_hello_wipe(&hs);
    return rc;
}

/* The receiver of one session: ACK, ERROR, MANIFEST (the link thread joins it). */
static void *receiver_main(void *arg)
{
    struct skp_link *l = arg;
    char why[600] = "";
    for (;;) {
        size_t off = 0;
        bool stop = false;
        for (;;) {
            sk_header h;
            size_t used, need;
            sk_err e = {0, ""};
            int rc = sk_rx_open(&l->rx, l->in + off, l->in_len - off, &h, &used, &need, &e);
            if (rc == SK_AGAIN)
                break;
            if (rc != SK_OK) {
                snprintf(why, sizeof why, "refused a frame of the secondary: %s", e.reason);
                stop = true;
                break;
            }
            skp_answer a;
            if (skp_answer_decode(h.type, h.flags, l->in + off + SK_HEADER_SIZE, h.length, &a, &e) != SK_OK) {
                snprintf(why, sizeof why, "refused a frame of the secondary: %s", e.reason);
                stop = true;
                break;
            }
            off += used;
            pthread_mutex_lock(&l->mu);
            if (l->lost) {
                pthread_mutex_unlock(&l->mu);
                stop = true;
                break;
            }
            switch (a.kind) {
            case SKP_A_ACK: {
                uint64_t f = l->first_wire;
                if (a.received + 1 < f || a.applied + 1 < f || a.durable + 1 < f ||
                    skp_ack(&l->w, (uint64_t)((int64_t)a.received - l->delta),
                            (uint64_t)((int64_t)a.applied - l->delta), (uint64_t)((int64_t)a.durable - l->delta),
                            now()) != 0) {
                    snprintf(why, sizeof why, "impossible ACK %llu/%llu/%llu from the secondary",
                             (unsigned long long)a.received, (unsigned long long)a.applied,
                             (unsigned long long)a.durable);
                    skp_lose_locked(l, why);
                    stop = true;
                }
                free_marks_upto(l, l->w.applied);
                wake_acked_locked(l);
                break;
            }
            case SKP_A_ERROR:
                snprintf(why, sizeof why, "the secondary failed: %s", a.reason);
                skp_log(SKP_ERROR, "%s (errno %u, frame %llu)", why, a.err_errno, (unsigned long long)a.err_seq);
                skp_lose_locked(l, why);
                stop = true;
                break;
            case SKP_A_MANIFEST: {
                /* kept whole for the resynchronisation; the secondary is working: not a stall */
                struct mchunk *c = malloc(sizeof *c + h.length);
                if (!c) {
                    skp_lose_locked(l, "out of memory for the secondary's manifest");
                    stop = true;
                    break;
                }
                c->next = NULL;
                c->answer = l->manifests_done;
                c->len = h.length;
                memcpy(c->p, l->in + off - used + SK_HEADER_SIZE, h.length);
                if (l->mchunks_tail)
                    l->mchunks_tail->next = c;
                else
                    l->mchunks = c;
                l->mchunks_tail = c;
                l->w.progress_at = now();
                if (a.last)
                    l->manifests_done++;
                skp_wake_all_locked(l);
                break;
            }
            case SKP_A_BYE:
                skp_lose_locked(l, "the secondary ended the session");
                stop = true;
                break;
            default:
                break;
            }
            pthread_mutex_unlock(&l->mu);
            if (stop)
                break;
        }
        if (!stop) {
            memmove(l->in, l->in + off, l->in_len - off);
            l->in_len -= off;
            if (l->in_high > IN_KEEP && l->in_len <= IN_KEEP) {
                sk_pages_release(l->in, IN_KEEP, l->in_high);
                l->in_high = l->in_len;
            }
            size_t want = IN_CAP - l->in_len;
            if (want > (256u << 10))
                want = 256u << 10;
            ssize_t n = recv(l->fd, l->in + l->in_len, want, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n > 0) {
                l->in_len += (size_t)n;
                if (l->in_len > l->in_high)
                    l->in_high = l->in_len;
                continue;
            }
            if (n == 0)
                snprintf(why, sizeof why, "the secondary closed the connection");
            else
                snprintf(why, sizeof why, "connection lost: %s", strerror(errno));
        }
        pthread_mutex_lock(&l->mu);
        skp_lose_locked(l, why[0] ? why : "connection closed");
        pthread_mutex_unlock(&l->mu);
        return NULL;
    }
}

/* A resynchronisation frame (under mu; the caller decides when: with the front paused, for
 * what must be read and queued at one point of the order). Its ticket, 0 if the session is lost. */
uint64_t skp_queue_sync_locked(struct skp_link *l, uint32_t dir, uint8_t type, uint16_t flags, const uint8_t *payload, size_t len,
                               size_t data_len)
{
    if (l->lost || !l->in_session)
        return 0;
    struct item *it = item_alloc(l, len);
    if (!it) {
        skp_lose_locked(l, "out of memory");
        return 0;
    }
    if (len)
        memcpy(it->payload, payload, len);
    return skp_queue_item_locked(l, dir, type, flags, it, len, data_len);
}

struct item *skp_item_new(struct skp_link *l, size_t len)
{
    return item_alloc(l, len);
}

void skp_item_drop(struct skp_link *l, struct item *it)
{
    item_free(l, it);
}

uint64_t skp_queue_item_locked(struct skp_link *l, uint32_t dir, uint8_t type, uint16_t flags, struct item *it, size_t len,
                               size_t data_len)
{
    if (l->lost || !l->in_session) {
        item_free(l, it);
        return 0;
    }
    uint64_t ticket = skp_sync_op(&l->w, len, now());
    if (!ticket) {
        item_free(l, it);
        skp_lose_locked(l, "out of memory");
        return 0;
    }
    it->ticket = ticket;
    it->type = type;
    it->flags = flags;
    it->dir = dir;
    it->len = len;
    enqueue(l, it);
    l->data_bytes += data_len;
    return ticket;
}


/* The resync mode of a session: full when asked; journal when the secondary follows this history,
 * this journal is complete (no crash) and the secondary's copy is what it applied. */
static int choose_mode(struct skp_link *l, const sk_hello_peer *peer)
{
    if (l->fullsync_requested || peer->fullsync)
        return SKP_MODE_FULL;
    if (strcmp(peer->epoch, l->journal.epoch) == 0 && l->journal.trusted && peer->trusted)
        return SKP_MODE_JOURNAL;
    return SKP_MODE_CHECKSUM;
}

/* Start the stream at one point of the front's order: SYNC_BEGIN queued and the journal taken
 * for reintegration while no change can happen. 0, or -1 (not allowed now). */
static int begin_stream(struct skp_link *l, uint64_t first_wire, int mode)
{
    if (l->cfg.pause)
        l->cfg.pause(l->cfg.hook_arg);
    pthread_mutex_lock(&l->mu);
    int rc = -1;
    if (l->stopping || skp_session_start(&l->w, now()) != 0)
        goto out;
    l->in_session = true;
    l->lost = false;
    l->lost_reason[0] = '\0';
    l->lost_event = SKP_EV_NONE;
    l->session++;
    l->first_wire = first_wire;
    l->delta = (int64_t)first_wire - (int64_t)l->w.first;
    skp_free_chunks(l);
    l->manifests_asked = l->manifests_done = 0;
    l->sync_started = now();
    l->mode = mode;
    l->progress_done = l->progress_total = 0;
    l->data_bytes = 0;
    l->sync_end_ticket = 0;
    /* everything before this point is in j0 (to reintegrate), everything after is streamed */
    if (skp_journal_take(&l->journal, &l->j0) != 0) {
        skp_lose_locked(l, "out of memory");
        goto out;
    }
    l->have_j0 = true;
    l->j0_done = false;
    l->fullsync_requested = false;
    atomic_store(&l->streaming, true);
    uint8_t buf[64];
    size_t len;
    skp_sync_begin((uint8_t)mode, buf, sizeof buf, &len);
    control_locked(l, SK_T_SYNC_BEGIN, 0, buf, len);
    /* checksum, full: each directory's manifest (without checksums) is asked for right behind
     * SYNC_BEGIN, so that it describes the copy as this session found it. Asked later (when the
     * pass reaches the directory), it would describe a copy that live operations had already
     * changed - a write and its times (SETATTR at close) applied over content still missing
     * changes made while the secondary was away - and the quick check (same size and time: the
     * same file) would then skip a file that differs. */
    if (mode != SKP_MODE_JOURNAL) {
        uint8_t req[16];
        size_t rlen;
        int n = l->cfg.ndirs > 0 ? l->cfg.ndirs : 1;
        if (sk_manifest_req_encode(SK_SUMS_NONE, NULL, 0, req, sizeof req, &rlen, NULL) != SK_OK) {
            skp_lose_locked(l, "cannot encode the manifest request");
        } else {
            l->first_manifest = l->manifests_asked;
            for (int d = 0; d < n && !l->lost; d++)
                skp_ask_manifest_locked(l, (uint32_t)d, req, rlen, false);
        }
    }
    rc = l->lost ? -1 : 0;
out:
    pthread_mutex_unlock(&l->mu);
    if (l->cfg.resume)
        l->cfg.resume(l->cfg.hook_arg);
    return rc;
}

/* What the link thread has to do next (under mu): -1 the session ended; 0 send the batch in
 * *batch (may be NULL: nothing, wait). */
static int next_step(struct skp_link *l, struct item **batch, double *last_ping)
{
    *batch = NULL;
    if (l->lost)
        return -1;
    double t = now();
    if (skp_stalled(&l->w, t)) {
        char why[128];
        snprintf(why, sizeof why, "no acknowledgement from the secondary within %g s (sendtimeout)",
                 l->cfg.sendtimeout);
        skp_lose_locked(l, why);
        return -1;
    }
    if (l->head) {
        /* up to BATCH_BYTES of payload per send */
        struct item *first = l->head, *it = first;
        size_t bytes = it->len;
        while (it->next && bytes + it->next->len <= BATCH_BYTES) {
            it = it->next;
            bytes += it->len;
        }
        l->head = it->next;
        if (!l->head)
            l->tail = NULL;
        it->next = NULL;
        *batch = first;
        l->queued_bytes -= bytes;
        if (l->state_waiters) /* submits waiting for room in the queue */
            pthread_cond_broadcast(&l->cv_state);
        return 0;
    }
    if (skp_idle(&l->w) && t - *last_ping >= PING_INTERVAL) {
        *last_ping = t;
        control_locked(l, SK_T_PING, SK_F_ACK, NULL, 0);
        return 0;
    }
    wait_for(&l->cv_send, &l->mu, 0.1);
    return 0;
}

/* Seal and send one batch. 0, or -1 (the session is lost).
 *
 * Small frames are sealed one after the other into `out`. A payload of SEAL_IN_PLACE_MIN bytes or
 * more (a live write of 64 KiB and up, a resynchronisation's data frame) is sealed where it lies,
 * in its item (the header in frame_head before it, the tag after it: AES-GCM and ChaCha20-Poly1305
 * encrypt in place), and the batch goes in one sendmsg of the pieces in order: a 1 MiB write is no
 * longer copied a second time, from its item into `out`, before the kernel copies it into the
 * socket (ADR 0044). The bytes on the wire are the same. */
#define SEAL_IN_PLACE_MIN (64u << 10)
#define SEND_PIECES 64
static int send_batch(struct skp_link *l, struct item *batch)
{
    char why[300] = "";
    size_t pos = 0;
    int rc = 0;
    uint64_t frames = 0, bytes = 0;
    struct iovec piece[SEND_PIECES];
    int npieces = 0;
    bool last_in_out = false; /* the last piece is in `out`: the next frame sealed there extends it */
    for (struct item *it = batch; it && rc == 0; it = it->next) {
        sk_err e = {0, ""};
        sk_iov iov = {it->payload, it->len};
        size_t flen;
        uint64_t seq;
        /* room for this piece and a piece of `out` after it */
        bool in_place = it->len >= SEAL_IN_PLACE_MIN && npieces + 2 <= SEND_PIECES;
        uint8_t *dst = in_place ? it->frame_head : l->out + pos;
        size_t cap = in_place ? sk_frame_size(it->len) : OUT_CAP - pos;
        if (sk_tx_seal(&l->tx, it->type, it->flags, it->dir, &iov, 1, dst, cap, &flen, &seq, &e) != SK_OK) {
            snprintf(why, sizeof why, "sealing %s: %s", sk_type_name(it->type), e.reason);
            rc = -1;
            break;
        }
        if ((int64_t)seq != (int64_t)it->ticket + l->delta) {
            snprintf(why, sizeof why, "internal error: frame %llu sealed as %llu", (unsigned long long)it->ticket,
                     (unsigned long long)seq);
            rc = -1;
            break;
        }
        if (in_place) {
            piece[npieces++] = (struct iovec){dst, flen};
            last_in_out = false;
        } else {
            if (last_in_out)
                piece[npieces - 1].iov_len += flen;
            else
                piece[npieces++] = (struct iovec){dst, flen};
            last_in_out = true;
            pos += flen;
        }
        frames++;
        bytes += it->len;
    }
    if (rc == 0 && send_iov_all(l, piece, npieces, why, sizeof why) != 0)
        rc = -1;
    while (batch) { /* after the send: the large frames were sent from their items */
        struct item *next = batch->next;
        item_free(l, batch);
        batch = next;
    }
    pthread_mutex_lock(&l->mu);
    if (rc != 0)
        skp_lose_locked(l, why[0] ? why : "connection lost");
    l->frames_sent += frames;
    l->bytes_sent += bytes;
    pthread_mutex_unlock(&l->mu);
    return rc;
}

static void session(struct skp_link *l)
{
    char why[600] = "";
    int fd = connect_to(&l->cfg, why, sizeof why);
    if (fd < 0) {
        if (why[0])
            skp_log(SKP_WARNING, "replication link: %s", why);
        return;
    }
    pthread_mutex_lock(&l->mu);
    l->fd = fd;
    uint64_t first_wire = l->w.last + 1; /* continues the history: the next ticket's number */
    pthread_mutex_unlock(&l->mu);
    sk_hello_peer peer;
    if (handshake(l, first_wire, &peer, why, sizeof why) != 0) {
        skp_log(SKP_WARNING, "replication link: %s", why);
        skp_emit_disconnected(why);
        pthread_mutex_lock(&l->mu);
        l->fd = -1;
        pthread_mutex_unlock(&l->mu);
        close(fd);
        return;
    }
    pthread_mutex_lock(&l->mu);
    int mode = choose_mode(l, &peer);
    l->peer_in_sync = peer.in_sync;
    pthread_mutex_unlock(&l->mu);
    if (begin_stream(l, first_wire, mode) != 0) {
        pthread_mutex_lock(&l->mu);
        l->in_session = false;
        l->fd = -1;
        pthread_mutex_unlock(&l->mu);
        sk_tx_free(&l->tx);
        sk_rx_free(&l->rx);
        close(fd);
        return;
    }
    skp_log(SKP_INFO, "resynchronising the secondary (%s)", mode_name(mode));
    skp_emit_resyncing(mode_name(mode));
    bool receiving = pthread_create(&l->receiver, NULL, receiver_main, l) == 0;
    if (!receiving)
        skp_link_lose(l, "cannot start the receiver thread");
    bool resyncing = receiving && pthread_create(&l->resync, NULL, skp_resync_main, l) == 0;
    if (receiving && !resyncing)
        skp_link_lose(l, "cannot start the resynchronisation thread");
    double last_ping = now();
    for (;;) {
        struct item *batch;
        pthread_mutex_lock(&l->mu);
        int step = next_step(l, &batch, &last_ping);
        pthread_mutex_unlock(&l->mu);
        if (step < 0)
            break;
        if (batch && send_batch(l, batch) != 0)
            break;
    }
    if (resyncing)
        pthread_join(l->resync, NULL);
    if (receiving)
        pthread_join(l->receiver, NULL);
    pthread_mutex_lock(&l->mu);
    int ev = l->lost_event;
    bool quiet = l->stopping;
    snprintf(why, sizeof why, "%s", l->lost_reason[0] ? l->lost_reason : "connection closed");
    l->in_session = false;
    l->fd = -1;
    free_queue(l);
    skp_free_chunks(l);
    if (l->have_j0) {
        skp_journal_free(&l->j0);
        l->have_j0 = false;
    }
    pthread_mutex_unlock(&l->mu);
    close(fd);
    sk_tx_free(&l->tx);
    sk_rx_free(&l->rx);
    if (quiet) {
        skp_log(SKP_INFO, "replication link closed: %s", why);
    } else if (ev == SKP_EV_DEGRADED) {
        skp_log(SKP_WARNING, "replication lost while in sync (%s): the secondary's copy is stale from now on", why);
        skp_emit_degraded(why);
    } else {
        skp_log(SKP_WARNING, "replication link: %s", why);
        skp_emit_disconnected(why);
    }
}

static void *link_main(void *arg)
{
    struct skp_link *l = arg;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        while (!l->stopping && (l->no_retry || !skp_may_connect(&l->w)))
            state_wait_for(l, 1.0);
        bool stop = l->stopping;
        pthread_mutex_unlock(&l->mu);
        if (stop)
            break;
        session(l);
        pthread_mutex_lock(&l->mu);
        if (!l->stopping)
            state_wait_for(l, l->cfg.connect_interval);
        pthread_mutex_unlock(&l->mu);
    }
    return NULL;
}

/* ------------------------------------------------------------------ life */

struct skp_link *skp_link_open(const skp_link_config *cfg)
{
    struct skp_link *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->cfg = *cfg;
    l->fd = -1;
    l->generation = cfg->generation;
    l->out = malloc(OUT_CAP);
    l->in = malloc(IN_CAP);
    uint64_t ops = cfg->window_ops ? cfg->window_ops : 65536;
    if (!l->out || !l->in ||
        skp_window_init(&l->w, cfg->window_bytes ? cfg->window_bytes : (64u << 20), ops, cfg->async_none,
                        cfg->sendtimeout > 0 ? cfg->sendtimeout : 30.0) != 0) {
        free(l->out);
        free(l->in);
        free(l);
        return NULL;
    }
    if (skp_journal_init(&l->journal, cfg->epoch, false) != 0) {
        skp_window_free(&l->w);
        free(l->out);
        free(l->in);
        free(l);
        return NULL;
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_mutex_init(&l->pool_mu, NULL);
    pthread_mutex_init(&l->join_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cv_state, &ca);
    pthread_cond_init(&l->cv_send, &ca);
    l->cattr = ca;
    atomic_init(&l->streaming, false);
    return l;
}

int skp_link_start(struct skp_link *l)
{
    int err = pthread_create(&l->thread, NULL, link_main, l);
    if (err)
        return -err;
    l->thread_up = true;
    return 0;
}

void skp_link_stop(struct skp_link *l, double flush_seconds)
{
    pthread_mutex_lock(&l->mu);
    if (!l->stopping) {
        l->stopping = true;
        if (l->in_session && !l->lost && l->w.state == SKP_IN_SYNC && flush_seconds > 0) {
            /* leave the secondary with everything (every acknowledged write is there already:
             * this is for the writes nobody synced); a role change must not wait long */
            uint64_t bye = control_locked(l, SK_T_BYE, SK_F_ACK, NULL, 0);
            double deadline = now() + flush_seconds;
            while (bye && !l->lost && l->w.applied + 1 < bye && now() < deadline)
                state_wait_for(l, deadline - now());
        }
        skp_close(&l->w);
        skp_lose_locked(l, "stopping");
        if (l->fd >= 0)
            shutdown(l->fd, SHUT_RDWR); /* a handshake in progress */
        skp_wake_all_locked(l);
        pthread_cond_broadcast(&l->cv_send);
    }
    pthread_mutex_unlock(&l->mu);
    pthread_mutex_lock(&l->join_mu); /* stop may come from two threads at once */
    if (l->thread_up) {
        pthread_join(l->thread, NULL);
        l->thread_up = false;
    }
    pthread_mutex_unlock(&l->join_mu);
}

void skp_link_free(struct skp_link *l)
{
    if (!l)
        return;
    skp_link_stop(l, 0);
    free_queue(l);
    free_marks_upto(l, UINT64_MAX);
    skp_free_chunks(l);
    skp_journal_free(&l->journal);
    if (l->have_j0)
        skp_journal_free(&l->j0);
    skp_window_free(&l->w);
    for (int k = 0; k < SKP_POOL_CLASSES; k++) {
        while (l->pool[k]) {
            struct item *it = l->pool[k];
            l->pool[k] = it->next;
            free(it);
        }
    }
    pthread_mutex_destroy(&l->pool_mu);
    pthread_cond_destroy(&l->cv_state);
    pthread_condattr_destroy(&l->cattr);
    pthread_cond_destroy(&l->cv_send);
    pthread_mutex_destroy(&l->mu);
    pthread_mutex_destroy(&l->join_mu);
    OPENSSL_cleanse(l->cfg.key, sizeof l->cfg.key);
    free(l->out);
    free(l->in);
    free(l);
}
