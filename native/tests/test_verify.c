/* The primary's verify (primary/verify.c): two manifests in the walk's order merged in one pass,
 * chunk by chunk, into the report the whole-manifest comparison made: every kind of difference,
 * in byte order of the paths, the first ones while the report has room; and failures (a source
 * lost, a malformed chunk, entries out of order). */
#include <stdlib.h>

#include "sk_ops.h"
#include "sk_test.h"
#include "verify.h"

#define MAX_CHUNKS 64

/* A manifest being written: chunks of at most `cap` bytes, the next one started when full. */
typedef struct man {
    uint8_t *chunk[MAX_CHUNKS];
    size_t len[MAX_CHUNKS];
    int n;
    size_t cap;
    sk_manifest_writer w;
    bool open;
    /* as a source */
    int at;
    int fail_at; /* the source fails when asked for this chunk (-1: never) */
} man;

static void man_init(man *m, size_t cap)
{
    memset(m, 0, sizeof *m);
    m->cap = cap;
    m->fail_at = -1;
}

static void man_close(man *m)
{
    if (m->open) {
        sk_manifest_writer_finish(&m->w, &m->len[m->n - 1], NULL);
        m->open = false;
    }
}

static void man_add(man *m, const sk_entry *e)
{
    for (;;) {
        if (!m->open) {
            m->chunk[m->n] = malloc(m->cap);
            sk_manifest_writer_init(&m->w, m->chunk[m->n], m->cap);
            m->n++;
            m->open = true;
        }
        if (sk_manifest_writer_add(&m->w, e, NULL) == SK_OK)
            return;
        if (m->w.count == 0)
            abort(); /* an entry larger than a chunk of this test */
        man_close(m);
    }
}

static void man_free(man *m)
{
    for (int i = 0; i < m->n; i++)
        free(m->chunk[i]);
}

static int man_next(void *ctx, const uint8_t **payload, size_t *len, const char **why)
{
    man *m = ctx;
    if (m->at == m->fail_at) {
        *why = "the secondary was lost during the comparison";
        return -1;
    }
    if (m->at >= m->n)
        return 0;
    *payload = m->chunk[m->at];
    *len = m->len[m->at];
    m->at++;
    return 1;
}

static uint8_t sums[4096 * SK_SUM_SIZE];

/* The block checksum k of a file whose content is `seed`: the same seed, the same sums. */
static const uint8_t *sums_of(uint32_t seed, uint64_t first, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        for (int b = 0; b < SK_SUM_SIZE; b++)
            sums[(size_t)i * SK_SUM_SIZE + b] = (uint8_t)(seed * 31 + (first + i) * 7 + (uint64_t)b);
    return sums;
}

static sk_entry entry(const char *path, char kind)
{
    sk_entry e;
    memset(&e, 0, sizeof e);
    e.path = sk_bytes_str(path);
    e.kind = (uint8_t)kind;
    e.mode = kind == 'd' ? 040755 : kind == 'l' ? 0120777 : 0100644;
    e.mtime_ns = 1000;
    return e;
}

/* A file of `blocks` 64 KiB blocks, one entry holding its sums first .. first + n - 1 of `seed`
 * (add it before the next sums_of). */
static sk_entry sums_entry(const char *path, uint64_t blocks, uint32_t seed, uint64_t first, uint32_t n)
{
    sk_entry e = entry(path, 'f');
    e.size = blocks << 16;
    e.has_sums = true;
    e.sums_first = first;
    e.nsums = n;
    e.sums = sk_bytes_of(sums_of(seed, first, n), (size_t)n * SK_SUM_SIZE);
    return e;
}

static void dir_(man *m, const char *path)
{
    sk_entry e = entry(path, 'd');
    man_add(m, &e);
}

/* A file of `blocks` 64 KiB blocks, its sums `per` to an entry. */
static void file_(man *m, const char *path, uint32_t seed, uint32_t blocks, uint32_t per)
{
    sk_entry e = entry(path, 'f');
    e.size = (uint64_t)blocks << 16;
    e.has_sums = true;
    uint64_t k = 0;
    do {
        uint32_t n = blocks - k < per ? (uint32_t)(blocks - k) : per;
        e.sums_first = k;
        e.nsums = n;
        e.sums = sk_bytes_of(sums_of(seed, k, n), (size_t)n * SK_SUM_SIZE);
        man_add(m, &e);
        k += n;
    } while (k < blocks);
}

static void link_(man *m, const char *path, const char *target)
{
    sk_entry e = entry(path, 'l');
    e.target = sk_bytes_str(target);
    man_add(m, &e);
}

static int run(man *local, man *remote, skp_vreport *r, const char **why)
{
    man_close(local);
    man_close(remote);
    skp_vsource l = {man_next, local}, s = {man_next, remote};
    return skp_verify_dir("/srv/d", &l, &s, r, why);
}

/* One tree, in the walk's order (a directory's entries, then its subdirectories'). */
static void tree(man *m, uint32_t big_seed, uint32_t per)
{
    dir_(m, "");
    dir_(m, "a");
    file_(m, "a-b", 1, 1, 8);
    file_(m, "big", big_seed, 40, per);
    link_(m, "ln", "a/x");
    file_(m, "a/x", 2, 0, 8);
    dir_(m, "a/y");
    file_(m, "a/y/z", 3, 3, 8);
}

static void identical_copies(void)
{
    /* a large file's sums in entries of 7 on one side and 16 on the other, and chunk boundaries
     * in different places: the same manifest */
    man *l = calloc(2, sizeof *l), *s = l + 1;
    CHECK(l);
    man_init(l, 400);
    man_init(s, 900);
    tree(l, 9, 7);
    tree(s, 9, 16);
    CHECK(l->n > 3 && s->n > 1 && l->n != s->n);
    skp_vreport *r = calloc(1, sizeof *r);
    const char *why = "?";
    CHECK(r && run(l, s, r, &why) == 0);
    CHECK(r->checked == 7 && r->ndiff == 0 && strcmp(why, "") == 0);
    man_free(l);
    man_free(s);
    free(l);
    free(r);
}

static void every_difference_in_byte_order(void)
{
    man *l = calloc(2, sizeof *l), *s = l + 1;
    CHECK(l);
    man_init(l, 300);
    man_init(s, 700);
    /* here */
    dir_(l, "");
    dir_(l, "a");
    file_(l, "b", 1, 2, 8);          /* size differs */
    file_(l, "big", 2, 40, 7);       /* its 40th block differs */
    file_(l, "fewer", 3, 4, 2);      /* same size, one block less summed there */
    file_(l, "gone", 4, 1, 8);       /* missing there */
    dir_(l, "kind");                 /* a file there */
    link_(l, "ln", "t1");            /* another target there */
    file_(l, "mode", 5, 1, 8);       /* 0600 there */
    file_(l, "time", 6, 1, 8);       /* another mtime there */
    file_(l, "a/x", 7, 1, 8);
    dir_(l, "a/y");                  /* missing there, with what is under it */
    file_(l, "a/y/f", 8, 1, 8);
    /* there */
    dir_(s, "");
    dir_(s, "a");
    dir_(s, "a-only");               /* only there */
    file_(s, "b", 1, 3, 8);
    sk_entry e = sums_entry("big", 40, 2, 0, 39); /* the same sums but the last */
    man_add(s, &e);
    e = sums_entry("big", 40, 99, 39, 1);
    man_add(s, &e);
    e = sums_entry("fewer", 4, 3, 0, 3);
    man_add(s, &e);
    file_(s, "kind", 9, 1, 8);
    link_(s, "ln", "t2");
    e = sums_entry("mode", 1, 5, 0, 1);
    e.mode = 0100600;
    man_add(s, &e);
    e = sums_entry("time", 1, 6, 0, 1);
    e.mtime_ns = 2000;
    man_add(s, &e);
    file_(s, "a/x", 7, 1, 8);
    file_(s, "a/x2", 7, 1, 8);       /* only there */
    file_(s, "a-only/z", 1, 1, 8);   /* only there */
    skp_vreport *r = calloc(1, sizeof *r);
    const char *why = "?";
    CHECK(r && run(l, s, r, &why) == 0);
    const char *want[] = {
        "only on the secondary: /srv/d/a-only",
        "only on the secondary: /srv/d/a-only/z",
        "only on the secondary: /srv/d/a/x2",
        "missing on the secondary: /srv/d/a/y",
        "missing on the secondary: /srv/d/a/y/f",
        "/srv/d/b: size 131072 here, 196608 there",
        "/srv/d/big: content differs",
        "/srv/d/fewer: content differs",
        "missing on the secondary: /srv/d/gone",
        "/srv/d/kind: type d here, f there",
        "/srv/d/ln: symlink target differs",
        "/srv/d/mode: mode/owner 0o100644 0:0 here, 0o100600 0:0 there",
        "/srv/d/time: modification time differs",
    };
    size_t n = sizeof want / sizeof want[0];
    CHECK(r->ndiff == n);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(r->diff[i], want[i]) != 0)
            printf("    %zu: %s\n", i, r->diff[i]);
        CHECK(strcmp(r->diff[i], want[i]) == 0);
    }
    /* a, a/x and the 12 paths above that are on one side or differ, each once */
    CHECK(r->checked == 15);
    skp_vreport_clear(r);
    CHECK(r->ndiff == 0 && r->checked == 0);
    man_free(l);
    man_free(s);
    free(l);
    free(r);
}

/* With room for three more differences, the three smallest in byte order are kept, whatever the
 * order they are found in; every path is still counted. */
static void the_first_differences_kept(void)
{
    man *l = calloc(2, sizeof *l), *s = l + 1;
    CHECK(l);
    man_init(l, 4096);
    man_init(s, 4096);
    const char *names[] = {"m", "q", "z", "b/1", "b/2", "c/0"}; /* walk order; byte order: b/1 b/2 c/0 m q z */
    dir_(l, "");
    dir_(s, "");
    dir_(l, "b");
    dir_(s, "b");
    dir_(l, "c");
    dir_(s, "c");
    file_(l, "keep", 1, 1, 8);
    file_(s, "keep", 1, 1, 8);
    for (int i = 0; i < 6; i++)
        file_(s, names[i], 1, 1, 8);
    skp_vreport *r = calloc(1, sizeof *r);
    CHECK(r);
    for (size_t i = 0; i < SKP_VERIFY_MAX_DIFFERENCES - 3; i++)
        r->diff[r->ndiff++] = strdup("an earlier directory's");
    const char *why = "?";
    CHECK(run(l, s, r, &why) == 0);
    CHECK(r->ndiff == SKP_VERIFY_MAX_DIFFERENCES && r->checked == 3 + 6);
    CHECK(strcmp(r->diff[SKP_VERIFY_MAX_DIFFERENCES - 3], "only on the secondary: /srv/d/b/1") == 0);
    CHECK(strcmp(r->diff[SKP_VERIFY_MAX_DIFFERENCES - 2], "only on the secondary: /srv/d/b/2") == 0);
    CHECK(strcmp(r->diff[SKP_VERIFY_MAX_DIFFERENCES - 1], "only on the secondary: /srv/d/c/0") == 0);
    /* a full report: still counted, nothing added */
    man_free(l);
    man_free(s);
    man_init(l, 4096);
    man_init(s, 4096);
    file_(s, "x", 1, 1, 8);
    CHECK(run(l, s, r, &why) == 0);
    CHECK(r->ndiff == SKP_VERIFY_MAX_DIFFERENCES && r->checked == 10);
    skp_vreport_clear(r);
    man_free(l);
    man_free(s);
    free(l);
    free(r);
}

/* The comparison fails with exactly `reason`; the report and both manifests freed. */
static bool fails_with(man *l, man *s, skp_vreport *r, const char *reason)
{
    const char *why = "";
    bool ok = run(l, s, r, &why) == -1 && strcmp(why, reason) == 0;
    if (!ok)
        printf("    failed with \"%s\", not \"%s\"\n", why, reason);
    skp_vreport_clear(r);
    man_free(l);
    man_free(s);
    return ok;
}

static void failures(void)
{
    man *l = calloc(2, sizeof *l), *s = l + 1;
    skp_vreport *r = calloc(1, sizeof *r);
    CHECK(l && r);
    /* the secondary's entries out of the walk's order (a subdirectory's before its parent's
     * entries end) */
    man_init(l, 4096);
    man_init(s, 4096);
    tree(l, 1, 8);
    dir_(s, "");
    dir_(s, "a");
    file_(s, "a/x", 2, 0, 8);
    file_(s, "big", 1, 40, 8);
    CHECK(fails_with(l, s, r, "the secondary's manifest is not in the walk's order"));
    /* a file's checksums out of sequence */
    man_init(l, 4096);
    man_init(s, 4096);
    file_(l, "f", 1, 4, 2);
    sk_entry e = sums_entry("f", 4, 1, 0, 2);
    man_add(s, &e);
    e = sums_entry("f", 4, 1, 3, 1); /* block 2 skipped */
    man_add(s, &e);
    CHECK(fails_with(l, s, r, "the secondary's manifest is malformed (a file's checksums out of sequence)"));
    /* a malformed chunk */
    man_init(l, 4096);
    man_init(s, 4096);
    tree(l, 1, 8);
    tree(s, 1, 8);
    man_close(s);
    s->len[0] -= 3;
    CHECK(fails_with(l, s, r, "the secondary's manifest is malformed"));
    /* the secondary lost after its first chunk */
    man_init(l, 4096);
    man_init(s, 200);
    tree(l, 1, 8);
    tree(s, 1, 8);
    s->fail_at = 1;
    CHECK(fails_with(l, s, r, "the secondary was lost during the comparison"));
    free(l);
    free(r);
}

const sk_test sk_tests_verify[] = {
    {"identical_copies", identical_copies},
    {"every_difference_in_byte_order", every_difference_in_byte_order},
    {"the_first_differences_kept", the_first_differences_kept},
    {"failures", failures},
    SK_TESTS_END,
};
