#include "sk_frame.h"

#include <string.h>

#include <openssl/crypto.h>

int sk_tx_init(sk_tx *tx, int suite, int dirn, const uint8_t key[SK_KEY_SIZE], uint64_t first_seq,
               sk_err *err)
{
    memset(tx, 0, sizeof *tx);
    tx->next_seq = first_seq;
    return sk_aead_init(&tx->aead, suite, dirn, key, true, err);
}

void sk_tx_free(sk_tx *tx)
{
    sk_aead_free(&tx->aead);
}

int sk_rx_init(sk_rx *rx, int suite, int dirn, const uint8_t key[SK_KEY_SIZE], uint64_t first_seq,
               uint32_t dirs, sk_err *err)
{
    memset(rx, 0, sizeof *rx);
    sk_seq_init(&rx->seq, first_seq);
    rx->dirs = dirs;
    return sk_aead_init(&rx->aead, suite, dirn, key, false, err);
}

void sk_rx_free(sk_rx *rx)
{
    sk_aead_free(&rx->aead);
}

int sk_tx_seal(sk_tx *tx, uint8_t type, uint16_t flags, uint32_t dir, const sk_iov *iov, size_t iovcnt,
               uint8_t *out, size_t cap, size_t *out_len, uint64_t *seq_out, sk_err *err)
{
    if (tx->failed)
        return sk_fail(err, SK_ESTATE, "this sender already failed");
    if (!tx->aead.ctx)
        return sk_fail(err, SK_EINVAL, "sender not initialised");
    int senders = sk_type_senders(type);
    if (!(senders & tx->aead.dirn) || type <= SK_T_HELLO_DONE)
        return sk_fail(err, SK_ETYPE, "this side does not send %s frames in a session",
                       sk_type_name(type) ? sk_type_name(type) : "unknown");
    if (flags & ~SK_F_KNOWN)
        return sk_fail(err, SK_EINVAL, "unknown flags 0x%04x", flags);
    size_t len = 0;
    for (size_t i = 0; i < iovcnt; i++) {
        if (iov[i].len > SK_MAX_PAYLOAD - len)
            return sk_fail(err, SK_ETOOBIG, "payload above the limit of %u bytes", SK_MAX_PAYLOAD);
        len += iov[i].len;
    }
    if (cap < sk_frame_size(len))
        return sk_fail(err, SK_ESPACE, "a %zu-byte frame does not fit in %zu bytes", sk_frame_size(len), cap);
    if (tx->next_seq == UINT64_MAX) {
        tx->failed = true;
        return sk_fail(err, SK_EEXHAUSTED, "sequence numbers exhausted: start a new session");
    }
    sk_header h = {SK_WIRE_VERSION, type, flags, tx->next_seq, (uint32_t)len, dir};
    sk_header_encode(&h, out);
    int rc = sk_aead_seal(&tx->aead, h.seq, out, SK_HEADER_SIZE, iov, iovcnt, out + SK_HEADER_SIZE,
                          out + SK_HEADER_SIZE + len, err);
    if (rc != SK_OK) {
        tx->failed = true;
        OPENSSL_cleanse(out, sk_frame_size(len));
        return rc;
    }
    if (seq_out)
        *seq_out = tx->next_seq;
    tx->next_seq++;
    *out_len = sk_frame_size(len);
    return SK_OK;
}

static int rx_fail(sk_rx *rx, sk_err *err, int rc)
{
    rx->failed = true;
    rx->why.code = rc;
    return sk_fail_copy(err, &rx->why);
}

int sk_rx_open(sk_rx *rx, uint8_t *buf, size_t len, sk_header *hdr, size_t *consumed, size_t *need,
               sk_err *err)
{
    *consumed = 0;
    *need = SK_HEADER_SIZE;
    if (rx->failed)
        return sk_fail(err, SK_ESTATE, "connection already failed: %s", rx->why.reason);
    if (!rx->aead.ctx)
        return sk_fail(err, SK_EINVAL, "receiver not initialised");
    sk_header h;
    int rc = sk_frame_span(buf, len, &h, need, &rx->why);
    if (rc == SK_AGAIN)
        return SK_AGAIN;
    if (rc != SK_OK)
        return rx_fail(rx, err, rc);
    const char *name = sk_type_name(h.type);
    if (!(sk_type_senders(h.type) & rx->aead.dirn) || h.type <= SK_T_HELLO_DONE)
        return rx_fail(rx, err,
                       sk_fail(&rx->why, SK_ETYPE, "unexpected %s frame from the %s", name,
                               rx->aead.dirn == SK_P2S ? "primary" : "secondary"));
    if (rx->dirs && h.dir >= rx->dirs)
        return rx_fail(rx, err,
                       sk_fail(&rx->why, SK_EMALFORMED, "%s frame for directory #%u, the module has %u",
                               name, h.dir, rx->dirs));
    /* Checked before decrypting; the nonce is then made from the sequence number expected, so a
     * replayed frame would fail authentication too. */
    uint64_t seq = rx->seq.expected;
    rc = sk_seq_check(&rx->seq, h.seq, name, &rx->why);
    if (rc != SK_OK)
        return rx_fail(rx, err, rc);
    uint8_t *body = buf + SK_HEADER_SIZE;
    rc = sk_aead_open(&rx->aead, seq, buf, SK_HEADER_SIZE, body, h.length, body + h.length, body, &rx->why);
    if (rc != SK_OK)
        return rx_fail(rx, err, rc);
    *hdr = h;
    *consumed = *need;
    return SK_OK;
}
