/* A session's resynchronisation:
 * one thread per session, started once the stream began (SYNC_BEGIN queued). It brings the
 * secondary's copy in line while applications go on writing:
 *
 *   journal   the journal taken at the start of the stream (j0) names what to send
 *   checksum  the secondary's manifest (asked for with SYNC_BEGIN: its copy before any live
 *             operation of the session): objects of another type removed, files whose size or
 *             modification time differ compared by 64 KiB block checksums, differing blocks sent
 *   full      everything sent again
 *
 * Resynchronisation frames and live operations share the ordered stream. Every decision that
 * reads this node's directory and queues what it read is taken with the front paused (its ordering
 * lock held exclusively: no change is between being applied and being queued), so the secondary
 * receives, for each object, a state it really had followed by every later change. A file's data
 * goes in batches of 16 zones (1 MiB), each read and queued in one pause, after waiting for room
 * in the window with the front running: one WRITE per run of consecutive data to send (up to
 * 256 KiB; compared by checksums, the zones that differ), read straight into its frame's buffer.
 * A path renamed (or linked) into place during the pass is sent again at its end (link.c records
 * it). SYNC_END is queued, in one pause, only once nothing
 * is left to send again; the copy is in sync when it is acknowledged as applied. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "apply.h"
#include "events.h"
#include "link_priv.h"
#include "manifest.h"
#include "sk_kdf.h"
#include "sk_ops.h"
#include "sk_wire.h"
#include "verify.h"

#define ZONE SKP_ZONE
#define BATCH_ZONES 16
/* The largest WRITE of a resynchronisation: a frame the secondary decrypts in place and then
 * copies into its page cache while it is still in the CPU's L2 cache (1 MiB per core here; with
 * 1 MiB frames that copy was 57 % of the secondary's samples, and 256 KiB frames cost less CPU on
 * the secondary than 1 MiB ones: docs/replication.md, "Full resynchronisation"). */
#define PIECE (256u << 10)
#define SUMS_BATCH 256
#define PATH_CAP 4096
#define BUF_CAP (2 * SK_XATTR_VALUE_MAX + 2 * PATH_CAP + 256)
#define PROGRESS_EVERY 0.5

/* A manifest as received (its chunks) with an index of its entries: 8 bytes per entry (which chunk,
 * where in it), each entry decoded when it is read, not kept decoded (104 bytes each). */
typedef struct rs_man {
    struct mchunk *chunks;
    const struct mchunk **cv; /* the chunks, by index */
    uint64_t *at;             /* entry i: chunk index << 32 | its offset in the chunk's payload */
    size_t n, cap;
    bool *gone; /* remote: removed by this pass (with what is under it) */
} rs_man;

/* A file with several links sent in this pass, by inode: its other names go as LINK. */
struct linked {
    struct linked *next;
    dev_t dev;
    ino_t ino;
    char path[];
};
#define LINKED_BUCKETS 1024

typedef struct rs {
    struct skp_link *l;
    struct linked *linked[LINKED_BUCKETS];
    uint32_t dir;               /* the replicated directory being brought in line */
    int dir_fd;                 /* its fd (opened before the mount) */
    const sks_excl *excl;       /* its <notreplicated>, or NULL */
    uint8_t *buf;   /* one payload */
    char *names;    /* xattr names */
    uint8_t *value; /* one xattr value */
    double last_progress;
} rs;

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t ns_of(struct timespec ts)
{
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void pause_front(rs *r)
{
    if (r->l->cfg.pause)
        r->l->cfg.pause(r->l->cfg.hook_arg);
}

static void resume_front(rs *r)
{
    if (r->l->cfg.resume)
        r->l->cfg.resume(r->l->cfg.hook_arg);
}

/* Wait (front running) until a batch fits in the window. 0, or -1 the session is lost. */
static int room(rs *r)
{
    struct skp_link *l = r->l;
    pthread_mutex_lock(&l->mu);
    while (!l->lost && l->w.ops > 0 &&
           (l->w.bytes + (uint64_t)BATCH_ZONES * ZONE > l->w.max_bytes || l->w.ops + 4 * BATCH_ZONES > l->w.max_ops ||
            l->queued_bytes >= SKP_QUEUE_MAX_BYTES / 2)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        skp_state_wait_locked(l, &ts);
    }
    int rc = l->lost ? -1 : 0;
    pthread_mutex_unlock(&l->mu);
    return rc;
}

/* Queue one frame of the resynchronisation: its payload copied from p, or (it != NULL) already
 * written into the item it (taken). 0, or -1 (lost). */
static int q_frame_item(rs *r, uint8_t type, uint16_t flags, const uint8_t *p, struct item *it, size_t len,
                        size_t data_len)
{
    struct skp_link *l = r->l;
    pthread_mutex_lock(&l->mu);
    uint64_t t = it ? skp_queue_item_locked(l, r->dir, type, flags, it, len, data_len)
                    : skp_queue_sync_locked(l, r->dir, type, flags, p, len, data_len);
    double m = mono();
    if (t && m - r->last_progress >= PROGRESS_EVERY) {
        r->last_progress = m;
        sk_progress pr = {l->progress_done, l->progress_total};
        uint8_t pb[64];
        size_t plen;
        if (sk_progress_encode(&pr, pb, sizeof pb, &plen, NULL) == SK_OK)
            skp_queue_sync_locked(l, r->dir, SK_T_PROGRESS, 0, pb, plen, 0);
    }
    pthread_mutex_unlock(&l->mu);
    return t ? 0 : -1;
}

static int q_frame(rs *r, uint8_t type, uint16_t flags, const uint8_t *p, size_t len, size_t data_len)
{
    return q_frame_item(r, type, flags, p, NULL, len, data_len);
}

static int q_op(rs *r, const sk_op *op)
{
    size_t len;
    sk_err e = {0, ""};
    if (sk_op_encode(op, r->buf, BUF_CAP, &len, &e) != SK_OK) {
        skp_log(SKP_WARNING, "resynchronisation: %s of '%.*s' cannot be sent (%s): skipped", sks_op_name(op->type),
                (int)op->path.len, (const char *)op->path.ptr, e.reason);
        return 0;
    }
    return q_frame(r, op->type, 0, r->buf, len, op->type == SK_T_WRITE ? op->data.len : 0);
}

static sk_op op_of(uint8_t type, const char *path)
{
    sk_op op;
    memset(&op, 0, sizeof op);
    op.type = type;
    op.path = sk_bytes_str(path);
    return op;
}

static int q_path(rs *r, uint8_t type, const char *path)
{
    sk_op op = op_of(type, path);
    return q_op(r, &op);
}

static int q_trunc(rs *r, const char *path, uint64_t size)
{
    sk_op op = op_of(SK_T_TRUNCATE, path);
    op.size = size;
    return q_op(r, &op);
}

/* ------------------------------------------------------------------ this node's directory */

/* lstat of path beneath the directory, never through a symlink. 0 or -errno. */
static int lst(rs *r, const char *path, struct stat *st)
{
    if (!path[0])
        return fstat(r->dir_fd, st) == 0 ? 0 : -errno;
    const char *name;
    bool owned;
    int pfd = sks_parent_of(r->dir_fd, false, path, &name, &owned);
    if (pfd < 0)
        return pfd;
    int rc = fstatat(pfd, name, st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
    if (owned)
        close(pfd);
    return rc;
}

static ssize_t read_link(rs *r, const char *path, char *out, size_t cap)
{
    const char *name;
    bool owned;
    int pfd = sks_parent_of(r->dir_fd, false, path, &name, &owned);
    if (pfd < 0)
        return pfd;
    ssize_t n = readlinkat(pfd, name, out, cap);
    if (owned)
        close(pfd);
    return n;
}

static char kind_of(mode_t m)
{
    return S_ISREG(m) ? 'f' : S_ISDIR(m) ? 'd' : S_ISLNK(m) ? 'l' : 'o';
}

/* SETATTR (mode but for symlinks, owner, times), then the extended attributes: all cleared on
 * the secondary, ours set (the secondary ends with exactly ours). Front paused. */
static int sync_attrs(rs *r, const char *path, const sk_entry *remote, bool force)
{
    struct stat st;
    if (lst(r, path, &st) != 0)
        return 0;
    sk_op op = op_of(SK_T_SETATTR, path);
    op.mask = SK_ATTR_UID | SK_ATTR_GID | SK_ATTR_ATIME | SK_ATTR_MTIME | (S_ISLNK(st.st_mode) ? 0 : SK_ATTR_MODE);
    op.mode = S_ISLNK(st.st_mode) ? 0 : st.st_mode;
    op.uid = st.st_uid;
    op.gid = st.st_gid;
    op.atime_ns = ns_of(st.st_atim);
    op.mtime_ns = ns_of(st.st_mtim);
    bool same = remote && remote->mode == st.st_mode && remote->uid == st.st_uid && remote->gid == st.st_gid &&
                remote->mtime_ns == op.mtime_ns;
    if ((force || !same) && q_op(r, &op) != 0)
        return -1;
    /* extended attributes through /proc/self/fd/<parent>/<name> (no-follow forms) */
    char proc[PATH_CAP + 64];
    const char *name = NULL;
    bool owned = false;
    int pfd = -1;
    if (path[0]) {
        pfd = sks_parent_of(r->dir_fd, false, path, &name, &owned);
        if (pfd < 0)
            return 0;
        snprintf(proc, sizeof proc, "/proc/self/fd/%d/%s", pfd, name);
    }
    ssize_t n = path[0] ? llistxattr(proc, r->names, SK_XATTR_VALUE_MAX) : flistxattr(r->dir_fd, r->names, SK_XATTR_VALUE_MAX);
    int rc = 0;
    if (n >= 0) {
        rc = q_path(r, SK_T_CLEAR_XATTRS, path);
        for (ssize_t i = 0; rc == 0 && i < n; i += (ssize_t)strlen(r->names + i) + 1) {
            const char *x = r->names + i;
            ssize_t v = path[0] ? lgetxattr(proc, x, r->value, SK_XATTR_VALUE_MAX)
                                : fgetxattr(r->dir_fd, x, r->value, SK_XATTR_VALUE_MAX);
            if (v < 0)
                continue;
            sk_op s = op_of(SK_T_SETXATTR, path);
            s.name = sk_bytes_str(x);
            s.value = sk_bytes_of(r->value, (size_t)v);
            rc = q_op(r, &s);
        }
    }
    if (owned)
        close(pfd);
    return rc;
}

/* An object that is not a regular file, sent whole (MKDIR, SYMLINK, MKNOD). Front paused. */
static int send_flat(rs *r, const char *path, const struct stat *st)
{
    sk_op op = op_of(SK_T_MKDIR, path);
    op.mode = st->st_mode;
    op.uid = st->st_uid;
    op.gid = st->st_gid;
    if (S_ISDIR(st->st_mode))
        return path[0] ? q_op(r, &op) : 0;
    if (S_ISLNK(st->st_mode)) {
        char target[SK_SYMLINK_MAX + 1];
        ssize_t t = read_link(r, path, target, sizeof target);
        if (t <= 0 || t > SK_SYMLINK_MAX)
            return 0; /* gone meanwhile (its removal is in the stream) */
        op.type = SK_T_SYMLINK;
        op.mode = 0;
        op.target = sk_bytes_of(target, (size_t)t);
        return q_op(r, &op);
    }
    op.type = SK_T_MKNOD;
    op.rdev = st->st_rdev;
    return q_op(r, &op);
}

/* ------------------------------------------------------------------ manifests */

static void man_free(rs_man *m)
{
    while (m->chunks) {
        struct mchunk *c = m->chunks;
        m->chunks = c->next;
        free(c);
    }
    free(m->cv);
    free(m->at);
    free(m->gone);
    memset(m, 0, sizeof *m);
}

static sk_rd man_rd(const rs_man *m, size_t i)
{
    const struct mchunk *c = m->cv[m->at[i] >> 32];
    sk_rd r = sk_rd_make(c->p, c->len);
    r.pos = (size_t)(m->at[i] & 0xffffffffu);
    return r;
}

/* Entry i, decoded (its bytes point into the chunk: valid while m is). */
static sk_entry man_at(const rs_man *m, size_t i)
{
    sk_manifest_iter it = {man_rd(m, i), 1};
    sk_entry e;
    if (sk_manifest_next(&it, &e, NULL) != 1)
        memset(&e, 0, sizeof e); /* cannot happen: every chunk was checked whole when indexed */
    return e;
}

/* The path of entry i (its first field). */
static sk_bytes man_path(const rs_man *m, size_t i)
{
    sk_rd r = man_rd(m, i);
    return sk_rd_lp16(&r);
}

static bool same_bytes(sk_bytes a, sk_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* By path (skp_path_cmp: a directory's subtree right after it), then in the order received (a
 * file's further checksums after its first ones). */
static int cmp_at(const void *pa, const void *pb, void *ctx)
{
    const rs_man *m = ctx;
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    const struct mchunk *ca = m->cv[a >> 32], *cb = m->cv[b >> 32];
    sk_rd ra = sk_rd_make(ca->p, ca->len), rb = sk_rd_make(cb->p, cb->len);
    ra.pos = (size_t)(a & 0xffffffffu);
    rb.pos = (size_t)(b & 0xffffffffu);
    sk_bytes x = sk_rd_lp16(&ra), y = sk_rd_lp16(&rb);
    int c = skp_path_cmp((const char *)x.ptr, x.len, (const char *)y.ptr, y.len);
    if (c)
        return c;
    return a < b ? -1 : a > b;
}

/* Index the entries of m's chunks (sorted: for lookups; unsorted: the walk's order). 0 or -1. */
static int man_index(rs_man *m, bool sorted)
{
    size_t nchunks = 0;
    for (struct mchunk *c = m->chunks; c; c = c->next)
        nchunks++;
    m->cv = malloc((nchunks + 1) * sizeof *m->cv);
    if (!m->cv)
        return -1;
    size_t k = 0;
    for (struct mchunk *c = m->chunks; c; c = c->next, k++) {
        m->cv[k] = c;
        sk_manifest_iter it;
        uint32_t count;
        sk_err e = {0, ""};
        if (sk_manifest_begin(c->p, c->len, &it, &count, &e) != SK_OK || c->len > 0xffffffffu)
            return -1;
        sk_entry en;
        for (size_t pos = it.r.pos; sk_manifest_next(&it, &en, &e) == 1; pos = it.r.pos) {
            if (m->n == m->cap) {
                size_t cap = m->cap ? m->cap * 2 : 256;
                uint64_t *g = realloc(m->at, cap * sizeof *g);
                if (!g)
                    return -1;
                m->at = g;
                m->cap = cap;
            }
            m->at[m->n++] = (uint64_t)k << 32 | pos;
        }
    }
    if (sorted && m->n)
        qsort_r(m->at, m->n, sizeof *m->at, cmp_at, m);
    m->gone = calloc(m->n + 1, sizeof *m->gone);
    return m->gone ? 0 : -1;
}

/* Index of the first entry of path in a sorted manifest, or -1. */
static long man_find(const rs_man *m, const char *path, size_t len)
{
    size_t a = 0, b = m->n;
    while (a < b) {
        size_t mid = (a + b) / 2;
        sk_bytes p = man_path(m, mid);
        if (skp_path_cmp((const char *)p.ptr, p.len, path, len) < 0)
            a = mid + 1;
        else
            b = mid;
    }
    if (a < m->n && same_bytes(man_path(m, a), sk_bytes_of(path, len)))
        return (long)a;
    return -1;
}

/* The remote block checksum of zone k of the file at entry index i, or NULL. */
static const uint8_t *man_sum(const rs_man *m, long i, uint64_t k)
{
    if (i < 0)
        return NULL;
    sk_bytes path = man_path(m, (size_t)i);
    for (size_t j = (size_t)i; j < m->n; j++) {
        sk_entry e = man_at(m, j);
        if (!same_bytes(e.path, path))
            break;
        if (e.has_sums && k >= e.sums_first && k < e.sums_first + e.nsums)
            return e.sums.ptr + (size_t)(k - e.sums_first) * SK_SUM_SIZE;
    }
    return NULL;
}

/* Was path (or one of its parents) removed from the secondary by this pass? */
static bool man_removed(const rs_man *m, const char *path, size_t len)
{
    for (size_t i = 1; i <= len; i++) {
        if (i < len && path[i] != '/')
            continue;
        long k = man_find(m, path, i);
        if (k >= 0 && m->gone[k])
            return true;
    }
    return false;
}

/* MANIFEST_REQ to the secondary, its answer in *m (sorted). 0, or -1 lost. */
static int request_manifest(rs *r, uint8_t sums, char **paths, uint32_t count, rs_man *m)
{
    struct skp_link *l = r->l;
    memset(m, 0, sizeof *m);
    sk_bytes *pv = count ? calloc(count, sizeof *pv) : NULL;
    size_t cap = 64 + (size_t)count * (PATH_CAP + 2);
    uint8_t *payload = malloc(cap);
    size_t len;
    int rc = -1;
    if ((count && !pv) || !payload)
        goto out;
    for (uint32_t i = 0; i < count; i++)
        pv[i] = sk_bytes_str(paths[i]);
    if (sk_manifest_req_encode(sums, pv, count, payload, cap, &len, NULL) != SK_OK)
        goto out;
    pthread_mutex_lock(&l->mu);
    uint64_t index = skp_ask_manifest_locked(l, r->dir, payload, len, false);
    bool ok = skp_take_manifest_locked(l, l->session, index, &m->chunks) == 0;
    pthread_mutex_unlock(&l->mu);
    if (ok && man_index(m, true) == 0)
        rc = 0;
out:
    free(pv);
    free(payload);
    return rc;
}

/* The secondary's manifest of this directory (no checksums) asked for with SYNC_BEGIN: its copy
 * as the session found it, before any live operation of the session changed it. In *m (sorted).
 * 0, or -1 lost. */
static int first_manifest(rs *r, rs_man *m)
{
    struct skp_link *l = r->l;
    memset(m, 0, sizeof *m);
    pthread_mutex_lock(&l->mu);
    bool ok = skp_take_manifest_locked(l, l->session, l->first_manifest + r->dir, &m->chunks) == 0;
    pthread_mutex_unlock(&l->mu);
    return ok && man_index(m, true) == 0 ? 0 : -1;
}

/* Where collect_chunk puts the next chunk of a manifest (&m->chunks at first). */
typedef struct collect {
    struct mchunk **tail;
} collect;

static int collect_chunk(void *ctx, const uint8_t *payload, size_t len, bool last)
{
    (void)last;
    collect *k = ctx;
    struct mchunk *c = malloc(sizeof *c + len);
    if (!c)
        return 1;
    c->next = NULL;
    c->len = len;
    memcpy(c->p, payload, len);
    *k->tail = c;
    k->tail = &c->next;
    return 0;
}

/* This node's objects under `path` (everything but path itself, parents first), paths relative
 * to `path`. 0 or -1. */
static int walk_local(rs *r, const char *path, rs_man *m)
{
    memset(m, 0, sizeof *m);
    int fd = path[0] ? sks_open_beneath(r->dir_fd, false, path, O_RDONLY | O_DIRECTORY, 0)
                     : dup(r->dir_fd);
    if (fd < 0)
        return 0; /* gone meanwhile: nothing under it */
    uint8_t req_payload[16];
    size_t len;
    sk_manifest_req req;
    int rc = -1;
    if (sk_manifest_req_encode(SK_SUMS_NONE, NULL, 0, req_payload, sizeof req_payload, &len, NULL) == SK_OK &&
        sk_manifest_req_decode(req_payload, len, &req, NULL) == SK_OK) {
        collect c = {&m->chunks};
        uint64_t entries;
        /* the exclusions name paths from the directory's root: a subtree's walk is filtered by
         * its caller */
        rc = sks_manifest(fd, false, path[0] ? NULL : r->excl, &req, 0, collect_chunk, &c, &entries) == 0 &&
                     man_index(m, false) == 0
                 ? 0
                 : -1;
    }
    close(fd);
    return rc;
}

static void join(char *out, const char *a, const sk_bytes *b)
{
    if (a[0])
        snprintf(out, PATH_CAP, "%s/%.*s", a, (int)b->len, (const char *)b->ptr);
    else
        snprintf(out, PATH_CAP, "%.*s", (int)b->len, (const char *)b->ptr);
}

/* ------------------------------------------------------------------ file data */

typedef struct zones {
    uint64_t (*z)[2];
    size_t n, cap;
} zones;

static int zones_add(zones *z, uint64_t lo, uint64_t hi)
{
    if (z->n && z->z[z->n - 1][1] + 1 >= lo) {
        if (hi > z->z[z->n - 1][1])
            z->z[z->n - 1][1] = hi;
        return 0;
    }
    if (z->n == z->cap) {
        size_t cap = z->cap ? z->cap * 2 : 8;
        void *g = realloc(z->z, cap * sizeof *z->z);
        if (!g)
            return -1;
        z->z = g;
        z->cap = cap;
    }
    z->z[z->n][0] = lo;
    z->z[z->n][1] = hi;
    z->n++;
    return 0;
}

/* The zones of fd that hold data (SEEK_DATA/SEEK_HOLE; every zone where that is not known). */
static int data_zones(int fd, uint64_t size, zones *z)
{
    if (!size)
        return 0;
    uint64_t pos = 0;
    while (pos < size) {
        off_t start = lseek(fd, (off_t)pos, SEEK_DATA);
        if (start < 0) {
            if (errno == ENXIO)
                return 0;
            z->n = 0;
            return zones_add(z, 0, (size - 1) / ZONE);
        }
        off_t end = lseek(fd, start, SEEK_HOLE);
        if (end < 0)
            end = (off_t)size;
        if ((uint64_t)end > size)
            end = (off_t)size;
        if (end > start && zones_add(z, (uint64_t)start / ZONE, ((uint64_t)end - 1) / ZONE) != 0)
            return -1;
        pos = (uint64_t)end > pos ? (uint64_t)end : pos + ZONE;
    }
    return 0;
}

/* Queue the WRITE whose data (*have bytes at offset `at`) was read into *it behind a prefix of
 * pfx bytes; *it is taken, *have reset. 0, or -1 lost (a WRITE that cannot be encoded is logged
 * and ends the file: *done). */
static int q_piece(rs *r, const char *path, size_t pfx, struct item **it, uint64_t at, size_t *have, bool *done)
{
    sk_op op = op_of(SK_T_WRITE, path);
    op.offset = at;
    op.data = sk_bytes_of((*it)->payload + pfx, *have);
    size_t got, n = *have;
    sk_err e = {0, ""};
    *have = 0;
    if (sk_op_encode_write_prefix(&op, (*it)->payload, pfx, &got, &e) != SK_OK || got != pfx) {
        skp_log(SKP_WARNING, "resynchronisation: WRITE of '%s' cannot be sent (%s): skipped", path, e.reason);
        *done = true;
        return 0;
    }
    int rc = q_frame_item(r, SK_T_WRITE, 0, NULL, *it, pfx + n, n);
    *it = NULL; /* queued (or freed with the session lost) */
    return rc;
}

/* Send data of the file at path (the object with inode `ino`): `want`, ranges of `unit` bytes
 * (NULL: its data extents, or every zone when `sums` is given); pieces are up to PIECE bytes of
 * consecutive data; a whole zone whose checksum equals the secondary's is skipped.
 * Each batch is read and queued in one pause; a path that names another object meanwhile ends
 * it (what happened to it is in the stream). 0, or -1 lost. */
static int send_file_data(rs *r, const char *path, ino_t ino, const zones *want, uint64_t unit, const rs_man *sums_man,
                          long sums_i)
{
    int fd = sks_open_beneath(r->dir_fd, false, path, O_RDONLY | O_NONBLOCK, 0);
    if (fd < 0)
        return 0;
    struct stat st;
    zones all = {0};
    struct item *it = NULL;
    int rc = 0;
    if (fstat(fd, &st) != 0 || st.st_ino != ino || !S_ISREG(st.st_mode))
        goto out;
    if (!want) {
        unit = ZONE;
        if (sums_man) {
            if (st.st_size > 0 && zones_add(&all, 0, ((uint64_t)st.st_size - 1) / ZONE) != 0)
                rc = -1;
        } else if (data_zones(fd, (uint64_t)st.st_size, &all) != 0) {
            rc = -1;
        }
        want = &all;
    }
    bool done = false;
    for (size_t i = 0; rc == 0 && !done && i < want->n; i++) {
        uint64_t pos = want->z[i][0] * unit, end = (want->z[i][1] + 1) * unit;
        while (rc == 0 && !done && pos < end) {
            if (room(r) != 0) {
                rc = -1;
                break;
            }
            pause_front(r);
            struct stat now;
            if (lst(r, path, &now) != 0 || now.st_ino != ino) {
                done = true; /* replaced or removed meanwhile */
            }
            /* Each piece is read straight into its frame's buffer, behind the WRITE's prefix: up
             * to PIECE bytes of consecutive data in one frame - fewer frames, seals,
             * acknowledgements and writes on the secondary than one per zone. Compared by
             * checksums, a zone whose sum is the secondary's is left out (the piece ends before
             * it, the next one starts after it). */
            size_t pfx = 2 + strlen(path) + 8; /* WRITE: lp16 path, u64 offset, the data */
            uint64_t piece_at = pos;
            size_t have = 0; /* bytes of the piece read into it (at most PIECE) */
            uint64_t batch_end = pos + (uint64_t)BATCH_ZONES * ZONE;
            while (!done && rc == 0 && pos < end && pos < batch_end) {
                uint64_t piece_end = sums_man ? (pos / ZONE + 1) * ZONE : (pos / PIECE + 1) * PIECE;
                if (piece_end > batch_end)
                    piece_end = batch_end;
                uint64_t len = (end < piece_end ? end : piece_end) - pos;
                if (!it)
                    it = skp_item_new(r->l, pfx + (size_t)PIECE);
                if (!it) {
                    rc = -1;
                    break;
                }
                if (!have)
                    piece_at = pos;
                else if (have + len > PIECE) { /* a whole piece: queued before this zone is read */
                    rc = q_piece(r, path, pfx, &it, piece_at, &have, &done);
                    if (rc != 0 || done)
                        break;
                    continue;
                }
                ssize_t n = pread(fd, it->payload + pfx + have, (size_t)len, (off_t)pos);
                if (n <= 0) {
                    done = true; /* end of the file (truncated meanwhile: in the stream) */
                    break;
                }
                uint64_t at = pos;
                pos += len;
                if ((uint64_t)n < len)
                    done = true; /* the end of the file: nothing after this piece */
                const uint8_t *sum = sums_man && at % ZONE == 0 ? man_sum(sums_man, sums_i, at / ZONE) : NULL;
                if (sum) {
                    uint8_t digest[SK_HASH_SIZE];
                    sk_iov iov = {it->payload + pfx + have, (size_t)n};
                    if (sk_sha256(&iov, 1, digest, NULL) == SK_OK && memcmp(digest, sum, SK_SUM_SIZE) == 0) {
                        if (have)
                            rc = q_piece(r, path, pfx, &it, piece_at, &have, &done);
                        continue; /* the same: not sent */
                    }
                }
                have += (size_t)n;
            }
            if (rc == 0 && have)
                rc = q_piece(r, path, pfx, &it, piece_at, &have, &done);
            resume_front(r);
        }
    }
out:
    skp_item_drop(r->l, it);
    free(all.z);
    close(fd);
    return rc;
}

/* ------------------------------------------------------------------ objects */

static int send_tree(rs *r, const char *path);

/* A regular file with several links (front paused): if another of its names was sent in this pass
 * and still names it, this one becomes a hard link to it on the secondary (LINK replaces what is
 * there), and *done is set; otherwise this name is remembered for the others. 0, or -1 lost. */
static int hard_link(rs *r, const char *path, const struct stat *st, bool *done)
{
    *done = false;
    size_t k = (size_t)(st->st_ino ^ st->st_dev) % LINKED_BUCKETS;
    for (struct linked *x = r->linked[k]; x; x = x->next) {
        struct stat other;
        if (x->ino != st->st_ino || x->dev != st->st_dev || strcmp(x->path, path) == 0)
            continue;
        if (lst(r, x->path, &other) != 0 || other.st_ino != st->st_ino || other.st_dev != st->st_dev)
            continue; /* that name left it meanwhile */
        sk_op op = op_of(SK_T_LINK, x->path);
        op.path2 = sk_bytes_str(path);
        *done = true;
        return q_op(r, &op);
    }
    size_t n = strlen(path);
    struct linked *x = malloc(sizeof *x + n + 1);
    if (!x)
        return 0; /* sent as a copy: still the same bytes */
    x->dev = st->st_dev;
    x->ino = st->st_ino;
    memcpy(x->path, path, n + 1);
    x->next = r->linked[k];
    r->linked[k] = x;
    return 0;
}

static void free_linked(rs *r)
{
    for (size_t i = 0; i < LINKED_BUCKETS; i++) {
        while (r->linked[i]) {
            struct linked *x = r->linked[i];
            r->linked[i] = x->next;
            free(x);
        }
    }
}

/* Bring the secondary's object at path (described by remote; NULL: it has none) to ours: a
 * differing non-file replaced, a hard link made as a link, a file's data sent whole or by the
 * differing blocks, then the attributes. 0, or -1 lost. */
static int sync_entry(rs *r, const char *path, const rs_man *rm, long ri, bool data, bool use_sums)
{
    sk_entry remote_entry;
    const sk_entry *remote = NULL;
    if (ri >= 0) {
        remote_entry = man_at(rm, (size_t)ri);
        remote = &remote_entry;
    }
    if (room(r) != 0)
        return -1;
    pause_front(r);
    struct stat st;
    int rc = 0;
    if (lst(r, path, &st) != 0) {
        resume_front(r); /* removed meanwhile: the live operation is in the stream */
        return 0;
    }
    char kind = kind_of(st.st_mode);
    if (kind == 'd') {
        if (!remote && path[0])
            rc = send_flat(r, path, &st);
        if (rc == 0)
            rc = sync_attrs(r, path, remote, !remote);
        resume_front(r);
        return rc;
    }
    if (kind != 'f') {
        bool differs = !remote || remote->kind != kind || remote->mode != st.st_mode ||
                       (kind == 'o' && remote->rdev != st.st_rdev);
        if (!differs && kind == 'l') {
            char target[SK_SYMLINK_MAX + 1];
            ssize_t t = read_link(r, path, target, sizeof target);
            differs = t < 0 || (size_t)t != remote->target.len || memcmp(target, remote->target.ptr, (size_t)t) != 0;
        }
        if (differs) {
            if (remote)
                rc = q_path(r, SK_T_REMOVE_TREE, path);
            if (rc == 0)
                rc = send_flat(r, path, &st);
        } else {
            rc = sync_attrs(r, path, remote, false);
        }
        resume_front(r);
        return rc;
    }
    if (st.st_nlink > 1) {
        bool linked;
        rc = hard_link(r, path, &st, &linked);
        if (rc != 0 || linked) {
            resume_front(r);
            return rc;
        }
    }
    if (!remote || (data && !use_sums)) {
        /* the whole content: a sparse copy of the right size, then the data extents */
        if (!remote) {
            sk_op op = op_of(SK_T_CREATE, path);
            op.mode = st.st_mode;
            op.uid = st.st_uid;
            op.gid = st.st_gid;
            rc = q_op(r, &op);
        } else {
            rc = q_trunc(r, path, 0);
        }
        if (rc == 0)
            rc = q_trunc(r, path, (uint64_t)st.st_size);
        resume_front(r);
        if (rc == 0)
            rc = send_file_data(r, path, st.st_ino, NULL, ZONE, NULL, -1);
        if (rc == 0) {
            pause_front(r);
            rc = sync_attrs(r, path, remote, true);
            resume_front(r);
        }
        return rc;
    }
    if (remote->size != (uint64_t)st.st_size)
        rc = q_trunc(r, path, (uint64_t)st.st_size);
    resume_front(r);
    if (rc == 0 && data)
        rc = send_file_data(r, path, st.st_ino, NULL, ZONE, rm, ri);
    if (rc == 0) {
        pause_front(r);
        rc = sync_attrs(r, path, remote, data);
        resume_front(r);
    }
    return rc;
}

/* One object whole, replacing what the secondary has (a directory with its whole subtree, parents
 * before children). */
static int send_tree(rs *r, const char *path)
{
    int rc = sync_entry(r, path, NULL, -1, true, false);
    struct stat st;
    if (rc != 0 || lst(r, path, &st) != 0 || !S_ISDIR(st.st_mode))
        return rc;
    rs_man local;
    if (walk_local(r, path, &local) != 0) {
        man_free(&local);
        return 0;
    }
    char *child = malloc(PATH_CAP);
    for (size_t i = 0; rc == 0 && child && i < local.n; i++) {
        sk_bytes name = man_path(&local, i);
        join(child, path, &name);
        if (!sks_excluded(r->excl, child))
            rc = sync_entry(r, child, NULL, -1, true, false);
    }
    free(child);
    man_free(&local);
    return rc;
}

/* A journal entry not sent whole: attributes, truncations, zones (_sync_journal_entry). */
static int sync_journal_entry(rs *r, const skp_jentry *e)
{
    const char *path = e->path;
    if (room(r) != 0)
        return -1;
    pause_front(r);
    struct stat st;
    int rc = 0;
    if (lst(r, path, &st) != 0) {
        if (path[0])
            rc = q_path(r, SK_T_REMOVE_TREE, path);
        resume_front(r);
        return rc;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = send_flat(r, path, &st); /* lenient there: an existing directory stays */
        if (rc == 0)
            rc = sync_attrs(r, path, NULL, true);
        resume_front(r);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = q_path(r, SK_T_REMOVE_TREE, path);
        resume_front(r);
        return rc == 0 ? send_tree(r, path) : rc;
    }
    if (e->trunc >= 0)
        rc = q_trunc(r, path, (uint64_t)e->trunc);
    if (rc == 0)
        rc = q_trunc(r, path, (uint64_t)st.st_size);
    resume_front(r);
    zones z = {e->z, e->nz, e->nz};
    if (rc == 0 && e->nz)
        rc = send_file_data(r, path, st.st_ino, &z, SKP_PAGE, NULL, -1);
    if (rc == 0) {
        pause_front(r);
        rc = sync_attrs(r, path, NULL, true);
        resume_front(r);
    }
    return rc;
}

static void progress(rs *r, uint64_t done, uint64_t total)
{
    pthread_mutex_lock(&r->l->mu);
    if (total)
        r->l->progress_total = total;
    r->l->progress_done = done;
    pthread_mutex_unlock(&r->l->mu);
}

static int sync_journal(rs *r)
{
    size_t n;
    pthread_mutex_lock(&r->l->mu);
    const skp_jentry **plan = skp_journal_plan(&r->l->j0, r->dir, &n);
    pthread_mutex_unlock(&r->l->mu);
    if (n == SIZE_MAX)
        return -1;
    progress(r, 0, n);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const skp_jentry *e = plan[i];
        if (sks_excluded(r->excl, e->path)) {
            progress(r, i + 1, 0); /* not replicated (a journal of another configuration) */
            continue;
        }
        if (e->whole) {
            if (e->path[0]) {
                pause_front(r);
                rc = q_path(r, SK_T_REMOVE_TREE, e->path);
                resume_front(r);
            }
            if (rc == 0)
                rc = send_tree(r, e->path);
        } else {
            rc = sync_journal_entry(r, e);
        }
        progress(r, i + 1, 0);
    }
    free(plan);
    return rc;
}

static int sync_by_sums(rs *r, char **paths, uint32_t count)
{
    rs_man rm;
    int rc = request_manifest(r, SK_SUMS_PATHS, paths, count, &rm);
    for (uint32_t i = 0; rc == 0 && i < count; i++)
        rc = sync_entry(r, paths[i], &rm, man_find(&rm, paths[i], strlen(paths[i])), true, true);
    man_free(&rm);
    return rc;
}

/* checksum and full: both trees walked and compared object by object (full: every file's data
 * sent; checksum: only the blocks whose checksums differ). */
static int sync_compare(rs *r, bool full)
{
    rs_man rm, local;
    memset(&local, 0, sizeof local);
    if (first_manifest(r, &rm) != 0) {
        man_free(&rm);
        return -1;
    }
    int rc = 0;
    char path[PATH_CAP];
    /* The quick check (same size and modification time: the same file) holds for a copy that is a
     * prefix of some history, not for one left by an interrupted resynchronisation: there a file
     * can have its size (a TRUNCATE ahead of the data) and its time (a live SETATTR at an fsync)
     * while blocks were never sent. Such a secondary says it is not in sync: every file is then
     * compared by checksums. */
    pthread_mutex_lock(&r->l->mu);
    bool quick = r->l->peer_in_sync;
    pthread_mutex_unlock(&r->l->mu);
    if (!quick && !full)
        skp_log(SKP_INFO, "the secondary's copy is not in sync (an interrupted resynchronisation?): every file "
                          "is compared by checksums");
    /* 1. what the secondary has and we do not (or of another type): removed first, each decision
     * taken with the front paused (a live creation cannot slip between the check and the removal) */
    size_t last_removed = SIZE_MAX;
    for (size_t i = 0; rc == 0 && i < rm.n;) {
        if (room(r) != 0) {
            rc = -1;
            break;
        }
        pause_front(r);
        for (size_t b = 0; rc == 0 && b < SUMS_BATCH && i < rm.n; b++, i++) {
            sk_entry entry = man_at(&rm, i);
            const sk_entry *e = &entry;
            if (i && same_bytes(e->path, man_path(&rm, i - 1)))
                continue; /* a continuation of the same file's checksums */
            if (last_removed != SIZE_MAX) {
                sk_bytes g = man_path(&rm, last_removed);
                if (e->path.len > g.len && memcmp(e->path.ptr, g.ptr, g.len) == 0 && e->path.ptr[g.len] == '/')
                    continue;
            }
            if (e->path.len >= PATH_CAP || e->path.len == 0)
                continue;
            memcpy(path, e->path.ptr, e->path.len);
            path[e->path.len] = '\0';
            struct stat st;
            char kind = lst(r, path, &st) == 0 ? kind_of(st.st_mode) : 0;
            if (kind != e->kind) {
                rc = q_path(r, SK_T_REMOVE_TREE, path);
                rm.gone[i] = true;
                last_removed = i;
            }
        }
        resume_front(r);
    }
    /* 2. everything we have, parents first: files that fail the quick check (size, time) are
     * compared by checksums; full: all data is sent */
    if (rc == 0 && walk_local(r, "", &local) != 0)
        rc = -1;
    progress(r, 0, local.n);
    char **cand = calloc(SUMS_BATCH, sizeof *cand);
    uint32_t ncand = 0;
    if (!cand)
        rc = -1;
    for (size_t i = 0; rc == 0 && i < local.n; i++) {
        sk_bytes lp = man_path(&local, i);
        progress(r, i + 1, 0);
        if (lp.len >= PATH_CAP)
            continue;
        memcpy(path, lp.ptr, lp.len);
        path[lp.len] = '\0';
        long ri = man_removed(&rm, path, lp.len) ? -1 : man_find(&rm, path, lp.len);
        sk_entry re;
        if (ri >= 0)
            re = man_at(&rm, (size_t)ri);
        if (ri >= 0 && re.kind == 'f' && !full) {
            struct stat st;
            if (quick && lst(r, path, &st) == 0 && (uint64_t)st.st_size == re.size && ns_of(st.st_mtim) == re.mtime_ns &&
                S_ISREG(st.st_mode)) {
                rc = sync_entry(r, path, &rm, ri, false, false);
                continue;
            }
            cand[ncand] = strdup(path);
            if (!cand[ncand]) {
                rc = -1;
                break;
            }
            if (++ncand == SUMS_BATCH) {
                rc = sync_by_sums(r, cand, ncand);
                for (uint32_t k = 0; k < ncand; k++)
                    free(cand[k]);
                ncand = 0;
            }
            continue;
        }
        rc = sync_entry(r, path, &rm, ri, true, false);
    }
    if (rc == 0 && ncand)
        rc = sync_by_sums(r, cand, ncand);
    for (uint32_t k = 0; cand && k < ncand; k++)
        free(cand[k]);
    free(cand);
    if (rc == 0) {
        pause_front(r);
        rc = sync_attrs(r, "", NULL, true);
        resume_front(r);
    }
    man_free(&local);
    man_free(&rm);
    return rc;
}

/* The paths renamed into place during the pass, sent again; then SYNC_END, queued in the same
 * pause that found nothing left to send. Its ticket, or 0 (lost). */
static void use_dir(rs *r, uint32_t dir)
{
    const skp_link_config *c = &r->l->cfg;
    if ((int)dir >= c->ndirs)
        dir = 0;
    r->dir = dir;
    r->dir_fd = c->dir_fds[dir];
    r->excl = c->excl ? &c->excl[dir] : NULL;
}

static uint64_t finish(rs *r)
{
    struct skp_link *l = r->l;
    for (;;) {
        if (room(r) != 0)
            return 0;
        pause_front(r);
        pthread_mutex_lock(&l->mu);
        struct pending *p = l->pending;
        if (p)
            l->pending = p->next;
        uint64_t t = 0;
        if (!p && !l->lost) {
            uint8_t buf[32];
            size_t len;
            skp_sync_end((uint64_t)l->generation, buf, sizeof buf, &len);
            t = skp_queue_sync_locked(l, 0, SK_T_SYNC_END, SK_F_ACK, buf, len, 0);
            l->sync_end_ticket = t;
            if (t) /* in sync from here on: a later fsync waits for the secondary (window.h) */
                skp_sync_end_queued(&l->w);
        }
        bool lost = l->lost;
        pthread_mutex_unlock(&l->mu);
        resume_front(r);
        if (!p || lost) {
            free(p);
            return lost ? 0 : t;
        }
        use_dir(r, p->dir);
        int rc = p->dir < (uint32_t)l->cfg.ndirs && !sks_excluded(r->excl, p->path) ? send_tree(r, p->path) : 0;
        free(p);
        if (rc != 0)
            return 0;
    }
}

void *skp_resync_main(void *arg)
{
    struct skp_link *l = arg;
    rs r;
    memset(&r, 0, sizeof r);
    r.l = l;
    use_dir(&r, 0);
    r.buf = malloc(BUF_CAP);
    r.names = malloc(SK_XATTR_VALUE_MAX);
    r.value = malloc(SK_XATTR_VALUE_MAX);
    double started = mono();
    int rc = -1;
    uint64_t end = 0;
    if (r.buf && r.names && r.value) {
        int mode = l->mode;
        rc = 0;
        for (int d = 0; rc == 0 && d < (l->cfg.ndirs > 0 ? l->cfg.ndirs : 1); d++) {
            use_dir(&r, (uint32_t)d);
            rc = mode == SKP_MODE_JOURNAL ? sync_journal(&r) : sync_compare(&r, mode == SKP_MODE_FULL);
        }
        if (rc == 0)
            end = finish(&r);
    }
    free(r.buf);
    free(r.names);
    free(r.value);
    free_linked(&r);
    if (rc != 0 || !end) {
        pthread_mutex_lock(&l->mu);
        if (!l->lost)
            skp_lose_locked(l, "out of memory during the resynchronisation");
        pthread_mutex_unlock(&l->mu);
        return NULL;
    }
    /* in sync once SYNC_END is applied (the secondary synced its copy before it answers) */
    pthread_mutex_lock(&l->mu);
    while (!l->lost && l->w.applied < end)
        skp_state_wait_locked(l, NULL);
    bool synced = !l->lost;
    const char *mode = l->mode == SKP_MODE_JOURNAL ? "journal" : l->mode == SKP_MODE_FULL ? "full" : "checksum";
    uint64_t bytes = l->data_bytes;
    if (synced) {
        skp_session_synced(&l->w);
        l->j0_done = true;
        l->resyncs++;
    }
    pthread_mutex_unlock(&l->mu);
    if (synced) {
        double secs = mono() - started;
        skp_log(SKP_INFO, "secondary in sync (%s resync: %.2f s, %llu bytes of data sent)", mode, secs,
                (unsigned long long)bytes);
        skp_emit_in_sync(mode, secs, (int64_t)bytes);
    }
    return NULL;
}

/* ------------------------------------------------------------------ verify */

/* This node's manifest, held whole: its chunks in order. */
typedef struct local_src {
    const struct mchunk *next;
} local_src;

static int local_next(void *ctx, const uint8_t **payload, size_t *len, const char **why)
{
    (void)why;
    local_src *s = ctx;
    if (!s->next)
        return 0;
    *payload = s->next->p;
    *len = s->next->len;
    s->next = s->next->next;
    return 1;
}

/* The secondary's answer, taken from the link chunk by chunk as it arrives: each freed once the
 * next is asked for. */
typedef struct remote_src {
    struct skp_link *l;
    uint64_t session, index;
    struct mchunk *cur, *pending;
    bool complete;
} remote_src;

static int remote_next(void *ctx, const uint8_t **payload, size_t *len, const char **why)
{
    remote_src *s = ctx;
    free(s->cur);
    s->cur = NULL;
    if (!s->pending && !s->complete) {
        pthread_mutex_lock(&s->l->mu);
        int rc = skp_take_manifest_part_locked(s->l, s->session, s->index, &s->pending, &s->complete);
        pthread_mutex_unlock(&s->l->mu);
        if (rc != 0) {
            *why = "the secondary was lost during the comparison";
            return -1;
        }
    }
    if (!s->pending)
        return 0;
    s->cur = s->pending;
    s->pending = s->cur->next;
    *payload = s->cur->p;
    *len = s->cur->len;
    return 1;
}

static void remote_free(remote_src *s)
{
    free(s->cur);
    while (s->pending) {
        struct mchunk *c = s->pending;
        s->pending = c->next;
        free(c);
    }
    s->cur = NULL;
}

void skp_link_verify(struct skp_link *l)
{
    pthread_mutex_lock(&l->mu);
    bool in_sync = l->in_session && !l->lost && l->w.state == SKP_IN_SYNC;
    char reason[128];
    snprintf(reason, sizeof reason, "the secondary is not in sync (link %s)", skp_state_name(l->w.state));
    pthread_mutex_unlock(&l->mu);
    if (!in_sync) {
        skp_emit_verify(false, 0, NULL, 0, reason);
        return;
    }
    static skp_vreport v;
    memset(&v, 0, sizeof v);
    rs r;
    memset(&r, 0, sizeof r);
    r.l = l;
    const char *failure = NULL;
    for (int d = 0; !failure && d < (l->cfg.ndirs > 0 ? l->cfg.ndirs : 1); d++) {
        use_dir(&r, (uint32_t)d);
        rs_man local;
        memset(&local, 0, sizeof local);
        uint8_t req_payload[16];
        size_t len;
        sk_manifest_req req;
        if (sk_manifest_req_encode(SK_SUMS_ALL, NULL, 0, req_payload, sizeof req_payload, &len, NULL) != SK_OK ||
            sk_manifest_req_decode(req_payload, len, &req, NULL) != SK_OK) {
            failure = "cannot encode the manifest request";
            break;
        }
        /* Our manifest is taken in this very step: the secondary's answers the request queued in
         * the same step, so both describe the same point of the operation order. Ours is held
         * whole (writes go on once it is taken); the secondary's is compared with it chunk by
         * chunk as it arrives (verify.h). */
        pause_front(&r);
        int fd = dup(r.dir_fd);
        collect c = {&local.chunks};
        uint64_t entries;
        int mrc = fd >= 0 ? sks_manifest(fd, false, r.excl, &req, 0, collect_chunk, &c, &entries) : -errno;
        if (fd >= 0)
            close(fd);
        pthread_mutex_lock(&l->mu);
        uint64_t session = l->session;
        uint64_t index = mrc == 0 ? skp_ask_manifest_locked(l, r.dir, req_payload, len, true) : UINT64_MAX;
        pthread_mutex_unlock(&l->mu);
        resume_front(&r);
        if (mrc != 0) {
            failure = "cannot read this node's directory";
        } else {
            local_src ls = {local.chunks};
            remote_src rsrc = {l, session, index, NULL, NULL, false};
            skp_vsource lsrc = {local_next, &ls}, rmsrc = {remote_next, &rsrc};
            const char *why = "";
            if (skp_verify_dir(l->cfg.dir_paths[d], &lsrc, &rmsrc, &v, &why) != 0)
                failure = why;
            remote_free(&rsrc);
        }
        man_free(&local);
    }
    if (failure)
        skp_emit_verify(false, v.checked, v.diff, v.ndiff, failure);
    else
        skp_emit_verify(v.ndiff == 0, v.checked, v.diff, v.ndiff, "");
    skp_vreport_clear(&v);
}
