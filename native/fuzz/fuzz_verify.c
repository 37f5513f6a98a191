/* libFuzzer target: the primary's verify (native/primary/verify.c), which merges this node's
 * manifest with the secondary's as its MANIFEST chunks arrive. Input: u16 (big-endian) the length
 * of this node's chunk, u16 where the secondary's part is cut into two chunks (0 or past its end:
 * one chunk), then both parts.
 * Whatever the chunks hold: no crash, no leak, a difference per path at most; and a manifest
 * compared with itself, when accepted, has no difference. */
#include <stdlib.h>
#include <string.h>

#include "verify.h"

typedef struct src {
    const uint8_t *p[2];
    size_t len[2];
    int n, at;
} src;

static int next(void *ctx, const uint8_t **payload, size_t *len, const char **why)
{
    (void)why;
    src *s = ctx;
    if (s->at >= s->n)
        return 0;
    *payload = s->p[s->at];
    *len = s->len[s->at];
    s->at++;
    return 1;
}

static skp_vreport report;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    size_t llen = (size_t)data[0] << 8 | data[1], cut = (size_t)data[2] << 8 | data[3];
    data += 4;
    size -= 4;
    if (llen > size)
        llen = size;
    size_t rlen = size - llen;
    src local = {{data, NULL}, {llen, 0}, 1, 0};
    src remote = {{data + llen, NULL}, {rlen, 0}, 1, 0};
    if (cut > 0 && cut < rlen)
        remote = (src){{data + llen, data + llen + cut}, {cut, rlen - cut}, 2, 0};
    skp_vsource l = {next, &local}, r = {next, &remote};
    const char *why = NULL;
    int rc = skp_verify_dir("/d", &l, &r, &report, &why);
    if (!why || (rc == 0 && (why[0] || report.ndiff > report.checked)) || (rc != 0 && !why[0]))
        abort();
    skp_vreport_clear(&report);
    /* this node's chunk against itself */
    src a = {{data, NULL}, {llen, 0}, 1, 0}, b = {{data, NULL}, {llen, 0}, 1, 0};
    skp_vsource sa = {next, &a}, sb = {next, &b};
    rc = skp_verify_dir("/d", &sa, &sb, &report, &why);
    if (rc == 0 && report.ndiff != 0)
        abort();
    skp_vreport_clear(&report);
    return 0;
}
