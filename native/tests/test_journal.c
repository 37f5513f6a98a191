/* The primary's reintegration journal (native/primary/journal.c): marks, zones, merge, plan
 * order, journal.json round trip and the Python format's rules (an unclean save is untrusted and
 * leaves a gap). */
#include <stdlib.h>
#include <string.h>

#include "journal.h"
#include "sk_test.h"
#include "sk_wire.h"

static skp_op op_write(const char *path, uint64_t off, size_t len)
{
    skp_op op;
    memset(&op, 0, sizeof op);
    op.type = SK_T_WRITE;
    op.path = path;
    op.path_len = strlen(path);
    op.offset = off;
    op.data_len = len;
    return op;
}

static void mark_op(skp_journal *j, const skp_op *op)
{
    skp_mark m[2];
    int n = skp_marks_of(op, m);
    for (int i = 0; i < n; i++)
        skp_journal_mark(j, &m[i], 100.0);
}

static const skp_jentry *get(const skp_journal *j, const char *path)
{
    return skp_journal_find(j, 0, path, strlen(path));
}

#define PZ SKP_PAGES_PER_ZONE

static void test_zones_merge_and_split(void)
{
    skp_journal j;
    CHECK(skp_journal_init(&j, "e1", true) == 0);
    skp_op w = op_write("a", 0, 4096); /* page 0 */
    mark_op(&j, &w);
    w = op_write("a", 3 * SKP_ZONE + 10, 10); /* page 48 */
    mark_op(&j, &w);
    w = op_write("a", SKP_PAGE - 1, 2); /* pages 0 and 1: joins 0 */
    mark_op(&j, &w);
    const skp_jentry *e = get(&j, "a");
    CHECK(e && e->nz == 2);
    CHECK(e->z[0][0] == 0 && e->z[0][1] == 1 && e->z[1][0] == 3 * PZ && e->z[1][1] == 3 * PZ);
    w = op_write("a", 2 * SKP_PAGE, 3 * SKP_ZONE - 2 * SKP_PAGE + 1); /* fills the hole: one range 0..48 */
    mark_op(&j, &w);
    CHECK(e->nz == 1 && e->z[0][0] == 0 && e->z[0][1] == 3 * PZ);
    CHECK(skp_journal_dirty_bytes(&j) == (3ull * PZ + 1) * SKP_PAGE);
    CHECK(j.has_since && j.since == 100.0);
    skp_journal_free(&j);
}

/* 512 scattered 4 KiB writes name 512 pages (2 MiB), not 512 zones (32 MiB): what reintegration
 * after scattered writes sends (ADR 0026). */
static void test_scattered_writes_name_pages(void)
{
    skp_journal j;
    CHECK(skp_journal_init(&j, "e1", true) == 0);
    for (uint64_t i = 0; i < 512; i++) {
        skp_op w = op_write("db", i * 97 * SKP_ZONE + (i % 16) * SKP_PAGE, SKP_PAGE);
        mark_op(&j, &w);
    }
    CHECK(get(&j, "db")->nz == 512);
    CHECK(skp_journal_dirty_bytes(&j) == 512ull * SKP_PAGE);
    /* an unaligned 4 KiB write touches two pages */
    skp_op w = op_write("u", 100, SKP_PAGE);
    mark_op(&j, &w);
    CHECK(get(&j, "u")->nz == 1 && get(&j, "u")->z[0][0] == 0 && get(&j, "u")->z[0][1] == 1);
    skp_journal_free(&j);
}

/* A file written all over at random: beyond SKP_RANGES_MAX ranges the entry is rounded out to
 * whole zones (memory bounded), never less than what was written. */
static void test_too_many_ranges_round_out_to_zones(void)
{
    skp_journal j;
    CHECK(skp_journal_init(&j, "e1", true) == 0);
    for (uint64_t i = 0; i <= SKP_RANGES_MAX; i++) {
        skp_op w = op_write("big", (i * PZ + 2 * (i % 4)) * SKP_PAGE, 1);
        mark_op(&j, &w);
    }
    const skp_jentry *e = get(&j, "big");
    CHECK(e && e->nz == 1 && e->z[0][0] == 0 && e->z[0][1] == (SKP_RANGES_MAX + 1ull) * PZ - 1);
    skp_journal_free(&j);
}

static void test_marks_follow_journal_py(void)
{
    skp_journal j;
    CHECK(skp_journal_init(&j, "e1", true) == 0);
    skp_op op;
    memset(&op, 0, sizeof op);
    op.type = SK_T_TRUNCATE;
    op.path = "f";
    op.path_len = 1;
    op.size = 500;
    mark_op(&j, &op);
    op.size = 900; /* the smallest truncation is kept */
    mark_op(&j, &op);
    CHECK(get(&j, "f")->trunc == 500 && get(&j, "f")->meta);
    skp_op w = op_write("f", 0, 10);
    mark_op(&j, &w);
    op.type = SK_T_CREATE; /* replaced: whole, zones and truncation forgotten */
    mark_op(&j, &op);
    CHECK(get(&j, "f")->whole && get(&j, "f")->nz == 0 && get(&j, "f")->trunc == -1);
    w = op_write("f", 0, 10); /* whole already: no zone */
    mark_op(&j, &w);
    CHECK(get(&j, "f")->nz == 0);
    /* rename: the old name removed, the new one replaced; exchange: both replaced */
    memset(&op, 0, sizeof op);
    op.type = SK_T_RENAME;
    op.path = "d/x";
    op.path_len = 3;
    op.path2 = "d/y";
    op.path2_len = 3;
    mark_op(&j, &op);
    CHECK(get(&j, "d/x")->meta && !get(&j, "d/x")->whole && get(&j, "d/y")->whole);
    op.flags = 2;
    op.path = "p";
    op.path_len = 1;
    op.path2 = "q";
    op.path2_len = 1;
    mark_op(&j, &op);
    CHECK(get(&j, "p")->whole && get(&j, "q")->whole);
    /* LINK: the new name */
    op.type = SK_T_LINK;
    op.flags = 0;
    op.path2 = "hard";
    op.path2_len = 4;
    mark_op(&j, &op);
    CHECK(get(&j, "hard")->whole && !j.trusted); /* a link: reintegrate by checksums */
    /* FSYNC leaves nothing */
    size_t before = skp_journal_len(&j);
    op.type = SK_T_FSYNC;
    mark_op(&j, &op);
    CHECK(skp_journal_len(&j) == before);
    skp_journal_free(&j);
}

static void test_plan_parents_first_skips_under_whole(void)
{
    skp_journal j;
    CHECK(skp_journal_init(&j, "e", true) == 0);
    const char *paths[] = {"a-b", "a/z", "a", "a/b/c", "b", "c/d", ""};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        skp_mark m = {SKP_M_META, 0, paths[i], strlen(paths[i]), 0, 0};
        skp_journal_mark(&j, &m, 1);
    }
    skp_mark whole = {SKP_M_REPLACED, 0, "a", 1, 0, 0};
    skp_journal_mark(&j, &whole, 1);
    size_t n;
    const skp_jentry **plan = skp_journal_plan(&j, 0, &n);
    const char *want[] = {"", "a", "a-b", "b", "c/d"};
    CHECK(plan && n == 5);
    for (size_t i = 0; i < n; i++)
        CHECK(strcmp(plan[i]->path, want[i]) == 0);
    free(plan);
    CHECK(skp_path_cmp("a/b", 3, "a-b", 3) < 0 && skp_path_cmp("a", 1, "a/b", 3) < 0);
    skp_journal_free(&j);
}

static void test_merge_and_take(void)
{
    skp_journal a, b;
    CHECK(skp_journal_init(&a, "e", true) == 0);
    skp_op w = op_write("f", 0, 1);
    mark_op(&a, &w);
    a.seq = 77;
    CHECK(skp_journal_take(&a, &b) == 0);
    CHECK(skp_journal_len(&a) == 0 && a.trusted && a.seq == 77 && skp_journal_len(&b) == 1);
    w = op_write("f", 5 * SKP_ZONE, 1);
    mark_op(&a, &w);
    skp_mark whole = {SKP_M_REPLACED, 0, "g", 1, 0, 0};
    skp_journal_mark(&b, &whole, 1);
    CHECK(skp_journal_merge(&a, &b, 1) == 0);
    const skp_jentry *e = get(&a, "f");
    CHECK(e && e->nz == 2 && get(&a, "g")->whole);
    skp_journal_free(&a);
    skp_journal_free(&b);
}

static void test_json_round_trip_and_unclean_save(void)
{
    skp_journal j, back;
    CHECK(skp_journal_init(&j, "4f2a", true) == 0);
    const char weird[] = "caf\xc3\xa9/\"q\"\x01\xff";
    skp_op w = op_write(weird, SKP_ZONE, 3 * SKP_ZONE);
    mark_op(&j, &w);
    skp_mark t = {SKP_M_TRUNC, 0, "t", 1, 123, 0};
    skp_journal_mark(&j, &t, 5);
    skp_mark r = {SKP_M_REPLACED, 1, "dir", 3, 0, 0};
    skp_journal_mark(&j, &r, 5);
    j.seq = 991;
    skj_buf b = {0};
    skp_journal_encode(&j, true, 200.5, &b);
    CHECK(!b.bad);
    char why[256];
    CHECK(skp_journal_decode(b.p, b.len, 300, &back, why, sizeof why) == 0);
    CHECK(back.trusted && back.seq == 991 && strcmp(back.epoch, "4f2a") == 0 && !back.has_gap);
    CHECK(skp_journal_len(&back) == 3);
    const skp_jentry *e = skp_journal_find(&back, 0, weird, strlen(weird));
    CHECK(e && e->nz == 1 && e->z[0][0] == PZ && e->z[0][1] == 4 * PZ - 1);
    CHECK(get(&back, "t")->trunc == 123);
    CHECK(skp_journal_find(&back, 1, "dir", 3)->whole);
    skp_journal_free(&back);
    skj_buf_free(&b);
    /* saved at start (not a clean stop): untrusted, with a gap from the save until now */
    skp_journal_encode(&j, false, 200.5, &b);
    CHECK(skp_journal_decode(b.p, b.len, 300, &back, why, sizeof why) == 0);
    CHECK(!back.trusted && back.has_gap && back.gap_from == 200.5 && back.gap_to == 300);
    skp_journal_free(&back);
    skj_buf_free(&b);
    skp_journal_free(&j);
}

static void test_python_written_journal_reads(void)
{
    /* journal.py's dumps(clean=True) of one entry with zones, a truncation and a latin-1 path */
    const char *py = "{\"version\":1,\"epoch\":\"abc\",\"clean\":true,\"stopped\":true,\"saved_at\":1.5,"
                     "\"seq\":12,\"since\":1.0,\"entries\":{\"0\":{\"a/\\u00e9\":{\"m\":1,\"z\":[[0,2],[5,5]],"
                     "\"t\":7},\"d\":{\"w\":1,\"m\":1}}}}";
    skp_journal j;
    char why[256];
    CHECK(skp_journal_decode(py, strlen(py), 2.0, &j, why, sizeof why) == 0);
    const skp_jentry *e = skp_journal_find(&j, 0, "a/\xe9", 3);
    CHECK(e && e->meta && e->nz == 2 && e->trunc == 7); /* Python's zones: every page of them */
    CHECK(e->z[0][0] == 0 && e->z[0][1] == 3 * PZ - 1 && e->z[1][0] == 5 * PZ && e->z[1][1] == 6 * PZ - 1);
    CHECK(get(&j, "d")->whole && j.trusted && j.has_since && j.seq == 12);
    skp_journal_free(&j);
    const char *bad[] = {"", "[]", "{\"version\":2,\"epoch\":\"x\"}", "{\"version\":1}",
                         "{\"version\":1,\"epoch\":\"x\",\"entries\":{\"0\":{\"p\":{\"z\":[[3,1]]}}}}",
                         "{\"version\":1,\"epoch\":\"x\",\"entries\":{\"q\":{}}}",
                         "{\"version\":1,\"epoch\":\"x\",\"entries\":{\"0\":{\"\\u0100\":{}}}}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(skp_journal_decode(bad[i], strlen(bad[i]), 2.0, &j, why, sizeof why) == -1);
        CHECK(skp_journal_len(&j) == 0 && !j.trusted);
        skp_journal_free(&j);
    }
}

/* Many files written at random: once the journal holds SKP_JOURNAL_RANGES_MAX ranges, an entry
 * that grows is rounded out to zones; every page written stays covered. */
static void test_journal_wide_range_budget(void)
{
    skp_journal j;
    CHECK(skp_journal_init(&j, "e1", true) == 0);
    const char *names[] = {"a", "b", "c", "d", "e"};
    for (uint64_t i = 0; i < 60000; i++) {
        for (int f = 0; f < 5; f++) {
            skp_op w = op_write(names[f], (i * PZ + 2 * (i % 4)) * SKP_PAGE, 1);
            mark_op(&j, &w);
        }
    }
    CHECK(j.ranges <= SKP_JOURNAL_RANGES_MAX + 1);
    size_t total = 0;
    for (int f = 0; f < 5; f++) {
        const skp_jentry *e = get(&j, names[f]);
        CHECK(e != NULL);
        total += e->nz;
        /* every written page is inside a range */
        for (uint64_t i = 0; e && i < 60000; i += 997) {
            uint64_t page = i * PZ + 2 * (i % 4);
            bool in = false;
            for (size_t k = 0; k < e->nz && !in; k++)
                in = e->z[k][0] <= page && page <= e->z[k][1];
            CHECK(in);
        }
    }
    CHECK(total == j.ranges);
    skp_journal free_later;
    CHECK(skp_journal_take(&j, &free_later) == 0);
    CHECK(j.ranges == 0 && free_later.ranges == total);
    skp_journal_free(&free_later);
    skp_journal_free(&j);
}

/* journal.json: "z" holds the zones (journal.py reads them), "p" the pages; pages that do not
 * make exactly the zones (a save rewritten by something that knows only "z") read as the union */
static void test_pages_in_json_stay_readable_as_zones(void)
{
    skp_journal j;
    CHECK(skp_journal_init(&j, "e", true) == 0);
    skp_op w = op_write("f", 5 * SKP_PAGE, 2 * SKP_PAGE); /* pages 5-6, zone 0 */
    mark_op(&j, &w);
    w = op_write("f", 40 * SKP_PAGE, 1); /* page 40, zone 2 */
    mark_op(&j, &w);
    skj_buf b = {0};
    skp_journal_encode(&j, true, 1.0, &b);
    CHECK(!b.bad && strstr(b.p, "\"f\":{\"z\":[[0,0],[2,2]],\"p\":[[5,6],[40,40]]}") != NULL);
    skj_buf_free(&b);
    skp_journal_free(&j);
    const char *disagree = "{\"version\":1,\"epoch\":\"e\",\"clean\":true,\"stopped\":true,\"saved_at\":1,"
                           "\"seq\":1,\"entries\":{\"0\":{\"f\":{\"z\":[[0,0],[3,3]],\"p\":[[5,6]]}}}}";
    char why[256];
    CHECK(skp_journal_decode(disagree, strlen(disagree), 2.0, &j, why, sizeof why) == 0);
    const skp_jentry *e = get(&j, "f");
    CHECK(e && e->nz == 2 && e->z[0][0] == 0 && e->z[0][1] == PZ - 1 && e->z[1][0] == 3 * PZ &&
          e->z[1][1] == 4 * PZ - 1);
    skp_journal_free(&j);
    const char *agree = "{\"version\":1,\"epoch\":\"e\",\"clean\":true,\"stopped\":true,\"saved_at\":1,"
                        "\"seq\":1,\"entries\":{\"0\":{\"f\":{\"z\":[[0,0]],\"p\":[[5,6]]}}}}";
    CHECK(skp_journal_decode(agree, strlen(agree), 2.0, &j, why, sizeof why) == 0);
    e = get(&j, "f");
    CHECK(e && e->nz == 1 && e->z[0][0] == 5 && e->z[0][1] == 6);
    skp_journal_free(&j);
    const char *huge = "{\"version\":1,\"epoch\":\"e\",\"entries\":{\"0\":{\"f\":{\"z\":[[0,9223372036854775807]]}}}}";
    CHECK(skp_journal_decode(huge, strlen(huge), 2.0, &j, why, sizeof why) == 0);
    e = get(&j, "f");
    CHECK(e && e->nz == 1 && e->z[0][0] == 0 && (e->z[0][1] + 1) * (uint64_t)SKP_PAGE != 0);
    skp_journal_free(&j);
}

const sk_test sk_tests_journal[] = {
    {"zones merge and split", test_zones_merge_and_split},
    {"scattered writes name pages", test_scattered_writes_name_pages},
    {"too many ranges round out to zones", test_too_many_ranges_round_out_to_zones},
    {"journal-wide range budget", test_journal_wide_range_budget},
    {"pages in journal.json stay readable as zones", test_pages_in_json_stay_readable_as_zones},
    {"marks follow journal.py", test_marks_follow_journal_py},
    {"plan: parents first, nothing under a whole ancestor", test_plan_parents_first_skips_under_whole},
    {"merge and take", test_merge_and_take},
    {"journal.json round trip, unclean save untrusted", test_json_round_trip_and_unclean_save},
    {"a journal written by Python reads; malformed ones are refused", test_python_written_journal_reads},
    SK_TESTS_END,
};
