/* The primary's reintegration journal (see journal.h). */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sk_ops.h"
#include "sk_wire.h"
#include "state.h"

#define RENAME_EXCHANGE_FLAG 2u
#define JOURNAL_FILE_MAX (256u << 20)
#define SKP_PATH_MAX 0xFFFFu

static uint64_t hash_of(uint32_t dir, const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ dir;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

int skp_journal_init(skp_journal *j, const char *epoch, bool trusted)
{
    memset(j, 0, sizeof *j);
    snprintf(j->epoch, sizeof j->epoch, "%s", epoch ? epoch : "");
    j->trusted = trusted;
    j->nbuckets = 256;
    j->buckets = calloc(j->nbuckets, sizeof *j->buckets);
    return j->buckets ? 0 : -1;
}

static void free_entries(skp_journal *j)
{
    for (size_t i = 0; j->buckets && i < j->nbuckets; i++) {
        skp_jentry *e = j->buckets[i];
        while (e) {
            skp_jentry *next = e->hnext;
            free(e->z);
            free(e);
            e = next;
        }
        j->buckets[i] = NULL;
    }
    j->count = 0;
    j->ranges = 0;
}

void skp_journal_free(skp_journal *j)
{
    free_entries(j);
    free(j->buckets);
    j->buckets = NULL;
    j->nbuckets = 0;
}

void skp_journal_clear(skp_journal *j)
{
    free_entries(j);
    j->has_since = j->has_gap = false;
    j->changes++;
}

int skp_journal_take(skp_journal *j, skp_journal *dst)
{
    skp_journal fresh;
    if (skp_journal_init(&fresh, j->epoch, true) != 0)
        return -1;
    fresh.seq = j->seq;
    *dst = *j;
    *j = fresh;
    return 0;
}

static int grow(skp_journal *j)
{
    size_t n = j->nbuckets * 2;
    skp_jentry **b = calloc(n, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < j->nbuckets; i++) {
        skp_jentry *e = j->buckets[i];
        while (e) {
            skp_jentry *next = e->hnext;
            size_t k = hash_of(e->dir, e->path, e->path_len) & (n - 1);
            e->hnext = b[k];
            b[k] = e;
            e = next;
        }
    }
    free(j->buckets);
    j->buckets = b;
    j->nbuckets = n;
    return 0;
}

const skp_jentry *skp_journal_find(const skp_journal *j, uint32_t dir, const char *path, size_t len)
{
    if (!j->buckets)
        return NULL;
    for (skp_jentry *e = j->buckets[hash_of(dir, path, len) & (j->nbuckets - 1)]; e; e = e->hnext)
        if (e->dir == dir && e->path_len == len && memcmp(e->path, path, len) == 0)
            return e;
    return NULL;
}

/* The entry of (dir, path), created empty if needed; counts a change. NULL: out of memory. */
static skp_jentry *entry(skp_journal *j, uint32_t dir, const char *path, size_t len, double now)
{
    j->changes++;
    if (!j->has_since && j->count == 0) {
        j->has_since = true;
        j->since = now;
    }
    skp_jentry *e = (skp_jentry *)skp_journal_find(j, dir, path, len);
    if (e)
        return e;
    if (j->count >= j->nbuckets && grow(j) != 0)
        return NULL;
    e = calloc(1, sizeof *e + len + 1);
    if (!e)
        return NULL;
    e->dir = dir;
    e->trunc = -1;
    e->path_len = len;
    memcpy(e->path, path, len);
    size_t k = hash_of(dir, path, len) & (j->nbuckets - 1);
    e->hnext = j->buckets[k];
    j->buckets[k] = e;
    j->count++;
    return e;
}

/* Sorted, disjoint, non-adjacent ranges [lo, hi] (an entry's pages, or zones while decoding). */
typedef struct ranges {
    uint64_t (*r)[2];
    size_t n, cap;
} ranges;

/* Add [lo, hi] to the ranges (merging overlapping and adjacent ones). 0 or -1. */
static int ranges_add(ranges *x, uint64_t lo, uint64_t hi)
{
    /* first range that ends at or after lo - 1 */
    size_t a = 0, b = x->n;
    while (a < b) {
        size_t m = (a + b) / 2;
        if (x->r[m][1] + 1 < lo)
            a = m + 1;
        else
            b = m;
    }
    size_t first = a, last = a; /* ranges [first, last) merge with [lo, hi] */
    while (last < x->n && x->r[last][0] <= hi + 1 && hi + 1 != 0) {
        if (x->r[last][0] < lo)
            lo = x->r[last][0];
        if (x->r[last][1] > hi)
            hi = x->r[last][1];
        last++;
    }
    if (last > first) {
        x->r[first][0] = lo;
        x->r[first][1] = hi;
        if (last - first > 1) { /* (a page written again: nothing moves) */
            memmove(x->r + first + 1, x->r + last, (x->n - last) * sizeof *x->r);
            x->n -= last - first - 1;
        }
        return 0;
    }
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 4;
        void *r = realloc(x->r, cap * sizeof *x->r);
        if (!r)
            return -1;
        x->r = r;
        x->cap = cap;
    }
    memmove(x->r + first + 1, x->r + first, (x->n - first) * sizeof *x->r);
    x->r[first][0] = lo;
    x->r[first][1] = hi;
    x->n++;
    return 0;
}

/* Page ranges rounded out to whole zones, in place (still in pages). */
static void round_to_zones(ranges *x)
{
    size_t out = 0;
    for (size_t i = 0; i < x->n; i++) {
        uint64_t lo = x->r[i][0] / SKP_PAGES_PER_ZONE * SKP_PAGES_PER_ZONE;
        uint64_t hi = x->r[i][1] / SKP_PAGES_PER_ZONE * SKP_PAGES_PER_ZONE + (SKP_PAGES_PER_ZONE - 1);
        if (out && x->r[out - 1][1] + 1 >= lo) {
            if (hi > x->r[out - 1][1])
                x->r[out - 1][1] = hi;
        } else {
            x->r[out][0] = lo;
            x->r[out][1] = hi;
            out++;
        }
    }
    x->n = out;
}

/* The zones of page ranges (journal.json's "z"): 0 or -1. */
static int zones_of_pages(const uint64_t (*p)[2], size_t n, ranges *out)
{
    for (size_t i = 0; i < n; i++)
        if (ranges_add(out, p[i][0] / SKP_PAGES_PER_ZONE, p[i][1] / SKP_PAGES_PER_ZONE) != 0)
            return -1;
    return 0;
}

/* Add pages [lo, hi] to e's ranges. An entry above SKP_RANGES_MAX ranges, or one that grows while
 * the whole journal holds more than SKP_JOURNAL_RANGES_MAX, is rounded out to zones (memory stays
 * bounded; never less than what was written). */
static int add_zones(skp_journal *j, skp_jentry *e, uint64_t lo, uint64_t hi)
{
    ranges x = {e->z, e->nz, e->zcap};
    size_t before = x.n;
    int rc = ranges_add(&x, lo, hi);
    if (rc == 0 && (x.n > SKP_RANGES_MAX || (x.n > before && j->ranges + 1 > SKP_JOURNAL_RANGES_MAX)))
        round_to_zones(&x);
    e->z = x.r;
    e->nz = x.n;
    e->zcap = x.cap;
    j->ranges = j->ranges - before + x.n;
    return rc;
}

static void clear_zones(skp_journal *j, skp_jentry *e)
{
    j->ranges -= e->nz;
    free(e->z);
    e->z = NULL;
    e->nz = e->zcap = 0;
}

int skp_journal_mark(skp_journal *j, const skp_mark *m, double now)
{
    skp_jentry *e = entry(j, m->dir, m->path, m->path_len, now);
    if (!e) {
        j->trusted = false;
        return -1;
    }
    switch (m->kind) {
    case SKP_M_WROTE:
        if (e->whole || m->b == 0)
            return 0;
        if (add_zones(j, e, m->a / SKP_PAGE, (m->a + m->b - 1) / SKP_PAGE) != 0) {
            j->trusted = false;
            return -1;
        }
        return 0;
    case SKP_M_TRUNC:
        e->meta = true;
        if (!e->whole && (e->trunc < 0 || (uint64_t)e->trunc > m->a))
            e->trunc = m->a > INT64_MAX ? INT64_MAX : (int64_t)m->a;
        return 0;
    case SKP_M_META:
        e->meta = true;
        return 0;
    case SKP_M_LINKED:
        j->trusted = false;
        /* fall through */
    case SKP_M_REPLACED:
        e->whole = e->meta = true;
        e->trunc = -1;
        clear_zones(j, e);
        return 0;
    case SKP_M_REMOVED:
        e->meta = true;
        clear_zones(j, e);
        return 0;
    }
    return 0;
}

int skp_marks_of(const skp_op *op, skp_mark out[2])
{
    skp_mark m = {0, op->dir, op->path, op->path_len, 0, 0};
    switch (op->type) {
    case SK_T_WRITE:
        m.kind = SKP_M_WROTE;
        m.a = op->offset;
        m.b = op->data_len;
        break;
    case SK_T_FALLOCATE:
        m.kind = SKP_M_WROTE;
        m.a = op->offset;
        m.b = op->length;
        break;
    case SK_T_TRUNCATE:
        m.kind = SKP_M_TRUNC;
        m.a = op->size;
        break;
    case SK_T_SETATTR:
        if (op->mask & SK_ATTR_SIZE) {
            m.kind = SKP_M_TRUNC;
            m.a = op->size;
        } else {
            m.kind = SKP_M_META;
        }
        break;
    case SK_T_SETXATTR:
    case SK_T_REMOVEXATTR:
    case SK_T_CLEAR_XATTRS:
        m.kind = SKP_M_META;
        break;
    case SK_T_CREATE:
    case SK_T_MKDIR:
    case SK_T_SYMLINK:
    case SK_T_MKNOD:
        m.kind = SKP_M_REPLACED;
        break;
    case SK_T_UNLINK:
    case SK_T_RMDIR:
    case SK_T_REMOVE_TREE:
        m.kind = SKP_M_REMOVED;
        break;
    case SK_T_RENAME:
        out[0] = m;
        out[0].kind = (op->flags & RENAME_EXCHANGE_FLAG) ? SKP_M_REPLACED : SKP_M_REMOVED;
        out[1] = (skp_mark){SKP_M_REPLACED, op->dir, op->path2, op->path2_len, 0, 0};
        return 2;
    case SK_T_LINK: /* the new name: a whole object the secondary may not have */
        out[0] = (skp_mark){SKP_M_LINKED, op->dir, op->path2, op->path2_len, 0, 0};
        return 1;
    default:
        return 0;
    }
    out[0] = m;
    return 1;
}

int skp_journal_merge(skp_journal *j, const skp_journal *src, double now)
{
    if (src->has_since && (!j->has_since || src->since < j->since)) {
        j->has_since = true;
        j->since = src->since;
    }
    if (src->has_gap) {
        if (!j->has_gap) {
            j->has_gap = true;
            j->gap_from = src->gap_from;
            j->gap_to = src->gap_to;
        } else {
            if (src->gap_from < j->gap_from)
                j->gap_from = src->gap_from;
            if (src->gap_to > j->gap_to)
                j->gap_to = src->gap_to;
        }
    }
    for (size_t i = 0; i < src->nbuckets; i++) {
        for (const skp_jentry *s = src->buckets[i]; s; s = s->hnext) {
            skp_jentry *e = entry(j, s->dir, s->path, s->path_len, now);
            if (!e) {
                j->trusted = false;
                return -1;
            }
            e->whole = e->whole || s->whole;
            e->meta = e->meta || s->meta;
            if (e->whole) {
                clear_zones(j, e);
                e->trunc = -1;
                continue;
            }
            for (size_t k = 0; k < s->nz; k++) {
                if (add_zones(j, e, s->z[k][0], s->z[k][1]) != 0) {
                    j->trusted = false;
                    return -1;
                }
            }
            if (s->trunc >= 0 && (e->trunc < 0 || s->trunc < e->trunc))
                e->trunc = s->trunc;
        }
    }
    return 0;
}

size_t skp_journal_len(const skp_journal *j)
{
    return j->count;
}

uint64_t skp_journal_dirty_bytes(const skp_journal *j)
{
    uint64_t pages = 0;
    for (size_t i = 0; i < j->nbuckets; i++)
        for (const skp_jentry *e = j->buckets[i]; e; e = e->hnext)
            for (size_t k = 0; k < e->nz; k++)
                pages += e->z[k][1] - e->z[k][0] + 1;
    return pages * SKP_PAGE;
}

int skp_path_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    for (size_t i = 0; i < n; i++) {
        int x = a[i] == '/' ? 0 : (unsigned char)a[i] + 1;
        int y = b[i] == '/' ? 0 : (unsigned char)b[i] + 1;
        if (x != y)
            return x < y ? -1 : 1;
    }
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int cmp_entries(const void *pa, const void *pb)
{
    const skp_jentry *a = *(const skp_jentry *const *)pa, *b = *(const skp_jentry *const *)pb;
    return skp_path_cmp(a->path, a->path_len, b->path, b->path_len);
}

const skp_jentry **skp_journal_plan(const skp_journal *j, uint32_t dir, size_t *n)
{
    *n = 0;
    size_t count = 0;
    for (size_t i = 0; i < j->nbuckets; i++)
        for (const skp_jentry *e = j->buckets[i]; e; e = e->hnext)
            count += e->dir == dir;
    if (!count)
        return NULL;
    const skp_jentry **all = malloc(count * sizeof *all);
    if (!all) {
        *n = SIZE_MAX;
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < j->nbuckets; i++)
        for (const skp_jentry *e = j->buckets[i]; e; e = e->hnext)
            if (e->dir == dir)
                all[k++] = e;
    qsort(all, count, sizeof *all, cmp_entries);
    /* in this order a path's descendants follow it directly: one "whole" ancestor at a time */
    size_t out = 0;
    const skp_jentry *whole = NULL;
    for (size_t i = 0; i < count; i++) {
        const skp_jentry *e = all[i];
        if (whole && e->path_len > whole->path_len && memcmp(e->path, whole->path, whole->path_len) == 0 &&
            e->path[whole->path_len] == '/')
            continue;
        all[out++] = e;
        whole = e->whole && e->path_len ? e : NULL;
    }
    *n = out;
    return all;
}

/* ------------------------------------------------------------------ journal.json */

/* A path as Python writes bytes.decode("latin-1") with json.dumps (ensure_ascii). */
static void latin1_string(skj_buf *b, const char *s, size_t n)
{
    skj_raw(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            skj_raw(b, esc, 2);
        } else if (c >= 0x20 && c < 0x7f) {
            skj_raw(b, (const char *)&s[i], 1);
        } else {
            const char *named = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : c == '\b' ? "\\b"
                              : c == '\f' ? "\\f" : NULL;
            if (named) {
                skj_rawz(b, named);
            } else {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                skj_raw(b, esc, 6);
            }
        }
    }
    skj_raw(b, "\"", 1);
}

static void number(skj_buf *b, double v)
{
    char s[64];
    snprintf(s, sizeof s, "%.6f", v);
    skj_rawz(b, s);
}

static int cmp_dir_path(const void *pa, const void *pb)
{
    const skp_jentry *a = *(const skp_jentry *const *)pa, *b = *(const skp_jentry *const *)pb;
    if (a->dir != b->dir)
        return a->dir < b->dir ? -1 : 1;
    size_t n = a->path_len < b->path_len ? a->path_len : b->path_len;
    int c = memcmp(a->path, b->path, n);
    if (c)
        return c;
    return a->path_len < b->path_len ? -1 : a->path_len > b->path_len;
}

static void range_list(skj_buf *b, const char *key, const uint64_t (*r)[2], size_t n)
{
    skj_rawz(b, key);
    for (size_t i = 0; i < n; i++) {
        skj_raw(b, i ? ",[" : "[", i ? 2 : 1);
        skj_u64(b, r[i][0]);
        skj_raw(b, ",", 1);
        skj_u64(b, r[i][1]);
        skj_raw(b, "]", 1);
    }
    skj_raw(b, "]", 1);
}

void skp_journal_encode(const skp_journal *j, bool clean, double now, skj_buf *b)
{
    skj_rawz(b, "{\"version\":1,\"epoch\":");
    skj_stringz(b, j->epoch);
    skj_rawz(b, ",\"clean\":");
    skj_boolean(b, clean && j->trusted);
    skj_rawz(b, ",\"stopped\":");
    skj_boolean(b, clean);
    skj_rawz(b, ",\"saved_at\":");
    number(b, now);
    skj_rawz(b, ",\"seq\":");
    skj_u64(b, j->seq);
    if (j->has_since) {
        skj_rawz(b, ",\"since\":");
        number(b, j->since);
    }
    if (j->has_gap) {
        skj_rawz(b, ",\"gap\":[");
        number(b, j->gap_from);
        skj_raw(b, ",", 1);
        number(b, j->gap_to);
        skj_raw(b, "]", 1);
    }
    skj_rawz(b, ",\"entries\":{");
    const skp_jentry **all = j->count ? malloc(j->count * sizeof *all) : NULL;
    if (j->count && !all) {
        b->bad = true;
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < j->nbuckets; i++)
        for (const skp_jentry *e = j->buckets[i]; e; e = e->hnext)
            all[k++] = e;
    if (k)
        qsort(all, k, sizeof *all, cmp_dir_path);
    for (size_t i = 0; i < k; i++) {
        const skp_jentry *e = all[i];
        if (i == 0 || all[i - 1]->dir != e->dir) {
            if (i)
                skj_raw(b, "},", 2);
            char d[32];
            snprintf(d, sizeof d, "\"%u\":{", e->dir);
            skj_rawz(b, d);
        } else {
            skj_raw(b, ",", 1);
        }
        latin1_string(b, e->path, e->path_len);
        skj_raw(b, ":{", 2);
        bool comma = false;
        if (e->whole) {
            skj_rawz(b, "\"w\":1");
            comma = true;
        }
        if (e->meta) {
            skj_rawz(b, comma ? ",\"m\":1" : "\"m\":1");
            comma = true;
        }
        if (e->nz) {
            ranges zones = {0};
            if (zones_of_pages((const uint64_t(*)[2])e->z, e->nz, &zones) != 0) {
                b->bad = true;
                free(all);
                return;
            }
            range_list(b, comma ? ",\"z\":[" : "\"z\":[", (const uint64_t(*)[2])zones.r, zones.n);
            free(zones.r);
            range_list(b, ",\"p\":[", (const uint64_t(*)[2])e->z, e->nz);
            comma = true;
        }
        if (e->trunc >= 0) {
            skj_rawz(b, comma ? ",\"t\":" : "\"t\":");
            skj_i64(b, e->trunc);
        }
        skj_raw(b, "}", 1);
    }
    if (k)
        skj_raw(b, "}", 1);
    skj_rawz(b, "}}");
    free(all);
}

/* A JSON string of code points < 256 back to the bytes Python's latin-1 decoding made of them. */
static bool latin1_of(const char *utf8, size_t n, char *out, size_t *outlen)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)utf8[i];
        if (c < 0x80) {
            out[k++] = (char)c;
            i++;
        } else if ((c & 0xe0) == 0xc0 && c <= 0xc3 && i + 1 < n && ((unsigned char)utf8[i + 1] & 0xc0) == 0x80) {
            out[k++] = (char)(((c & 0x1f) << 6) | ((unsigned char)utf8[i + 1] & 0x3f));
            i += 2;
        } else {
            return false;
        }
    }
    *outlen = k;
    return true;
}

static int bad(char *why, size_t cap, const char *what)
{
    snprintf(why, cap, "journal: %s", what);
    return -1;
}

static bool get_double(const char *t, const skj_tok *k, int i, double *out)
{
    return i >= 0 && skj_num(t, k, i, out);
}

/* The largest zone and page indexes read (so that a page's byte offset fits in 64 bits): a
 * larger one is read as this one (a range beyond every file, kept). */
#define ZONE_INDEX_MAX (UINT64_MAX / SKP_ZONE - 1)
#define PAGE_INDEX_MAX ((ZONE_INDEX_MAX + 1) * SKP_PAGES_PER_ZONE - 1)

/* A list of [low, high] at token t into x (values above max read as max). 0 or -1 (why set). */
static int read_ranges(const char *text, const skj_tok *k, int t, uint64_t max, ranges *x, char *why, size_t cap)
{
    if (k[t].type != SKJ_ARR)
        return bad(why, cap, "zones are not a list");
    for (int i = 0; i < k[t].size; i++) {
        int r = skj_elem(k, t, i);
        int64_t lo, hi;
        if (r < 0 || k[r].type != SKJ_ARR || k[r].size != 2 || !skj_int(text, k, skj_elem(k, r, 0), &lo) ||
            !skj_int(text, k, skj_elem(k, r, 1), &hi) || lo < 0 || hi < lo)
            return bad(why, cap, "a zone range is not [low, high]");
        uint64_t l = (uint64_t)lo > max ? max : (uint64_t)lo, h = (uint64_t)hi > max ? max : (uint64_t)hi;
        if (ranges_add(x, l, h) != 0)
            return bad(why, cap, "out of memory");
    }
    return 0;
}

static int decode_entry(skp_journal *j, uint32_t dir, const char *text, const skj_tok *k, int key, int val,
                        char *path, char *why, size_t cap)
{
    size_t raw = k[key].end - k[key].start;
    char *un = malloc(raw + 1);
    if (!un)
        return bad(why, cap, "out of memory");
    size_t plen = 0;
    bool ok = skj_str(text, k, key, un, raw + 1) && latin1_of(un, strlen(un), path, &plen);
    free(un);
    if (!ok || plen > SKP_PATH_MAX)
        return bad(why, cap, "an entry's path is not a latin-1 string");
    if (k[val].type != SKJ_OBJ)
        return bad(why, cap, "an entry is not an object");
    skp_jentry *e = entry(j, dir, path, plen, 0);
    if (!e)
        return bad(why, cap, "out of memory");
    int64_t v;
    int t;
    if ((t = skj_get(text, k, val, "w")) >= 0 && skj_int(text, k, t, &v) && v)
        e->whole = true;
    if ((t = skj_get(text, k, val, "m")) >= 0 && skj_int(text, k, t, &v) && v)
        e->meta = true;
    if ((t = skj_get(text, k, val, "t")) >= 0) {
        if (!skj_int(text, k, t, &v) || v < 0)
            return bad(why, cap, "a truncation is not a size");
        e->trunc = v;
    }
    /* "z": zones (journal.py's); "p": the pages within them (ours). The pages are used when
     * they make exactly those zones; else (a save edited by something that knows only "z") the
     * union: every zone whole, plus the pages. */
    ranges zones = {0}, pages = {0};
    bool has_pages = false;
    int rc = 0;
    if ((t = skj_get(text, k, val, "z")) >= 0)
        rc = read_ranges(text, k, t, ZONE_INDEX_MAX, &zones, why, cap);
    if (rc == 0 && (t = skj_get(text, k, val, "p")) >= 0) {
        has_pages = true;
        rc = read_ranges(text, k, t, PAGE_INDEX_MAX, &pages, why, cap);
    }
    if (rc == 0) {
        ranges made = {0};
        bool agree = false;
        if (has_pages) {
            if (zones_of_pages((const uint64_t(*)[2])pages.r, pages.n, &made) != 0)
                rc = bad(why, cap, "out of memory");
            agree = made.n == zones.n && (!made.n || memcmp(made.r, zones.r, made.n * sizeof *made.r) == 0);
        }
        free(made.r);
        for (size_t i = 0; rc == 0 && !agree && i < zones.n; i++)
            if (add_zones(j, e, zones.r[i][0] * SKP_PAGES_PER_ZONE,
                          zones.r[i][1] * SKP_PAGES_PER_ZONE + (SKP_PAGES_PER_ZONE - 1)) != 0)
                rc = bad(why, cap, "out of memory");
        for (size_t i = 0; rc == 0 && i < pages.n; i++)
            if (add_zones(j, e, pages.r[i][0], pages.r[i][1]) != 0)
                rc = bad(why, cap, "out of memory");
    }
    free(zones.r);
    free(pages.r);
    if (rc != 0)
        return rc;
    if (e->whole) {
        clear_zones(j, e);
        e->trunc = -1;
    }
    return 0;
}

int skp_journal_decode(const char *text, size_t len, double now, skp_journal *j, char *why, size_t cap)
{
    if (skp_journal_init(j, "", false) != 0)
        return bad(why, cap, "out of memory");
    if (len > JOURNAL_FILE_MAX)
        return bad(why, cap, "too large");
    int max = (int)(len / 2 + 64);
    skj_tok *k = malloc(sizeof *k * (size_t)max);
    char *path = malloc(SKP_PATH_MAX + 8);
    int rc = -1;
    if (!k || !path) {
        bad(why, cap, "out of memory");
        goto out;
    }
    if (skj_parse(text, len, k, max) <= 0 || k[0].type != SKJ_OBJ) {
        bad(why, cap, "not a JSON object");
        goto out;
    }
    int64_t v;
    if (!skj_int(text, k, skj_get(text, k, 0, "version"), &v) || v != 1) {
        bad(why, cap, "unknown version");
        goto out;
    }
    int t = skj_get(text, k, 0, "epoch");
    if (t < 0 || !skj_str(text, k, t, j->epoch, sizeof j->epoch)) {
        bad(why, cap, "no epoch");
        goto out;
    }
    for (const char *c = j->epoch; *c; c++) {
        if (*c < 0x20 || *c > 0x7e) { /* a history id is printable ASCII (uuid4().hex, or ours) */
            bad(why, cap, "the epoch is not printable ASCII");
            goto out;
        }
    }
    bool clean = false, stopped;
    skj_bool(k, skj_get(text, k, 0, "clean"), &clean);
    if (!skj_bool(k, skj_get(text, k, 0, "stopped"), &stopped))
        stopped = clean;
    j->trusted = clean;
    if (skj_int(text, k, skj_get(text, k, 0, "seq"), &v) && v >= 0)
        j->seq = (uint64_t)v;
    double d;
    if (get_double(text, k, skj_get(text, k, 0, "since"), &d)) {
        j->has_since = true;
        j->since = d;
    }
    t = skj_get(text, k, 0, "gap");
    double a, b2;
    if (t >= 0 && k[t].type == SKJ_ARR && k[t].size == 2 && get_double(text, k, skj_elem(k, t, 0), &a) &&
        get_double(text, k, skj_elem(k, t, 1), &b2)) {
        j->has_gap = true;
        j->gap_from = a;
        j->gap_to = b2;
    }
    if (!stopped) { /* what the process did after this save is unknown */
        double saved = 0;
        get_double(text, k, skj_get(text, k, 0, "saved_at"), &saved);
        if (!j->has_gap) {
            j->has_gap = true;
            j->gap_from = saved;
            j->gap_to = now;
        } else {
            if (saved < j->gap_from)
                j->gap_from = saved;
            if (now > j->gap_to)
                j->gap_to = now;
        }
    }
    int ents = skj_get(text, k, 0, "entries");
    if (ents >= 0) {
        if (k[ents].type != SKJ_OBJ) {
            bad(why, cap, "entries is not an object");
            goto out;
        }
        int dk = ents + 1;
        for (int i = 0; i < k[ents].size; i++) {
            int dv = dk + 1;
            char dname[16];
            char *end;
            if (!skj_str(text, k, dk, dname, sizeof dname) || !dname[0]) {
                bad(why, cap, "a directory index is not a number");
                goto out;
            }
            unsigned long dir = strtoul(dname, &end, 10);
            if (*end || dir > 1024 || k[dv].type != SKJ_OBJ) {
                bad(why, cap, "a directory index is not a number");
                goto out;
            }
            int pk = dv + 1;
            for (int p = 0; p < k[dv].size; p++) {
                int pv = pk + 1;
                if (decode_entry(j, (uint32_t)dir, text, k, pk, pv, path, why, cap) != 0)
                    goto out;
                pk = k[pv].next;
            }
            dk = k[dv].next;
        }
    }
    j->changes = 0;
    rc = 0;
out:
    if (rc != 0) {
        free_entries(j);
        j->trusted = false;
    }
    free(k);
    free(path);
    return rc;
}

int skp_journal_save(const skp_journal *j, const char *path, bool clean, double now)
{
    skj_buf b = {0};
    skp_journal_encode(j, clean, now, &b);
    int rc = b.bad ? -ENOMEM : sks_write_atomic(path, b.p, b.len, 0600);
    skj_buf_free(&b);
    return rc;
}

int skp_journal_load(const char *path, double now, skp_journal *j, char *why, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(why, cap, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    char *text = NULL;
    int rc = -1;
    if (fstat(fd, &st) != 0 || st.st_size > (off_t)JOURNAL_FILE_MAX) {
        snprintf(why, cap, "%s: cannot read it or too large", path);
        goto out;
    }
    text = malloc((size_t)st.st_size + 1);
    if (!text) {
        snprintf(why, cap, "out of memory");
        goto out;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, text + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    rc = skp_journal_decode(text, got, now, j, why, cap) == 0 ? 1 : -1;
out:
    free(text);
    close(fd);
    return rc;
}
