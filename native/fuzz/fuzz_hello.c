/* libFuzzer target: the HELLO handshake state machine (sk_hello). Byte 0 selects:
 *   0: raw bytes to a secondary waiting for HELLO, in two reads split at byte 1;
 *   1: the rest is a HELLO payload, framed and authenticated with the right hello key (as a
 *      primary holding the cluster key would), given to a secondary;
 *   2: the rest is a HELLO_OK payload, framed and authenticated, bytes 34..66 patched to the hash
 *      of the primary's real HELLO, given to that primary;
 *   3: a real HELLO to a secondary, then the rest as the bytes after it (HELLO_DONE and more);
 *   4: raw bytes to a primary waiting for HELLO_OK.
 * Invariants: a refusal sends nothing and leaves the machine failed; consumed <= given. */
#include <stdlib.h>
#include <string.h>

#include "sk_hello.h"
#include "sk_kdf.h"
#include "vectors.h"

static void invariant(const sk_hello *hs, int rc, size_t used, size_t len, size_t out_len)
{
    if (rc < 0 && (out_len != 0 || hs->state != SK_HS_FAILED || used != 0))
        abort();
    if (rc == SK_AGAIN && (used != 0 || out_len != 0))
        abort();
    if (rc == SK_OK && (used == 0 || used > len))
        abort();
}

static int feed(sk_hello *hs, const uint8_t *in, size_t len, uint8_t *out)
{
    size_t used, out_len;
    sk_err e;
    int rc = sk_hello_receive(hs, in, len, &used, out, SK_HELLO_OUT_MAX, &out_len, &e);
    invariant(hs, rc, used, len, out_len);
    return rc;
}

/* Frame `payload` as a handshake frame of `type` with the hello key of `hs`. */
static size_t frame(const sk_hello *hs, uint8_t type, const uint8_t *payload, size_t plen, uint8_t *out)
{
    sk_header h = {SK_WIRE_VERSION, type, 0, 0, (uint32_t)plen, 0};
    sk_header_encode(&h, out);
    memcpy(out + SK_HEADER_SIZE, payload, plen);
    uint8_t mac[32];
    sk_iov iov = {out, SK_HEADER_SIZE + plen};
    if (sk_hmac_sha256(hs->hello_key, 32, &iov, 1, mac, NULL) != SK_OK)
        abort();
    memcpy(out + SK_HEADER_SIZE + plen, mac, SK_TAG_SIZE);
    return sk_frame_size(plen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192)
        return 0;
    uint8_t key[32], np[32], ns[32], th[32];
    vec_inputs(key, np, ns, th);
    sk_hello_config pc = vec_config(SK_ROLE_PRIMARY, key), sc = vec_config(SK_ROLE_SECONDARY, key);
    sk_hello p, s;
    sk_err e;
    if (sk_hello_init(&p, &pc, np, &e) != SK_OK || sk_hello_init(&s, &sc, ns, &e) != SK_OK)
        abort();
    uint8_t out[SK_HELLO_OUT_MAX], hello[SK_HELLO_OUT_MAX];
    size_t hl;
    if (sk_hello_start(&p, hello, sizeof hello, &hl, &e) != SK_OK)
        abort();
    const uint8_t *in = data + 1;
    size_t len = size - 1;
    uint8_t *buf = malloc(len + SK_FRAME_OVERHEAD);
    if (!buf)
        abort();
    switch (data[0] % 5) {
    case 0: {
        size_t cut = len ? in[0] % (len + 1) : 0;
        int rc = feed(&s, in, cut, out);
        if (rc == SK_AGAIN)
            feed(&s, in, len, out);
        break;
    }
    case 1:
        if (len <= SK_HELLO_MAX_PAYLOAD)
            feed(&s, buf, frame(&s, SK_T_HELLO, in, len, buf), out);
        break;
    case 2:
        if (len <= SK_HELLO_MAX_PAYLOAD) {
            memcpy(buf, in, len);
            if (len >= 66)
                memcpy(buf + 34, p.hello_hash, 32);
            uint8_t *f = malloc(sk_frame_size(len));
            if (!f)
                abort();
            size_t n = frame(&p, SK_T_HELLO_OK, buf, len, f);
            if (feed(&p, f, n, out) == SK_OK) {
                sk_tx tx;
                sk_rx rx;
                if (sk_hello_state(&p) != SK_HS_DONE || sk_hello_session(&p, &tx, &rx, &e) != SK_OK)
                    abort();
                sk_tx_free(&tx);
                sk_rx_free(&rx);
            }
            free(f);
        }
        break;
    case 3:
        if (feed(&s, hello, hl, out) != SK_OK)
            abort();
        if (feed(&s, in, len, out) == SK_OK && sk_hello_state(&s) != SK_HS_DONE)
            abort();
        break;
    default:
        feed(&p, in, len, out);
        break;
    }
    free(buf);
    sk_hello_wipe(&p);
    sk_hello_wipe(&s);
    return 0;
}
