/* <notreplicated> of every replicated directory (see excl.h). */
#include "excl.h"

#include <stdlib.h>

#include "manifest.h"

struct sks_excl *skp_excl_new(const sks_spec *spec, char *why, size_t cap)
{
    sks_excl *x = calloc((size_t)(spec->ndirs > 0 ? spec->ndirs : 1), sizeof *x);
    if (!x)
        return NULL;
    for (int i = 0; i < spec->ndirs; i++) {
        if (!sks_excl_build(&x[i], &spec->dirs[i], why, cap)) {
            skp_excl_free(x, i);
            return NULL;
        }
    }
    return x;
}

void skp_excl_free(struct sks_excl *x, int ndirs)
{
    if (!x)
        return;
    for (int i = 0; i < ndirs; i++)
        sks_excl_free(&x[i]);
    free(x);
}

bool skp_excl_match(const struct sks_excl *x, int ndirs, uint32_t dir, const char *path)
{
    return x && (int)dir < ndirs && sks_excluded(&x[dir], path);
}
