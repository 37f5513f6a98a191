/* The secondary's manifest of its copy (answer to MANIFEST_REQ): every object under a replicated
 * directory (excluded ones skipped), parents before children, names in byte order, with the 64 KiB
 * block checksums (SHA-256 truncated to 16 bytes) of files when asked - safekit.rfs.tree's
 * manifest() and entries_with_sums(), in v2's binary MANIFEST chunks. */
#ifndef SKS_MANIFEST_H
#define SKS_MANIFEST_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "sk_ops.h"

#define SKS_ZONE (64u << 10)
#define SKS_MANIFEST_CHUNK (2u << 20)    /* a chunk is sent when it reaches this size */
#define SKS_SUMS_PER_ENTRY 65536u        /* a larger file's checksums continue in the next entry */

/* <notreplicated>: paths (and everything under them) and regular expressions on whole relative
 * paths (POSIX extended syntax, matched in full; what is under a matched directory is excluded). */
typedef struct sks_excl {
    int npaths, nregex;
    const char *const *paths;
    regex_t *regex;
} sks_excl;

bool sks_excl_build(sks_excl *x, const sks_dir_spec *d, char *why, size_t why_cap);
void sks_excl_free(sks_excl *x);
bool sks_excluded(const sks_excl *x, const char *rel);

/* Receives each MANIFEST chunk payload (`last`: the final one); non-zero stops the walk. */
typedef int (*sks_chunk_fn)(void *ctx, const uint8_t *payload, size_t len, bool last);

/* A chunk goes at least every `seconds` (default 1) while the walk works, even with no entry in it:
 * the primary's sendtimeout does not expire during a long checksum pass. For tests. */
void sks_manifest_set_keepalive(double seconds);

/* Walk the directory (sums: SK_SUMS_NONE / SK_SUMS_ALL) or only `req`'s paths (SK_SUMS_PATHS: files
 * only, missing ones left out) and hand the chunks to `fn`. `sums_per_entry`: 0 for
 * SKS_SUMS_PER_ENTRY (smaller in tests). Returns 0, the callback's non-zero value, or -errno. */
int sks_manifest(int dir_fd, bool walk_only, const sks_excl *x, sk_manifest_req *req, uint32_t sums_per_entry,
                 sks_chunk_fn fn, void *ctx, uint64_t *entries);

#endif
