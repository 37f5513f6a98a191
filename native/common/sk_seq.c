#include "sk_seq.h"

void sk_seq_init(sk_seq *s, uint64_t first)
{
    s->expected = first;
    s->failed = false;
}

int sk_seq_check(sk_seq *s, uint64_t seq, const char *what, sk_err *err)
{
    if (s->failed)
        return sk_fail(err, SK_ESTATE, "the stream already failed a sequence check");
    if (!what)
        what = "frame";
    if (seq != s->expected) {
        s->failed = true;
        if (seq < s->expected)
            return sk_fail(err, SK_ESEQ, "%s with sequence %llu replayed (expected %llu)", what,
                           (unsigned long long)seq, (unsigned long long)s->expected);
        return sk_fail(err, SK_ESEQ, "%s with sequence %llu: lost or reordered frames (expected %llu)",
                       what, (unsigned long long)seq, (unsigned long long)s->expected);
    }
    if (s->expected == UINT64_MAX) {
        s->failed = true;
        return sk_fail(err, SK_EEXHAUSTED, "sequence numbers exhausted");
    }
    s->expected++;
    return SK_OK;
}
