/* Prints the v2 test vectors (`make vectors`): the bytes docs/replication-wire-v2.md lists and
 * test_vectors.c checks. */
#include <stdio.h>
#include <string.h>

#include "sk_frame.h"
#include "sk_hello.h"
#include "sk_kdf.h"
#include "sk_ops.h"
#include "vectors.h"

static void hex(const char *label, const uint8_t *p, size_t n)
{
    printf("%s (%zu bytes):\n", label, n);
    for (size_t i = 0; i < n; i++)
        printf("%02x%s", p[i], (i % 32 == 31 || i + 1 == n) ? "\n" : "");
}

static int die(const sk_err *e)
{
    fprintf(stderr, "gen_vectors: %s\n", e->reason);
    return 1;
}

int main(void)
{
    sk_err e;
    uint8_t key[32], np[32], ns[32], th[32], hk[32], p2s[32], s2p[32];
    vec_inputs(key, np, ns, th);
    if (sk_derive_hello_key(key, 32, sk_bytes_str(VEC_MODULE), hk, &e))
        return die(&e);
    hex("V1 hello_key", hk, 32);
    sk_session_input in = {key, 32, 2, SK_SUITE_AES_256_GCM, sk_bytes_str(VEC_MODULE), sk_bytes_str(VEC_PRIMARY),
                           sk_bytes_str(VEC_SECONDARY), np, ns, th};
    if (sk_derive_session_keys(&in, p2s, s2p, &e))
        return die(&e);
    hex("V2 k_p2s", p2s, 32);
    hex("V2 k_s2p", s2p, 32);

    uint8_t payload[256], frame[512];
    size_t plen, flen;
    sk_op op = vec_write_op();
    if (sk_op_encode(&op, payload, sizeof payload, &plen, &e))
        return die(&e);
    sk_tx tx;
    sk_iov iov = {payload, plen};
    if (sk_tx_init(&tx, SK_SUITE_AES_256_GCM, SK_P2S, p2s, 7, &e) ||
        sk_tx_seal(&tx, SK_T_WRITE, 0, 0, &iov, 1, frame, sizeof frame, &flen, NULL, &e))
        return die(&e);
    sk_tx_free(&tx);
    hex("V3 WRITE payload (plaintext)", payload, plen);
    hex("V3 frame, AES-256-GCM, k_p2s, seq 7", frame, flen);

    sk_ack ack = {7, 7, 7};
    if (sk_ack_encode(&ack, payload, sizeof payload, &plen, &e))
        return die(&e);
    iov.len = plen;
    if (sk_tx_init(&tx, SK_SUITE_CHACHA20_POLY1305, SK_S2P, s2p, 1, &e) ||
        sk_tx_seal(&tx, SK_T_ACK, 0, 0, &iov, 1, frame, sizeof frame, &flen, NULL, &e))
        return die(&e);
    sk_tx_free(&tx);
    hex("V4 frame, ChaCha20-Poly1305, k_s2p, seq 1, ACK 7/7/7", frame, flen);

    sk_hello p, s;
    sk_hello_config pc = vec_config(SK_ROLE_PRIMARY, key), sc = vec_config(SK_ROLE_SECONDARY, key);
    uint8_t hello[SK_HELLO_OUT_MAX], ok[SK_HELLO_OUT_MAX], done[SK_HELLO_OUT_MAX];
    size_t hl, okl, dl, used;
    if (sk_hello_init(&p, &pc, np, &e) || sk_hello_init(&s, &sc, ns, &e) ||
        sk_hello_start(&p, hello, sizeof hello, &hl, &e) ||
        sk_hello_receive(&s, hello, hl, &used, ok, sizeof ok, &okl, &e) ||
        sk_hello_receive(&p, ok, okl, &used, done, sizeof done, &dl, &e))
        return die(&e);
    hex("V5 HELLO", hello, hl);
    hex("V5 HELLO_OK", ok, okl);
    hex("V5 HELLO_DONE", done, dl);
    hex("V5 th", p.th, 32);
    hex("V5 k_p2s", p.keys.p2s, 32);
    hex("V5 k_s2p", p.keys.s2p, 32);
    return 0;
}
