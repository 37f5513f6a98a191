/* The split-brain save's record (see splitbrain.h). */
#include "splitbrain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static skj_tok *parse(const char *raw, int *count)
{
    if (!raw)
        return NULL;
    size_t len = strlen(raw);
    int max = (int)(len / 2 + 8);
    skj_tok *k = malloc((size_t)max * sizeof *k);
    if (!k)
        return NULL;
    *count = skj_parse(raw, len, k, max);
    if (*count <= 0 || k[0].type != SKJ_OBJ) {
        free(k);
        return NULL;
    }
    return k;
}

bool sks_sb_str(const char *raw, const char *key, char *out, size_t cap)
{
    int n;
    skj_tok *k = parse(raw, &n);
    if (!k)
        return false;
    bool ok = skj_str(raw, k, skj_get(raw, k, 0, key), out, cap);
    free(k);
    return ok;
}

bool sks_sb_base(const char *state_dir, char *out, size_t cap)
{
    size_t n = strlen(state_dir);
    while (n > 1 && state_dir[n - 1] == '/')
        n--;
    size_t cut = n;
    while (cut > 0 && state_dir[cut - 1] != '/')
        cut--;
    int w;
    if (cut == 0) /* a relative name without a parent */
        w = snprintf(out, cap, "splitbrain");
    else {
        size_t p = cut - 1; /* the parent without its trailing slashes */
        while (p > 0 && state_dir[p - 1] == '/')
            p--;
        w = p == 0 ? snprintf(out, cap, "/splitbrain") : snprintf(out, cap, "%.*s/splitbrain", (int)p, state_dir);
    }
    return w > 0 && (size_t)w < cap;
}

bool sks_sb_name(time_t t, bool (*taken)(void *ctx, const char *name), void *ctx, char *out, size_t cap)
{
    struct tm tm;
    char base[32];
    if (!gmtime_r(&t, &tm) || strftime(base, sizeof base, "%Y%m%dT%H%M%SZ", &tm) == 0)
        return false;
    if ((size_t)snprintf(out, cap, "%s", base) >= cap)
        return false;
    for (int n = 2; taken && taken(ctx, out); n++)
        if ((size_t)snprintf(out, cap, "%s-%d", base, n) >= cap)
            return false;
    return true;
}

static void raw_value(skj_buf *b, const char *text, const skj_tok *k, int t)
{
    if (t < 0) {
        skj_rawz(b, "null");
        return;
    }
    size_t start = k[t].type == SKJ_STR ? k[t].start - 1 : k[t].start;
    size_t end = k[t].type == SKJ_STR ? k[t].end + 1 : k[t].end;
    skj_raw(b, text + start, end - start);
}

char *sks_sb_plan(const char *diverged_json, const char *dir, const char *default_peer)
{
    int n;
    skj_tok *k = parse(diverged_json, &n);
    if (!k)
        return NULL;
    const char *t = diverged_json;
    skj_buf b = {0};
    skj_rawz(&b, "{\"phase\": \"saving\", \"dir\": ");
    skj_stringz(&b, dir);
    skj_rawz(&b, ", \"peer\": ");
    int peer = skj_get(t, k, 0, "peer");
    char name[512];
    /* str(diverged.get("peer") or spec.peer) */
    if (peer >= 0 && k[peer].type == SKJ_STR && k[peer].end > k[peer].start && skj_str(t, k, peer, name, sizeof name))
        skj_stringz(&b, name);
    else
        skj_stringz(&b, default_peer);
    const char *keys[] = {"generation", "peer_generation", "split_at"};
    for (size_t i = 0; i < 3; i++) {
        skj_rawz(&b, ", ");
        skj_stringz(&b, keys[i]);
        skj_rawz(&b, ": ");
        raw_value(&b, t, k, skj_get(t, k, 0, keys[i]));
    }
    skj_rawz(&b, "}");
    free(k);
    if (b.bad) {
        skj_buf_free(&b);
        return NULL;
    }
    return b.p; /* NUL-terminated */
}

char *sks_sb_with_phase(const char *raw, const char *phase)
{
    int n;
    skj_tok *k = parse(raw, &n);
    if (!k)
        return NULL;
    skj_buf b = {0};
    skj_rawz(&b, "{\"phase\": ");
    skj_stringz(&b, phase);
    int t = 1;
    for (int i = 0; i < k[0].size; i++) {
        int v = t + 1;
        if (!(k[t].end - k[t].start == 5 && memcmp(raw + k[t].start, "phase", 5) == 0)) {
            skj_rawz(&b, ", ");
            raw_value(&b, raw, k, t);
            skj_rawz(&b, ": ");
            raw_value(&b, raw, k, v);
        }
        t = k[v].next;
    }
    skj_rawz(&b, "}");
    free(k);
    if (b.bad) {
        skj_buf_free(&b);
        return NULL;
    }
    return b.p;
}
