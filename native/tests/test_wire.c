/* Frame header, sequence checker, AEAD sealing and opening (sk_wire, sk_seq, sk_aead, sk_frame). */
#include <stdlib.h>

#include "sk_frame.h"
#include "sk_ops.h"
#include "sk_seq.h"
#include "sk_test.h"
#include "sk_wire.h"

static const uint8_t KEY_A[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                  17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t KEY_B[32] = {9};

static void header_round_trip(void)
{
    sk_err e = {0, ""};
    sk_header h = {SK_WIRE_VERSION, SK_T_WRITE, SK_F_ACK | SK_F_DATASYNC, 0x0102030405060708ull, 77, 3}, d;
    uint8_t buf[SK_HEADER_SIZE];
    sk_header_encode(&h, buf);
    CHECK(memcmp(buf, "SKRF\x02\x0b\x00\x05\x01\x02\x03\x04\x05\x06\x07\x08\x00\x00\x00\x4d\x00\x00\x00\x03", 24) == 0);
    CHECK_OK(sk_header_decode(buf, sizeof buf, &d, &e), &e);
    CHECK(d.version == 2 && d.type == SK_T_WRITE && d.flags == 5 && d.seq == h.seq && d.length == 77 && d.dir == 3);
}

static void encode(uint8_t *buf, uint8_t version, uint8_t type, uint16_t flags, uint32_t length)
{
    sk_header h = {version, type, flags, 1, length, 0};
    sk_header_encode(&h, buf);
}

static void header_rejections(void)
{
    sk_err e = {0, ""};
    sk_header d;
    uint8_t buf[SK_HEADER_SIZE];
    encode(buf, 2, SK_T_WRITE, 0, 10);
    for (size_t n = 0; n < SK_HEADER_SIZE; n++)
        CHECK_RC(sk_header_decode(buf, n, &d, &e), SK_AGAIN, &e);
    buf[0] = 'X';
    CHECK_RC(sk_header_decode(buf, sizeof buf, &d, &e), SK_EMAGIC, &e);
    encode(buf, 1, SK_T_WRITE, 0, 10);
    CHECK_RC(sk_header_decode(buf, sizeof buf, &d, &e), SK_EVERSION, &e);
    CHECK_REASON(&e, "version 1");
    encode(buf, 3, SK_T_WRITE, 0, 10);
    CHECK_RC(sk_header_decode(buf, sizeof buf, &d, &e), SK_EVERSION, &e);
    CHECK_REASON(&e, "version 3");
    encode(buf, 2, SK_T_WRITE, 0, SK_MAX_PAYLOAD + 1);
    CHECK_RC(sk_header_decode(buf, sizeof buf, &d, &e), SK_ETOOBIG, &e);
    encode(buf, 2, SK_T_WRITE, 0, SK_MAX_PAYLOAD);
    CHECK_OK(sk_header_decode(buf, sizeof buf, &d, &e), &e);
    encode(buf, 2, 34, 0, 0); /* v1's unused VERIFY_REQ: not a v2 type */
    CHECK_RC(sk_header_decode(buf, sizeof buf, &d, &e), SK_ETYPE, &e);
    encode(buf, 2, 0, 0, 0);
    CHECK_RC(sk_header_decode(buf, sizeof buf, &d, &e), SK_ETYPE, &e);
    encode(buf, 2, SK_T_WRITE, 0x0008, 0);
    CHECK_RC(sk_header_decode(buf, sizeof buf, &d, &e), SK_EMALFORMED, &e);
}

static void frame_span(void)
{
    sk_err e = {0, ""};
    sk_header d;
    size_t need;
    uint8_t buf[SK_HEADER_SIZE + 10 + SK_TAG_SIZE] = {0};
    encode(buf, 2, SK_T_PING, 0, 10);
    CHECK_RC(sk_frame_span(buf, 5, &d, &need, &e), SK_AGAIN, &e);
    CHECK(need == SK_HEADER_SIZE);
    CHECK_RC(sk_frame_span(buf, sizeof buf - 1, &d, &need, &e), SK_AGAIN, &e);
    CHECK(need == sizeof buf);
    CHECK_OK(sk_frame_span(buf, sizeof buf, &d, &need, &e), &e);
}

static void type_table(void)
{
    CHECK(sk_type_senders(SK_T_ACK) == SK_S2P);
    CHECK(sk_type_senders(SK_T_WRITE) == SK_P2S);
    CHECK(sk_type_senders(SK_T_LINK) == SK_P2S);
    CHECK(sk_type_senders(SK_T_PING) == (SK_P2S | SK_S2P));
    CHECK(sk_type_senders(99) == 0);
    CHECK(sk_type_is_applied(SK_T_LINK) && sk_type_is_applied(SK_T_FALLOCATE) && sk_type_is_applied(SK_T_REMOVE_TREE));
    CHECK(!sk_type_is_applied(SK_T_SYNC_BEGIN) && !sk_type_is_applied(SK_T_ACK));
    for (int t = 0; t < 256; t++)
        CHECK((sk_type_name((uint8_t)t) != NULL) == (sk_type_senders((uint8_t)t) != 0));
}

static void sequence_checker(void)
{
    sk_err e = {0, ""};
    sk_seq s;
    sk_seq_init(&s, 5);
    CHECK_OK(sk_seq_check(&s, 5, "WRITE", &e), &e);
    CHECK_OK(sk_seq_check(&s, 6, "WRITE", &e), &e);
    CHECK_RC(sk_seq_check(&s, 6, "WRITE", &e), SK_ESEQ, &e);
    CHECK_REASON(&e, "replayed");
    CHECK_RC(sk_seq_check(&s, 7, "WRITE", &e), SK_ESTATE, &e); /* stays failed */
    sk_seq_init(&s, 5);
    CHECK_RC(sk_seq_check(&s, 7, NULL, &e), SK_ESEQ, &e);
    CHECK_REASON(&e, "lost or reordered");
    sk_seq_init(&s, UINT64_MAX);
    CHECK_RC(sk_seq_check(&s, UINT64_MAX, NULL, &e), SK_EEXHAUSTED, &e);
}

static void nonce_layout(void)
{
    uint8_t n[12];
    sk_nonce(n, SK_S2P, 0x1122334455667788ull);
    CHECK(memcmp(n, "\x00\x00\x00\x02\x11\x22\x33\x44\x55\x66\x77\x88", 12) == 0);
}

/* A pair of sender and receiver of one direction under `key`. */
static int pair(int suite, int dirn, const uint8_t *tkey, const uint8_t *rkey, uint64_t first, sk_tx *tx, sk_rx *rx,
                sk_err *e)
{
    int rc = sk_tx_init(tx, suite, dirn, tkey, first, e);
    if (rc == SK_OK)
        rc = sk_rx_init(rx, suite, dirn, rkey, first, 4, e);
    return rc;
}

static void seal_open_round_trip_suite(int suite)
{
    sk_err e = {0, ""};
    sk_tx tx;
    sk_rx rx;
    CHECK_OK(pair(suite, SK_P2S, KEY_A, KEY_A, 100, &tx, &rx, &e), &e);
    size_t cap = sk_frame_size(1 << 20) * 2;
    uint8_t *stream = malloc(cap), *data = malloc(1 << 20);
    CHECK(stream && data);
    for (size_t i = 0; i < (1 << 20); i++)
        data[i] = (uint8_t)(i * 7);
    /* two frames back to back in one buffer: a 1 MiB WRITE from two pieces, then an empty PING */
    uint8_t prefix[64];
    size_t plen, n1, n2;
    uint64_t seq;
    sk_op op = {.type = SK_T_WRITE, .path = sk_bytes_str("a/b"), .offset = 5, .data = {data, 1 << 20}};
    CHECK_OK(sk_op_encode_write_prefix(&op, prefix, sizeof prefix, &plen, &e), &e);
    sk_iov iov[2] = {{prefix, plen}, {data, 1 << 20}};
    CHECK_OK(sk_tx_seal(&tx, SK_T_WRITE, SK_F_ACK, 2, iov, 2, stream, cap, &n1, &seq, &e), &e);
    CHECK(seq == 100 && n1 == sk_frame_size(plen + (1 << 20)));
    CHECK_OK(sk_tx_seal(&tx, SK_T_PING, 0, 0, NULL, 0, stream + n1, cap - n1, &n2, &seq, &e), &e);
    CHECK(seq == 101 && n2 == SK_FRAME_OVERHEAD);
    /* the ciphertext is not the plaintext */
    CHECK(memcmp(stream + SK_HEADER_SIZE + plen, data, 64) != 0);

    sk_header h;
    size_t used, need, off = 0;
    CHECK_RC(sk_rx_open(&rx, stream, 10, &h, &used, &need, &e), SK_AGAIN, &e);
    CHECK_RC(sk_rx_open(&rx, stream, n1 - 1, &h, &used, &need, &e), SK_AGAIN, &e);
    CHECK(need == n1);
    CHECK_OK(sk_rx_open(&rx, stream, n1 + n2, &h, &used, &need, &e), &e);
    CHECK(used == n1 && h.type == SK_T_WRITE && h.seq == 100 && h.flags == SK_F_ACK && h.dir == 2);
    sk_op got;
    CHECK_OK(sk_op_decode(h.type, h.flags, stream + SK_HEADER_SIZE, h.length, &got, &e), &e);
    CHECK(got.offset == 5 && got.data.len == (1 << 20) && memcmp(got.data.ptr, data, 1 << 20) == 0);
    off += used;
    CHECK_OK(sk_rx_open(&rx, stream + off, n2, &h, &used, &need, &e), &e);
    CHECK(h.type == SK_T_PING && h.seq == 101 && h.length == 0 && used == n2);
    sk_tx_free(&tx);
    sk_rx_free(&rx);
    free(stream);
    free(data);
}

static void seal_open_aes_gcm(void) { seal_open_round_trip_suite(SK_SUITE_AES_256_GCM); }
static void seal_open_chacha(void) { seal_open_round_trip_suite(SK_SUITE_CHACHA20_POLY1305); }

/* The primary seals a large payload where it lies (its item: header room before it, tag room after
 * it; ADR 0044): the same frame, byte for byte, as sealed from a separate buffer, and it opens. */
static void seal_in_place_suite(int suite)
{
    sk_err e = {0, ""};
    sk_tx a, b;
    sk_rx rx;
    CHECK_OK(pair(suite, SK_P2S, KEY_A, KEY_A, 7, &a, &rx, &e), &e);
    CHECK_OK(sk_tx_init(&b, suite, SK_P2S, KEY_A, 7, &e), &e);
    size_t len = (1 << 20) + 77; /* not a multiple of any block */
    uint8_t *data = malloc(len), *apart = malloc(sk_frame_size(len)), *inplace = malloc(sk_frame_size(len));
    CHECK(data && apart && inplace);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 13 + 1);
    memcpy(inplace + SK_HEADER_SIZE, data, len);
    sk_iov from_apart = {data, len}, from_here = {inplace + SK_HEADER_SIZE, len};
    size_t n1, n2;
    CHECK_OK(sk_tx_seal(&a, SK_T_WRITE, 0, 1, &from_apart, 1, apart, sk_frame_size(len), &n1, NULL, &e), &e);
    CHECK_OK(sk_tx_seal(&b, SK_T_WRITE, 0, 1, &from_here, 1, inplace, sk_frame_size(len), &n2, NULL, &e), &e);
    CHECK(n1 == n2 && n1 == sk_frame_size(len));
    CHECK(memcmp(apart, inplace, n1) == 0);
    sk_header h;
    size_t used, need;
    CHECK_OK(sk_rx_open(&rx, inplace, n2, &h, &used, &need, &e), &e);
    CHECK(used == n2 && h.seq == 7 && h.length == len && memcmp(inplace + SK_HEADER_SIZE, data, len) == 0);
    sk_tx_free(&a);
    sk_tx_free(&b);
    sk_rx_free(&rx);
    free(data);
    free(apart);
    free(inplace);
}

static void seal_in_place_aes_gcm(void) { seal_in_place_suite(SK_SUITE_AES_256_GCM); }
static void seal_in_place_chacha(void) { seal_in_place_suite(SK_SUITE_CHACHA20_POLY1305); }

/* Seal a small UNLINK "x" frame (sequence from tx) into buf. */
static size_t small_frame(sk_tx *tx, uint8_t type, uint32_t dir, uint8_t *buf, size_t cap)
{
    uint8_t payload[16];
    size_t plen = 0, n = 0;
    sk_op op = {.type = SK_T_UNLINK, .path = sk_bytes_str("x")};
    if (sk_type_is_applied(type))
        sk_op_encode(&op, payload, sizeof payload, &plen, NULL);
    sk_iov iov = {payload, plen};
    if (sk_tx_seal(tx, type, 0, dir, &iov, 1, buf, cap, &n, NULL, NULL) != SK_OK)
        return 0;
    return n;
}

static void tampering_fails_and_wipes(void)
{
    sk_err e = {0, ""};
    /* flip every byte of a frame in turn: header (associated data), ciphertext and tag */
    uint8_t frame[128], copy[128];
    sk_tx tx;
    sk_rx rx;
    CHECK_OK(sk_tx_init(&tx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_A, 1, &e), &e);
    size_t n = small_frame(&tx, SK_T_UNLINK, 0, frame, sizeof frame);
    CHECK(n == SK_FRAME_OVERHEAD + 3);
    sk_tx_free(&tx);
    for (size_t i = 0; i < n; i++) {
        memcpy(copy, frame, n);
        copy[i] ^= 0x01;
        CHECK_OK(sk_rx_init(&rx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_A, 1, 4, &e), &e);
        sk_header h;
        size_t used, need;
        int rc = sk_rx_open(&rx, copy, n, &h, &used, &need, &e);
        if (rc == SK_AGAIN) { /* a longer length announced: the receiver waits for more bytes */
            CHECK(i >= 16 && i < 20 && need > n);
            sk_rx_free(&rx);
            continue;
        }
        CHECK(rc < 0);
        if (i >= SK_HEADER_SIZE) {
            CHECK_RC(rc, SK_EAUTH, &e);
            /* nothing of the bad frame is visible: its payload bytes were wiped */
            CHECK(copy[SK_HEADER_SIZE] == 0 && copy[SK_HEADER_SIZE + 1] == 0 && copy[SK_HEADER_SIZE + 2] == 0);
        }
        CHECK(used == 0);
        /* the receiver stays failed, even for a good frame */
        memcpy(copy, frame, n);
        CHECK_RC(sk_rx_open(&rx, copy, n, &h, &used, &need, &e), SK_ESTATE, &e);
        sk_rx_free(&rx);
    }
}

static void wrong_key_and_direction(void)
{
    sk_err e = {0, ""};
    uint8_t frame[128];
    sk_tx tx;
    sk_rx rx;
    sk_header h;
    size_t used, need;
    CHECK_OK(sk_tx_init(&tx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_A, 1, &e), &e);
    size_t n = small_frame(&tx, SK_T_UNLINK, 0, frame, sizeof frame);
    sk_tx_free(&tx);
    CHECK_OK(sk_rx_init(&rx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_B, 1, 4, &e), &e);
    CHECK_RC(sk_rx_open(&rx, frame, n, &h, &used, &need, &e), SK_EAUTH, &e);
    sk_rx_free(&rx);
    /* right key, other suite */
    CHECK_OK(sk_tx_init(&tx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_A, 1, &e), &e);
    n = small_frame(&tx, SK_T_UNLINK, 0, frame, sizeof frame);
    sk_tx_free(&tx);
    CHECK_OK(sk_rx_init(&rx, SK_SUITE_CHACHA20_POLY1305, SK_P2S, KEY_A, 1, 4, &e), &e);
    CHECK_RC(sk_rx_open(&rx, frame, n, &h, &used, &need, &e), SK_EAUTH, &e);
    sk_rx_free(&rx);
    /* a PING reflected back: same key, other direction's nonce */
    CHECK_OK(sk_tx_init(&tx, SK_SUITE_AES_256_GCM, SK_S2P, KEY_A, 1, &e), &e);
    n = small_frame(&tx, SK_T_PING, 0, frame, sizeof frame);
    sk_tx_free(&tx);
    CHECK_OK(sk_rx_init(&rx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_A, 1, 4, &e), &e);
    CHECK_RC(sk_rx_open(&rx, frame, n, &h, &used, &need, &e), SK_EAUTH, &e);
    sk_rx_free(&rx);
    /* an ACK is never accepted from the primary's side */
    CHECK_OK(sk_tx_init(&tx, SK_SUITE_AES_256_GCM, SK_S2P, KEY_A, 1, &e), &e);
    uint8_t ackp[24] = {0};
    sk_iov iov = {ackp, 24};
    CHECK_OK(sk_tx_seal(&tx, SK_T_ACK, 0, 0, &iov, 1, frame, sizeof frame, &n, NULL, &e), &e);
    sk_tx_free(&tx);
    CHECK_OK(sk_rx_init(&rx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_A, 1, 4, &e), &e);
    CHECK_RC(sk_rx_open(&rx, frame, n, &h, &used, &need, &e), SK_ETYPE, &e);
    CHECK_REASON(&e, "unexpected ACK frame from the primary");
    sk_rx_free(&rx);
}

static void replay_reorder_loss(void)
{
    sk_err e = {0, ""};
    uint8_t f1[128], f2[128], f3[128], copy[128];
    sk_tx tx;
    sk_rx rx;
    sk_header h;
    size_t used, need;
    CHECK_OK(sk_tx_init(&tx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_A, 10, &e), &e);
    size_t n1 = small_frame(&tx, SK_T_UNLINK, 0, f1, sizeof f1);
    size_t n2 = small_frame(&tx, SK_T_UNLINK, 0, f2, sizeof f2);
    size_t n3 = small_frame(&tx, SK_T_UNLINK, 0, f3, sizeof f3);
    sk_tx_free(&tx);
    CHECK(n1 && n2 && n3);
    /* replay */
    CHECK_OK(sk_rx_init(&rx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_A, 10, 4, &e), &e);
    memcpy(copy, f1, n1);
    CHECK_OK(sk_rx_open(&rx, copy, n1, &h, &used, &need, &e), &e);
    memcpy(copy, f1, n1);
    CHECK_RC(sk_rx_open(&rx, copy, n1, &h, &used, &need, &e), SK_ESEQ, &e);
    CHECK_REASON(&e, "replayed");
    sk_rx_free(&rx);
    /* reorder */
    CHECK_OK(sk_rx_init(&rx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_A, 10, 4, &e), &e);
    memcpy(copy, f2, n2);
    CHECK_RC(sk_rx_open(&rx, copy, n2, &h, &used, &need, &e), SK_ESEQ, &e);
    CHECK_REASON(&e, "lost or reordered");
    sk_rx_free(&rx);
    /* loss: 10 then 12 */
    CHECK_OK(sk_rx_init(&rx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_A, 10, 4, &e), &e);
    memcpy(copy, f1, n1);
    CHECK_OK(sk_rx_open(&rx, copy, n1, &h, &used, &need, &e), &e);
    memcpy(copy, f3, n3);
    CHECK_RC(sk_rx_open(&rx, copy, n3, &h, &used, &need, &e), SK_ESEQ, &e);
    sk_rx_free(&rx);
    /* a replay with its sequence number rewritten to the expected one fails authentication */
    CHECK_OK(sk_rx_init(&rx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_A, 10, 4, &e), &e);
    memcpy(copy, f1, n1);
    CHECK_OK(sk_rx_open(&rx, copy, n1, &h, &used, &need, &e), &e);
    memcpy(copy, f1, n1);
    copy[15] = 11;
    CHECK_RC(sk_rx_open(&rx, copy, n1, &h, &used, &need, &e), SK_EAUTH, &e);
    sk_rx_free(&rx);
}

static void receiver_refusals(void)
{
    sk_err e = {0, ""};
    uint8_t f[128];
    sk_tx tx;
    sk_rx rx;
    sk_header h;
    size_t used, need;
    /* directory index beyond the module's */
    CHECK_OK(sk_tx_init(&tx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_A, 1, &e), &e);
    size_t n = small_frame(&tx, SK_T_UNLINK, 4, f, sizeof f);
    sk_tx_free(&tx);
    CHECK_OK(sk_rx_init(&rx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_A, 1, 4, &e), &e);
    CHECK_RC(sk_rx_open(&rx, f, n, &h, &used, &need, &e), SK_EMALFORMED, &e);
    sk_rx_free(&rx);
    /* a handshake frame type inside a session */
    uint8_t hdr[SK_FRAME_OVERHEAD + 32] = {0};
    sk_header hh = {2, SK_T_HELLO_DONE, 0, 1, 32, 0};
    sk_header_encode(&hh, hdr);
    CHECK_OK(sk_rx_init(&rx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_A, 1, 4, &e), &e);
    CHECK_RC(sk_rx_open(&rx, hdr, sizeof hdr, &h, &used, &need, &e), SK_ETYPE, &e);
    sk_rx_free(&rx);
    /* a v1 frame, an oversize announcement */
    hh.type = SK_T_WRITE;
    hh.version = 1;
    sk_header_encode(&hh, hdr);
    CHECK_OK(sk_rx_init(&rx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_A, 1, 4, &e), &e);
    CHECK_RC(sk_rx_open(&rx, hdr, sizeof hdr, &h, &used, &need, &e), SK_EVERSION, &e);
    sk_rx_free(&rx);
    hh.version = 2;
    hh.length = SK_MAX_PAYLOAD + 1;
    sk_header_encode(&hh, hdr);
    CHECK_OK(sk_rx_init(&rx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_A, 1, 4, &e), &e);
    CHECK_RC(sk_rx_open(&rx, hdr, SK_HEADER_SIZE, &h, &used, &need, &e), SK_ETOOBIG, &e);
    sk_rx_free(&rx);
}

static void sender_refusals(void)
{
    sk_err e = {0, ""};
    sk_tx tx;
    uint8_t out[256];
    size_t n;
    CHECK_OK(sk_tx_init(&tx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_A, 1, &e), &e);
    CHECK_RC(sk_tx_seal(&tx, SK_T_ACK, 0, 0, NULL, 0, out, sizeof out, &n, NULL, &e), SK_ETYPE, &e);
    CHECK_RC(sk_tx_seal(&tx, SK_T_HELLO, 0, 0, NULL, 0, out, sizeof out, &n, NULL, &e), SK_ETYPE, &e);
    CHECK_RC(sk_tx_seal(&tx, SK_T_PING, 0x80, 0, NULL, 0, out, sizeof out, &n, NULL, &e), SK_EINVAL, &e);
    CHECK_RC(sk_tx_seal(&tx, SK_T_PING, 0, 0, NULL, 0, out, SK_FRAME_OVERHEAD - 1, &n, NULL, &e), SK_ESPACE, &e);
    static uint8_t big[SK_MAX_PAYLOAD / 2 + 1];
    sk_iov iov[2] = {{big, sizeof big}, {big, sizeof big}};
    CHECK_RC(sk_tx_seal(&tx, SK_T_WRITE, 0, 0, iov, 2, out, sizeof out, &n, NULL, &e), SK_ETOOBIG, &e);
    uint64_t seq;
    CHECK_OK(sk_tx_seal(&tx, SK_T_PING, 0, 0, NULL, 0, out, sizeof out, &n, &seq, &e), &e);
    CHECK(seq == 1); /* refusals did not use a sequence number */
    sk_tx_free(&tx);
    /* sequence numbers are never wrapped around (that would reuse nonces) */
    CHECK_OK(sk_tx_init(&tx, SK_SUITE_AES_256_GCM, SK_P2S, KEY_A, UINT64_MAX - 1, &e), &e);
    CHECK_OK(sk_tx_seal(&tx, SK_T_PING, 0, 0, NULL, 0, out, sizeof out, &n, &seq, &e), &e);
    CHECK(seq == UINT64_MAX - 1);
    CHECK_RC(sk_tx_seal(&tx, SK_T_PING, 0, 0, NULL, 0, out, sizeof out, &n, &seq, &e), SK_EEXHAUSTED, &e);
    CHECK_RC(sk_tx_seal(&tx, SK_T_PING, 0, 0, NULL, 0, out, sizeof out, &n, &seq, &e), SK_ESTATE, &e);
    sk_tx_free(&tx);
    CHECK_RC(sk_tx_init(&tx, 7, SK_P2S, KEY_A, 1, &e), SK_EINVAL, &e);
    sk_tx_free(&tx);
}

const sk_test sk_tests_wire[] = {
    {"header_round_trip", header_round_trip},
    {"header_rejections", header_rejections},
    {"frame_span", frame_span},
    {"type_table", type_table},
    {"sequence_checker", sequence_checker},
    {"nonce_layout", nonce_layout},
    {"seal_open_aes_gcm", seal_open_aes_gcm},
    {"seal_open_chacha", seal_open_chacha},
    {"seal_in_place_aes_gcm", seal_in_place_aes_gcm},
    {"seal_in_place_chacha", seal_in_place_chacha},
    {"tampering_fails_and_wipes", tampering_fails_and_wipes},
    {"wrong_key_and_direction", wrong_key_and_direction},
    {"replay_reorder_loss", replay_reorder_loss},
    {"receiver_refusals", receiver_refusals},
    {"sender_refusals", sender_refusals},
    SK_TESTS_END,
};
