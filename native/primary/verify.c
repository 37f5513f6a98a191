/* verify.h: two manifests in the walk's order merged in one pass. A side's "record" is one path:
 * its first entry (the attributes) and the entries after it of the same path (a large file's
 * further checksums). */
#include "verify.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sk_ops.h"

#define REC_CAP 65536 /* a path's bytes at most (lp16) */

typedef struct cursor {
    const skp_vsource *src;
    int side;     /* 0 this node's, 1 the secondary's (reasons) */
    sk_manifest_iter it;
    bool in_chunk;
    bool has;     /* e holds an entry */
    sk_entry e;
    uint8_t *rec; /* the current record's path (the previous one's until rec_begin) */
    size_t rec_len;
    bool had_rec;
    bool rec_done;     /* every entry of the record consumed: e (if any) is the next record's first */
    uint32_t si;       /* the next checksum of e */
    uint64_t next_sum; /* the index of the record's next checksum */
} cursor;

enum { MALFORMED, OUT_OF_ORDER, OUT_OF_SEQUENCE };
/* static: a reason outlives the comparison */
static const char *const REASONS[2][3] = {
    {"this node's manifest is malformed", "this node's manifest is not in the walk's order",
     "this node's manifest is malformed (a file's checksums out of sequence)"},
    {"the secondary's manifest is malformed", "the secondary's manifest is not in the walk's order",
     "the secondary's manifest is malformed (a file's checksums out of sequence)"},
};

typedef struct vdiff {
    uint8_t *key; /* the path relative to the directory */
    size_t len;
    char *msg;
} vdiff;

/* The smallest differences (byte order of their paths): a max-heap of at most cap. */
typedef struct vheap {
    vdiff *h;
    size_t n, cap;
} vheap;

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static int vdiff_cmp(const void *pa, const void *pb)
{
    const vdiff *a = pa, *b = pb;
    return key_cmp(a->key, a->len, b->key, b->len);
}

static void heap_swap(vheap *v, size_t i, size_t j)
{
    vdiff t = v->h[i];
    v->h[i] = v->h[j];
    v->h[j] = t;
}

static void heap_down(vheap *v, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, top = i;
        if (l < v->n && vdiff_cmp(&v->h[l], &v->h[top]) > 0)
            top = l;
        if (r < v->n && vdiff_cmp(&v->h[r], &v->h[top]) > 0)
            top = r;
        if (top == i)
            return;
        heap_swap(v, i, top);
        i = top;
    }
}

static void heap_up(vheap *v, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (vdiff_cmp(&v->h[i], &v->h[parent]) <= 0)
            return;
        heap_swap(v, i, parent);
        i = parent;
    }
}

/* A difference at path p: kept if it is among the cap smallest so far. 0, or -1 out of memory. */
static int note(vheap *v, const uint8_t *p, size_t len, const char *fmt, ...)
{
    if (v->cap == 0 || (v->n == v->cap && key_cmp(p, len, v->h[0].key, v->h[0].len) >= 0))
        return 0;
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    vdiff d = {malloc(len + 1), len, need >= 0 ? malloc((size_t)need + 1) : NULL};
    if (!d.key || !d.msg) {
        free(d.key);
        free(d.msg);
        return -1;
    }
    memcpy(d.key, p, len);
    va_start(ap, fmt);
    vsnprintf(d.msg, (size_t)need + 1, fmt, ap);
    va_end(ap);
    if (v->n < v->cap) {
        v->h[v->n++] = d;
        heap_up(v, v->n - 1);
    } else {
        free(v->h[0].key);
        free(v->h[0].msg);
        v->h[0] = d;
        heap_down(v, 0);
    }
    return 0;
}

static int fail(const cursor *c, const char **why, int what)
{
    *why = REASONS[c->side][what];
    return -1;
}

/* The next entry into c->e: 1, 0 at the end, -1. */
static int load(cursor *c, const char **why)
{
    for (;;) {
        if (c->in_chunk) {
            int rc = sk_manifest_next(&c->it, &c->e, NULL);
            if (rc == 1)
                return c->has = true, 1;
            if (rc < 0)
                return fail(c, why, MALFORMED);
            c->in_chunk = false;
        }
        const uint8_t *p;
        size_t len;
        int rc = c->src->next(c->src->ctx, &p, &len, why);
        if (rc <= 0) {
            c->has = false;
            return rc;
        }
        uint32_t count;
        if (sk_manifest_begin(p, len, &c->it, &count, NULL) != SK_OK)
            return fail(c, why, MALFORMED);
        c->in_chunk = true;
    }
}

static bool in_rec(const cursor *c)
{
    return c->e.path.len == c->rec_len && (c->rec_len == 0 || memcmp(c->e.path.ptr, c->rec, c->rec_len) == 0);
}

/* The record starting at c->e: after the previous one in the walk's order. 0 or -1. */
static int rec_begin(cursor *c, const char **why)
{
    if (c->had_rec && sk_walk_cmp(c->rec, c->rec_len, c->e.path.ptr, c->e.path.len) >= 0)
        return fail(c, why, OUT_OF_ORDER);
    if (c->e.path.len > REC_CAP)
        return fail(c, why, MALFORMED);
    if (c->e.path.len)
        memcpy(c->rec, c->e.path.ptr, c->e.path.len);
    c->rec_len = c->e.path.len;
    c->had_rec = true;
    c->rec_done = false;
    c->si = 0;
    c->next_sum = 0;
    if (c->e.has_sums && c->e.sums_first != 0)
        return fail(c, why, OUT_OF_SEQUENCE);
    return 0;
}

/* The record's next block checksum: 1 (*sum set, valid until c moves to another chunk), 0 when
 * the record has no more (c then holds the next record's first entry, or nothing), -1. */
static int next_sum(cursor *c, const uint8_t **sum, const char **why)
{
    for (;;) {
        if (c->rec_done)
            return 0;
        if (c->e.has_sums && c->si < c->e.nsums) {
            *sum = c->e.sums.ptr + (size_t)c->si * SK_SUM_SIZE;
            c->si++;
            c->next_sum++;
            return 1;
        }
        int rc = load(c, why);
        if (rc < 0)
            return -1;
        if (rc == 0 || !in_rec(c)) {
            c->rec_done = true;
            return 0;
        }
        /* the same file's further checksums */
        if (!c->e.has_sums || c->e.sums_first != c->next_sum)
            return fail(c, why, OUT_OF_SEQUENCE);
        c->si = 0;
    }
}

/* Past the rest of the record. 0 or -1. */
static int rec_skip(cursor *c, const char **why)
{
    const uint8_t *s;
    int rc;
    while ((rc = next_sum(c, &s, why)) == 1)
        ;
    return rc;
}

/* What differs between the two records that both cursors begin (type, size, content, symlink
 * target, mode/owner, modification time, in that order), in words: "" when the same. Reads
 * both records' checksums. 0 or -1. */
static int differs(cursor *l, cursor *r, char *out, size_t cap, const char **why)
{
    const sk_entry *a = &l->e, *b = &r->e;
    out[0] = '\0';
    if (a->kind != b->kind) {
        snprintf(out, cap, "type %c here, %c there", a->kind, b->kind);
        return 0;
    }
    if (a->kind == 'f' && a->size != b->size) {
        snprintf(out, cap, "size %llu here, %llu there", (unsigned long long)a->size, (unsigned long long)b->size);
        return 0;
    }
    /* the rest from the first entries, before the checksums move the cursors on */
    if (a->kind == 'l' && (a->target.len != b->target.len || memcmp(a->target.ptr, b->target.ptr, a->target.len) != 0))
        snprintf(out, cap, "symlink target differs");
    else if (a->mode != b->mode || a->uid != b->uid || a->gid != b->gid)
        snprintf(out, cap, "mode/owner 0o%o %u:%u here, 0o%o %u:%u there", a->mode, a->uid, a->gid, b->mode, b->uid,
                 b->gid);
    else if (a->kind == 'f' && a->mtime_ns != b->mtime_ns)
        snprintf(out, cap, "modification time differs");
    if (a->kind != 'f')
        return 0;
    /* the same block checksums, in the same number */
    for (;;) {
        const uint8_t *x = NULL, *y = NULL;
        int rx = next_sum(l, &x, why);
        if (rx < 0)
            return -1;
        int ry = next_sum(r, &y, why);
        if (ry < 0)
            return -1;
        if (rx == 0 && ry == 0)
            return 0;
        if (rx == 0 || ry == 0 || memcmp(x, y, SK_SUM_SIZE) != 0)
            break;
    }
    snprintf(out, cap, "content differs");
    return 0;
}

/* The record that c begins, on its side only: counted, noted as "LABEL: DIR/PATH" (the directory
 * itself, "", is not an object of the report), skipped. 0, or -1 with *why. */
static int one_side(cursor *c, vheap *v, skp_vreport *r, const char *dir, const char *label, const char **why)
{
    if (rec_begin(c, why) != 0)
        return -1;
    if (c->rec_len) {
        r->checked++;
        if (note(v, c->rec, c->rec_len, "%s: %s/%.*s", label, dir, (int)c->rec_len, (const char *)c->rec) != 0) {
            *why = "out of memory";
            return -1;
        }
    }
    return rec_skip(c, why);
}

static int cursor_init(cursor *c, const skp_vsource *src, int side)
{
    memset(c, 0, sizeof *c);
    c->src = src;
    c->side = side;
    c->rec = malloc(REC_CAP);
    return c->rec ? 0 : -1;
}

int skp_verify_dir(const char *dir, const skp_vsource *local, const skp_vsource *remote, skp_vreport *r,
                   const char **why)
{
    cursor *cs = calloc(2, sizeof *cs);
    vheap v = {NULL, 0, SKP_VERIFY_MAX_DIFFERENCES - r->ndiff};
    int rc = -1;
    *why = "out of memory";
    if (!cs || cursor_init(&cs[0], local, 0) != 0 || cursor_init(&cs[1], remote, 1) != 0 ||
        !(v.h = calloc(v.cap + 1, sizeof *v.h)))
        goto out;
    cursor *L = &cs[0], *R = &cs[1];
    if (load(L, why) < 0 || load(R, why) < 0)
        goto out;
    char what[256];
    while (L->has || R->has) {
        int c = !L->has ? 1 : !R->has ? -1 : sk_walk_cmp(L->e.path.ptr, L->e.path.len, R->e.path.ptr, R->e.path.len);
        if (c < 0) {
            if (one_side(L, &v, r, dir, "missing on the secondary", why) != 0)
                goto out;
        } else if (c > 0) {
            if (one_side(R, &v, r, dir, "only on the secondary", why) != 0)
                goto out;
        } else {
            if (rec_begin(L, why) != 0 || rec_begin(R, why) != 0)
                goto out;
            if (L->rec_len) {
                r->checked++;
                if (differs(L, R, what, sizeof what, why) != 0)
                    goto out;
                if (what[0] && note(&v, L->rec, L->rec_len, "%s/%.*s: %s", dir, (int)L->rec_len, (const char *)L->rec,
                                    what) != 0)
                    goto oom;
            }
            if (rec_skip(L, why) != 0 || rec_skip(R, why) != 0)
                goto out;
        }
    }
    if (v.n)
        qsort(v.h, v.n, sizeof *v.h, vdiff_cmp);
    for (size_t i = 0; i < v.n; i++) {
        r->diff[r->ndiff++] = v.h[i].msg;
        v.h[i].msg = NULL;
    }
    rc = 0;
    *why = "";
    goto out;
oom:
    *why = "out of memory";
out:
    for (size_t i = 0; i < v.n; i++) {
        free(v.h[i].key);
        free(v.h[i].msg);
    }
    free(v.h);
    if (cs) {
        free(cs[0].rec);
        free(cs[1].rec);
    }
    free(cs);
    return rc;
}

void skp_vreport_clear(skp_vreport *r)
{
    for (size_t i = 0; i < r->ndiff; i++)
        free(r->diff[i]);
    memset(r, 0, sizeof *r);
}
