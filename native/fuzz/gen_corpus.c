/* Writes the seed corpus of the fuzz targets (`make corpus`): valid frames, payloads of every type
 * and the handshake of the test vectors, in the input layout each target reads. The seeds are
 * committed under fuzz/corpus/<target>/; rerun after a layout change. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sk_frame.h"
#include "sk_hello.h"
#include "sk_ops.h"
#include "vectors.h"

static const char *root;

static void put(const char *target, const char *name, const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(a, 1, an, f) != an || (bn && fwrite(b, 1, bn, f) != bn) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void ok(int rc, const sk_err *e)
{
    if (rc != SK_OK) {
        fprintf(stderr, "gen_corpus: %s\n", e->reason);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    root = argc > 1 ? argv[1] : "corpus";
    sk_err e;
    uint8_t key[32], np[32], ns[32], th[32];
    vec_inputs(key, np, ns, th);

    /* every operation, and the control payloads */
    uint8_t sums[2 * SK_SUM_SIZE] = {1, 2, 3};
    sk_op ops[] = {
        {.type = SK_T_CREATE, .path = sk_bytes_str("d/f"), .mode = 0100644, .uid = 1, .gid = 2},
        {.type = SK_T_WRITE, .path = sk_bytes_str("d/f"), .offset = 4096, .data = sk_bytes_str("hello")},
        {.type = SK_T_TRUNCATE, .path = sk_bytes_str("d/f"), .size = 10},
        {.type = SK_T_FALLOCATE, .path = sk_bytes_str("d/f"), .mode = 1, .offset = 0, .length = 65536},
        {.type = SK_T_SETATTR, .path = sk_bytes_str(""), .mask = 24, .atime_ns = 1, .mtime_ns = 2},
        {.type = SK_T_SETXATTR, .path = sk_bytes_str("d/f"), .name = sk_bytes_str("user.a"), .value = sk_bytes_str("v")},
        {.type = SK_T_REMOVEXATTR, .path = sk_bytes_str("d/f"), .name = sk_bytes_str("user.a")},
        {.type = SK_T_MKDIR, .path = sk_bytes_str("d"), .mode = 040755},
        {.type = SK_T_RMDIR, .path = sk_bytes_str("d")},
        {.type = SK_T_UNLINK, .path = sk_bytes_str("d/f")},
        {.type = SK_T_RENAME, .path = sk_bytes_str("a"), .path2 = sk_bytes_str("b/c"), .flags = 2},
        {.type = SK_T_SYMLINK, .path = sk_bytes_str("l"), .target = sk_bytes_str("../t")},
        {.type = SK_T_MKNOD, .path = sk_bytes_str("p"), .mode = 010600, .rdev = 5},
        {.type = SK_T_FSYNC, .path = sk_bytes_str("d/f")},
        {.type = SK_T_LINK, .path = sk_bytes_str("d/f"), .path2 = sk_bytes_str("d/g")},
        {.type = SK_T_REMOVE_TREE, .path = sk_bytes_str("d")},
        {.type = SK_T_CLEAR_XATTRS, .path = sk_bytes_str("d/f")},
    };
    struct {
        uint8_t type;
        uint16_t flags;
        uint8_t p[512];
        size_t n;
    } seeds[40];
    size_t ns_ = 0;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++, ns_++) {
        seeds[ns_].type = ops[i].type;
        seeds[ns_].flags = ops[i].type == SK_T_FSYNC ? SK_F_ACK | SK_F_DATASYNC : 0;
        ok(sk_op_encode(&ops[i], seeds[ns_].p, sizeof seeds[ns_].p, &seeds[ns_].n, &e), &e);
    }
    sk_ack ack = {9, 8, 7};
    seeds[ns_].type = SK_T_ACK, seeds[ns_].flags = 0;
    ok(sk_ack_encode(&ack, seeds[ns_].p, 512, &seeds[ns_].n, &e), &e);
    ns_++;
    sk_error_msg em = {3, 28, sk_bytes_str("disk full")};
    seeds[ns_].type = SK_T_ERROR, seeds[ns_].flags = 0;
    ok(sk_error_encode(&em, seeds[ns_].p, 512, &seeds[ns_].n, &e), &e);
    ns_++;
    seeds[ns_].type = SK_T_SYNC_BEGIN, seeds[ns_].flags = 0;
    ok(sk_sync_begin_encode(SK_SYNC_JOURNAL, seeds[ns_].p, 512, &seeds[ns_].n, &e), &e);
    ns_++;
    seeds[ns_].type = SK_T_SYNC_END, seeds[ns_].flags = SK_F_ACK;
    ok(sk_sync_end_encode(4, seeds[ns_].p, 512, &seeds[ns_].n, &e), &e);
    ns_++;
    sk_progress pr = {1, 2};
    seeds[ns_].type = SK_T_PROGRESS, seeds[ns_].flags = 0;
    ok(sk_progress_encode(&pr, seeds[ns_].p, 512, &seeds[ns_].n, &e), &e);
    ns_++;
    sk_bytes paths[] = {sk_bytes_str("a"), sk_bytes_str("b/c")};
    seeds[ns_].type = SK_T_MANIFEST_REQ, seeds[ns_].flags = 0;
    ok(sk_manifest_req_encode(SK_SUMS_PATHS, paths, 2, seeds[ns_].p, 512, &seeds[ns_].n, &e), &e);
    ns_++;
    sk_entry ents[] = {
        {.path = sk_bytes_str(""), .kind = 'd', .mode = 040755},
        {.path = sk_bytes_str("f"), .kind = 'f', .size = 70000, .has_sums = true, .sums_first = 0, .nsums = 2,
         .sums = {sums, sizeof sums}},
        {.path = sk_bytes_str("l"), .kind = 'l', .target = sk_bytes_str("f")},
    };
    sk_manifest_writer w;
    sk_manifest_writer_init(&w, seeds[ns_].p, 512);
    for (size_t i = 0; i < 3; i++)
        ok(sk_manifest_writer_add(&w, &ents[i], &e), &e);
    ok(sk_manifest_writer_finish(&w, &seeds[ns_].n, &e), &e);
    seeds[ns_].type = SK_T_MANIFEST, seeds[ns_].flags = SK_F_LAST;
    ns_++;
    seeds[ns_].type = SK_T_PING, seeds[ns_].flags = SK_F_ACK, seeds[ns_].n = 0;
    ns_++;

    /* fuzz_verify: u16 this node's chunk length, u16 the cut of the secondary's, both parts */
    {
        static uint8_t here[1024], there[1024], in[2048];
        size_t hn, tn;
        sk_entry more[] = {
            {.path = sk_bytes_str("a"), .kind = 'd', .mode = 040755},
            {.path = sk_bytes_str("f"), .kind = 'f', .size = 70000, .has_sums = true, .sums_first = 0, .nsums = 1,
             .sums = {sums, 16}},
            {.path = sk_bytes_str("f"), .kind = 'f', .size = 70000, .has_sums = true, .sums_first = 1, .nsums = 1,
             .sums = {sums + 16, 16}},
            {.path = sk_bytes_str("l"), .kind = 'l', .target = sk_bytes_str("a")},
            {.path = sk_bytes_str("a/x"), .kind = 'f', .mode = 0100600, .has_sums = true},
        };
        sk_manifest_writer_init(&w, here, sizeof here);
        ok(sk_manifest_writer_add(&w, &ents[0], &e), &e);
        for (size_t i = 0; i < 5; i++)
            ok(sk_manifest_writer_add(&w, &more[i], &e), &e);
        ok(sk_manifest_writer_finish(&w, &hn, &e), &e);
        /* the same manifest; then another in two chunks (a file missing, one more there) */
        in[0] = (uint8_t)(hn >> 8), in[1] = (uint8_t)hn, in[2] = 0, in[3] = 0;
        memcpy(in + 4, here, hn);
        memcpy(in + 4 + hn, here, hn);
        put("verify", "same", in, 4 + 2 * hn, NULL, 0);
        sk_manifest_writer_init(&w, there, sizeof there);
        for (size_t i = 0; i < 3; i++)
            ok(sk_manifest_writer_add(&w, &ents[i], &e), &e);
        ok(sk_manifest_writer_finish(&w, &tn, &e), &e);
        size_t t2;
        sk_manifest_writer_init(&w, there + tn, sizeof there - tn);
        ok(sk_manifest_writer_add(&w, &more[4], &e), &e);
        ok(sk_manifest_writer_finish(&w, &t2, &e), &e);
        in[2] = (uint8_t)(tn >> 8), in[3] = (uint8_t)tn;
        memcpy(in + 4 + hn, there, tn + t2);
        put("verify", "differs", in, 4 + hn + tn + t2, NULL, 0);
    }

    for (size_t i = 0; i < ns_; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s", sk_type_name(seeds[i].type));
        uint8_t head[6] = {seeds[i].type, (uint8_t)(seeds[i].flags >> 8), (uint8_t)seeds[i].flags};
        put("ops", name, head, 3, seeds[i].p, seeds[i].n);
        /* fuzz_frame, seal-and-open mode: 1, type, flags, dir, suite/flip */
        uint8_t fh[6] = {1, seeds[i].type, (uint8_t)(seeds[i].flags >> 8), (uint8_t)seeds[i].flags, 0, (uint8_t)(i * 37)};
        snprintf(name, sizeof name, "seal-%s", sk_type_name(seeds[i].type));
        put("frame", name, fh, 6, seeds[i].p, seeds[i].n);
    }

    /* fuzz_frame, raw mode: sealed frames back to back as a receiver (key of the target) sees them */
    static const uint8_t FKEY[32] = {0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    sk_tx tx;
    ok(sk_tx_init(&tx, SK_SUITE_AES_256_GCM, SK_P2S, FKEY, 1, &e), &e);
    uint8_t stream[4096];
    size_t off = 1, n;
    stream[0] = 0;
    for (size_t i = 0; i < 4; i++) {
        sk_iov iov = {seeds[i].p, seeds[i].n};
        ok(sk_tx_seal(&tx, seeds[i].type, seeds[i].flags, 0, &iov, 1, stream + off, sizeof stream - off, &n, NULL, &e), &e);
        off += n;
    }
    sk_tx_free(&tx);
    put("frame", "raw-stream", stream, off, NULL, 0);
    put("frame", "raw-v1-header", (const uint8_t *)"\0SKRF\x01\x0b\0\0\0\0\0\0\0\0\0\x01\0\0\0\x03\0\0\0\0abc", 28, NULL, 0);

    /* the handshake of the test vectors */
    sk_hello p, s;
    sk_hello_config pc = vec_config(SK_ROLE_PRIMARY, key), sc = vec_config(SK_ROLE_SECONDARY, key);
    uint8_t hello[SK_HELLO_OUT_MAX], hok[SK_HELLO_OUT_MAX], done[SK_HELLO_OUT_MAX];
    size_t hl, okl, dl, used;
    ok(sk_hello_init(&p, &pc, np, &e), &e);
    ok(sk_hello_init(&s, &sc, ns, &e), &e);
    ok(sk_hello_start(&p, hello, sizeof hello, &hl, &e), &e);
    ok(sk_hello_receive(&s, hello, hl, &used, hok, sizeof hok, &okl, &e), &e);
    ok(sk_hello_receive(&p, hok, okl, &used, done, sizeof done, &dl, &e), &e);
    uint8_t m[2] = {0, 40};
    put("hello", "raw-hello", m, 2, hello, hl);
    m[0] = 1;
    put("hello", "hello-payload", m, 1, hello + SK_HEADER_SIZE, hl - SK_FRAME_OVERHEAD);
    m[0] = 2;
    put("hello", "hello-ok-payload", m, 1, hok + SK_HEADER_SIZE, okl - SK_FRAME_OVERHEAD);
    m[0] = 3;
    put("hello", "hello-done", m, 1, done, dl);
    m[0] = 4;
    put("hello", "raw-hello-ok", m, 1, hok, okl);
    printf("seeds written under %s\n", root);
    return 0;
}
