/* <notreplicated> of every replicated directory (the secondary's matcher, sks_excluded: the same
 * rules as safekit.rfs.tree.Exclusions), behind a header that does not include sk_ops.h (main.c
 * and the front include sink.h, which names another struct sk_op). */
#ifndef SKP_EXCL_H
#define SKP_EXCL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct sks_excl;

/* One matcher per directory of the spec; NULL with why set (a bad regular expression). */
struct sks_excl *skp_excl_new(const sks_spec *spec, char *why, size_t cap);
void skp_excl_free(struct sks_excl *x, int ndirs);
/* Is path (relative to directory dir, NUL-terminated) excluded? */
bool skp_excl_match(const struct sks_excl *x, int ndirs, uint32_t dir, const char *path);

#endif
