/* AEAD of the v2 frames (OpenSSL EVP): one sealing or opening context per direction and session.
 *
 * Nonce (12 bytes) = direction u32 big-endian (1 primary->secondary, 2 secondary->primary) ||
 * sequence number u64 big-endian. The key is per session and per direction and the sender's
 * sequence numbers only go up, so a nonce is never used twice under a key; the nonce is computed
 * here from the context's direction and the frame's sequence number, never passed in. */
#ifndef SK_AEAD_H
#define SK_AEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sk_err.h"

#define SK_KEY_SIZE 32
#define SK_NONCE_SIZE 12
#define SK_AEAD_TAG_SIZE 16

enum sk_suite {
    SK_SUITE_AES_256_GCM = 1,       /* the v2 default (docs/replication-wire-v2.md: measured) */
    SK_SUITE_CHACHA20_POLY1305 = 2, /* optional, for CPUs without AES instructions */
};

/* A bitmask of suites (bit 1 << suite). */
#define SK_SUITES_ALL ((1u << SK_SUITE_AES_256_GCM) | (1u << SK_SUITE_CHACHA20_POLY1305))

typedef struct sk_aead {
    void *ctx; /* EVP_CIPHER_CTX *, owned */
    uint8_t suite;
    uint8_t dirn;
    bool seal;
} sk_aead;

/* One piece of a payload (sealing gathers pieces: a WRITE's prefix and its data). */
typedef struct sk_iov {
    const void *base;
    size_t len;
} sk_iov;

const char *sk_suite_name(int suite);

void sk_nonce(uint8_t out[SK_NONCE_SIZE], int dirn, uint64_t seq);

/* A context that seals (seal=true) or opens frames of direction `dirn` under `key`. */
int sk_aead_init(sk_aead *a, int suite, int dirn, const uint8_t key[SK_KEY_SIZE], bool seal, sk_err *err);
void sk_aead_free(sk_aead *a);

/* Encrypt the pieces into `out` (their total length) and write the tag; `aad` is authenticated. */
int sk_aead_seal(sk_aead *a, uint64_t seq, const uint8_t *aad, size_t aad_len, const sk_iov *iov,
                 size_t iovcnt, uint8_t *out, uint8_t tag[SK_AEAD_TAG_SIZE], sk_err *err);

/* Decrypt `len` bytes of `in` into `out` (may be the same buffer) and check the tag. On any failure
 * `out` is wiped: nothing of a frame that fails authentication is ever visible. */
int sk_aead_open(sk_aead *a, uint64_t seq, const uint8_t *aad, size_t aad_len, const uint8_t *in,
                 size_t len, const uint8_t tag[SK_AEAD_TAG_SIZE], uint8_t *out, sk_err *err);

#endif
