#include "sk_hello.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>

#include "sk_bytes.h"
#include "sk_wire.h"

#define HS_MAC_SIZE SK_TAG_SIZE /* HMAC-SHA256 truncated to 16 bytes */

int sk_hello_nonce(uint8_t nonce[SK_HELLO_NONCE_SIZE], sk_err *err)
{
    size_t got = 0;
    while (got < SK_HELLO_NONCE_SIZE) {
        ssize_t n = getrandom(nonce + got, SK_HELLO_NONCE_SIZE - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return sk_fail(err, SK_ECRYPTO, "getrandom failed: %s", strerror(errno));
        }
        got += (size_t)n;
    }
    return SK_OK;
}

static int copy_name(char *dst, const char *src, const char *what, bool empty_ok, sk_err *err)
{
    if (!src)
        return sk_fail(err, SK_EINVAL, "no %s", what);
    size_t n = strlen(src);
    if (n > SK_NAME_MAX || (!empty_ok && n == 0))
        return sk_fail(err, SK_EINVAL, "%s must have 1 to %d bytes", what, SK_NAME_MAX);
    memcpy(dst, src, n + 1);
    return SK_OK;
}

/* A name received from the peer: length-checked, no NUL, copied as a C string. */
static bool take_name(char *dst, sk_bytes b, bool empty_ok)
{
    if (b.len > SK_NAME_MAX || (!empty_ok && b.len == 0) || (b.len && memchr(b.ptr, 0, b.len)))
        return false;
    if (b.len)
        memcpy(dst, b.ptr, b.len);
    dst[b.len] = 0;
    return true;
}

static uint32_t implemented_suites(void)
{
    return SK_SUITES_ALL;
}

int sk_hello_init(sk_hello *hs, const sk_hello_config *cfg, const uint8_t nonce[SK_HELLO_NONCE_SIZE],
                  sk_err *err)
{
    memset(hs, 0, sizeof *hs);
    hs->state = SK_HS_FAILED;
    if (cfg->role != SK_ROLE_PRIMARY && cfg->role != SK_ROLE_SECONDARY)
        return sk_fail(err, SK_EINVAL, "unknown role %d", cfg->role);
    if (!cfg->cluster_key || cfg->cluster_key_len < SK_CLUSTER_KEY_MIN || cfg->cluster_key_len > SK_CLUSTER_KEY_MAX)
        return sk_fail(err, SK_EINVAL, "the cluster key must have %d to %d bytes", SK_CLUSTER_KEY_MIN,
                       SK_CLUSTER_KEY_MAX);
    int rc;
    if ((rc = copy_name(hs->module, cfg->module, "module name", false, err)) != SK_OK ||
        (rc = copy_name(hs->node, cfg->node, "node name", false, err)) != SK_OK ||
        (rc = copy_name(hs->peer_name, cfg->peer, "peer name", false, err)) != SK_OK ||
        (rc = copy_name(hs->epoch, cfg->epoch ? cfg->epoch : "", "epoch", true, err)) != SK_OK)
        return rc;
    if (strcmp(hs->node, hs->peer_name) == 0)
        return sk_fail(err, SK_EINVAL, "node and peer have the same name %s", hs->node);
    if (cfg->dirs == 0)
        return sk_fail(err, SK_EINVAL, "no replicated directory");
    hs->suites = cfg->suites ? cfg->suites & implemented_suites() : implemented_suites();
    if (!hs->suites)
        return sk_fail(err, SK_EINVAL, "no cipher suite this build implements");
    if (cfg->role == SK_ROLE_PRIMARY && (cfg->first_seq == 0 || cfg->first_seq == UINT64_MAX))
        return sk_fail(err, SK_EINVAL, "first_seq must be >= 1 and below 2^64-1");
    rc = sk_derive_hello_key(cfg->cluster_key, cfg->cluster_key_len, sk_bytes_str(hs->module), hs->hello_key, err);
    if (rc != SK_OK)
        return rc;
    memcpy(hs->cluster_key, cfg->cluster_key, cfg->cluster_key_len);
    hs->cluster_key_len = cfg->cluster_key_len;
    hs->role = cfg->role;
    hs->dirs = cfg->dirs;
    hs->first_seq = cfg->first_seq;
    hs->async_none = cfg->async_none;
    hs->trusted = cfg->trusted;
    hs->in_sync = cfg->in_sync;
    hs->fullsync = cfg->fullsync;
    memcpy(hs->nonce_own, nonce, SK_HELLO_NONCE_SIZE);
    hs->state = cfg->role == SK_ROLE_PRIMARY ? SK_HS_START : SK_HS_WAIT_HELLO;
    return SK_OK;
}

void sk_hello_wipe(sk_hello *hs)
{
    OPENSSL_cleanse(hs, sizeof *hs);
    hs->state = SK_HS_FAILED;
}

static int fail(sk_hello *hs, sk_err *err, int code, const char *fmt, const char *arg)
{
    hs->state = SK_HS_FAILED;
    sk_fail(&hs->why, code, fmt, arg);
    OPENSSL_cleanse(&hs->keys, sizeof hs->keys);
    return sk_fail_copy(err, &hs->why);
}

static int fail_err(sk_hello *hs, sk_err *err, const sk_err *e)
{
    hs->state = SK_HS_FAILED;
    sk_fail_copy(&hs->why, e);
    OPENSSL_cleanse(&hs->keys, sizeof hs->keys);
    return sk_fail_copy(err, &hs->why);
}

/* The 16-byte MAC of a handshake frame: HMAC-SHA256(hello_key, header || payload), truncated. */
static int hs_mac(const sk_hello *hs, const uint8_t *frame, size_t body_len, uint8_t mac[HS_MAC_SIZE], sk_err *err)
{
    uint8_t full[SK_HASH_SIZE];
    sk_iov iov = {frame, body_len};
    int rc = sk_hmac_sha256(hs->hello_key, SK_KEY_SIZE, &iov, 1, full, err);
    memcpy(mac, full, HS_MAC_SIZE);
    OPENSSL_cleanse(full, sizeof full);
    return rc;
}

/* Wrap a handshake payload (already at out + SK_HEADER_SIZE) into a frame: header and MAC. */
static int hs_frame(const sk_hello *hs, uint8_t type, uint8_t *out, size_t payload_len, size_t *out_len, sk_err *err)
{
    sk_header h = {SK_WIRE_VERSION, type, 0, 0, (uint32_t)payload_len, 0};
    sk_header_encode(&h, out);
    int rc = hs_mac(hs, out, SK_HEADER_SIZE + payload_len, out + SK_HEADER_SIZE + payload_len, err);
    if (rc == SK_OK)
        *out_len = sk_frame_size(payload_len);
    return rc;
}

int sk_hello_start(sk_hello *hs, uint8_t *out, size_t cap, size_t *out_len, sk_err *err)
{
    if (hs->role != SK_ROLE_PRIMARY || hs->state != SK_HS_START)
        return sk_fail(err, SK_ESTATE, "HELLO is sent once, by the primary, first");
    if (cap < SK_HELLO_OUT_MAX)
        return sk_fail(err, SK_ESPACE, "handshake output buffer below %d bytes", SK_HELLO_OUT_MAX);
    sk_wr w = sk_wr_make(out + SK_HEADER_SIZE, SK_HELLO_MAX_PAYLOAD);
    sk_wr_u8(&w, SK_WIRE_VERSION); /* lowest version offered */
    sk_wr_u8(&w, SK_WIRE_VERSION); /* highest */
    sk_wr_u32(&w, hs->suites);
    sk_wr_put(&w, hs->nonce_own, SK_HELLO_NONCE_SIZE);
    sk_wr_lp16(&w, sk_bytes_str(hs->module));
    sk_wr_lp16(&w, sk_bytes_str(hs->node));
    sk_wr_lp16(&w, sk_bytes_str(hs->peer_name));
    sk_wr_lp16(&w, sk_bytes_str(hs->epoch));
    sk_wr_u64(&w, hs->first_seq);
    sk_wr_u32(&w, hs->dirs);
    sk_wr_u8(&w, hs->async_none ? 1 : 0);
    if (w.bad)
        return sk_fail(err, SK_EINVAL, "internal: HELLO above %d bytes", SK_HELLO_MAX_PAYLOAD);
    int rc = hs_frame(hs, SK_T_HELLO, out, w.pos, out_len, err);
    if (rc != SK_OK)
        return rc;
    sk_iov iov = {out, *out_len};
    rc = sk_sha256(&iov, 1, hs->hello_hash, err);
    if (rc != SK_OK)
        return rc;
    hs->state = SK_HS_WAIT_HELLO_OK;
    return SK_OK;
}

/* Cut one handshake frame of `type` from `in`; checks everything the header says. SK_AGAIN, SK_OK
 * (*frame_len, *h) or an error (written to `e`). */
static int hs_cut(const uint8_t *in, size_t len, uint8_t type, sk_header *h, size_t *frame_len, sk_err *e)
{
    int rc = sk_header_decode(in, len, h, e);
    if (rc != SK_OK)
        return rc;
    if (h->type != type)
        return sk_fail(e, SK_ETYPE, "expected %s, got %s", sk_type_name(type), sk_type_name(h->type));
    if (h->seq != 0 || h->dir != 0 || h->flags != 0)
        return sk_fail(e, SK_EMALFORMED, "%s with a sequence number, directory or flags", sk_type_name(type));
    if (h->length > SK_HELLO_MAX_PAYLOAD)
        return sk_fail(e, SK_ETOOBIG, "%s of %u bytes, above %d", sk_type_name(type), h->length,
                       SK_HELLO_MAX_PAYLOAD);
    *frame_len = sk_frame_size(h->length);
    return len >= *frame_len ? SK_OK : SK_AGAIN;
}

static int hs_check_mac(const sk_hello *hs, const uint8_t *frame, const sk_header *h, sk_err *e)
{
    uint8_t mac[HS_MAC_SIZE];
    int rc = hs_mac(hs, frame, SK_HEADER_SIZE + h->length, mac, e);
    if (rc != SK_OK)
        return rc;
    if (CRYPTO_memcmp(mac, frame + SK_HEADER_SIZE + h->length, HS_MAC_SIZE) != 0)
        return sk_fail(e, SK_EAUTH,
                       "%s failed authentication: the nodes do not share the cluster key, or the "
                       "module name differs (or the frame was forged or corrupted)",
                       sk_type_name(h->type));
    return SK_OK;
}

static int derive(sk_hello *hs, const uint8_t *hello_ok, size_t hello_ok_len, sk_err *e)
{
    sk_iov iov[2] = {{hs->hello_hash, SK_HASH_SIZE}, {hello_ok, hello_ok_len}};
    int rc = sk_sha256(iov, 2, hs->th, e);
    if (rc != SK_OK)
        return rc;
    bool primary = hs->role == SK_ROLE_PRIMARY;
    sk_session_input in = {
        hs->cluster_key, hs->cluster_key_len, hs->keys.version, hs->keys.suite, sk_bytes_str(hs->module),
        sk_bytes_str(primary ? hs->node : hs->peer.node), sk_bytes_str(primary ? hs->peer.node : hs->node),
        primary ? hs->nonce_own : hs->nonce_peer, primary ? hs->nonce_peer : hs->nonce_own, hs->th,
    };
    return sk_derive_session_keys(&in, hs->keys.p2s, hs->keys.s2p, e);
}

static int lowest_suite(uint32_t mask)
{
    for (int s = 1; s < 32; s++)
        if (mask & (1u << s))
            return s;
    return 0;
}

/* Secondary: a HELLO arrived whole and authenticated. */
static int on_hello(sk_hello *hs, const uint8_t *frame, const sk_header *h, uint8_t *out, size_t *out_len,
                    sk_err *err)
{
    sk_err e = {0, ""};
    sk_rd r = sk_rd_make(frame + SK_HEADER_SIZE, h->length);
    uint8_t vmin = sk_rd_u8(&r), vmax = sk_rd_u8(&r);
    uint32_t suites = sk_rd_u32(&r);
    sk_bytes nonce = sk_rd_bytes(&r, SK_HELLO_NONCE_SIZE);
    sk_bytes module = sk_rd_lp16(&r), node = sk_rd_lp16(&r), peer = sk_rd_lp16(&r), epoch = sk_rd_lp16(&r);
    uint64_t first_seq = sk_rd_u64(&r);
    uint32_t dirs = sk_rd_u32(&r);
    uint8_t async_none = sk_rd_u8(&r);
    if (!sk_rd_done(&r))
        return fail(hs, err, SK_EMALFORMED, "%s payload truncated or with trailing bytes", "HELLO");
    if (vmin > SK_WIRE_VERSION || vmax < SK_WIRE_VERSION) {
        sk_fail(&e, SK_EVERSION, "the primary offers protocol versions %u to %u, this node speaks %u only", vmin,
                vmax, SK_WIRE_VERSION);
        return fail_err(hs, err, &e);
    }
    int suite = lowest_suite(suites & hs->suites);
    if (!suite)
        return fail(hs, err, SK_EPEER, "no cipher suite in common with the primary%s", "");
    if (!sk_bytes_eq(module, sk_bytes_str(hs->module)))
        return fail(hs, err, SK_EPEER, "HELLO for another module (this one is %s)", hs->module);
    if (!take_name(hs->peer.node, node, false) || !take_name(hs->peer.epoch, epoch, true))
        return fail(hs, err, SK_EMALFORMED, "HELLO with a bad node name or epoch%s", "");
    if (strcmp(hs->peer.node, hs->peer_name) != 0) {
        sk_fail(&e, SK_EPEER, "HELLO from node %s, this node's primary is %s: not our primary", hs->peer.node,
                hs->peer_name);
        return fail_err(hs, err, &e);
    }
    if (!sk_bytes_eq(peer, sk_bytes_str(hs->node)))
        return fail(hs, err, SK_EPEER, "the primary's HELLO is for another node (this one is %s)", hs->node);
    if (dirs != hs->dirs) {
        sk_fail(&e, SK_EPEER,
                "the primary replicates %u directories, this node %u: userconfig.xml differs between the nodes",
                dirs, hs->dirs);
        return fail_err(hs, err, &e);
    }
    if (first_seq == 0 || first_seq == UINT64_MAX || async_none > 1)
        return fail(hs, err, SK_EMALFORMED, "HELLO with a bad first sequence number or async flag%s", "");
    if (memcmp(nonce.ptr, hs->nonce_own, SK_HELLO_NONCE_SIZE) == 0)
        return fail(hs, err, SK_EPEER, "HELLO carries this node's own nonce (reflected)%s", "");
    memcpy(hs->nonce_peer, nonce.ptr, SK_HELLO_NONCE_SIZE);
    hs->peer.first_seq = first_seq;
    hs->peer.dirs = dirs;
    hs->peer.async_none = async_none == 1;
    sk_iov iov = {frame, sk_frame_size(h->length)};
    if (sk_sha256(&iov, 1, hs->hello_hash, &e) != SK_OK)
        return fail_err(hs, err, &e);

    sk_wr w = sk_wr_make(out + SK_HEADER_SIZE, SK_HELLO_MAX_PAYLOAD);
    sk_wr_u8(&w, SK_WIRE_VERSION);
    sk_wr_u8(&w, (uint8_t)suite);
    sk_wr_put(&w, hs->nonce_own, SK_HELLO_NONCE_SIZE);
    sk_wr_put(&w, hs->hello_hash, SK_HASH_SIZE);
    sk_wr_lp16(&w, sk_bytes_str(hs->node));
    sk_wr_lp16(&w, sk_bytes_str(hs->epoch));
    sk_wr_u8(&w, hs->trusted ? 1 : 0);
    sk_wr_u8(&w, hs->in_sync ? 1 : 0);
    sk_wr_u8(&w, hs->fullsync ? 1 : 0);
    if (w.bad)
        return fail(hs, err, SK_EINVAL, "internal: %s too large", "HELLO_OK");
    size_t n;
    if (hs_frame(hs, SK_T_HELLO_OK, out, w.pos, &n, &e) != SK_OK)
        return fail_err(hs, err, &e);
    hs->keys.version = SK_WIRE_VERSION;
    hs->keys.suite = (uint8_t)suite;
    if (derive(hs, out, n, &e) != SK_OK)
        return fail_err(hs, err, &e);
    *out_len = n;
    hs->state = SK_HS_WAIT_DONE;
    return SK_OK;
}

/* Primary: a HELLO_OK arrived whole and authenticated. */
static int on_hello_ok(sk_hello *hs, const uint8_t *frame, const sk_header *h, uint8_t *out, size_t *out_len,
                       sk_err *err)
{
    sk_err e = {0, ""};
    sk_rd r = sk_rd_make(frame + SK_HEADER_SIZE, h->length);
    uint8_t version = sk_rd_u8(&r), suite = sk_rd_u8(&r);
    sk_bytes nonce = sk_rd_bytes(&r, SK_HELLO_NONCE_SIZE);
    sk_bytes hello_hash = sk_rd_bytes(&r, SK_HASH_SIZE);
    sk_bytes node = sk_rd_lp16(&r), epoch = sk_rd_lp16(&r);
    uint8_t trusted = sk_rd_u8(&r), in_sync = sk_rd_u8(&r), fullsync = sk_rd_u8(&r);
    if (!sk_rd_done(&r))
        return fail(hs, err, SK_EMALFORMED, "%s payload truncated or with trailing bytes", "HELLO_OK");
    if (version != SK_WIRE_VERSION) {
        sk_fail(&e, SK_EVERSION, "the secondary chose protocol version %u, this node offered %u only", version,
                SK_WIRE_VERSION);
        return fail_err(hs, err, &e);
    }
    if (suite >= 32 || !(hs->suites & (1u << suite)))
        return fail(hs, err, SK_EPEER, "the secondary chose a cipher suite this node did not offer%s", "");
    if (CRYPTO_memcmp(hello_hash.ptr, hs->hello_hash, SK_HASH_SIZE) != 0)
        return fail(hs, err, SK_EPEER, "HELLO_OK answers another HELLO (replayed)%s", "");
    if (!take_name(hs->peer.node, node, false) || !take_name(hs->peer.epoch, epoch, true))
        return fail(hs, err, SK_EMALFORMED, "HELLO_OK with a bad node name or epoch%s", "");
    if (strcmp(hs->peer.node, hs->peer_name) != 0) {
        sk_fail(&e, SK_EPEER, "the replication port answers as %s, not %s", hs->peer.node, hs->peer_name);
        return fail_err(hs, err, &e);
    }
    if (trusted > 1 || in_sync > 1 || fullsync > 1)
        return fail(hs, err, SK_EMALFORMED, "HELLO_OK with a flag other than 0 or 1%s", "");
    if (memcmp(nonce.ptr, hs->nonce_own, SK_HELLO_NONCE_SIZE) == 0)
        return fail(hs, err, SK_EPEER, "HELLO_OK carries this node's own nonce (reflected)%s", "");
    memcpy(hs->nonce_peer, nonce.ptr, SK_HELLO_NONCE_SIZE);
    hs->peer.trusted = trusted == 1;
    hs->peer.in_sync = in_sync == 1;
    hs->peer.fullsync = fullsync == 1;
    hs->keys.version = version;
    hs->keys.suite = suite;
    if (derive(hs, frame, sk_frame_size(h->length), &e) != SK_OK)
        return fail_err(hs, err, &e);
    /* HELLO_DONE: the transcript hash sealed under k_p2s, sequence number 0 (operations start at
     * first_seq >= 1, so this nonce is never used again under the key). */
    sk_aead a;
    if (sk_aead_init(&a, suite, SK_P2S, hs->keys.p2s, true, &e) != SK_OK)
        return fail_err(hs, err, &e);
    sk_header dh = {SK_WIRE_VERSION, SK_T_HELLO_DONE, 0, 0, SK_HASH_SIZE, 0};
    sk_header_encode(&dh, out);
    sk_iov iov = {hs->th, SK_HASH_SIZE};
    int rc = sk_aead_seal(&a, 0, out, SK_HEADER_SIZE, &iov, 1, out + SK_HEADER_SIZE,
                          out + SK_HEADER_SIZE + SK_HASH_SIZE, &e);
    sk_aead_free(&a);
    if (rc != SK_OK)
        return fail_err(hs, err, &e);
    *out_len = sk_frame_size(SK_HASH_SIZE);
    hs->state = SK_HS_DONE;
    return SK_OK;
}

/* Secondary: HELLO_DONE. */
static int on_done(sk_hello *hs, const uint8_t *frame, const sk_header *h, sk_err *err)
{
    sk_err e = {0, ""};
    if (h->length != SK_HASH_SIZE)
        return fail(hs, err, SK_EMALFORMED, "%s of the wrong size", "HELLO_DONE");
    uint8_t th[SK_HASH_SIZE];
    sk_aead a;
    if (sk_aead_init(&a, hs->keys.suite, SK_P2S, hs->keys.p2s, false, &e) != SK_OK)
        return fail_err(hs, err, &e);
    int rc = sk_aead_open(&a, 0, frame, SK_HEADER_SIZE, frame + SK_HEADER_SIZE, SK_HASH_SIZE,
                          frame + SK_HEADER_SIZE + SK_HASH_SIZE, th, &e);
    sk_aead_free(&a);
    if (rc == SK_EAUTH)
        return fail(hs, err, SK_EAUTH,
                    "HELLO_DONE failed authentication: the primary does not hold the cluster key "
                    "(a replayed HELLO?)%s", "");
    if (rc != SK_OK)
        return fail_err(hs, err, &e);
    if (CRYPTO_memcmp(th, hs->th, SK_HASH_SIZE) != 0)
        return fail(hs, err, SK_EPEER, "HELLO_DONE confirms another handshake%s", "");
    hs->state = SK_HS_DONE;
    return SK_OK;
}

int sk_hello_receive(sk_hello *hs, const uint8_t *in, size_t len, size_t *consumed, uint8_t *out, size_t cap,
                     size_t *out_len, sk_err *err)
{
    *consumed = 0;
    *out_len = 0;
    uint8_t expect;
    switch (hs->state) {
    case SK_HS_WAIT_HELLO: expect = SK_T_HELLO; break;
    case SK_HS_WAIT_HELLO_OK: expect = SK_T_HELLO_OK; break;
    case SK_HS_WAIT_DONE: expect = SK_T_HELLO_DONE; break;
    case SK_HS_FAILED: return sk_fail(err, SK_ESTATE, "handshake already failed: %s", hs->why.reason);
    default: return sk_fail(err, SK_ESTATE, "no handshake frame expected in this state");
    }
    if (cap < SK_HELLO_OUT_MAX)
        return sk_fail(err, SK_ESPACE, "handshake output buffer below %d bytes", SK_HELLO_OUT_MAX);
    sk_err e = {0, ""};
    sk_header h;
    size_t frame_len = 0;
    int rc = hs_cut(in, len, expect, &h, &frame_len, &e);
    if (rc == SK_AGAIN)
        return SK_AGAIN;
    if (rc != SK_OK)
        return fail_err(hs, err, &e);
    if (expect != SK_T_HELLO_DONE && hs_check_mac(hs, in, &h, &e) != SK_OK)
        return fail_err(hs, err, &e);
    switch (expect) {
    case SK_T_HELLO: rc = on_hello(hs, in, &h, out, out_len, err); break;
    case SK_T_HELLO_OK: rc = on_hello_ok(hs, in, &h, out, out_len, err); break;
    default: rc = on_done(hs, in, &h, err); break;
    }
    if (rc == SK_OK)
        *consumed = frame_len;
    else
        *out_len = 0;
    return rc;
}

int sk_hello_eof(sk_hello *hs, sk_err *err)
{
    switch (hs->state) {
    case SK_HS_WAIT_HELLO_OK:
        return fail(hs, err, SK_EPEER,
                    "the secondary closed the connection without answering HELLO: it refused this node "
                    "(another cluster key, module or node name: see its log), or it speaks only replication "
                    "protocol version 1, which drops a version-2 HELLO without answering: upgrade it%s", "");
    case SK_HS_WAIT_HELLO:
        return fail(hs, err, SK_EPEER, "the primary closed the connection before its HELLO%s", "");
    case SK_HS_WAIT_DONE:
        return fail(hs, err, SK_EPEER,
                    "the primary closed the connection before confirming the session (it refused this "
                    "node's HELLO_OK: see its log)%s", "");
    case SK_HS_FAILED:
        return sk_fail_copy(err, &hs->why);
    default:
        return fail(hs, err, SK_EPEER, "the peer closed the connection%s", "");
    }
}

int sk_hello_session(const sk_hello *hs, sk_tx *tx, sk_rx *rx, sk_err *err)
{
    if (hs->state != SK_HS_DONE)
        return sk_fail(err, SK_ESTATE, "the handshake is not done");
    const sk_session_keys *k = &hs->keys;
    memset(tx, 0, sizeof *tx);
    memset(rx, 0, sizeof *rx);
    int rc;
    if (hs->role == SK_ROLE_PRIMARY) {
        rc = sk_tx_init(tx, k->suite, SK_P2S, k->p2s, hs->first_seq, err);
        if (rc == SK_OK)
            rc = sk_rx_init(rx, k->suite, SK_S2P, k->s2p, 1, hs->dirs, err);
    } else {
        rc = sk_tx_init(tx, k->suite, SK_S2P, k->s2p, 1, err);
        if (rc == SK_OK)
            rc = sk_rx_init(rx, k->suite, SK_P2S, k->p2s, hs->peer.first_seq, hs->dirs, err);
    }
    if (rc != SK_OK) {
        sk_tx_free(tx);
        sk_rx_free(rx);
    }
    return rc;
}
