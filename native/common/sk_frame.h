/* Sealing and opening v2 frames of one session: a sender (sk_tx) and a receiver (sk_rx) per
 * direction, each with its own key. Pure: bytes in, bytes out, no sockets.
 *
 * The sender numbers its frames itself (consecutive from the session's first), so a caller cannot
 * reuse a nonce. The receiver opens frames in place in the caller's buffer; a frame that is
 * malformed, fails authentication, is replayed or out of order, or is not expected from that side,
 * fails the receiver for good: it wipes what it decrypted, and every later call fails too (the
 * connection must end; nothing of a bad frame is ever returned). */
#ifndef SK_FRAME_H
#define SK_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sk_aead.h"
#include "sk_err.h"
#include "sk_seq.h"
#include "sk_wire.h"

typedef struct sk_tx {
    sk_aead aead;
    uint64_t next_seq;
    bool failed;
} sk_tx;

typedef struct sk_rx {
    sk_aead aead;
    sk_seq seq;
    uint32_t dirs;  /* frames must name a directory below this (0: not checked) */
    bool failed;
    sk_err why;     /* the failure, repeated by every later call */
} sk_rx;

/* Frame bytes for a payload of `payload_len` bytes. */
static inline size_t sk_frame_size(size_t payload_len)
{
    return SK_FRAME_OVERHEAD + payload_len;
}

/* `dirn`: the direction this side sends (tx) or the peer sends (rx). */
int sk_tx_init(sk_tx *tx, int suite, int dirn, const uint8_t key[SK_KEY_SIZE], uint64_t first_seq,
               sk_err *err);
void sk_tx_free(sk_tx *tx);
int sk_rx_init(sk_rx *rx, int suite, int dirn, const uint8_t key[SK_KEY_SIZE], uint64_t first_seq,
               uint32_t dirs, sk_err *err);
void sk_rx_free(sk_rx *rx);

/* Seal one frame of `type` whose payload is the concatenation of `iov` into `out` (capacity `cap`,
 * needs sk_frame_size(payload)). The frame gets the next sequence number (*seq_out if not NULL). */
int sk_tx_seal(sk_tx *tx, uint8_t type, uint16_t flags, uint32_t dir, const sk_iov *iov, size_t iovcnt,
               uint8_t *out, size_t cap, size_t *out_len, uint64_t *seq_out, sk_err *err);

/* Open the first frame of `buf` (len bytes) in place. SK_AGAIN: not whole yet, *need = bytes needed
 * in total. SK_OK: *hdr set, the plaintext payload is buf[SK_HEADER_SIZE .. + hdr->length),
 * *consumed = the frame's size. Anything else: the connection must end. */
int sk_rx_open(sk_rx *rx, uint8_t *buf, size_t len, sk_header *hdr, size_t *consumed, size_t *need,
               sk_err *err);

#endif
