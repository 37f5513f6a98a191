/* The secondary's replication process (see secondary.h and README.md).
 *
 * One thread, one poll loop: safekitd's commands (stdin), the listening socket, the current session
 * and at most one candidate connection still in its handshake. A candidate replaces the session only
 * once its HELLO_DONE proved it holds the cluster key for a fresh transcript, so a forged or replayed
 * handshake never disturbs the session. Frames are opened in place in one receive buffer (the largest
 * frame: 8 MiB + 40 bytes, allocated once) and applied in order; nothing of a frame that fails is
 * applied, and a refused frame ends the session. */
#include "secondary.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "apply.h"
#include "channel.h"
#include "config.h"
#include "manifest.h"
#include "mounts.h"
#include "sk_frame.h"
#include "sk_hello.h"
#include "sk_ops.h"
#include "sk_wire.h"
#include "splitbrain.h"
#include "state.h"

extern char **environ;

#define RECV_CAP (SK_FRAME_OVERHEAD + SK_MAX_PAYLOAD)
#define RECV_STEP (1u << 20)    /* a live 1 MiB WRITE or a resynchronisation's batch in one read */
#define RECV_BUDGET (16u << 20) /* read and applied per turn of the poll loop */
#define CAND_CAP (2 * SK_HELLO_OUT_MAX)
#define STDIN_MAX (1u << 20)
#define REASON_MAX 1200
#define STEP_OUT_MAX (64u << 10)
#define STEP_STOP_SECONDS 10
/* Frames this side sends: ACK and ERROR through the session's send buffer (TX_CAP, kept), MANIFEST
 * chunks (up to 3 MiB) through a buffer made for each MANIFEST_REQ and freed after it: a `verify` or
 * a checksum pass leaves nothing of its size resident (ADR 0044). */
#define TX_CAP (SK_FRAME_OVERHEAD + SK_ERROR_REASON_MAX + 4096)
#define MANIFEST_FRAME_CAP \
    (SK_FRAME_OVERHEAD + SKS_MANIFEST_CHUNK + (size_t)SKS_SUMS_PER_ENTRY * SK_SUM_SIZE + 3 * 4096 + 64)

typedef struct candidate {
    int fd;
    char peer[64];
    sk_hello hs;
    uint8_t buf[CAND_CAP];
    size_t len;
    double deadline;
} candidate;

typedef struct session {
    int fd;
    sk_tx tx;
    sk_rx rx;
    bool async_none;
    uint64_t received, applied, durable, acked, unacked_bytes;
    char epoch[SK_NAME_MAX + 1];
} session;

typedef struct secondary {
    const char *spec_path;
    sks_spec spec;
    uint8_t key[SKS_KEY_SIZE];
    char state_path[SKS_PATH + 32];
    sks_state st;
    bool trusted;
    int *dir_fds;
    sks_excl *excl;
    sks_replica rep;
    int listen_fd;
    bool stopping;
    bool stdin_open;
    char *stdin_buf;
    size_t stdin_len;
    candidate cand;
    session sess;
    uint8_t *rbuf; /* the session's receive buffer, RECV_CAP bytes */
    size_t rlen;
    uint8_t *tbuf; /* ACK and ERROR frames this side sends (TX_CAP) */
    size_t tcap;
    /* the mounts over the directories: state.mounts as read, then the read-only binds made */
    sks_mkey *recorded, *made;
    int nrecorded, nmade;
    bool binding; /* the binds were begun: `made` is what state.mounts holds */
    /* the split-brain steps (Python children) */
    pid_t save_pid, annotate_pid;
    int save_fd;
    char *save_out; /* what the save step printed (its result line), STEP_OUT_MAX */
    size_t save_len;
    char sb_dir[SKS_PATH];
    bool failed; /* the process ends with `fail_why` (failed event, exit code 1) */
    char fail_why[REASON_MAX];
} secondary;

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *mode_name(uint8_t mode)
{
    return mode == SK_SYNC_JOURNAL ? "journal" : mode == SK_SYNC_CHECKSUM ? "checksum" : mode == SK_SYNC_FULL ? "full" : "";
}

static bool save_state(secondary *s)
{
    char why[512];
    if (sks_state_save(s->state_path, &s->st, why, sizeof why))
        return true;
    sks_log(SKS_ERROR, "%s", why);
    return false;
}

/* ------------------------------------------------------------------ sending */

static int send_all(int fd, const uint8_t *p, size_t n)
{
    double deadline = now() + SKS_SEND_TIMEOUT_MS / 1000.0;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        double left = deadline - now();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd pfd = {fd, POLLOUT, 0};
        poll(&pfd, 1, (int)(left * 1000) + 1);
    }
    return 0;
}

/* Seal and send one frame of this side. */
/* Seals a frame into `buf` (cap bytes) and sends it. */
static int seal_and_send(secondary *s, uint8_t *buf, size_t cap, uint8_t type, uint16_t flags, uint32_t dir,
                         const uint8_t *payload, size_t len, char *why, size_t wcap)
{
    sk_err e = {0, ""};
    sk_iov iov = {payload, len};
    size_t flen;
    if (sk_frame_size(len) > cap) {
        snprintf(why, wcap, "internal error: a %zu-byte frame does not fit the send buffer", len);
        return -1;
    }
    int rc = sk_tx_seal(&s->sess.tx, type, flags, dir, &iov, 1, buf, cap, &flen, NULL, &e);
    if (rc != SK_OK) {
        snprintf(why, wcap, "could not seal %s: %s", sk_type_name(type), e.reason);
        return -1;
    }
    rc = send_all(s->sess.fd, buf, flen);
    if (rc < 0) {
        snprintf(why, wcap, "connection lost: %s", strerror(-rc));
        return -1;
    }
    return 0;
}

/* ACK and ERROR, through the session's small send buffer. */
static int send_frame(secondary *s, uint8_t type, uint16_t flags, uint32_t dir, const uint8_t *payload, size_t len,
                      char *why, size_t wcap)
{
    return seal_and_send(s, s->tbuf, s->tcap, type, flags, dir, payload, len, why, wcap);
}

static int send_ack(secondary *s, char *why, size_t wcap)
{
    session *c = &s->sess;
    sk_ack a = {c->received, c->applied, c->durable};
    uint8_t p[SK_ACK_SIZE];
    size_t len;
    if (sk_ack_encode(&a, p, sizeof p, &len, NULL) != SK_OK) {
        snprintf(why, wcap, "internal error: ACK %lu/%lu/%lu", (unsigned long)a.received, (unsigned long)a.applied,
                 (unsigned long)a.durable);
        return -1;
    }
    if (send_frame(s, SK_T_ACK, 0, 0, p, len, why, wcap) != 0)
        return -1;
    c->acked = c->applied;
    c->unacked_bytes = 0;
    return 0;
}

static int maybe_ack(secondary *s, bool force, char *why, size_t wcap)
{
    if (s->sess.applied == s->sess.acked && !force)
        return 0;
    return send_ack(s, why, wcap);
}

/* ------------------------------------------------------------------ session end */

static void end_session(secondary *s, const char *reason, bool report)
{
    session *c = &s->sess;
    if (c->fd < 0)
        return;
    if (report) {
        sks_log(SKS_WARNING, "replication connection closed: %s", reason);
        sks_emit_disconnected(reason);
    }
    close(c->fd);
    c->fd = -1;
    sk_tx_free(&c->tx);
    sk_rx_free(&c->rx);
    s->rlen = 0;
    s->rep.lenient = false;
}

static void end_candidate(secondary *s)
{
    if (s->cand.fd >= 0)
        close(s->cand.fd);
    s->cand.fd = -1;
    s->cand.len = 0;
    sk_hello_wipe(&s->cand.hs);
}

/* ------------------------------------------------------------------ applying */

/* An operation could not be applied: the copy no longer follows. Record it, tell safekitd and the
 * primary (ERROR), and end the session (the caller does, with `why`). */
static void apply_failed(secondary *s, const sk_header *h, const sk_op *op, int err, char *why, size_t wcap)
{
    char what[600];
    int plen = (int)(op->path.len > 400 ? 400 : op->path.len);
    snprintf(what, sizeof what, "%s '%.*s'", sks_op_name(op->type), plen, (const char *)op->path.ptr);
    if (err == ENOSPC)
        snprintf(why, wcap, "the secondary's disk is full (%s): this node leaves sync; free space, it resyncs", what);
    else
        snprintf(why, wcap, "could not apply %s on the secondary: %s", what, strerror(err));
    sks_log(SKS_ERROR, "%s", why);
    s->st.in_sync = false;
    if (!save_state(s))
        sks_log(SKS_ERROR, "could not record leaving sync");
    sks_emit_error(why, err);
    sk_error_msg m = {h->seq, (uint32_t)err, sk_bytes_str(why)};
    uint8_t p[SK_ERROR_REASON_MAX + 64];
    size_t len;
    char ignored[256];
    if (sk_error_encode(&m, p, sizeof p, &len, NULL) == SK_OK)
        send_frame(s, SK_T_ERROR, 0, 0, p, len, ignored, sizeof ignored);
}

typedef struct manifest_ctx {
    secondary *s;
    uint32_t dir;
    uint8_t *frame; /* the MANIFEST frames' buffer, MANIFEST_FRAME_CAP bytes, for this request only */
    char *why;
    size_t wcap;
} manifest_ctx;

static int manifest_chunk(void *ctx, const uint8_t *payload, size_t len, bool last)
{
    manifest_ctx *m = ctx;
    return seal_and_send(m->s, m->frame, MANIFEST_FRAME_CAP, SK_T_MANIFEST, last ? SK_F_LAST : 0, m->dir, payload,
                         len, m->why, m->wcap)
               ? 1
               : 0;
}

static void start_annotate(secondary *s);

/* One frame of the session (opened, in order). 0: go on; -1: end the session with `why`. */
static int handle_frame(secondary *s, const sk_header *h, const uint8_t *payload, char *why, size_t wcap)
{
    session *c = &s->sess;
    sk_err e = {0, ""};
    c->received = h->seq;
    if (sk_type_is_applied(h->type)) {
        sk_op op;
        if (sk_op_decode(h->type, h->flags, payload, h->length, &op, &e) != SK_OK) {
            snprintf(why, wcap, "refused %s frame %lu: %s", sk_type_name(h->type), (unsigned long)h->seq, e.reason);
            return -1;
        }
        int rc = 0;
        bool synced = false;
        if (op.type == SK_T_FSYNC) {
            if (c->async_none) { /* async="second": acknowledged when applied, no fsync here */
                rc = sks_replica_fsync(&s->rep, h->dir, op.path, op.datasync);
                if (rc == -ENOENT && s->rep.lenient)
                    rc = 0; /* not on the copy yet: the resync sends it whole */
                synced = rc == 0;
            }
        } else {
            rc = sks_replica_apply(&s->rep, h->dir, &op);
        }
        if (rc < 0) {
            apply_failed(s, h, &op, -rc, why, wcap);
            return -1;
        }
        c->applied = h->seq;
        if (!c->async_none || synced)
            c->durable = h->seq;
        c->unacked_bytes += h->length;
        if (h->flags & SK_F_ACK)
            return maybe_ack(s, true, why, wcap);
        if (c->applied - c->acked >= SKS_ACK_EVERY_OPS || c->unacked_bytes >= SKS_ACK_EVERY_BYTES)
            return maybe_ack(s, false, why, wcap);
        return 0;
    }
    bool durable_now = !c->async_none;
    switch (h->type) {
    case SK_T_SYNC_BEGIN: {
        uint8_t mode;
        if (sk_sync_begin_decode(payload, h->length, &mode, &e) != SK_OK)
            goto malformed;
        s->st.in_sync = false;
        if (!save_state(s)) { /* durable before the copy stops being a prefix */
            snprintf(why, wcap, "could not record leaving sync before the resynchronisation: %s", strerror(errno));
            return -1;
        }
        s->rep.lenient = true;
        sks_log(SKS_INFO, "resynchronisation (%s) from the primary", mode_name(mode));
        sks_emit_resyncing(mode_name(mode));
        break;
    }
    case SK_T_SYNC_END: {
        uint64_t generation;
        if (sk_sync_end_decode(payload, h->length, &generation, &e) != SK_OK)
            goto malformed;
        int rc = sks_replica_sync_all(&s->rep);
        if (rc < 0) {
            sk_op op = {.type = SK_T_FSYNC};
            apply_failed(s, h, &op, -rc, why, wcap);
            return -1;
        }
        s->rep.lenient = false;
        s->st.in_sync = true;
        s->st.generation = (int64_t)generation;
        s->st.applied_seq = h->seq;
        /* the last split-brain save is complete once its manifest says what the winner has */
        char phase[16];
        char *saved = NULL;
        if (sks_sb_str(s->st.splitbrain, "phase", phase, sizeof phase) && strcmp(phase, "saved") == 0 &&
            sks_sb_str(s->st.splitbrain, "dir", s->sb_dir, sizeof s->sb_dir)) {
            saved = s->st.splitbrain;
            s->st.splitbrain = NULL;
        }
        if (!save_state(s)) {
            snprintf(why, wcap, "could not record the end of the resynchronisation: %s", strerror(errno));
            s->st.in_sync = false;
            if (saved)
                s->st.splitbrain = saved;
            return -1;
        }
        bool annotate = saved != NULL;
        free(saved);
        durable_now = true;
        sks_emit_in_sync((int64_t)generation);
        sks_log(SKS_INFO, "copy in sync with the primary (generation %lu)", (unsigned long)generation);
        if (annotate)
            start_annotate(s);
        break;
    }
    case SK_T_MANIFEST_REQ: {
        sk_manifest_req req;
        if (sk_manifest_req_decode(payload, h->length, &req, &e) != SK_OK)
            goto malformed;
        manifest_ctx m = {s, h->dir, malloc(MANIFEST_FRAME_CAP), why, wcap};
        if (!m.frame) {
            snprintf(why, wcap, "out of memory for the manifest of directory #%u", h->dir);
            return -1;
        }
        uint64_t entries = 0;
        double began = now();
        int rc = sks_manifest(s->dir_fds[h->dir], s->rep.walk_only, &s->excl[h->dir], &req, 0, manifest_chunk, &m,
                              &entries);
        free(m.frame); /* mapped for the request, unmapped now (main.c's fixed mmap threshold) */
        if (rc > 0)
            return -1; /* sending failed: why is set */
        if (rc < 0) {
            snprintf(why, wcap, "could not make the manifest of directory #%u: %s", h->dir, strerror(-rc));
            return -1;
        }
        sks_log(SKS_INFO, "manifest of %lu entries in %.2f s (sums=%s)", (unsigned long)entries, now() - began,
                req.sums == SK_SUMS_ALL ? "all" : req.sums == SK_SUMS_PATHS ? "paths" : "none");
        break;
    }
    case SK_T_PING:
        break;
    case SK_T_PROGRESS: {
        sk_progress pr;
        if (sk_progress_decode(payload, h->length, &pr, &e) != SK_OK)
            goto malformed;
        int percent = 0;
        if (pr.total) {
            double v = 100.0 * (double)pr.done / (double)pr.total;
            percent = v >= 99 ? 99 : (int)v;
        }
        sks_emit_progress(percent);
        break;
    }
    case SK_T_BYE:
        c->applied = h->seq;
        if (durable_now)
            c->durable = h->seq;
        if (maybe_ack(s, true, why, wcap) != 0)
            return -1;
        snprintf(why, wcap, "the primary ended the session");
        return -1;
    default:
        snprintf(why, wcap, "unexpected %s from the primary", sk_type_name(h->type) ? sk_type_name(h->type) : "frame");
        return -1;
    }
    c->applied = h->seq;
    if (durable_now)
        c->durable = h->seq;
    return maybe_ack(s, (h->flags & SK_F_ACK) || h->type == SK_T_PING, why, wcap);
malformed:
    snprintf(why, wcap, "refused %s frame %lu: %s", sk_type_name(h->type), (unsigned long)h->seq, e.reason);
    return -1;
}

/* Open and handle every whole frame in the receive buffer, then (ack) acknowledge what was
 * applied. 0: need more bytes; -1: end (why). */
static int drain(secondary *s, bool ack, char *why, size_t wcap)
{
    size_t off = 0;
    int rc = 0;
    while (s->sess.fd >= 0) {
        sk_header h;
        size_t used, need;
        sk_err e = {0, ""};
        int o = sk_rx_open(&s->sess.rx, s->rbuf + off, s->rlen - off, &h, &used, &need, &e);
        if (o == SK_AGAIN)
            break;
        if (o != SK_OK) {
            snprintf(why, wcap, "%s", e.reason);
            rc = -1;
            break;
        }
        rc = handle_frame(s, &h, s->rbuf + off + SK_HEADER_SIZE, why, wcap);
        off += used;
        if (rc != 0)
            break;
    }
    if (rc == 0 && off) {
        memmove(s->rbuf, s->rbuf + off, s->rlen - off);
        s->rlen -= off;
    }
    /* Python's secondary acknowledges whatever it applied before it waits for more */
    if (rc == 0 && ack)
        rc = maybe_ack(s, false, why, wcap);
    return rc;
}

static void session_readable(secondary *s)
{
    char why[REASON_MAX] = "";
    /* Read and apply what the socket holds (at most RECV_BUDGET bytes, then the poll loop serves
     * stdin and the listener again), then acknowledge once before waiting for more: one ACK per
     * burst rather than per read (barriers, SYNC_END and PING are acknowledged at once, and every
     * SKS_ACK_EVERY_OPS operations or SKS_ACK_EVERY_BYTES bytes meanwhile). */
    size_t total = 0;
    while (s->sess.fd >= 0 && total < RECV_BUDGET) {
        /* What the frame being received needs, and at most RECV_STEP more: the buffer's pages are
         * touched only as far as the largest frame seen (RSS stays that of the workload, not 8 MiB). */
        size_t want = RECV_STEP;
        sk_header h;
        size_t frame_len;
        /* A large frame is read to its end and no further: it then ends the buffer, and drain()
         * has no bytes of the next frame to move to the front (a 1 MiB WRITE read in steps of
         * 1 MiB left most of the next one behind it: 1 MiB moved per frame, ADR 0061). */
        if (sk_frame_span(s->rbuf, s->rlen, &h, &frame_len, NULL) == SK_AGAIN && frame_len > s->rlen &&
            (frame_len - s->rlen > want || frame_len >= RECV_STEP / 2))
            want = frame_len - s->rlen;
        if (want > RECV_CAP - s->rlen)
            want = RECV_CAP - s->rlen;
        ssize_t n = recv(s->sess.fd, s->rbuf + s->rlen, want, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0) {
            snprintf(why, sizeof why, "connection lost: %s", strerror(errno));
            end_session(s, why, true);
            return;
        }
        if (n == 0) {
            end_session(s, "the primary closed the connection", true);
            return;
        }
        s->rlen += (size_t)n;
        total += (size_t)n;
        if (drain(s, false, why, sizeof why) != 0) {
            end_session(s, why, true);
            return;
        }
    }
    if (s->sess.fd >= 0 && maybe_ack(s, false, why, sizeof why) != 0)
        end_session(s, why, true);
}

/* ------------------------------------------------------------------ the handshake */

static void adopt(secondary *s)
{
    candidate *cd = &s->cand;
    sk_err e = {0, ""};
    if (s->sess.fd >= 0) {
        sks_log(SKS_INFO, "a new connection from the primary replaces the previous one");
        end_session(s, "a new connection from the primary replaces the previous one", true);
    }
    session *c = &s->sess;
    memset(c, 0, sizeof *c);
    c->fd = -1;
    if (sk_hello_session(&cd->hs, &c->tx, &c->rx, &e) != SK_OK) {
        sks_log(SKS_ERROR, "could not start the session: %s", e.reason);
        end_candidate(s);
        return;
    }
    c->fd = cd->fd;
    cd->fd = -1;
    c->async_none = cd->hs.peer.async_none;
    uint64_t first = cd->hs.peer.first_seq;
    c->received = c->applied = c->durable = c->acked = first - 1;
    snprintf(c->epoch, sizeof c->epoch, "%s", cd->hs.peer.epoch);
    memcpy(s->rbuf, cd->buf, cd->len); /* bytes after HELLO_DONE belong to the session */
    s->rlen = cd->len;
    end_candidate(s);
    if (strcmp(c->epoch, s->st.epoch) != 0) {
        /* another primary history from now on: whatever follows rewrites the copy */
        snprintf(s->st.epoch, sizeof s->st.epoch, "%s", c->epoch);
        s->st.in_sync = false;
        if (!save_state(s)) {
            end_session(s, "could not record the primary's new history", true);
            return;
        }
    }
    sks_emit_connected(s->spec.peer, c->epoch);
    sks_log(SKS_INFO, "replication connected with %s (epoch %s, from sequence %lu, async=%s)", s->spec.peer, c->epoch,
            (unsigned long)first, c->async_none ? "none" : "second");
    char why[REASON_MAX];
    if (s->rlen && drain(s, true, why, sizeof why) != 0)
        end_session(s, why, true);
}

static void refuse_candidate(secondary *s, const char *reason)
{
    sks_log(SKS_WARNING, "replication connection from %s refused: %s", s->cand.peer, reason);
    if (s->sess.fd < 0)
        sks_emit_disconnected(reason); /* a live session is not disturbed by a refused candidate */
    end_candidate(s);
}

static void candidate_readable(secondary *s)
{
    candidate *cd = &s->cand;
    sk_err e = {0, ""};
    ssize_t n = recv(cd->fd, cd->buf + cd->len, sizeof cd->buf - cd->len, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        if (n == 0)
            sk_hello_eof(&cd->hs, &e);
        else
            snprintf(e.reason, sizeof e.reason, "connection lost: %s", strerror(errno));
        refuse_candidate(s, n == 0 ? (e.reason[0] ? e.reason : "the primary closed the connection") : e.reason);
        return;
    }
    cd->len += (size_t)n;
    while (sk_hello_state(&cd->hs) != SK_HS_DONE) {
        uint8_t out[SK_HELLO_OUT_MAX];
        size_t used = 0, out_len = 0;
        int rc = sk_hello_receive(&cd->hs, cd->buf, cd->len, &used, out, sizeof out, &out_len, &e);
        if (rc == SK_AGAIN) {
            if (cd->len == sizeof cd->buf) {
                refuse_candidate(s, "handshake frame too large");
                return;
            }
            return;
        }
        if (rc != SK_OK) {
            refuse_candidate(s, e.reason);
            return;
        }
        memmove(cd->buf, cd->buf + used, cd->len - used);
        cd->len -= used;
        if (out_len && send_all(cd->fd, out, out_len) != 0) {
            refuse_candidate(s, "connection lost during the handshake");
            return;
        }
    }
    adopt(s);
}

static void accept_one(secondary *s)
{
    struct sockaddr_in addr;
    socklen_t alen = sizeof addr;
    int fd = accept4(s->listen_fd, (struct sockaddr *)&addr, &alen, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    char peer[64] = "?";
    inet_ntop(AF_INET, &addr.sin_addr, peer, sizeof peer);
    if (strcmp(peer, s->spec.peer_addr) != 0) {
        sks_log(SKS_WARNING, "refused a replication connection from %s (expected %s)", peer, s->spec.peer_addr);
        close(fd);
        return;
    }
    if (s->cand.fd >= 0) {
        sks_log(SKS_WARNING, "a replication connection from %s still in its handshake is replaced by a newer one",
                s->cand.peer);
        end_candidate(s);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    candidate *cd = &s->cand;
    sk_err e = {0, ""};
    uint8_t nonce[SK_HELLO_NONCE_SIZE];
    sk_hello_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.role = SK_ROLE_SECONDARY;
    cfg.cluster_key = s->key;
    cfg.cluster_key_len = sizeof s->key;
    cfg.module = s->spec.module;
    cfg.node = s->spec.node;
    cfg.peer = s->spec.peer;
    cfg.dirs = (uint32_t)s->spec.ndirs;
    cfg.epoch = s->st.epoch;
    cfg.trusted = s->trusted;
    cfg.in_sync = s->st.in_sync;
    cfg.fullsync = s->spec.fullsync;
    if (sk_hello_nonce(nonce, &e) != SK_OK || sk_hello_init(&cd->hs, &cfg, nonce, &e) != SK_OK) {
        sks_log(SKS_ERROR, "could not start a handshake: %s", e.reason);
        close(fd);
        return;
    }
    cd->fd = fd;
    cd->len = 0;
    cd->deadline = now() + SKS_HANDSHAKE_SECONDS;
    snprintf(cd->peer, sizeof cd->peer, "%s", peer);
}

/* ------------------------------------------------------------------ safekitd's commands */

static void stdin_readable(secondary *s)
{
    ssize_t n = read(0, s->stdin_buf + s->stdin_len, STDIN_MAX - s->stdin_len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        sks_log(SKS_INFO, "safekitd closed the control channel: stopping");
        s->stdin_open = false;
        s->stopping = true;
        return;
    }
    s->stdin_len += (size_t)n;
    char *start = s->stdin_buf;
    char *nl;
    while ((nl = memchr(start, '\n', s->stdin_len - (size_t)(start - s->stdin_buf))) != NULL) {
        *nl = '\0';
        char name[64];
        if (sks_command_name(start, (size_t)(nl - start), name, sizeof name) && strcmp(name, "stop") == 0)
            s->stopping = true;
        start = nl + 1;
    }
    s->stdin_len -= (size_t)(start - s->stdin_buf);
    memmove(s->stdin_buf, start, s->stdin_len);
    if (s->stdin_len == STDIN_MAX) {
        sks_log(SKS_WARNING, "a command line longer than %u bytes from safekitd: dropped", STDIN_MAX);
        s->stdin_len = 0;
    }
}

/* ------------------------------------------------------------------ split brain (rule 4) */

static bool name_taken(void *ctx, const char *name)
{
    char path[SKS_PATH + 64];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", (const char *)ctx, name);
    return lstat(path, &st) == 0;
}

/* Record a save to do (durably, with the rest of the state) when safekitd says this node stepped
 * down from a split brain (splitbrain.h: the save runs before the primary is served). */
static bool plan_splitbrain(secondary *s, char *why, size_t wcap)
{
    if (!s->spec.diverged_json)
        return true;
    char phase[16];
    if (sks_sb_str(s->st.splitbrain, "phase", phase, sizeof phase) && strcmp(phase, "saving") == 0)
        return true; /* an interrupted save of the same split: the journal still names everything */
    char base[SKS_PATH], name[64], target[SKS_PATH + 64];
    if (!sks_sb_base(s->spec.state_dir, base, sizeof base) ||
        !sks_sb_name(time(NULL), name_taken, base, name, sizeof name)) {
        snprintf(why, wcap, "split brain: no name for the save under %.900s", s->spec.state_dir);
        return false;
    }
    snprintf(target, sizeof target, "%s/%s", base, name);
    char *record = sks_sb_plan(s->spec.diverged_json, target, s->spec.peer);
    if (!record) {
        snprintf(why, wcap, "out of memory");
        return false;
    }
    free(s->st.splitbrain);
    s->st.splitbrain = record;
    s->st.in_sync = false;
    char peer[SKS_NAME];
    if (!sks_sb_str(record, "peer", peer, sizeof peer))
        snprintf(peer, sizeof peer, "%s", s->spec.peer);
    sks_log(SKS_WARNING,
            "split brain: %s stepped down; what it changed since the split is saved under %s before the "
            "resynchronisation from %s",
            s->spec.node, target, peer);
    return true;
}

/* `PYTHON -m safekit.rfs STEP SPEC [ARG]`, its stdout on `out_fd`, stdin /dev/null, the signals
 * this process blocks unblocked. */
static pid_t spawn_step(secondary *s, const char *step, const char *arg, int out_fd)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    posix_spawnattr_init(&at);
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGINT);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *argv[] = {s->spec.python, "-m", "safekit.rfs", (char *)step, (char *)s->spec_path, (char *)arg, NULL};
    pid_t pid = -1;
    int rc = posix_spawnp(&pid, s->spec.python, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return pid;
}

static void fail(secondary *s, const char *why)
{
    if (!s->failed)
        snprintf(s->fail_why, sizeof s->fail_why, "%.1100s", why);
    s->failed = true;
    s->stopping = true;
}

/* The save, before the primary is served (a connection waits in the listen queue meanwhile). */
static void start_save(secondary *s)
{
    char why[REASON_MAX];
    if (!sks_sb_str(s->st.splitbrain, "dir", s->sb_dir, sizeof s->sb_dir)) {
        fail(s, "split brain: the pending save in the state has no directory");
        return;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        snprintf(why, sizeof why, "split brain: could not start the save: %s", strerror(errno));
        fail(s, why);
        return;
    }
    s->save_pid = spawn_step(s, "splitbrain-save", NULL, p[1]);
    int err = errno;
    close(p[1]);
    if (s->save_pid < 0) {
        close(p[0]);
        s->save_pid = 0;
        snprintf(why, sizeof why, "split brain: could not start %.900s -m safekit.rfs splitbrain-save: %s",
                 s->spec.python, strerror(err));
        fail(s, why);
        return;
    }
    s->save_fd = p[0];
    s->save_len = 0;
    sks_log(SKS_INFO, "split brain: saving under %s (%s -m safekit.rfs splitbrain-save, pid %d)", s->sb_dir,
            s->spec.python, (int)s->save_pid);
}

/* The save step ended (status of waitpid): record the phase and tell safekitd, or fail. */
static void save_ended(secondary *s, int status)
{
    char why[REASON_MAX + 200];
    static const char prefix[] = "{\"event\":\"splitbrain\"";
    s->save_pid = 0;
    char *out = s->save_out;
    size_t n = s->save_len;
    bool one_line = n > sizeof prefix && memcmp(out, prefix, sizeof prefix - 1) == 0 && out[n - 1] == '\n' &&
                    memchr(out, '\n', n) == out + n - 1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && one_line) {
        char *record = sks_sb_with_phase(s->st.splitbrain, "saved");
        if (!record) {
            fail(s, "out of memory");
            return;
        }
        free(s->st.splitbrain);
        s->st.splitbrain = record;
        if (!save_state(s)) {
            snprintf(why, sizeof why, "could not save %.900s: %s", s->state_path, strerror(errno));
            fail(s, why);
            return;
        }
        sks_emit_line(out, n);
        return;
    }
    if (s->stopping) {
        sks_log(SKS_WARNING, "split brain: the save under %s was interrupted; it is done at the next start", s->sb_dir);
        return;
    }
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        n--;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 2 && n > 0) {
        snprintf(why, sizeof why, "%.*s", (int)(n > REASON_MAX ? REASON_MAX : n), out); /* Python's own reason */
    } else {
        char how[64];
        if (WIFEXITED(status))
            snprintf(how, sizeof how, "exit code %d", WEXITSTATUS(status));
        else
            snprintf(how, sizeof how, "signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        snprintf(why, sizeof why,
                 "split brain: the save under %.700s (%.200s -m safekit.rfs splitbrain-save) ended with %s: the "
                 "resynchronisation from %.200s waits until it succeeds (see the log)",
                 s->sb_dir, s->spec.python, how, s->spec.peer);
    }
    fail(s, why);
}

static void save_readable(secondary *s)
{
    char scratch[4096];
    char *dst = s->save_len < STEP_OUT_MAX ? s->save_out + s->save_len : scratch;
    size_t cap = s->save_len < STEP_OUT_MAX ? STEP_OUT_MAX - s->save_len : sizeof scratch;
    ssize_t r = read(s->save_fd, dst, cap);
    if (r < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (r > 0) {
        if (dst != scratch)
            s->save_len += (size_t)r;
        return;
    }
    close(s->save_fd); /* end of its output: it exits */
    s->save_fd = -1;
    int status = 0;
    while (waitpid(s->save_pid, &status, 0) < 0 && errno == EINTR)
        ;
    save_ended(s, status);
}

static void start_annotate(secondary *s)
{
    if (s->annotate_pid > 0)
        return;
    pid_t pid = spawn_step(s, "splitbrain-annotate", s->sb_dir, 2); /* it prints nothing on the channel */
    if (pid < 0) {
        sks_log(SKS_WARNING, "split brain: could not complete %s/manifest.json: %s -m safekit.rfs: %s", s->sb_dir,
                s->spec.python, strerror(errno));
        return;
    }
    s->annotate_pid = pid;
}

static void reap_annotate(secondary *s)
{
    int status;
    if (s->annotate_pid > 0 && waitpid(s->annotate_pid, &status, WNOHANG) == s->annotate_pid) {
        s->annotate_pid = 0;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            sks_log(SKS_WARNING, "split brain: completing %s/manifest.json failed (see the log)", s->sb_dir);
    }
}

/* At stop: a step still running is asked to stop (SIGTERM), then killed after STEP_STOP_SECONDS. An
 * interrupted save is redone at the next start (its state still says "saving"). */
static void stop_step(pid_t pid, int *status)
{
    kill(pid, SIGTERM);
    double deadline = now() + STEP_STOP_SECONDS;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return;
        if (now() > deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, status, 0) < 0 && errno == EINTR)
                ;
            return;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void stop_steps(secondary *s)
{
    int status = 0;
    if (s->save_pid > 0) {
        stop_step(s->save_pid, &status);
        if (s->save_fd >= 0)
            close(s->save_fd);
        s->save_fd = -1;
        s->save_pid = 0;
        sks_log(SKS_WARNING, "split brain: the save under %s was interrupted; it is done at the next start", s->sb_dir);
    }
    if (s->annotate_pid > 0) {
        stop_step(s->annotate_pid, &status);
        s->annotate_pid = 0;
    }
}

/* ------------------------------------------------------------------ start and stop */

static bool prepare(secondary *s, char *why, size_t wcap)
{
    umask(0);
    if (!sks_key_load(s->spec.key_file, s->key, why, wcap))
        return false;
    snprintf(s->state_path, sizeof s->state_path, "%s/%s", s->spec.state_dir, SKS_STATE_FILE);
    bool corrupt;
    if (!sks_state_load(s->state_path, &s->st, &corrupt, why, wcap))
        return false;
    if (corrupt)
        sks_log(SKS_WARNING, "%s is corrupt: the copy is treated as not in sync", s->state_path);
    s->nrecorded = sks_mkeys_parse(s->st.mounts, &s->recorded);
    if (s->nrecorded < 0) {
        s->nrecorded = 0;
        snprintf(why, wcap, "out of memory");
        return false;
    }
    s->dir_fds = calloc((size_t)s->spec.ndirs, sizeof *s->dir_fds);
    s->excl = calloc((size_t)s->spec.ndirs, sizeof *s->excl);
    if (!s->dir_fds || !s->excl) {
        snprintf(why, wcap, "out of memory");
        return false;
    }
    for (int i = 0; i < s->spec.ndirs; i++)
        s->dir_fds[i] = -1;
    uint64_t(*identity)[2] = calloc((size_t)s->spec.ndirs, sizeof *identity);
    if (!identity) {
        snprintf(why, wcap, "out of memory");
        return false;
    }
    for (int i = 0; i < s->spec.ndirs; i++) {
        const char *path = s->spec.dirs[i].path;
        /* what safekit stacked here before (a bind of ours, a dead FUSE mount), never looked through */
        if (sks_detach_ours(path, s->recorded, s->nrecorded, why, wcap) < 0) {
            free(identity);
            return false;
        }
        char tmp[SKS_PATH];
        snprintf(tmp, sizeof tmp, "%s", path);
        for (char *p = tmp + 1; *p; p++) {
            if (*p == '/') {
                *p = '\0';
                mkdir(tmp, 0755);
                *p = '/';
            }
        }
        mkdir(tmp, 0755);
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct stat st;
        struct statvfs vfs;
        if (fd < 0 || fstat(fd, &st) != 0 || fstatvfs(fd, &vfs) != 0) {
            snprintf(why, wcap, "%.900s: %s", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            free(identity);
            return false;
        }
        s->dir_fds[i] = fd;
        if (vfs.f_flag & ST_RDONLY) {
            snprintf(why, wcap, "%.900s is on a read-only mount that is not safekit's: the copy cannot be written", path);
            free(identity);
            return false;
        }
        identity[i][0] = (uint64_t)st.st_dev;
        identity[i][1] = (uint64_t)st.st_ino;
        if (!sks_excl_build(&s->excl[i], &s->spec.dirs[i], why, wcap)) {
            free(identity);
            return false;
        }
    }
    sks_replica_init(&s->rep, s->dir_fds, s->spec.ndirs);
    char boot[64];
    sks_boot_id(boot, sizeof boot);
    s->trusted = s->st.clean || (s->st.boot_id[0] && strcmp(s->st.boot_id, boot) == 0);
    bool same = s->st.ndirs == s->spec.ndirs;
    for (int i = 0; same && i < s->spec.ndirs; i++)
        same = s->st.dirs[i][0] == identity[i][0] && s->st.dirs[i][1] == identity[i][1];
    if (s->st.ndirs != -1 && !same) {
        sks_log(SKS_WARNING, "the replicated directories are not the ones last synchronised (another file system "
                             "or a new directory): the copy is compared in full");
        s->trusted = false;
        s->st.in_sync = false;
        s->st.epoch[0] = '\0';
    }
    free(s->st.dirs);
    s->st.dirs = identity;
    s->st.ndirs = s->spec.ndirs;
    if (!plan_splitbrain(s, why, wcap))
        return false;
    /* Applications on this node cannot write the copy: read-only over it, the data written through
     * the fds opened beneath (recorded, so that after a crash only these binds are removed). */
    s->made = calloc((size_t)s->spec.ndirs, sizeof *s->made);
    if (!s->made) {
        snprintf(why, wcap, "out of memory");
        return false;
    }
    s->binding = true;
    for (int i = 0; i < s->spec.ndirs; i++) {
        if (!sks_bind_ro(s->spec.dirs[i].path, &s->made[i], why, wcap))
            return false;
        s->nmade = i + 1;
    }
    skj_buf mounts = {0};
    sks_mkeys_json(&mounts, s->made, s->nmade);
    if (mounts.bad) {
        snprintf(why, wcap, "out of memory");
        return false;
    }
    free(s->st.mounts);
    s->st.mounts = mounts.p;
    s->st.clean = false;
    snprintf(s->st.boot_id, sizeof s->st.boot_id, "%s", boot);
    if (!save_state(s)) {
        snprintf(why, wcap, "could not save %.900s: %s", s->state_path, strerror(errno));
        return false;
    }
    sks_emit_ready(s->st.in_sync, s->st.epoch, s->trusted);
    return true;
}

static bool start_listening(secondary *s, char *why, size_t wcap)
{
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)s->spec.port);
    if (inet_pton(AF_INET, s->spec.local_addr, &addr.sin_addr) != 1) {
        snprintf(why, wcap, "local_addr %s is not an IPv4 address", s->spec.local_addr);
        return false;
    }
    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (s->listen_fd < 0 || setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(s->listen_fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(s->listen_fd, 4) != 0) {
        snprintf(why, wcap, "cannot listen on %s:%d: %s", s->spec.local_addr, s->spec.port, strerror(errno));
        return false;
    }
    socklen_t alen = sizeof addr;
    getsockname(s->listen_fd, (struct sockaddr *)&addr, &alen);
    sks_emit_listening(s->spec.local_addr, ntohs(addr.sin_port));
    sks_log(SKS_INFO, "listening on %s:%d for %s (%s)", s->spec.local_addr, ntohs(addr.sin_port), s->spec.peer,
            s->spec.peer_addr);
    return true;
}

static void cleanup(secondary *s, bool prepared)
{
    stop_steps(s);
    end_candidate(s);
    end_session(s, "stopping", false);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    if (prepared) {
        sks_replica_close(&s->rep);
        int rc = sks_replica_sync_all(&s->rep);
        if (rc < 0)
            sks_log(SKS_WARNING, "syncfs at stop failed: %s", strerror(-rc));
        s->st.clean = true;
        if (s->sess.applied)
            s->st.applied_seq = s->sess.applied;
        save_state(s);
    }
    /* only what this process recorded (state.mounts): its binds, or what it read at start */
    for (int i = 0; i < s->spec.ndirs; i++) {
        char why[REASON_MAX];
        const sks_mkey *keys = s->binding ? s->made : s->recorded;
        int n = s->binding ? s->nmade : s->nrecorded;
        if (sks_detach_ours(s->spec.dirs[i].path, keys, n, why, sizeof why) < 0)
            sks_log(SKS_ERROR, "%s", why);
    }
    for (int i = 0; s->dir_fds && i < s->spec.ndirs; i++)
        if (s->dir_fds[i] >= 0)
            close(s->dir_fds[i]);
    for (int i = 0; s->excl && i < s->spec.ndirs; i++)
        sks_excl_free(&s->excl[i]);
    free(s->dir_fds);
    free(s->excl);
    free(s->rbuf);
    free(s->tbuf);
    free(s->stdin_buf);
    free(s->save_out);
    free(s->recorded);
    free(s->made);
    sks_state_free(&s->st);
    OPENSSL_cleanse(s->key, sizeof s->key);
    sks_spec_free(&s->spec);
}

static void loop(secondary *s)
{
    sigset_t empty;
    sigemptyset(&empty);
    while (!s->stopping) {
        struct pollfd p[5];
        int n = 0, i_stdin = -1, i_listen = -1, i_sess = -1, i_cand = -1, i_save = -1;
        if (s->stdin_open) {
            i_stdin = n;
            p[n++] = (struct pollfd){0, POLLIN, 0};
        }
        if (s->save_fd >= 0) { /* the primary is served once the save is done */
            i_save = n;
            p[n++] = (struct pollfd){s->save_fd, POLLIN, 0};
        } else {
            i_listen = n;
            p[n++] = (struct pollfd){s->listen_fd, POLLIN, 0};
        }
        if (s->sess.fd >= 0) {
            i_sess = n;
            p[n++] = (struct pollfd){s->sess.fd, POLLIN, 0};
        }
        struct timespec timeout = {1, 0}, *tp = NULL;
        if (s->cand.fd >= 0) {
            i_cand = n;
            p[n++] = (struct pollfd){s->cand.fd, POLLIN, 0};
            tp = &timeout;
        }
        if (s->annotate_pid > 0)
            tp = &timeout; /* reaped within a second */
        int r = ppoll(p, (nfds_t)n, tp, &empty);
        if (got_signal) {
            sks_log(SKS_INFO, "signal %d: stopping", (int)got_signal);
            s->stopping = true;
            break;
        }
        if (r < 0)
            continue;
        if (i_stdin >= 0 && p[i_stdin].revents)
            stdin_readable(s);
        if (s->stopping)
            break;
        reap_annotate(s);
        if (i_save >= 0 && p[i_save].revents)
            save_readable(s);
        if (s->stopping)
            break;
        if (i_sess >= 0 && p[i_sess].revents && s->sess.fd >= 0)
            session_readable(s);
        if (i_cand >= 0 && p[i_cand].revents && s->cand.fd >= 0)
            candidate_readable(s);
        if (s->cand.fd >= 0 && now() > s->cand.deadline)
            refuse_candidate(s, "no complete handshake within 30 s");
        if (i_listen >= 0 && p[i_listen].revents)
            accept_one(s);
    }
}

int sks_main(const char *spec_path)
{
    secondary *s = calloc(1, sizeof *s);
    char why[REASON_MAX] = "";
    if (!s) {
        sks_emit_failed("out of memory");
        return 1;
    }
    s->spec_path = spec_path;
    s->listen_fd = -1;
    s->save_fd = -1;
    s->cand.fd = -1;
    s->sess.fd = -1;
    s->stdin_open = true;
    s->st.ndirs = -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, NULL); /* delivered only inside ppoll: no lost wake-up */
    bool prepared = false;
    int code = 1;
    if (!sks_spec_load(spec_path, &s->spec, why, sizeof why)) {
        sks_log(SKS_ERROR, "replication (secondary) failed: %s", why);
        sks_emit_failed(why);
        free(s);
        return 1;
    }
    sks_log_set_debug(s->spec.debug);
    s->tcap = TX_CAP;
    s->rbuf = malloc(RECV_CAP);
    s->tbuf = malloc(s->tcap);
    s->stdin_buf = malloc(STDIN_MAX + 1);
    s->save_out = malloc(STEP_OUT_MAX);
    if (!s->rbuf || !s->tbuf || !s->stdin_buf || !s->save_out) {
        snprintf(why, sizeof why, "out of memory");
    } else if ((prepared = prepare(s, why, sizeof why)) && start_listening(s, why, sizeof why)) {
        char phase[16];
        if (sks_sb_str(s->st.splitbrain, "phase", phase, sizeof phase) && strcmp(phase, "saving") == 0)
            start_save(s); /* before the primary is served */
        if (!s->failed)
            loop(s);
        code = 0;
        if (s->failed) {
            snprintf(why, sizeof why, "%s", s->fail_why);
            code = 1;
        }
    }
    if (code != 0) {
        sks_log(SKS_ERROR, "replication (secondary) failed: %s", why);
        sks_emit_failed(why);
    }
    cleanup(s, prepared);
    free(s);
    return code;
}
