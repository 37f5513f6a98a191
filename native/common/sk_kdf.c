#include "sk_kdf.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

int sk_sha256(const sk_iov *iov, size_t iovcnt, uint8_t out[SK_HASH_SIZE], sk_err *err)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; ok && i < iovcnt; i++)
        ok = EVP_DigestUpdate(ctx, iov[i].base, iov[i].len);
    ok = ok && EVP_DigestFinal_ex(ctx, out, &n) && n == SK_HASH_SIZE;
    EVP_MD_CTX_free(ctx);
    return ok ? SK_OK : sk_fail(err, SK_ECRYPTO, "SHA-256 failed");
}

int sk_hmac_sha256(const uint8_t *key, size_t key_len, const sk_iov *iov, size_t iovcnt,
                   uint8_t out[SK_HASH_SIZE], sk_err *err)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    size_t n = 0;
    int ok = ctx && EVP_MAC_init(ctx, key, key_len, params);
    for (size_t i = 0; ok && i < iovcnt; i++)
        ok = EVP_MAC_update(ctx, iov[i].base, iov[i].len);
    ok = ok && EVP_MAC_final(ctx, out, &n, SK_HASH_SIZE) && n == SK_HASH_SIZE;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return ok ? SK_OK : sk_fail(err, SK_ECRYPTO, "HMAC-SHA256 failed");
}

int sk_hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
                   const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len, sk_err *err)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[5], *p = params;
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len);
    *p = OSSL_PARAM_construct_end();
    int ok = ctx && EVP_KDF_derive(ctx, out, out_len, params) > 0;
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    if (!ok) {
        OPENSSL_cleanse(out, out_len);
        return sk_fail(err, SK_ECRYPTO, "HKDF-SHA256 failed");
    }
    return SK_OK;
}

#define HELLO_SALT "safekit rfs v2 hello"

int sk_derive_hello_key(const uint8_t *cluster_key, size_t key_len, sk_bytes module,
                        uint8_t out[SK_KEY_SIZE], sk_err *err)
{
    return sk_hkdf_sha256(cluster_key, key_len, (const uint8_t *)HELLO_SALT, strlen(HELLO_SALT), module.ptr,
                          module.len, out, SK_KEY_SIZE, err);
}

static int session_key(const sk_session_input *in, const char *label, const uint8_t *salt,
                       uint8_t out[SK_KEY_SIZE], sk_err *err)
{
    uint8_t info[64 + 3 * (2 + SK_NAME_MAX) + SK_HASH_SIZE];
    sk_wr w = sk_wr_make(info, sizeof info);
    sk_wr_put(&w, label, strlen(label));
    sk_wr_u8(&w, 0);
    sk_wr_u8(&w, in->version);
    sk_wr_u8(&w, in->suite);
    sk_wr_lp16(&w, in->module);
    sk_wr_lp16(&w, in->primary);
    sk_wr_lp16(&w, in->secondary);
    sk_wr_put(&w, in->th, SK_HASH_SIZE);
    if (w.bad)
        return sk_fail(err, SK_EINVAL, "names above %d bytes for the key schedule", SK_NAME_MAX);
    return sk_hkdf_sha256(in->cluster_key, in->cluster_key_len, salt, 2 * SK_HELLO_NONCE_SIZE, info, w.pos, out,
                          SK_KEY_SIZE, err);
}

int sk_derive_session_keys(const sk_session_input *in, uint8_t p2s[SK_KEY_SIZE], uint8_t s2p[SK_KEY_SIZE],
                           sk_err *err)
{
    uint8_t salt[2 * SK_HELLO_NONCE_SIZE];
    memcpy(salt, in->nonce_p, SK_HELLO_NONCE_SIZE);
    memcpy(salt + SK_HELLO_NONCE_SIZE, in->nonce_s, SK_HELLO_NONCE_SIZE);
    int rc = session_key(in, "safekit rfs v2 p2s", salt, p2s, err);
    if (rc == SK_OK)
        rc = session_key(in, "safekit rfs v2 s2p", salt, s2p, err);
    if (rc != SK_OK) {
        OPENSSL_cleanse(p2s, SK_KEY_SIZE);
        OPENSSL_cleanse(s2p, SK_KEY_SIZE);
    }
    return rc;
}
