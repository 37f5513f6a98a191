/* libFuzzer target: frame decoding and AEAD opening (sk_wire, sk_frame).
 *
 * Input byte 0 selects:
 *   even: the rest is a received byte stream, opened frame by frame by a receiver (as a peer that
 *         does not hold the key would send it): must fail cleanly, never read out of bounds;
 *   odd:  byte 1 type, bytes 2-3 flags, byte 4 directory, byte 5 suite and flip position, the rest
 *         a payload: sealed then opened, it must round-trip exactly; with one byte flipped it must
 *         be refused (or wait for more bytes when the flip grew the announced length). */
#include <stdlib.h>
#include <string.h>

#include "sk_frame.h"
#include "sk_ops.h"

static const uint8_t KEY[32] = {0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void raw_stream(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return;
    memcpy(buf, data, size);
    sk_rx rx;
    sk_err e;
    if (sk_rx_init(&rx, SK_SUITE_AES_256_GCM, SK_P2S, KEY, 1, 4, &e) != SK_OK)
        abort();
    size_t off = 0;
    for (;;) {
        sk_header h;
        size_t used, need;
        int rc = sk_rx_open(&rx, buf + off, size - off, &h, &used, &need, &e);
        if (rc != SK_OK) {
            if (rc == SK_AGAIN && need <= size - off)
                abort(); /* AGAIN only when bytes are really missing */
            break;
        }
        if (used > size - off || h.length + (size_t)SK_FRAME_OVERHEAD != used)
            abort();
        off += used;
    }
    sk_rx_free(&rx);
    free(buf);
}

static void seal_open(const uint8_t *data, size_t size)
{
    if (size < 6)
        return;
    uint8_t type = data[1];
    uint16_t flags = (uint16_t)(data[2] << 8 | data[3]);
    uint32_t dir = data[4] & 3;
    int suite = (data[5] & 1) ? SK_SUITE_CHACHA20_POLY1305 : SK_SUITE_AES_256_GCM;
    const uint8_t *payload = data + 6;
    size_t plen = size - 6;
    int dirn = (sk_type_senders(type) & SK_P2S) ? SK_P2S : SK_S2P;
    sk_tx tx;
    sk_rx rx;
    sk_err e;
    if (sk_tx_init(&tx, suite, dirn, KEY, 1000, &e) != SK_OK || sk_rx_init(&rx, suite, dirn, KEY, 1000, 4, &e) != SK_OK)
        abort();
    size_t cap = sk_frame_size(plen);
    uint8_t *frame = malloc(cap), *copy = malloc(cap);
    if (!frame || !copy)
        abort();
    sk_iov iov = {payload, plen};
    size_t flen;
    int rc = sk_tx_seal(&tx, type, flags, dir, &iov, 1, frame, cap, &flen, NULL, &e);
    if (rc == SK_OK) {
        memcpy(copy, frame, flen);
        sk_header h;
        size_t used, need;
        if (sk_rx_open(&rx, copy, flen, &h, &used, &need, &e) != SK_OK)
            abort(); /* what a sender seals, the receiver opens */
        if (used != flen || h.type != type || h.flags != flags || h.dir != dir || h.length != plen ||
            memcmp(copy + SK_HEADER_SIZE, payload, plen) != 0)
            abort();
        sk_payload_check(h.type, h.flags, copy + SK_HEADER_SIZE, h.length, &e);
        /* one flipped byte: refused by a fresh receiver */
        sk_rx_free(&rx);
        if (sk_rx_init(&rx, suite, dirn, KEY, 1000, 4, &e) != SK_OK)
            abort();
        size_t pos = (size_t)(data[5] >> 1) * 7919 % flen;
        memcpy(copy, frame, flen);
        copy[pos] ^= (uint8_t)(1u << (data[5] & 7));
        rc = sk_rx_open(&rx, copy, flen, &h, &used, &need, &e);
        if (rc == SK_OK || (rc == SK_AGAIN && !(pos >= 16 && pos < 20)))
            abort();
        if (rc < 0 && pos >= SK_HEADER_SIZE && pos < SK_HEADER_SIZE + plen)
            for (size_t i = SK_HEADER_SIZE; i < SK_HEADER_SIZE + plen; i++)
                if (copy[i] != 0)
                    abort(); /* nothing of a refused frame stays visible */
    }
    sk_tx_free(&tx);
    sk_rx_free(&rx);
    free(frame);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1)
        seal_open(data, size);
    else
        raw_stream(data + 1, size - 1);
    return 0;
}
