/* Inputs of the v2 test vectors (docs/replication-wire-v2.md, "Test vectors"): fixed keys, nonces
 * and frames. gen_vectors.c prints what they give; test_vectors.c checks the same bytes. */
#ifndef SK_TEST_VECTORS_H
#define SK_TEST_VECTORS_H

#include <stdint.h>
#include <string.h>

#include "sk_hello.h"
#include "sk_ops.h"

static inline void vec_fill(uint8_t *p, size_t n, uint8_t first)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(first + i);
}

#define VEC_MODULE "pgsql"
#define VEC_PRIMARY "node1"
#define VEC_SECONDARY "node2"

/* cluster key 00 01 .. 1f; nonce_p 10 11 .. 2f; nonce_s 40 41 .. 5f; th 80 81 .. 9f */
static inline void vec_inputs(uint8_t key[32], uint8_t np[32], uint8_t ns[32], uint8_t th[32])
{
    vec_fill(key, 32, 0x00);
    vec_fill(np, 32, 0x10);
    vec_fill(ns, 32, 0x40);
    vec_fill(th, 32, 0x80);
}

/* V3: WRITE "data/f" at 4096 of "hello world", primary -> secondary, sequence 7, directory 0. */
static inline sk_op vec_write_op(void)
{
    sk_op op;
    memset(&op, 0, sizeof op);
    op.type = SK_T_WRITE;
    op.path = sk_bytes_str("data/f");
    op.offset = 4096;
    op.data = sk_bytes_str("hello world");
    return op;
}

static inline sk_hello_config vec_config(int role, const uint8_t *key)
{
    sk_hello_config c;
    memset(&c, 0, sizeof c);
    c.role = role;
    c.cluster_key = key;
    c.cluster_key_len = 32;
    c.module = VEC_MODULE;
    c.node = role == SK_ROLE_PRIMARY ? VEC_PRIMARY : VEC_SECONDARY;
    c.peer = role == SK_ROLE_PRIMARY ? VEC_SECONDARY : VEC_PRIMARY;
    c.dirs = 1;
    c.epoch = "e1";
    c.first_seq = 8;
    c.trusted = true;
    c.in_sync = true;
    return c;
}

#endif
