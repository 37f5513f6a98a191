/* Error codes and reasons shared by the native replication code.
 *
 * Every function of native/common returns an int: SK_OK (0), SK_AGAIN (1: not an error, more input
 * is needed) or a negative SK_E* code. When it fails it also writes a short, human-readable reason
 * into the caller's sk_err (which may be NULL when the caller does not want it). There is no
 * global error state: the sk_err belongs to the caller. */
#ifndef SK_ERR_H
#define SK_ERR_H

enum sk_code {
    SK_OK = 0,
    SK_AGAIN = 1,         /* not an error: feed more bytes */
    SK_EINVAL = -1,       /* bad argument from the caller (a bug on this side) */
    SK_EMALFORMED = -2,   /* truncated payload, trailing bytes, impossible field value */
    SK_EMAGIC = -3,       /* not a safekit replication stream */
    SK_EVERSION = -4,     /* another protocol version: never downgraded */
    SK_ETOOBIG = -5,      /* a length above a limit */
    SK_EAUTH = -6,        /* failed authentication: wrong key, forged or corrupted */
    SK_ESEQ = -7,         /* replayed, lost or reordered frame */
    SK_EPATH = -8,        /* refused path (absolute, NUL, empty/./.. component) */
    SK_ETYPE = -9,        /* unknown frame type, or not expected here */
    SK_ESPACE = -10,      /* the caller's output buffer is too small */
    SK_ECRYPTO = -11,     /* OpenSSL failed (not the peer's fault) */
    SK_EPEER = -12,       /* the peer is not who the configuration names, or refused us */
    SK_ESTATE = -13,      /* call in the wrong state, or on a connection that already failed */
    SK_EEXHAUSTED = -14,  /* sequence numbers used up: a new session is needed */
};

#define SK_REASON_MAX 192

typedef struct sk_err {
    int code;
    char reason[SK_REASON_MAX];
} sk_err;

/* Record `code` and a formatted reason in `err` (if not NULL); returns `code`. */
int sk_fail(sk_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Copy another error (same code and reason); returns its code. */
int sk_fail_copy(sk_err *err, const sk_err *from);

/* "SK_EAUTH" ... for logs and tests. */
const char *sk_code_name(int code);

#endif
