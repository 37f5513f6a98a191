/* The v2 HELLO handshake as a pure state machine: bytes in, bytes out, a state; no I/O, no clock,
 * no randomness (the caller passes this side's fresh nonce from a CSPRNG: sk_hello_nonce).
 *
 *   primary                                   secondary
 *   HELLO      (HMAC, hello key)       ->     checks module, names, dirs, versions, suites
 *              <-  HELLO_OK (HMAC, hello key; carries SHA-256 of the HELLO)
 *   derives k_p2s, k_s2p                      derives k_p2s, k_s2p
 *   HELLO_DONE (AEAD k_p2s, seq 0, th) ->     checks: the primary holds the key, saw this transcript
 *   operations from first_seq          ->     ... acknowledgements from 1
 *
 * Both sides prove they hold the cluster key over the other's fresh nonce: the primary's HELLO is
 * answered by a HELLO_OK that covers it (hash), the secondary's HELLO_OK by a HELLO_DONE sealed under
 * keys derived from both nonces. A version-1 peer is refused with a reason (never a downgrade). */
#ifndef SK_HELLO_H
#define SK_HELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sk_aead.h"
#include "sk_err.h"
#include "sk_frame.h"
#include "sk_kdf.h"

#define SK_CLUSTER_KEY_MIN 16
#define SK_CLUSTER_KEY_MAX 128
/* Handshake frames are small: a larger one is refused before it is read (nothing allocated
 * for an unauthenticated peer). */
#define SK_HELLO_MAX_PAYLOAD 2048
/* Output buffer large enough for any handshake frame this side sends. */
#define SK_HELLO_OUT_MAX (SK_FRAME_OVERHEAD + SK_HELLO_MAX_PAYLOAD)

enum sk_role { SK_ROLE_PRIMARY = 1, SK_ROLE_SECONDARY = 2 };

enum sk_hello_state {
    SK_HS_START = 0,     /* primary: call sk_hello_start */
    SK_HS_WAIT_HELLO,    /* secondary */
    SK_HS_WAIT_HELLO_OK, /* primary */
    SK_HS_WAIT_DONE,     /* secondary */
    SK_HS_DONE,          /* keys ready: sk_hello_session */
    SK_HS_FAILED,        /* the connection must end; sk_hello_reason says why */
};

typedef struct sk_hello_config {
    int role;
    const uint8_t *cluster_key; /* raw key bytes (SK_CLUSTER_KEY_MIN..MAX) */
    size_t cluster_key_len;
    const char *module; /* 1..255 bytes, no NUL (C strings) */
    const char *node;   /* this node's name */
    const char *peer;   /* the peer's name, as the configuration says */
    uint32_t dirs;      /* replicated directories (both sides must agree) */
    uint32_t suites;    /* suites this side accepts (bit 1 << suite); 0: every suite it implements */
    const char *epoch;  /* this side's history id (may be "") */
    /* primary */
    uint64_t first_seq; /* sequence number of the primary's next operation, >= 1 */
    bool async_none;    /* async="none" */
    /* secondary */
    bool trusted, in_sync, fullsync;
} sk_hello_config;

/* What the peer's handshake frame said (valid from SK_HS_WAIT_DONE on the secondary, from
 * SK_HS_DONE on the primary). */
typedef struct sk_hello_peer {
    char node[SK_NAME_MAX + 1];
    char epoch[SK_NAME_MAX + 1];
    uint64_t first_seq; /* from HELLO */
    uint32_t dirs;
    bool async_none;
    bool trusted, in_sync, fullsync; /* from HELLO_OK */
} sk_hello_peer;

typedef struct sk_session_keys {
    uint8_t version, suite;
    uint8_t p2s[SK_KEY_SIZE], s2p[SK_KEY_SIZE];
    uint64_t p2s_first; /* the primary's first operation (first_seq) */
    uint64_t s2p_first; /* 1 */
    uint32_t dirs;
} sk_session_keys;

typedef struct sk_hello {
    int role;
    int state;
    uint8_t cluster_key[SK_CLUSTER_KEY_MAX];
    size_t cluster_key_len;
    char module[SK_NAME_MAX + 1], node[SK_NAME_MAX + 1], peer_name[SK_NAME_MAX + 1], epoch[SK_NAME_MAX + 1];
    uint32_t dirs, suites;
    uint64_t first_seq;
    bool async_none, trusted, in_sync, fullsync;
    uint8_t hello_key[SK_KEY_SIZE];
    uint8_t nonce_own[SK_HELLO_NONCE_SIZE], nonce_peer[SK_HELLO_NONCE_SIZE];
    uint8_t hello_hash[SK_HASH_SIZE]; /* SHA-256 of the HELLO frame */
    uint8_t th[SK_HASH_SIZE];         /* SHA-256 of HELLO || HELLO_OK */
    sk_hello_peer peer;
    sk_session_keys keys;
    sk_err why;
} sk_hello;

/* Fill `nonce` from the operating system's CSPRNG (the only impure helper here). */
int sk_hello_nonce(uint8_t nonce[SK_HELLO_NONCE_SIZE], sk_err *err);

int sk_hello_init(sk_hello *hs, const sk_hello_config *cfg, const uint8_t nonce[SK_HELLO_NONCE_SIZE],
                  sk_err *err);

/* Primary: the HELLO frame to send first. */
int sk_hello_start(sk_hello *hs, uint8_t *out, size_t cap, size_t *out_len, sk_err *err);

/* Feed received bytes. SK_AGAIN: no whole frame yet (nothing consumed). SK_OK: one frame consumed
 * (*consumed bytes; bytes after it belong to the session), and *out_len bytes (maybe 0) of `out` are
 * to be sent; see sk_hello_state. Anything else: the handshake failed for good; close. */
int sk_hello_receive(sk_hello *hs, const uint8_t *in, size_t len, size_t *consumed, uint8_t *out, size_t cap,
                     size_t *out_len, sk_err *err);

/* The peer closed the connection during the handshake: what that most likely means. */
int sk_hello_eof(sk_hello *hs, sk_err *err);

static inline int sk_hello_state(const sk_hello *hs) { return hs->state; }
static inline const char *sk_hello_reason(const sk_hello *hs) { return hs->why.reason; }

/* After SK_HS_DONE: set up this side's sender and receiver for the session. */
int sk_hello_session(const sk_hello *hs, sk_tx *tx, sk_rx *rx, sk_err *err);

/* Forget every secret (keys, cluster key copy). */
void sk_hello_wipe(sk_hello *hs);

#endif
