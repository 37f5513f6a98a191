/* Receive-side sequence check: frames of one direction carry consecutive sequence numbers from the
 * session's first; anything else (a replay, a loss, a reordering) ends the connection. Once a check
 * failed the checker stays failed. */
#ifndef SK_SEQ_H
#define SK_SEQ_H

#include <stdbool.h>
#include <stdint.h>

#include "sk_err.h"

typedef struct sk_seq {
    uint64_t expected;
    bool failed;
} sk_seq;

void sk_seq_init(sk_seq *s, uint64_t first);

/* SK_OK if `seq` is the one expected (then the next is expected), else SK_ESEQ (or SK_ESTATE after
 * an earlier failure). `what` names the frame in the reason (may be NULL). */
int sk_seq_check(sk_seq *s, uint64_t seq, const char *what, sk_err *err);

#endif
