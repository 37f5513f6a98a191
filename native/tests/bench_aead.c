/* AEAD throughput on this machine: AES-256-GCM and ChaCha20-Poly1305 through OpenSSL EVP,
 * sealing frames of 4 KiB and 1 MiB with a 24-byte header as associated data (as the wire does).
 * Not a test: `make bench` prints MB per CPU second per cipher and size (best of 3 runs), the
 * figures behind the v2 cipher choice. */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* CPU time of this process: on a shared machine, the cost per byte, not the luck of the scheduler. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int seal(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *c, const uint8_t *key, uint64_t seq,
                const uint8_t *aad, const uint8_t *in, int len, uint8_t *out, uint8_t *tag, int fresh)
{
    uint8_t nonce[12] = {0, 0, 0, 1};
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(seq >> (56 - 8 * i));
    int n = 0;
    if (fresh && !EVP_EncryptInit_ex(ctx, c, NULL, key, NULL))
        return -1;
    if (!EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) || !EVP_EncryptUpdate(ctx, NULL, &n, aad, 24) ||
        !EVP_EncryptUpdate(ctx, out, &n, in, len) || !EVP_EncryptFinal_ex(ctx, out + n, &n) ||
        !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    static const int sizes[] = {4096, 1 << 20};
    const EVP_CIPHER *ciphers[] = {EVP_aes_256_gcm(), EVP_chacha20_poly1305()};
    const char *names[] = {"AES-256-GCM", "ChaCha20-Poly1305"};
    uint8_t key[32], aad[24], tag[16];
    memset(key, 7, sizeof key);
    memset(aad, 1, sizeof aad);
    uint8_t *in = calloc(1, 1 << 20), *out = malloc((1 << 20) + 16);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!in || !out || !ctx)
        return 1;
    for (int c = 0; c < 2; c++) {
        for (int s = 0; s < 2; s++) {
            if (seal(ctx, ciphers[c], key, 0, aad, in, sizes[s], out, tag, 1))
                return 1;
            double best = 0;
            for (int run = 0; run < 3; run++) {
                uint64_t seq = 1, bytes = 0;
                double t0 = now(), t;
                do {
                    for (int i = 0; i < 16; i++) {
                        if (seal(ctx, ciphers[c], key, seq++, aad, in, sizes[s], out, tag, 0))
                            return 1;
                        bytes += (uint64_t)sizes[s];
                    }
                    t = now() - t0;
                } while (t < seconds);
                if ((double)bytes / t > best)
                    best = (double)bytes / t;
            }
            printf("%-18s %7d-byte frames: %8.0f MB/s\n", names[c], sizes[s], best / 1e6);
        }
    }
    EVP_CIPHER_CTX_free(ctx);
    free(in);
    free(out);
    return 0;
}
