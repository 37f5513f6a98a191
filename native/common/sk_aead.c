#include "sk_aead.h"

#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "sk_bytes.h"

/* EVP takes int lengths: feed it in pieces no larger than this. */
#define SK_EVP_CHUNK (1 << 30)

const char *sk_suite_name(int suite)
{
    switch (suite) {
    case SK_SUITE_AES_256_GCM: return "AES-256-GCM";
    case SK_SUITE_CHACHA20_POLY1305: return "ChaCha20-Poly1305";
    default: return NULL;
    }
}

static const EVP_CIPHER *suite_cipher(int suite)
{
    switch (suite) {
    case SK_SUITE_AES_256_GCM: return EVP_aes_256_gcm();
    case SK_SUITE_CHACHA20_POLY1305: return EVP_chacha20_poly1305();
    default: return NULL;
    }
}

void sk_nonce(uint8_t out[SK_NONCE_SIZE], int dirn, uint64_t seq)
{
    sk_store_be(out, (uint32_t)dirn, 4);
    sk_store_be(out + 4, seq, 8);
}

int sk_aead_init(sk_aead *a, int suite, int dirn, const uint8_t key[SK_KEY_SIZE], bool seal, sk_err *err)
{
    memset(a, 0, sizeof *a);
    const EVP_CIPHER *cipher = suite_cipher(suite);
    if (!cipher)
        return sk_fail(err, SK_EINVAL, "unknown cipher suite %d", suite);
    if (dirn != 1 && dirn != 2)
        return sk_fail(err, SK_EINVAL, "bad direction %d", dirn);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return sk_fail(err, SK_ECRYPTO, "out of memory for a cipher context");
    int ok = seal ? EVP_EncryptInit_ex(ctx, cipher, NULL, NULL, NULL)
                  : EVP_DecryptInit_ex(ctx, cipher, NULL, NULL, NULL);
    ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, SK_NONCE_SIZE, NULL);
    ok = ok && (seal ? EVP_EncryptInit_ex(ctx, NULL, NULL, key, NULL)
                     : EVP_DecryptInit_ex(ctx, NULL, NULL, key, NULL));
    if (!ok) {
        EVP_CIPHER_CTX_free(ctx);
        return sk_fail(err, SK_ECRYPTO, "%s: cannot set up the cipher", sk_suite_name(suite));
    }
    a->ctx = ctx;
    a->suite = (uint8_t)suite;
    a->dirn = (uint8_t)dirn;
    a->seal = seal;
    return SK_OK;
}

void sk_aead_free(sk_aead *a)
{
    if (a->ctx)
        EVP_CIPHER_CTX_free(a->ctx); /* clears the key schedule */
    a->ctx = NULL;
}

static bool update(EVP_CIPHER_CTX *ctx, bool seal, uint8_t *out, const uint8_t *in, size_t len)
{
    while (len) {
        int n = len > SK_EVP_CHUNK ? SK_EVP_CHUNK : (int)len, got = 0;
        if (!(seal ? EVP_EncryptUpdate(ctx, out, &got, in, n) : EVP_DecryptUpdate(ctx, out, &got, in, n)))
            return false;
        if (got != n && out) /* GCM and ChaCha20-Poly1305 are stream modes: all out at once */
            return false;
        if (out)
            out += n;
        in += n;
        len -= (size_t)n;
    }
    return true;
}

int sk_aead_seal(sk_aead *a, uint64_t seq, const uint8_t *aad, size_t aad_len, const sk_iov *iov,
                 size_t iovcnt, uint8_t *out, uint8_t tag[SK_AEAD_TAG_SIZE], sk_err *err)
{
    if (!a->ctx || !a->seal)
        return sk_fail(err, SK_EINVAL, "not a sealing context");
    EVP_CIPHER_CTX *ctx = a->ctx;
    uint8_t nonce[SK_NONCE_SIZE];
    sk_nonce(nonce, a->dirn, seq);
    int n = 0;
    bool ok = EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) && update(ctx, true, NULL, aad, aad_len);
    for (size_t i = 0; ok && i < iovcnt; i++) {
        ok = update(ctx, true, out, iov[i].base, iov[i].len);
        out += iov[i].len;
    }
    ok = ok && EVP_EncryptFinal_ex(ctx, out, &n) && n == 0;
    ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, SK_AEAD_TAG_SIZE, tag);
    if (!ok)
        return sk_fail(err, SK_ECRYPTO, "%s: sealing failed", sk_suite_name(a->suite));
    return SK_OK;
}

int sk_aead_open(sk_aead *a, uint64_t seq, const uint8_t *aad, size_t aad_len, const uint8_t *in,
                 size_t len, const uint8_t tag[SK_AEAD_TAG_SIZE], uint8_t *out, sk_err *err)
{
    if (!a->ctx || a->seal)
        return sk_fail(err, SK_EINVAL, "not an opening context");
    EVP_CIPHER_CTX *ctx = a->ctx;
    uint8_t nonce[SK_NONCE_SIZE], tagcopy[SK_AEAD_TAG_SIZE];
    memcpy(tagcopy, tag, sizeof tagcopy); /* EVP wants a non-const pointer */
    sk_nonce(nonce, a->dirn, seq);
    int n = 0;
    bool ok = EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce) &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, SK_AEAD_TAG_SIZE, tagcopy) &&
              update(ctx, false, NULL, aad, aad_len) && update(ctx, false, out, in, len);
    if (!ok) {
        if (len)
            OPENSSL_cleanse(out, len);
        return sk_fail(err, SK_ECRYPTO, "%s: opening failed", sk_suite_name(a->suite));
    }
    if (EVP_DecryptFinal_ex(ctx, out + len, &n) <= 0) {
        if (len)
            OPENSSL_cleanse(out, len);
        return sk_fail(err, SK_EAUTH,
                       "frame failed authentication (wrong cluster key, or forged, corrupted or replayed)");
    }
    return SK_OK;
}
