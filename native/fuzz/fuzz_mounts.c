/* libFuzzer target: what the secondary reads about its mounts and its split-brain record
 * (native/secondary/mounts.c, splitbrain.c). The first byte picks the reader:
 *   0: a /proc/self/mountinfo line; an accepted line's key written as JSON reads back the same;
 *   1: secondary.json "mounts" (raw JSON): the keys read, written and read again are the same
 *      bytes (every record that is [int, str, str] kept);
 *   2: secondary.json "splitbrain" (raw JSON): the record with its phase replaced is an object whose
 *      phase is the new one, and a plan from it (as extra["diverged"]) is an object in "saving". */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "mounts.h"
#include "splitbrain.h"

static void same_keys(const sks_mkey *a, int n, const sks_mkey *b, int m)
{
    if (n != m)
        abort();
    for (int i = 0; i < n; i++)
        if (a[i].id != b[i].id || strcmp(a[i].dev, b[i].dev) != 0 || strcmp(a[i].root, b[i].root) != 0)
            abort();
}

/* Written and read back: the same keys, byte for byte (any bytes: those outside a UTF-8 character are
 * written as \udcXX and read back as themselves). */
static void round_trip(const sks_mkey *keys, int n)
{
    skj_buf b = {0}, c = {0};
    sks_mkeys_json(&b, keys, n);
    if (b.bad)
        abort();
    sks_mkey *once, *twice;
    int m = sks_mkeys_parse(b.p, &once);
    same_keys(keys, n, once, m);
    sks_mkeys_json(&c, once, m);
    if (c.bad)
        abort();
    int k = sks_mkeys_parse(c.p, &twice);
    same_keys(once, m, twice, k);
    free(once);
    free(twice);
    skj_buf_free(&b);
    skj_buf_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0'; /* the readers take NUL-terminated text (a NUL inside ends it) */
    switch (data[0] % 3) {
    case 0: {
        sks_mount *m = malloc(sizeof *m);
        if (m && sks_mountinfo_line(text, strlen(text), m))
            round_trip(&m->key, 1);
        free(m);
        break;
    }
    case 1: {
        sks_mkey *keys;
        int n = sks_mkeys_parse(text, &keys);
        if (n > 0)
            round_trip(keys, n);
        free(keys);
        break;
    }
    default: {
        char phase[16];
        char *r = sks_sb_with_phase(text, "saved");
        if (r && (!sks_sb_str(r, "phase", phase, sizeof phase) || strcmp(phase, "saved") != 0))
            abort();
        free(r);
        r = sks_sb_plan(text, "/var/splitbrain/x", "node1");
        if (r && (!sks_sb_str(r, "phase", phase, sizeof phase) || strcmp(phase, "saving") != 0))
            abort();
        free(r);
        break;
    }
    }
    free(text);
    return 0;
}
