/* The test vectors of docs/replication-wire-v2.md: fixed inputs (vectors.h) give these exact bytes.
 * They were produced by this code (`make vectors`) and checked against an independent
 * implementation (tests/xcheck_vectors.py, Python's cryptography package). */
#include "sk_frame.h"
#include "sk_hello.h"
#include "sk_kdf.h"
#include "sk_ops.h"
#include "sk_test.h"
#include "vectors.h"

#define V1_HELLO_KEY "d8e94d22b90c24003dd4400025d344466dfedaa693dad69fb50c3133a5cc0142"
#define V2_P2S "4b1caf1386a7b4e27282bdbd9dddce062d2b388b2df707de064484e6e28d8506"
#define V2_S2P "5b03b3cd37e68631e7e9ba7cf4447dfa1146863faeb8fbeda0c7f2604494e3b8"
#define V3_PAYLOAD "0006646174612f66000000000000100068656c6c6f20776f726c64"
#define V3_FRAME                                                             \
    "534b5246020b000000000000000000070000001b0000000070ad95f3c8e03f6c"     \
    "2317872fce5e0f9db2bdcc82abd7af6f7c70c950ca2575375094bb2e415dcb98"     \
    "a1efbd"
#define V4_FRAME                                                             \
    "534b52460228000000000000000000010000001800000000c8f6ea05d8852a2d"     \
    "8c5c0a496d8c787ad4eceb73b14bf6f52623f7e750c613f7fe7530414eb0053b"
#define V5_HELLO                                                             \
    "534b52460201000000000000000000000000004c000000000202000000061011"     \
    "12131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f0005"     \
    "706773716c00056e6f64653100056e6f64653200026531000000000000000800"     \
    "0000010090d3b904ef8a141da8172275653f0ed1"
#define V5_HELLO_OK                                                          \
    "534b524602020000000000000000000000000050000000000201404142434445"     \
    "464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f428d32ce6f16"     \
    "d3fad97909c27c74535ea374500695dd22a34bd00a7e9d1d31e600056e6f6465"     \
    "3200026531010100961ce7166021bd47bf76eecfed989ea7"
#define V5_HELLO_DONE                                                        \
    "534b52460203000000000000000000000000002000000000b45244062c29d189"     \
    "87374d4579e4c3f2efce8a4c264a57901fc2b774072115b47726b5a34c55c789"     \
    "becc42c6236259b4"
#define V5_TH "a4ae7fae0dc9b737c8792afba52311864f4f731c722da50a6cf57d59a54be452"
#define V5_P2S "cb33a3be715408c97cdb1ae11abb451eccbabe23068be3511048f2ef9de0796c"
#define V5_S2P "bb54bc66bea3f621261d0faf805e6ff7684e485345ab2347f2231cc146009cef"

static void key_schedule(void)
{
    sk_err e = {0, ""};
    uint8_t key[32], np[32], ns[32], th[32], hk[32], p2s[32], s2p[32];
    vec_inputs(key, np, ns, th);
    CHECK_OK(sk_derive_hello_key(key, 32, sk_bytes_str(VEC_MODULE), hk, &e), &e);
    CHECK(sk_test_hex_eq(hk, 32, V1_HELLO_KEY));
    sk_session_input in = {key, 32, 2, SK_SUITE_AES_256_GCM, sk_bytes_str(VEC_MODULE), sk_bytes_str(VEC_PRIMARY),
                           sk_bytes_str(VEC_SECONDARY), np, ns, th};
    CHECK_OK(sk_derive_session_keys(&in, p2s, s2p, &e), &e);
    CHECK(sk_test_hex_eq(p2s, 32, V2_P2S));
    CHECK(sk_test_hex_eq(s2p, 32, V2_S2P));
    /* every input is bound: change one, both keys change */
    uint8_t q[32], r[32];
    in.version = 3;
    CHECK_OK(sk_derive_session_keys(&in, q, r, &e), &e);
    CHECK(memcmp(q, p2s, 32) != 0 && memcmp(r, s2p, 32) != 0);
    in.version = 2;
    in.secondary = sk_bytes_str("node3");
    CHECK_OK(sk_derive_session_keys(&in, q, r, &e), &e);
    CHECK(memcmp(q, p2s, 32) != 0 && memcmp(r, s2p, 32) != 0);
}

static void frames(void)
{
    sk_err e = {0, ""};
    uint8_t p2s[32], s2p[32], payload[64], frame[128];
    size_t plen, flen;
    sk_test_unhex(V2_P2S, p2s, 32);
    sk_test_unhex(V2_S2P, s2p, 32);
    sk_op op = vec_write_op();
    CHECK_OK(sk_op_encode(&op, payload, sizeof payload, &plen, &e), &e);
    CHECK(sk_test_hex_eq(payload, plen, V3_PAYLOAD));
    sk_tx tx;
    sk_iov iov = {payload, plen};
    CHECK_OK(sk_tx_init(&tx, SK_SUITE_AES_256_GCM, SK_P2S, p2s, 7, &e), &e);
    CHECK_OK(sk_tx_seal(&tx, SK_T_WRITE, 0, 0, &iov, 1, frame, sizeof frame, &flen, NULL, &e), &e);
    sk_tx_free(&tx);
    CHECK(sk_test_hex_eq(frame, flen, V3_FRAME));
    /* and it opens to the same WRITE */
    sk_rx rx;
    sk_header h;
    size_t used, need;
    CHECK_OK(sk_rx_init(&rx, SK_SUITE_AES_256_GCM, SK_P2S, p2s, 7, 1, &e), &e);
    CHECK_OK(sk_rx_open(&rx, frame, flen, &h, &used, &need, &e), &e);
    sk_rx_free(&rx);
    sk_op got;
    CHECK_OK(sk_op_decode(h.type, h.flags, frame + SK_HEADER_SIZE, h.length, &got, &e), &e);
    CHECK(got.offset == 4096 && sk_bytes_eq(got.data, sk_bytes_str("hello world")));

    sk_ack ack = {7, 7, 7};
    CHECK_OK(sk_ack_encode(&ack, payload, sizeof payload, &plen, &e), &e);
    iov.len = plen;
    CHECK_OK(sk_tx_init(&tx, SK_SUITE_CHACHA20_POLY1305, SK_S2P, s2p, 1, &e), &e);
    CHECK_OK(sk_tx_seal(&tx, SK_T_ACK, 0, 0, &iov, 1, frame, sizeof frame, &flen, NULL, &e), &e);
    sk_tx_free(&tx);
    CHECK(sk_test_hex_eq(frame, flen, V4_FRAME));
}

static void handshake(void)
{
    sk_err e = {0, ""};
    uint8_t key[32], np[32], ns[32], th[32];
    vec_inputs(key, np, ns, th);
    sk_hello p, s;
    sk_hello_config pc = vec_config(SK_ROLE_PRIMARY, key), sc = vec_config(SK_ROLE_SECONDARY, key);
    uint8_t hello[SK_HELLO_OUT_MAX], ok[SK_HELLO_OUT_MAX], done[SK_HELLO_OUT_MAX], none[SK_HELLO_OUT_MAX];
    size_t hl, okl, dl, nl, used;
    CHECK_OK(sk_hello_init(&p, &pc, np, &e), &e);
    CHECK_OK(sk_hello_init(&s, &sc, ns, &e), &e);
    CHECK_OK(sk_hello_start(&p, hello, sizeof hello, &hl, &e), &e);
    CHECK(sk_test_hex_eq(hello, hl, V5_HELLO));
    CHECK_OK(sk_hello_receive(&s, hello, hl, &used, ok, sizeof ok, &okl, &e), &e);
    CHECK(sk_test_hex_eq(ok, okl, V5_HELLO_OK));
    CHECK_OK(sk_hello_receive(&p, ok, okl, &used, done, sizeof done, &dl, &e), &e);
    CHECK(sk_test_hex_eq(done, dl, V5_HELLO_DONE));
    CHECK_OK(sk_hello_receive(&s, done, dl, &used, none, sizeof none, &nl, &e), &e);
    CHECK(sk_test_hex_eq(p.th, 32, V5_TH) && sk_test_hex_eq(s.th, 32, V5_TH));
    CHECK(sk_test_hex_eq(s.keys.p2s, 32, V5_P2S) && sk_test_hex_eq(s.keys.s2p, 32, V5_S2P));
}

const sk_test sk_tests_vectors[] = {
    {"key_schedule", key_schedule},
    {"frames", frames},
    {"handshake", handshake},
    SK_TESTS_END,
};
