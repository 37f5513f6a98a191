/* `safekit rfs verify`'s comparison of one replicated directory: this node's manifest against the
 * secondary's, both with block checksums, merged in one pass as they come. Both manifests list
 * their entries in the walk's order (sk_walk_cmp), so neither is indexed nor sorted, and the
 * secondary's is consumed chunk by chunk as the link receives it: the primary holds its own
 * manifest (taken with writes paused) and one chunk of the secondary's (ADR 0082).
 *
 * The report is what it was when both manifests were held whole and sorted: each path of either
 * side counted once in `checked`; the differences in byte order of their paths (as Python sorts
 * bytes), the first SKP_VERIFY_MAX_DIFFERENCES of them, kept with a bounded heap.
 *
 * Pure: no I/O, no clock, no threads; the manifests come from sources. */
#ifndef SKP_VERIFY_H
#define SKP_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#define SKP_VERIFY_MAX_DIFFERENCES 1000

/* A manifest as a sequence of MANIFEST chunk payloads. next() gives the next chunk, valid until
 * the following call: 1, 0 when there is no more, -1 on failure (its reason in *why). */
typedef struct skp_vsource {
    int (*next)(void *ctx, const uint8_t **payload, size_t *len, const char **why);
    void *ctx;
} skp_vsource;

typedef struct skp_vreport {
    uint64_t checked;                        /* paths compared, over the directories so far */
    char *diff[SKP_VERIFY_MAX_DIFFERENCES];  /* the differences, each directory's in byte order */
    size_t ndiff;
} skp_vreport;

/* Compare the manifests of the directory at `dir` (its path, for the report): adds its paths to
 * r->checked and its first differences, while r has room. 0, or -1 with the reason in *why (a
 * source's failure, a malformed chunk, entries out of the walk's order, out of memory). */
int skp_verify_dir(const char *dir, const skp_vsource *local, const skp_vsource *remote, skp_vreport *r,
                   const char **why);

/* The report's strings freed (the report emptied). */
void skp_vreport_clear(skp_vreport *r);

#endif
