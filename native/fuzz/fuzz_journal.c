/* libFuzzer target: the primary's journal.json reader (native/primary/journal.c). Whatever it
 * accepts must encode and read back to the same journal (entries, zones, truncations, trust),
 * and a refused file leaves an empty, untrusted journal. */
#include <stdlib.h>
#include <string.h>

#include "journal.h"

static void same(const skp_journal *a, const skp_journal *b)
{
    if (skp_journal_len(a) != skp_journal_len(b) || a->seq != b->seq || strcmp(a->epoch, b->epoch) != 0)
        abort();
    for (size_t i = 0; i < a->nbuckets; i++) {
        for (const skp_jentry *e = a->buckets[i]; e; e = e->hnext) {
            const skp_jentry *f = skp_journal_find(b, e->dir, e->path, e->path_len);
            if (!f || f->whole != e->whole || f->meta != e->meta || f->trunc != e->trunc || f->nz != e->nz ||
                (e->nz && memcmp(f->z, e->z, e->nz * sizeof *e->z) != 0))
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    skp_journal j, back;
    char why[256];
    if (skp_journal_decode((const char *)data, size, 1000.0, &j, why, sizeof why) != 0) {
        if (skp_journal_len(&j) != 0 || j.trusted)
            abort();
        skp_journal_free(&j);
        return 0;
    }
    size_t n;
    const skp_jentry **plan = skp_journal_plan(&j, 0, &n);
    free(plan);
    skj_buf b = {0};
    skp_journal_encode(&j, j.trusted, 1000.0, &b);
    if (b.bad)
        abort();
    if (skp_journal_decode(b.p, b.len, 1000.0, &back, why, sizeof why) != 0)
        abort();
    same(&j, &back);
    if (back.trusted != j.trusted)
        abort();
    skj_buf_free(&b);
    skp_journal_free(&back);
    skp_journal_free(&j);
    return 0;
}
