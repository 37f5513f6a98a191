/* Hashes and the v2 key schedule (HKDF-SHA256 through OpenSSL's EVP_KDF, HMAC through EVP_MAC).
 *
 *   hello_key = HKDF-SHA256(IKM = cluster key, salt = "safekit rfs v2 hello", info = module, L = 32)
 *   k_p2s     = HKDF-SHA256(IKM = cluster key, salt = nonce_p || nonce_s,
 *                           info = "safekit rfs v2 p2s" || 0x00 || version u8 || suite u8 ||
 *                                  lp16(module) || lp16(primary) || lp16(secondary) || th, L = 32)
 *   k_s2p     = the same with "safekit rfs v2 s2p"
 *
 * th = SHA-256(SHA-256(HELLO frame) || HELLO_OK frame), frames whole as sent (header, payload, MAC). lp16 = u16 big-endian
 * length + bytes. */
#ifndef SK_KDF_H
#define SK_KDF_H

#include <stddef.h>
#include <stdint.h>

#include "sk_aead.h"
#include "sk_bytes.h"
#include "sk_err.h"

#define SK_HASH_SIZE 32
#define SK_HELLO_NONCE_SIZE 32
#define SK_NAME_MAX 255 /* module and node names, epochs */

int sk_sha256(const sk_iov *iov, size_t iovcnt, uint8_t out[SK_HASH_SIZE], sk_err *err);
int sk_hmac_sha256(const uint8_t *key, size_t key_len, const sk_iov *iov, size_t iovcnt,
                   uint8_t out[SK_HASH_SIZE], sk_err *err);
int sk_hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
                   const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len, sk_err *err);

int sk_derive_hello_key(const uint8_t *cluster_key, size_t key_len, sk_bytes module,
                        uint8_t out[SK_KEY_SIZE], sk_err *err);

typedef struct sk_session_input {
    const uint8_t *cluster_key;
    size_t cluster_key_len;
    uint8_t version;
    uint8_t suite;
    sk_bytes module, primary, secondary;
    const uint8_t *nonce_p; /* SK_HELLO_NONCE_SIZE bytes */
    const uint8_t *nonce_s;
    const uint8_t *th;      /* SK_HASH_SIZE bytes */
} sk_session_input;

int sk_derive_session_keys(const sk_session_input *in, uint8_t p2s[SK_KEY_SIZE], uint8_t s2p[SK_KEY_SIZE],
                           sk_err *err);

#endif
