/* The HELLO handshake state machine (sk_hello), both roles, and the session it opens. */
#include <stdlib.h>

#include "sk_hello.h"
#include "sk_kdf.h"
#include "sk_ops.h"
#include "sk_test.h"
#include "vectors.h"

typedef struct side {
    sk_hello hs;
    uint8_t out[SK_HELLO_OUT_MAX];
    size_t out_len;
} side;

static uint8_t KEY[32], NP[32], NS[32], TH[32];

static int setup(side *p, side *s, sk_hello_config *pc, sk_hello_config *sc, sk_err *e)
{
    vec_inputs(KEY, NP, NS, TH);
    int rc = sk_hello_init(&p->hs, pc, NP, e);
    if (rc == SK_OK)
        rc = sk_hello_init(&s->hs, sc, NS, e);
    return rc;
}

/* Run the three messages; returns the first failure. */
static int run(side *p, side *s, sk_err *e)
{
    size_t used;
    int rc = sk_hello_start(&p->hs, p->out, sizeof p->out, &p->out_len, e);
    if (rc == SK_OK)
        rc = sk_hello_receive(&s->hs, p->out, p->out_len, &used, s->out, sizeof s->out, &s->out_len, e);
    if (rc == SK_OK)
        rc = sk_hello_receive(&p->hs, s->out, s->out_len, &used, p->out, sizeof p->out, &p->out_len, e);
    if (rc == SK_OK)
        rc = sk_hello_receive(&s->hs, p->out, p->out_len, &used, s->out, sizeof s->out, &s->out_len, e);
    return rc;
}

static void handshake_and_session(void)
{
    sk_err e = {0, ""};
    side p, s;
    vec_inputs(KEY, NP, NS, TH);
    sk_hello_config pc = vec_config(SK_ROLE_PRIMARY, KEY), sc = vec_config(SK_ROLE_SECONDARY, KEY);
    pc.async_none = true;
    pc.epoch = "epoch-p";
    sc.epoch = "epoch-s";
    sc.trusted = false;
    sc.fullsync = true;
    CHECK_OK(setup(&p, &s, &pc, &sc, &e), &e);
    CHECK(sk_hello_state(&p.hs) == SK_HS_START && sk_hello_state(&s.hs) == SK_HS_WAIT_HELLO);
    CHECK_OK(run(&p, &s, &e), &e);
    CHECK(sk_hello_state(&p.hs) == SK_HS_DONE && sk_hello_state(&s.hs) == SK_HS_DONE);
    CHECK(s.out_len == 0);
    /* each side learnt the other's state */
    CHECK(strcmp(s.hs.peer.node, "node1") == 0 && strcmp(s.hs.peer.epoch, "epoch-p") == 0);
    CHECK(s.hs.peer.first_seq == 8 && s.hs.peer.async_none && s.hs.peer.dirs == 1);
    CHECK(strcmp(p.hs.peer.node, "node2") == 0 && strcmp(p.hs.peer.epoch, "epoch-s") == 0);
    CHECK(!p.hs.peer.trusted && p.hs.peer.in_sync && p.hs.peer.fullsync);
    CHECK(memcmp(&p.hs.keys, &s.hs.keys, sizeof p.hs.keys) == 0);
    CHECK(p.hs.keys.suite == SK_SUITE_AES_256_GCM);
    CHECK(memcmp(p.hs.keys.p2s, p.hs.keys.s2p, 32) != 0);

    /* the session: the primary's operations from first_seq, the secondary's ACKs from 1 */
    sk_tx ptx, stx;
    sk_rx prx, srx;
    CHECK_OK(sk_hello_session(&p.hs, &ptx, &prx, &e), &e);
    CHECK_OK(sk_hello_session(&s.hs, &stx, &srx, &e), &e);
    uint8_t payload[64], frame[128];
    size_t plen, flen, used, need;
    sk_op op = {.type = SK_T_LINK, .path = sk_bytes_str("a"), .path2 = sk_bytes_str("b")};
    CHECK_OK(sk_op_encode(&op, payload, sizeof payload, &plen, &e), &e);
    sk_iov iov = {payload, plen};
    uint64_t seq;
    CHECK_OK(sk_tx_seal(&ptx, SK_T_LINK, SK_F_ACK, 0, &iov, 1, frame, sizeof frame, &flen, &seq, &e), &e);
    CHECK(seq == 8);
    sk_header h;
    CHECK_OK(sk_rx_open(&srx, frame, flen, &h, &used, &need, &e), &e);
    sk_op got;
    CHECK_OK(sk_op_decode(h.type, h.flags, frame + SK_HEADER_SIZE, h.length, &got, &e), &e);
    CHECK(sk_bytes_eq(got.path2, op.path2));
    sk_ack ack = {8, 8, 8};
    CHECK_OK(sk_ack_encode(&ack, payload, sizeof payload, &plen, &e), &e);
    iov.len = plen;
    CHECK_OK(sk_tx_seal(&stx, SK_T_ACK, 0, 0, &iov, 1, frame, sizeof frame, &flen, &seq, &e), &e);
    CHECK(seq == 1);
    CHECK_OK(sk_rx_open(&prx, frame, flen, &h, &used, &need, &e), &e);
    CHECK(h.type == SK_T_ACK);
    sk_tx_free(&ptx);
    sk_tx_free(&stx);
    sk_rx_free(&prx);
    sk_rx_free(&srx);
    sk_hello_wipe(&p.hs);
    sk_hello_wipe(&s.hs);
    CHECK(sk_hello_state(&p.hs) == SK_HS_FAILED);
}

static void byte_by_byte_with_trailing_session_bytes(void)
{
    sk_err e = {0, ""};
    side p, s;
    vec_inputs(KEY, NP, NS, TH);
    sk_hello_config pc = vec_config(SK_ROLE_PRIMARY, KEY), sc = vec_config(SK_ROLE_SECONDARY, KEY);
    CHECK_OK(setup(&p, &s, &pc, &sc, &e), &e);
    CHECK_OK(sk_hello_start(&p.hs, p.out, sizeof p.out, &p.out_len, &e), &e);
    size_t used;
    for (size_t n = 0; n < p.out_len; n++) {
        CHECK_RC(sk_hello_receive(&s.hs, p.out, n, &used, s.out, sizeof s.out, &s.out_len, &e), SK_AGAIN, &e);
        CHECK(used == 0 && s.out_len == 0);
    }
    CHECK_OK(sk_hello_receive(&s.hs, p.out, p.out_len, &used, s.out, sizeof s.out, &s.out_len, &e), &e);
    CHECK(used == p.out_len);
    CHECK_OK(sk_hello_receive(&p.hs, s.out, s.out_len, &used, p.out, sizeof p.out, &p.out_len, &e), &e);
    /* HELLO_DONE followed at once by the first operation, in one read */
    sk_tx tx;
    sk_rx rx;
    CHECK_OK(sk_hello_session(&p.hs, &tx, &rx, &e), &e);
    uint8_t stream[512];
    memcpy(stream, p.out, p.out_len);
    size_t flen;
    CHECK_OK(sk_tx_seal(&tx, SK_T_PING, 0, 0, NULL, 0, stream + p.out_len, sizeof stream - p.out_len, &flen, NULL, &e), &e);
    CHECK_OK(sk_hello_receive(&s.hs, stream, p.out_len + flen, &used, s.out, sizeof s.out, &s.out_len, &e), &e);
    CHECK(used == p.out_len && sk_hello_state(&s.hs) == SK_HS_DONE);
    sk_tx stx;
    sk_rx srx;
    CHECK_OK(sk_hello_session(&s.hs, &stx, &srx, &e), &e);
    sk_header h;
    size_t need;
    CHECK_OK(sk_rx_open(&srx, stream + used, flen, &h, &used, &need, &e), &e);
    CHECK(h.type == SK_T_PING && h.seq == 8);
    sk_tx_free(&tx);
    sk_rx_free(&rx);
    sk_tx_free(&stx);
    sk_rx_free(&srx);
}

/* The secondary's answer to a HELLO made with another configuration. */
static int secondary_refuses(sk_hello_config pc, sk_hello_config sc, sk_err *e)
{
    side p, s;
    int rc = setup(&p, &s, &pc, &sc, e);
    if (rc != SK_OK)
        return SK_EINVAL;
    rc = sk_hello_start(&p.hs, p.out, sizeof p.out, &p.out_len, e);
    if (rc != SK_OK)
        return SK_EINVAL;
    size_t used;
    rc = sk_hello_receive(&s.hs, p.out, p.out_len, &used, s.out, sizeof s.out, &s.out_len, e);
    if (rc != SK_OK && (s.out_len != 0 || sk_hello_state(&s.hs) != SK_HS_FAILED))
        return SK_EINVAL; /* a refusal sends nothing and stays failed */
    return rc;
}

static void wrong_key_module_names_dirs(void)
{
    sk_err e = {0, ""};
    vec_inputs(KEY, NP, NS, TH);
    uint8_t other[32];
    memcpy(other, KEY, 32);
    other[0] ^= 1;
    sk_hello_config pc = vec_config(SK_ROLE_PRIMARY, KEY), sc = vec_config(SK_ROLE_SECONDARY, KEY);
    sk_hello_config x = pc;
    x.cluster_key = other;
    CHECK_RC(secondary_refuses(x, sc, &e), SK_EAUTH, &e);
    CHECK_REASON(&e, "cluster key");
    x = pc;
    x.module = "other";
    CHECK_RC(secondary_refuses(x, sc, &e), SK_EAUTH, &e);
    x = pc;
    x.node = "node3";
    CHECK_RC(secondary_refuses(x, sc, &e), SK_EPEER, &e);
    CHECK_REASON(&e, "not our primary");
    x = pc;
    x.peer = "node4";
    CHECK_RC(secondary_refuses(x, sc, &e), SK_EPEER, &e);
    x = pc;
    x.dirs = 2;
    CHECK_RC(secondary_refuses(x, sc, &e), SK_EPEER, &e);
    CHECK_REASON(&e, "userconfig.xml");
    x = pc;
    x.suites = 1u << SK_SUITE_CHACHA20_POLY1305;
    sk_hello_config y = sc;
    y.suites = 1u << SK_SUITE_AES_256_GCM;
    CHECK_RC(secondary_refuses(x, y, &e), SK_EPEER, &e);
    CHECK_REASON(&e, "cipher suite");
    /* a primary that offers only ChaCha20-Poly1305 gets it */
    side p, s;
    CHECK_OK(setup(&p, &s, &x, &sc, &e), &e);
    CHECK_OK(run(&p, &s, &e), &e);
    CHECK(p.hs.keys.suite == SK_SUITE_CHACHA20_POLY1305 && s.hs.keys.suite == SK_SUITE_CHACHA20_POLY1305);
    /* the primary checks who answers. A secondary refuses a HELLO naming another node, so this
     * is defence in depth: hand node2's HELLO_OK to a primary configured for node9, whose HELLO
     * hash is made to match */
    sk_hello_config pc9 = pc;
    pc9.peer = "node9";
    CHECK_OK(setup(&p, &s, &pc9, &sc, &e), &e);
    CHECK_RC(run(&p, &s, &e), SK_EPEER, &e); /* node2 refuses a HELLO for node9 */
    CHECK_OK(setup(&p, &s, &pc, &sc, &e), &e);
    size_t used;
    CHECK_OK(sk_hello_start(&p.hs, p.out, sizeof p.out, &p.out_len, &e), &e);
    CHECK_OK(sk_hello_receive(&s.hs, p.out, p.out_len, &used, s.out, sizeof s.out, &s.out_len, &e), &e);
    uint8_t hash[32];
    memcpy(hash, p.hs.hello_hash, 32);
    CHECK_OK(sk_hello_init(&p.hs, &pc9, NP, &e), &e);
    CHECK_OK(sk_hello_start(&p.hs, p.out, sizeof p.out, &p.out_len, &e), &e);
    memcpy(p.hs.hello_hash, hash, 32);
    CHECK_RC(sk_hello_receive(&p.hs, s.out, s.out_len, &used, p.out, sizeof p.out, &p.out_len, &e), SK_EPEER, &e);
    CHECK_REASON(&e, "answers as node2");
}

/* A version-1 primary's HELLO: header version 1, JSON payload, HMAC-SHA256 (32 bytes). */
static void v1_peer(void)
{
    sk_err e = {0, ""};
    side p, s;
    vec_inputs(KEY, NP, NS, TH);
    sk_hello_config pc = vec_config(SK_ROLE_PRIMARY, KEY), sc = vec_config(SK_ROLE_SECONDARY, KEY);
    CHECK_OK(setup(&p, &s, &pc, &sc, &e), &e);
    const char *json = "{\"async\":\"second\",\"dirs\":1,\"epoch\":\"e1\",\"first_seq\":8,\"module\":\"pgsql\","
                       "\"node\":\"node1\",\"nonce\":\"00112233445566778899aabbccddeeff\"}";
    uint8_t v1[512];
    sk_header h = {1, SK_T_HELLO, 0, 0, (uint32_t)strlen(json), 0};
    sk_header_encode(&h, v1);
    memcpy(v1 + SK_HEADER_SIZE, json, strlen(json));
    memset(v1 + SK_HEADER_SIZE + strlen(json), 0xab, 32);
    size_t used;
    CHECK_RC(sk_hello_receive(&s.hs, v1, SK_HEADER_SIZE + strlen(json) + 32, &used, s.out, sizeof s.out,
                              &s.out_len, &e), SK_EVERSION, &e);
    CHECK_REASON(&e, "version 1");
    CHECK(s.out_len == 0 && sk_hello_state(&s.hs) == SK_HS_FAILED);
    /* the header alone is enough to refuse */
    CHECK_OK(sk_hello_init(&s.hs, &sc, NS, &e), &e);
    CHECK_RC(sk_hello_receive(&s.hs, v1, SK_HEADER_SIZE, &used, s.out, sizeof s.out, &s.out_len, &e), SK_EVERSION, &e);
    /* a v1 secondary drops a v2 HELLO and closes: the primary says what that may mean */
    CHECK_OK(sk_hello_start(&p.hs, p.out, sizeof p.out, &p.out_len, &e), &e);
    CHECK_RC(sk_hello_eof(&p.hs, &e), SK_EPEER, &e);
    CHECK_REASON(&e, "version 1");
    CHECK(sk_hello_state(&p.hs) == SK_HS_FAILED);
    /* a v1 HELLO_OK (it would be, if a v1 node answered) */
    CHECK_OK(sk_hello_init(&p.hs, &pc, NP, &e), &e);
    CHECK_OK(sk_hello_start(&p.hs, p.out, sizeof p.out, &p.out_len, &e), &e);
    h.type = SK_T_HELLO_OK;
    sk_header_encode(&h, v1);
    CHECK_RC(sk_hello_receive(&p.hs, v1, SK_HEADER_SIZE + strlen(json) + 32, &used, p.out, sizeof p.out,
                              &p.out_len, &e), SK_EVERSION, &e);
    /* a v2 HELLO offering only a later version */
    CHECK_OK(sk_hello_init(&p.hs, &pc, NP, &e), &e);
    CHECK_OK(sk_hello_init(&s.hs, &sc, NS, &e), &e);
    CHECK_OK(sk_hello_start(&p.hs, p.out, sizeof p.out, &p.out_len, &e), &e);
    uint8_t forged[SK_HELLO_OUT_MAX];
    memcpy(forged, p.out, p.out_len);
    forged[SK_HEADER_SIZE] = 3;
    forged[SK_HEADER_SIZE + 1] = 4;
    uint8_t mac[32];
    sk_iov iov = {forged, p.out_len - SK_TAG_SIZE};
    CHECK_OK(sk_hmac_sha256(s.hs.hello_key, 32, &iov, 1, mac, &e), &e);
    memcpy(forged + p.out_len - SK_TAG_SIZE, mac, SK_TAG_SIZE);
    CHECK_RC(sk_hello_receive(&s.hs, forged, p.out_len, &used, s.out, sizeof s.out, &s.out_len, &e), SK_EVERSION, &e);
    CHECK_REASON(&e, "versions 3 to 4");
}

static void replays_and_tampering(void)
{
    sk_err e = {0, ""};
    side p, s;
    vec_inputs(KEY, NP, NS, TH);
    sk_hello_config pc = vec_config(SK_ROLE_PRIMARY, KEY), sc = vec_config(SK_ROLE_SECONDARY, KEY);
    CHECK_OK(setup(&p, &s, &pc, &sc, &e), &e);
    uint8_t hello[SK_HELLO_OUT_MAX], ok[SK_HELLO_OUT_MAX], done[SK_HELLO_OUT_MAX];
    size_t hl, okl, dl, used;
    CHECK_OK(sk_hello_start(&p.hs, hello, sizeof hello, &hl, &e), &e);
    CHECK_OK(sk_hello_receive(&s.hs, hello, hl, &used, ok, sizeof ok, &okl, &e), &e);
    CHECK_OK(sk_hello_receive(&p.hs, ok, okl, &used, done, sizeof done, &dl, &e), &e);

    /* an attacker replays the recorded HELLO to a secondary (fresh nonce): it answers, but the
     * recorded HELLO_DONE does not confirm the new session */
    uint8_t ns2[32];
    memset(ns2, 0x77, 32);
    side s2;
    CHECK_OK(sk_hello_init(&s2.hs, &sc, ns2, &e), &e);
    CHECK_OK(sk_hello_receive(&s2.hs, hello, hl, &used, s2.out, sizeof s2.out, &s2.out_len, &e), &e);
    CHECK_RC(sk_hello_receive(&s2.hs, done, dl, &used, s2.out, sizeof s2.out, &s2.out_len, &e), SK_EAUTH, &e);
    CHECK(sk_hello_state(&s2.hs) == SK_HS_FAILED);

    /* a recorded HELLO_OK replayed to a primary with a fresh nonce */
    uint8_t np2[32];
    memset(np2, 0x66, 32);
    side p2;
    CHECK_OK(sk_hello_init(&p2.hs, &pc, np2, &e), &e);
    CHECK_OK(sk_hello_start(&p2.hs, p2.out, sizeof p2.out, &p2.out_len, &e), &e);
    CHECK_RC(sk_hello_receive(&p2.hs, ok, okl, &used, p2.out, sizeof p2.out, &p2.out_len, &e), SK_EPEER, &e);
    CHECK_REASON(&e, "another HELLO");

    /* any flipped byte of HELLO or HELLO_OK is refused */
    for (size_t i = 0; i < hl; i++) {
        uint8_t copy[SK_HELLO_OUT_MAX];
        memcpy(copy, hello, hl);
        copy[i] ^= 0x20;
        CHECK_OK(sk_hello_init(&s2.hs, &sc, ns2, &e), &e);
        int rc = sk_hello_receive(&s2.hs, copy, hl, &used, s2.out, sizeof s2.out, &s2.out_len, &e);
        CHECK(rc < 0 || (rc == SK_AGAIN && i >= 16 && i < 20));
    }
    for (size_t i = 0; i < okl; i++) {
        uint8_t copy[SK_HELLO_OUT_MAX];
        memcpy(copy, ok, okl);
        copy[i] ^= 0x20;
        CHECK_OK(sk_hello_init(&p2.hs, &pc, NP, &e), &e);
        CHECK_OK(sk_hello_start(&p2.hs, p2.out, sizeof p2.out, &p2.out_len, &e), &e);
        int rc = sk_hello_receive(&p2.hs, copy, okl, &used, p2.out, sizeof p2.out, &p2.out_len, &e);
        CHECK(rc < 0 || (rc == SK_AGAIN && i >= 16 && i < 20));
    }
    /* HELLO_DONE tampered */
    for (size_t i = SK_HEADER_SIZE; i < dl; i++) {
        uint8_t copy[SK_HELLO_OUT_MAX];
        memcpy(copy, done, dl);
        copy[i] ^= 0x01;
        CHECK_OK(sk_hello_init(&s2.hs, &sc, NS, &e), &e);
        CHECK_OK(sk_hello_receive(&s2.hs, hello, hl, &used, s2.out, sizeof s2.out, &s2.out_len, &e), &e);
        CHECK_RC(sk_hello_receive(&s2.hs, copy, dl, &used, s2.out, sizeof s2.out, &s2.out_len, &e), SK_EAUTH, &e);
    }
    /* reflection: the primary's own HELLO sent back to it */
    CHECK_OK(sk_hello_init(&p2.hs, &pc, NP, &e), &e);
    CHECK_OK(sk_hello_start(&p2.hs, p2.out, sizeof p2.out, &p2.out_len, &e), &e);
    CHECK_RC(sk_hello_receive(&p2.hs, hello, hl, &used, p2.out, sizeof p2.out, &p2.out_len, &e), SK_ETYPE, &e);
    CHECK_REASON(&e, "expected HELLO_OK, got HELLO");
}

static void limits_states_and_config(void)
{
    sk_err e = {0, ""};
    side p, s;
    vec_inputs(KEY, NP, NS, TH);
    sk_hello_config pc = vec_config(SK_ROLE_PRIMARY, KEY), sc = vec_config(SK_ROLE_SECONDARY, KEY);
    CHECK_OK(setup(&p, &s, &pc, &sc, &e), &e);
    /* an oversize handshake frame is refused from its header alone */
    uint8_t hdr[SK_HEADER_SIZE];
    sk_header h = {2, SK_T_HELLO, 0, 0, SK_HELLO_MAX_PAYLOAD + 1, 0};
    sk_header_encode(&h, hdr);
    size_t used;
    CHECK_RC(sk_hello_receive(&s.hs, hdr, sizeof hdr, &used, s.out, sizeof s.out, &s.out_len, &e), SK_ETOOBIG, &e);
    CHECK_RC(sk_hello_receive(&s.hs, hdr, sizeof hdr, &used, s.out, sizeof s.out, &s.out_len, &e), SK_ESTATE, &e);
    /* a HELLO with a sequence number */
    CHECK_OK(sk_hello_init(&s.hs, &sc, NS, &e), &e);
    h.length = 0;
    h.seq = 1;
    sk_header_encode(&h, hdr);
    CHECK_RC(sk_hello_receive(&s.hs, hdr, sizeof hdr, &used, s.out, sizeof s.out, &s.out_len, &e), SK_EMALFORMED, &e);
    /* wrong calls */
    CHECK_RC(sk_hello_start(&s.hs, s.out, sizeof s.out, &s.out_len, &e), SK_ESTATE, &e);
    CHECK_OK(sk_hello_start(&p.hs, p.out, sizeof p.out, &p.out_len, &e), &e);
    CHECK_RC(sk_hello_start(&p.hs, p.out, sizeof p.out, &p.out_len, &e), SK_ESTATE, &e);
    sk_tx tx;
    sk_rx rx;
    CHECK_RC(sk_hello_session(&p.hs, &tx, &rx, &e), SK_ESTATE, &e);
    CHECK_RC(sk_hello_receive(&p.hs, p.out, p.out_len, &used, p.out, 10, &p.out_len, &e), SK_ESPACE, &e);
    /* end of stream reasons */
    CHECK_OK(sk_hello_init(&s.hs, &sc, NS, &e), &e);
    CHECK_RC(sk_hello_eof(&s.hs, &e), SK_EPEER, &e);
    CHECK_REASON(&e, "before its HELLO");
    /* configuration checks */
    sk_hello_config x = pc;
    x.cluster_key_len = 8;
    CHECK_RC(sk_hello_init(&p.hs, &x, NP, &e), SK_EINVAL, &e);
    x = pc;
    x.module = "";
    CHECK_RC(sk_hello_init(&p.hs, &x, NP, &e), SK_EINVAL, &e);
    x = pc;
    x.peer = "node1";
    CHECK_RC(sk_hello_init(&p.hs, &x, NP, &e), SK_EINVAL, &e);
    x = pc;
    x.first_seq = 0;
    CHECK_RC(sk_hello_init(&p.hs, &x, NP, &e), SK_EINVAL, &e);
    x = pc;
    x.dirs = 0;
    CHECK_RC(sk_hello_init(&p.hs, &x, NP, &e), SK_EINVAL, &e);
    x = pc;
    x.suites = 1; /* bit 0: no suite */
    CHECK_RC(sk_hello_init(&p.hs, &x, NP, &e), SK_EINVAL, &e);
    /* the nonce helper gives different nonces */
    uint8_t a[32], b[32];
    CHECK_OK(sk_hello_nonce(a, &e), &e);
    CHECK_OK(sk_hello_nonce(b, &e), &e);
    CHECK(memcmp(a, b, 32) != 0);
}

const sk_test sk_tests_hello[] = {
    {"handshake_and_session", handshake_and_session},
    {"byte_by_byte_with_trailing_session_bytes", byte_by_byte_with_trailing_session_bytes},
    {"wrong_key_module_names_dirs", wrong_key_module_names_dirs},
    {"v1_peer", v1_peer},
    {"replays_and_tampering", replays_and_tampering},
    {"limits_states_and_config", limits_states_and_config},
    SK_TESTS_END,
};
