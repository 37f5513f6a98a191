/* Operation and control payloads (sk_ops): round trips of every type, and every refusal. */
#include <stdlib.h>

#include "sk_ops.h"
#include "sk_test.h"
#include "sk_wire.h"

#define B(s) sk_bytes_str(s)

/* One op of each type, with every field it carries set to something distinctive. */
static size_t all_ops(sk_op *ops)
{
    size_t n = 0;
    memset(ops, 0, 16 * sizeof *ops);
    ops[n++] = (sk_op){.type = SK_T_CREATE, .path = B("d/f"), .mode = 0100644, .uid = 1000, .gid = 1001};
    ops[n++] = (sk_op){.type = SK_T_WRITE, .path = B("d/f"), .offset = 1ull << 40, .data = B("payload bytes")};
    ops[n++] = (sk_op){.type = SK_T_TRUNCATE, .path = B("d/f"), .size = 123456789};
    ops[n++] = (sk_op){.type = SK_T_FALLOCATE, .path = B("d/f"), .mode = 3, .offset = 4096, .length = 1 << 20};
    ops[n++] = (sk_op){.type = SK_T_SETATTR, .path = B(""), .mask = 63, .mode = 0755, .uid = 7, .gid = 8,
                       .atime_ns = -5, .mtime_ns = 1700000000123456789ll, .size = 42};
    ops[n++] = (sk_op){.type = SK_T_SETXATTR, .path = B("d/f"), .name = B("user.k"), .value = sk_bytes_of("v\0v", 3)};
    ops[n++] = (sk_op){.type = SK_T_REMOVEXATTR, .path = B("d/f"), .name = B("user.k")};
    ops[n++] = (sk_op){.type = SK_T_MKDIR, .path = B("d/e"), .mode = 040700, .uid = 1, .gid = 2};
    ops[n++] = (sk_op){.type = SK_T_RMDIR, .path = B("d/e")};
    ops[n++] = (sk_op){.type = SK_T_UNLINK, .path = B("d/f")};
    ops[n++] = (sk_op){.type = SK_T_RENAME, .path = B("d/a"), .path2 = B("d/b"), .flags = 1};
    ops[n++] = (sk_op){.type = SK_T_SYMLINK, .path = B("l"), .target = B("../elsewhere"), .uid = 3, .gid = 4};
    ops[n++] = (sk_op){.type = SK_T_MKNOD, .path = B("fifo"), .mode = 010644, .rdev = 0x0801, .uid = 5, .gid = 6};
    ops[n++] = (sk_op){.type = SK_T_FSYNC, .path = B(""), .datasync = true};
    ops[n++] = (sk_op){.type = SK_T_LINK, .path = B("d/f"), .path2 = B("d/hard")};
    ops[n++] = (sk_op){.type = SK_T_REMOVE_TREE, .path = B("d")};
    return n;
}

static bool same(const sk_op *a, const sk_op *b)
{
    return a->type == b->type && a->datasync == b->datasync && sk_bytes_eq(a->path, b->path) &&
           sk_bytes_eq(a->path2, b->path2) && sk_bytes_eq(a->name, b->name) && sk_bytes_eq(a->value, b->value) &&
           sk_bytes_eq(a->target, b->target) && sk_bytes_eq(a->data, b->data) && a->mode == b->mode &&
           a->uid == b->uid && a->gid == b->gid && a->mask == b->mask && a->flags == b->flags &&
           a->offset == b->offset && a->length == b->length && a->size == b->size && a->rdev == b->rdev &&
           a->atime_ns == b->atime_ns && a->mtime_ns == b->mtime_ns;
}

static void every_op_round_trips(void)
{
    sk_err e = {0, ""};
    sk_op ops[16], got;
    size_t n = all_ops(ops);
    bool seen[256] = {false};
    for (size_t i = 0; i < n; i++) {
        uint8_t buf[512];
        size_t len, size;
        CHECK_OK(sk_op_size(&ops[i], &size, &e), &e);
        CHECK_OK(sk_op_encode(&ops[i], buf, sizeof buf, &len, &e), &e);
        CHECK(len == size);
        uint16_t flags = ops[i].datasync ? SK_F_DATASYNC : 0;
        CHECK_OK(sk_op_decode(ops[i].type, flags, buf, len, &got, &e), &e);
        CHECK(same(&ops[i], &got));
        CHECK_OK(sk_payload_check(ops[i].type, flags, buf, len, &e), &e);
        seen[ops[i].type] = true;
        /* every shorter payload is refused (WRITE: only below its fixed part, the data is the rest) */
        size_t fixed = ops[i].type == SK_T_WRITE ? len - ops[i].data.len : len;
        for (size_t cut = 0; cut < fixed; cut++) {
            int rc = sk_op_decode(ops[i].type, flags, buf, cut, &got, &e);
            CHECK(rc == SK_EMALFORMED || rc == SK_EPATH);
        }
        /* a trailing byte is refused (WRITE: it is data) */
        if (ops[i].type != SK_T_WRITE) {
            buf[len] = 0;
            CHECK_RC(sk_op_decode(ops[i].type, flags, buf, len + 1, &got, &e), SK_EMALFORMED, &e);
        }
        /* too small an output buffer */
        CHECK_RC(sk_op_encode(&ops[i], buf, len - 1, &len, &e), SK_ESPACE, &e);
    }
    for (int t = 0; t < 256; t++)
        if (sk_type_is_applied((uint8_t)t) && t != SK_T_CLEAR_XATTRS)
            CHECK(seen[t]); /* the table above covers every operation type */
    /* CLEAR_XATTRS: path only */
    sk_op cx = {.type = SK_T_CLEAR_XATTRS, .path = B("")};
    uint8_t buf[8];
    size_t len;
    CHECK_OK(sk_op_encode(&cx, buf, sizeof buf, &len, &e), &e);
    CHECK(len == 2);
    CHECK_OK(sk_op_decode(SK_T_CLEAR_XATTRS, 0, buf, len, &got, &e), &e);
}

static void op_layouts(void)
{
    /* byte layouts as docs/replication-wire-v2.md gives them */
    sk_err e = {0, ""};
    uint8_t buf[64];
    size_t len;
    sk_op link = {.type = SK_T_LINK, .path = B("a"), .path2 = B("bc")};
    CHECK_OK(sk_op_encode(&link, buf, sizeof buf, &len, &e), &e);
    CHECK(len == 7 && memcmp(buf, "\x00\x01" "a" "\x00\x02" "bc", 7) == 0);
    sk_op fa = {.type = SK_T_FALLOCATE, .path = B("f"), .mode = 1, .offset = 2, .length = 3};
    CHECK_OK(sk_op_encode(&fa, buf, sizeof buf, &len, &e), &e);
    CHECK(len == 23 && memcmp(buf, "\x00\x01" "f" "\x00\x00\x00\x01" "\0\0\0\0\0\0\0\x02" "\0\0\0\0\0\0\0\x03", 23) == 0);
    sk_op w = {.type = SK_T_WRITE, .path = B("f"), .offset = 1, .data = B("xy")};
    CHECK_OK(sk_op_encode(&w, buf, sizeof buf, &len, &e), &e);
    CHECK(len == 13 && memcmp(buf, "\x00\x01" "f" "\0\0\0\0\0\0\0\x01" "xy", 13) == 0);
    size_t plen;
    CHECK_OK(sk_op_encode_write_prefix(&w, buf, sizeof buf, &plen, &e), &e);
    CHECK(plen == 11);
    CHECK_RC(sk_op_encode_write_prefix(&link, buf, sizeof buf, &plen, &e), SK_EINVAL, &e);
}

static void path_rules(void)
{
    sk_err e = {0, ""};
    const char *bad[] = {"/abs", "a//b", "a/", "/", ".", "..", "a/./b", "a/../b", "../a", "./a", "a/..", "a/."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_RC(sk_path_check(B(bad[i]), true, &e), SK_EPATH, &e);
    CHECK_RC(sk_path_check(sk_bytes_of("a\0b", 3), true, &e), SK_EPATH, &e);
    CHECK_RC(sk_path_check(B(""), false, &e), SK_EPATH, &e);
    const char *good[] = {"a", "a/b/c", "...", ".a", "a..", "a.b/..c", "é/ü"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK_OK(sk_path_check(B(good[i]), false, &e), &e);
    CHECK_OK(sk_path_check(B(""), true, &e), &e);
}

static void bad_paths_refused_both_ways(void)
{
    sk_err e = {0, ""};
    sk_op ops[16], got;
    size_t n = all_ops(ops);
    for (size_t i = 0; i < n; i++) {
        sk_op op = ops[i];
        uint8_t buf[512];
        size_t len;
        uint16_t flags = op.datasync ? SK_F_DATASYNC : 0;
        /* encoder refuses */
        op.path = B("../escape");
        CHECK_RC(sk_op_encode(&op, buf, sizeof buf, &len, &e), SK_EPATH, &e);
        /* decoder refuses the same bytes written by hand: swap the path of a good encoding */
        CHECK_OK(sk_op_encode(&ops[i], buf, sizeof buf, &len, &e), &e);
        size_t old = 2 + ops[i].path.len;
        uint8_t forged[600];
        const char *evil = "a/../../etc";
        size_t el = strlen(evil);
        forged[0] = 0;
        forged[1] = (uint8_t)el;
        memcpy(forged + 2, evil, el);
        memcpy(forged + 2 + el, buf + old, len - old);
        CHECK_RC(sk_op_decode(op.type, flags, forged, 2 + el + len - old, &got, &e), SK_EPATH, &e);
        /* the empty path only where it means the directory itself */
        memcpy(forged + 2, buf + old, len - old);
        forged[1] = 0;
        int rc = sk_op_decode(op.type, flags, forged, 2 + len - old, &got, &e);
        bool empty_ok = op.type == SK_T_FSYNC || op.type == SK_T_SETATTR || op.type == SK_T_SETXATTR ||
                        op.type == SK_T_REMOVEXATTR;
        CHECK(empty_ok ? rc == SK_OK : rc == SK_EPATH);
    }
    /* the second path of RENAME and LINK */
    sk_op r = {.type = SK_T_RENAME, .path = B("a"), .path2 = B("/etc/passwd")};
    uint8_t buf[64];
    size_t len;
    CHECK_RC(sk_op_encode(&r, buf, sizeof buf, &len, &e), SK_EPATH, &e);
    r.type = SK_T_LINK;
    CHECK_RC(sk_op_encode(&r, buf, sizeof buf, &len, &e), SK_EPATH, &e);
    CHECK_OK(sk_op_decode(SK_T_LINK, 0, (const uint8_t *)"\x00\x01" "a" "\x00\x01" "b", 6, &r, &e), &e);
    CHECK_RC(sk_op_decode(SK_T_LINK, 0, (const uint8_t *)"\x00\x01" "a" "\x00\x00", 5, &r, &e), SK_EPATH, &e);
}

static void field_refusals(void)
{
    sk_err e = {0, ""};
    uint8_t buf[70000];
    size_t len;
    sk_op op = {.type = SK_T_FALLOCATE, .path = B("f"), .length = 0};
    CHECK_RC(sk_op_encode(&op, buf, sizeof buf, &len, &e), SK_EMALFORMED, &e);
    op.length = 1;
    op.offset = (uint64_t)INT64_MAX;
    CHECK_RC(sk_op_encode(&op, buf, sizeof buf, &len, &e), SK_EMALFORMED, &e);
    op = (sk_op){.type = SK_T_WRITE, .path = B("f"), .offset = UINT64_MAX - 1, .data = B("x")};
    CHECK_RC(sk_op_encode(&op, buf, sizeof buf, &len, &e), SK_EMALFORMED, &e);
    op = (sk_op){.type = SK_T_TRUNCATE, .path = B("f"), .size = UINT64_MAX};
    CHECK_RC(sk_op_encode(&op, buf, sizeof buf, &len, &e), SK_EMALFORMED, &e);
    op = (sk_op){.type = SK_T_SETATTR, .path = B("f"), .mask = 64};
    CHECK_RC(sk_op_encode(&op, buf, sizeof buf, &len, &e), SK_EMALFORMED, &e);
    op = (sk_op){.type = SK_T_RENAME, .path = B("a"), .path2 = B("b"), .flags = 8};
    CHECK_RC(sk_op_encode(&op, buf, sizeof buf, &len, &e), SK_EMALFORMED, &e);
    op = (sk_op){.type = SK_T_SETXATTR, .path = B("f"), .name = sk_bytes_of("us\0r", 4)};
    CHECK_RC(sk_op_encode(&op, buf, sizeof buf, &len, &e), SK_EMALFORMED, &e);
    op.name = B("");
    CHECK_RC(sk_op_encode(&op, buf, sizeof buf, &len, &e), SK_EMALFORMED, &e);
    static char longname[300];
    memset(longname, 'n', 299);
    op.name = B(longname);
    CHECK_RC(sk_op_encode(&op, buf, sizeof buf, &len, &e), SK_ETOOBIG, &e);
    static uint8_t big[SK_XATTR_VALUE_MAX + 1];
    op.name = B("user.x");
    op.value = sk_bytes_of(big, sizeof big);
    CHECK_RC(sk_op_encode(&op, buf, sizeof buf, &len, &e), SK_ETOOBIG, &e);
    op = (sk_op){.type = SK_T_SYMLINK, .path = B("l"), .target = sk_bytes_of("a\0b", 3)};
    CHECK_RC(sk_op_encode(&op, buf, sizeof buf, &len, &e), SK_EMALFORMED, &e);
    op.target = B("");
    CHECK_RC(sk_op_encode(&op, buf, sizeof buf, &len, &e), SK_EMALFORMED, &e);
    /* a blob length pointing past the payload */
    const uint8_t lie[] = {0, 1, 'f', 0xff, 0xff, 0xff, 0xff, 'x'};
    sk_op got;
    CHECK_RC(sk_op_decode(SK_T_REMOVEXATTR, 0, lie, sizeof lie, &got, &e), SK_EMALFORMED, &e);
    /* not an operation */
    CHECK_RC(sk_op_decode(SK_T_ACK, 0, buf, 0, &got, &e), SK_ETYPE, &e);
    CHECK_RC(sk_op_decode(99, 0, buf, 0, &got, &e), SK_ETYPE, &e);
    op = (sk_op){.type = SK_T_PING, .path = B("x")};
    CHECK_RC(sk_op_encode(&op, buf, sizeof buf, &len, &e), SK_ETYPE, &e);
    /* an op above the payload limit */
    uint8_t *huge = calloc(1, SK_MAX_PAYLOAD);
    CHECK(huge);
    op = (sk_op){.type = SK_T_WRITE, .path = B("f"), .data = {huge, SK_MAX_PAYLOAD}};
    size_t size;
    int rc = sk_op_size(&op, &size, &e);
    free(huge);
    CHECK_RC(rc, SK_ETOOBIG, &e);
}

static void ack_error_sync_progress(void)
{
    sk_err e = {0, ""};
    uint8_t buf[2048];
    size_t len;
    sk_ack a = {10, 9, 8}, ga;
    CHECK_OK(sk_ack_encode(&a, buf, sizeof buf, &len, &e), &e);
    CHECK(len == SK_ACK_SIZE);
    CHECK_OK(sk_ack_decode(buf, len, &ga, &e), &e);
    CHECK(ga.received == 10 && ga.applied == 9 && ga.durable == 8);
    CHECK_RC(sk_ack_decode(buf, len - 1, &ga, &e), SK_EMALFORMED, &e);
    CHECK_RC(sk_ack_decode(buf, len + 1, &ga, &e), SK_EMALFORMED, &e);
    a.durable = 10;
    CHECK_RC(sk_ack_encode(&a, buf, sizeof buf, &len, &e), SK_EMALFORMED, &e);
    sk_store_be(buf + 16, 10, 8); /* durable above applied, by hand */
    CHECK_RC(sk_ack_decode(buf, 24, &ga, &e), SK_EMALFORMED, &e);

    sk_error_msg em = {42, 28, B("the secondary's disk is full")}, ge;
    CHECK_OK(sk_error_encode(&em, buf, sizeof buf, &len, &e), &e);
    CHECK_OK(sk_error_decode(buf, len, &ge, &e), &e);
    CHECK(ge.seq == 42 && ge.errnum == 28 && sk_bytes_eq(ge.reason, em.reason));
    CHECK_RC(sk_error_decode(buf, len - 1, &ge, &e), SK_EMALFORMED, &e);
    /* a long reason is cut, not refused, and never in the middle of a UTF-8 character */
    static char longr[SK_ERROR_REASON_MAX + 8];
    memset(longr, 'r', SK_ERROR_REASON_MAX + 4);
    memcpy(longr + SK_ERROR_REASON_MAX - 1, "\xc3\xa9", 2); /* an e-acute across the limit */
    em.reason = B(longr);
    CHECK_OK(sk_error_encode(&em, buf, sizeof buf, &len, &e), &e);
    CHECK_OK(sk_error_decode(buf, len, &ge, &e), &e);
    CHECK(ge.reason.len == SK_ERROR_REASON_MAX - 1);
    /* a hand-made reason above the limit is refused */
    sk_store_be(buf + 12, SK_ERROR_REASON_MAX + 1, 2);
    static uint8_t big[14 + SK_ERROR_REASON_MAX + 1];
    memcpy(big, buf, 14);
    CHECK_RC(sk_error_decode(big, sizeof big, &ge, &e), SK_ETOOBIG, &e);

    uint8_t mode;
    CHECK_OK(sk_sync_begin_encode(SK_SYNC_CHECKSUM, buf, sizeof buf, &len, &e), &e);
    CHECK_OK(sk_sync_begin_decode(buf, len, &mode, &e), &e);
    CHECK(mode == SK_SYNC_CHECKSUM && len == 1);
    CHECK_RC(sk_sync_begin_encode(0, buf, sizeof buf, &len, &e), SK_EINVAL, &e);
    buf[0] = 4;
    CHECK_RC(sk_sync_begin_decode(buf, 1, &mode, &e), SK_EMALFORMED, &e);

    uint64_t gen;
    CHECK_OK(sk_sync_end_encode(77, buf, sizeof buf, &len, &e), &e);
    CHECK_OK(sk_sync_end_decode(buf, len, &gen, &e), &e);
    CHECK(gen == 77);
    CHECK_RC(sk_sync_end_decode(buf, 7, &gen, &e), SK_EMALFORMED, &e);

    sk_progress pr = {3, 10}, gp;
    CHECK_OK(sk_progress_encode(&pr, buf, sizeof buf, &len, &e), &e);
    CHECK_OK(sk_progress_decode(buf, len, &gp, &e), &e);
    CHECK(gp.done == 3 && gp.total == 10);
    pr.done = 11;
    CHECK_RC(sk_progress_encode(&pr, buf, sizeof buf, &len, &e), SK_EINVAL, &e);

    CHECK_OK(sk_payload_check(SK_T_PING, 0, buf, 0, &e), &e);
    CHECK_RC(sk_payload_check(SK_T_BYE, 0, buf, 1, &e), SK_EMALFORMED, &e);
    CHECK_RC(sk_payload_check(SK_T_HELLO, 0, buf, 0, &e), SK_ETYPE, &e);
}

static void manifest_request(void)
{
    sk_err e = {0, ""};
    uint8_t buf[256];
    size_t len;
    sk_bytes paths[] = {B("a"), B("b/c")};
    CHECK_OK(sk_manifest_req_encode(SK_SUMS_PATHS, paths, 2, buf, sizeof buf, &len, &e), &e);
    sk_manifest_req q;
    CHECK_OK(sk_manifest_req_decode(buf, len, &q, &e), &e);
    CHECK(q.sums == SK_SUMS_PATHS && q.count == 2);
    sk_bytes p;
    CHECK(sk_manifest_req_next(&q, &p) == 1 && sk_bytes_eq(p, paths[0]));
    CHECK(sk_manifest_req_next(&q, &p) == 1 && sk_bytes_eq(p, paths[1]));
    CHECK(sk_manifest_req_next(&q, &p) == 0);
    CHECK_OK(sk_manifest_req_encode(SK_SUMS_ALL, NULL, 0, buf, sizeof buf, &len, &e), &e);
    CHECK(len == 5);
    CHECK_OK(sk_manifest_req_decode(buf, len, &q, &e), &e);
    CHECK_RC(sk_manifest_req_encode(SK_SUMS_ALL, paths, 2, buf, sizeof buf, &len, &e), SK_EINVAL, &e);
    sk_bytes evil[] = {B("../x")};
    CHECK_RC(sk_manifest_req_encode(SK_SUMS_PATHS, evil, 1, buf, sizeof buf, &len, &e), SK_EPATH, &e);
    /* hand-made: a bad path inside, a count that lies, paths with sums=all */
    const uint8_t bad[] = {2, 0, 0, 0, 1, 0, 2, '.', '.'};
    CHECK_RC(sk_manifest_req_decode(bad, sizeof bad, &q, &e), SK_EPATH, &e);
    const uint8_t lie[] = {2, 0xff, 0xff, 0xff, 0xff, 0, 1, 'a'};
    CHECK_RC(sk_manifest_req_decode(lie, sizeof lie, &q, &e), SK_EMALFORMED, &e);
    const uint8_t mixed[] = {1, 0, 0, 0, 1, 0, 1, 'a'};
    CHECK_RC(sk_manifest_req_decode(mixed, sizeof mixed, &q, &e), SK_EMALFORMED, &e);
    const uint8_t sums3[] = {3, 0, 0, 0, 0};
    CHECK_RC(sk_manifest_req_decode(sums3, sizeof sums3, &q, &e), SK_EMALFORMED, &e);
}

static void manifest_chunks(void)
{
    sk_err e = {0, ""};
    uint8_t sums[3 * SK_SUM_SIZE];
    for (size_t i = 0; i < sizeof sums; i++)
        sums[i] = (uint8_t)i;
    sk_entry in[4] = {
        {.path = B(""), .kind = 'd', .mode = 040755},
        {.path = B("f"), .kind = 'f', .mode = 0100600, .uid = 1, .gid = 2, .size = 200000, .mtime_ns = -1,
         .has_sums = true, .sums_first = 5, .nsums = 3, .sums = {sums, sizeof sums}},
        {.path = B("l"), .kind = 'l', .mode = 0120777, .target = B("f")},
        {.path = B("dev"), .kind = 'o', .mode = 020600, .rdev = 0x0103},
    };
    uint8_t buf[1024];
    sk_manifest_writer w;
    sk_manifest_writer_init(&w, buf, sizeof buf);
    for (int i = 0; i < 4; i++)
        CHECK_OK(sk_manifest_writer_add(&w, &in[i], &e), &e);
    size_t len;
    CHECK_OK(sk_manifest_writer_finish(&w, &len, &e), &e);
    sk_manifest_iter it;
    uint32_t count;
    CHECK_OK(sk_manifest_begin(buf, len, &it, &count, &e), &e);
    CHECK(count == 4);
    CHECK_OK(sk_payload_check(SK_T_MANIFEST, SK_F_LAST, buf, len, &e), &e);
    sk_entry out;
    for (int i = 0; i < 4; i++) {
        CHECK(sk_manifest_next(&it, &out, &e) == 1);
        CHECK(sk_bytes_eq(out.path, in[i].path) && out.kind == in[i].kind && out.mode == in[i].mode &&
              out.uid == in[i].uid && out.gid == in[i].gid && out.size == in[i].size &&
              out.mtime_ns == in[i].mtime_ns && out.rdev == in[i].rdev && sk_bytes_eq(out.target, in[i].target) &&
              out.has_sums == in[i].has_sums && out.sums_first == in[i].sums_first && out.nsums == in[i].nsums &&
              sk_bytes_eq(out.sums, in[i].sums));
    }
    CHECK(sk_manifest_next(&it, &out, &e) == 0);
    /* every truncation is refused */
    for (size_t cut = 0; cut < len; cut++)
        CHECK_RC(sk_manifest_begin(buf, cut, &it, &count, &e), SK_EMALFORMED, &e);
    /* a count larger than the entries */
    buf[3] = 5;
    CHECK_RC(sk_manifest_begin(buf, len, &it, &count, &e), SK_EMALFORMED, &e);
    buf[3] = 4;
    /* a chunk that is full: the entry is refused and the writer unchanged */
    uint8_t small[60];
    sk_manifest_writer_init(&w, small, sizeof small);
    CHECK_OK(sk_manifest_writer_add(&w, &in[0], &e), &e);
    CHECK_RC(sk_manifest_writer_add(&w, &in[1], &e), SK_ESPACE, &e);
    CHECK_OK(sk_manifest_writer_finish(&w, &len, &e), &e);
    CHECK_OK(sk_manifest_begin(small, len, &it, &count, &e), &e);
    CHECK(count == 1);
    /* refused entries */
    sk_entry bad = in[1];
    bad.kind = 'x';
    CHECK_RC(sk_manifest_writer_add(&w, &bad, &e), SK_EMALFORMED, &e);
    bad = in[1];
    bad.nsums = 2;
    CHECK_RC(sk_manifest_writer_add(&w, &bad, &e), SK_EMALFORMED, &e);
    bad = in[0];
    bad.has_sums = true;
    CHECK_RC(sk_manifest_writer_add(&w, &bad, &e), SK_EMALFORMED, &e);
    bad = in[2];
    bad.target = B("");
    CHECK_RC(sk_manifest_writer_add(&w, &bad, &e), SK_EMALFORMED, &e);
    bad = in[3];
    bad.path = B("a/../b");
    CHECK_RC(sk_manifest_writer_add(&w, &bad, &e), SK_EPATH, &e);
}

static int walk_cmp_str(const void *pa, const void *pb)
{
    const char *a = *(const char *const *)pa, *b = *(const char *const *)pb;
    return sk_walk_cmp((const uint8_t *)a, strlen(a), (const uint8_t *)b, strlen(b));
}

/* The walk's order (native/secondary/manifest.c): the directory itself, then a directory's entries
 * by name before what is under its subdirectories, those in name order; not byte order ("a-b" and
 * "b" before "a/x") nor a depth-first order. */
static void walk_order(void)
{
    const char *want[] = {"",        "a",       "a-b",    "ab",     "b",       "a/x",     "a/y",
                          "a/x/1",   "a/x/2/z", "a/y/q",  "a-b/c",  "ab/\xff", "b/a",     "b/a/a"};
    size_t n = sizeof want / sizeof want[0];
    for (size_t i = 0; i < n; i++) {
        const uint8_t *a = (const uint8_t *)want[i];
        CHECK(sk_walk_cmp(a, strlen(want[i]), a, strlen(want[i])) == 0);
        for (size_t j = i + 1; j < n; j++) {
            const uint8_t *b = (const uint8_t *)want[j];
            CHECK(sk_walk_cmp(a, strlen(want[i]), b, strlen(want[j])) < 0);
            CHECK(sk_walk_cmp(b, strlen(want[j]), a, strlen(want[i])) > 0);
        }
    }
    /* a total order: shuffled, sorted by it, the walk's list again */
    const char *shuffled[sizeof want / sizeof want[0]];
    for (size_t i = 0; i < n; i++)
        shuffled[i] = want[(i * 5 + 3) % n];
    qsort(shuffled, n, sizeof shuffled[0], walk_cmp_str);
    for (size_t i = 0; i < n; i++)
        CHECK(strcmp(shuffled[i], want[i]) == 0);
    /* names compare as unsigned bytes, a prefix first */
    CHECK(sk_walk_cmp((const uint8_t *)"x", 1, (const uint8_t *)"x\x80", 2) < 0);
    CHECK(sk_walk_cmp((const uint8_t *)"\x80", 1, (const uint8_t *)"z", 1) > 0);
}

const sk_test sk_tests_ops[] = {
    {"every_op_round_trips", every_op_round_trips},
    {"op_layouts", op_layouts},
    {"path_rules", path_rules},
    {"bad_paths_refused_both_ways", bad_paths_refused_both_ways},
    {"field_refusals", field_refusals},
    {"ack_error_sync_progress", ack_error_sync_progress},
    {"manifest_request", manifest_request},
    {"manifest_chunks", manifest_chunks},
    {"walk_order", walk_order},
    SK_TESTS_END,
};
