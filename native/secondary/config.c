/* The spec file and the cluster key file (see config.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

#define SPEC_MAX_BYTES (256u << 10)
#define KEY_FILE_MAX 4096
#define KEY_PREFIX "safekit-cluster-key-v1:"

static bool fail(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return false;
}

/* The whole of a small file, NUL-terminated (caller frees); NULL with errno set. */
static char *read_small(int fd, size_t max, size_t *len)
{
    char *buf = malloc(max + 1);
    if (!buf)
        return NULL;
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, max + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > max) {
            free(buf);
            errno = EFBIG;
            return NULL;
        }
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static bool get_str(const char *t, const skj_tok *k, int obj, const char *key, char *out, size_t cap,
                    bool required, char *why, size_t wcap)
{
    int v = skj_get(t, k, obj, key);
    if (v < 0) {
        if (!required)
            return true;
        return fail(why, wcap, "the spec has no %s", key);
    }
    if (!skj_str(t, k, v, out, cap))
        return fail(why, wcap, "the spec's %s is not a string (or is too long)", key);
    return true;
}

static bool get_bool(const char *t, const skj_tok *k, int obj, const char *key, bool *out)
{
    int v = skj_get(t, k, obj, key);
    *out = false;
    if (v < 0)
        return true;
    if (k[v].type == SKJ_NULL)
        return true;
    if (skj_bool(k, v, out))
        return true;
    /* extra["diverged"] is a dict when set: any non-empty value counts */
    *out = k[v].type == SKJ_OBJ ? k[v].size > 0 : k[v].type != SKJ_FALSE;
    return true;
}

static bool load_strings(const char *t, const skj_tok *k, int arr, char **out, int *count, bool strip,
                         char *why, size_t wcap)
{
    *count = 0;
    if (arr < 0)
        return true;
    if (k[arr].type != SKJ_ARR)
        return fail(why, wcap, "a notreplicated list is not a list");
    if (k[arr].size > SKS_MAX_EXCL)
        return fail(why, wcap, "more than %d notreplicated entries", SKS_MAX_EXCL);
    for (int i = 0; i < k[arr].size; i++) {
        char tmp[SKS_PATH];
        if (!skj_str(t, k, skj_elem(k, arr, i), tmp, sizeof tmp))
            return fail(why, wcap, "a notreplicated entry is not a string");
        char *s = tmp;
        if (strip) {
            while (*s == '/')
                s++;
            size_t n = strlen(s);
            while (n > 0 && s[n - 1] == '/')
                s[--n] = '\0';
            if (!*s)
                continue;
        }
        out[*count] = strdup(s);
        if (!out[*count])
            return fail(why, wcap, "out of memory");
        (*count)++;
    }
    return true;
}

bool sks_spec_load(const char *path, sks_spec *s, char *why, size_t wcap)
{
    memset(s, 0, sizeof *s);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(why, wcap, "%s: %s", path, strerror(errno));
    size_t len = 0;
    char *text = read_small(fd, SPEC_MAX_BYTES, &len);
    int saved = errno;
    close(fd);
    if (!text)
        return fail(why, wcap, "%s: %s", path, strerror(saved));
    int max = (int)(len / 2 + 64);
    skj_tok *k = malloc(sizeof *k * (size_t)max);
    bool ok = false;
    if (!k) {
        fail(why, wcap, "out of memory");
        goto out;
    }
    if (skj_parse(text, len, k, max) < 0 || k[0].type != SKJ_OBJ) {
        fail(why, wcap, "%s: not a JSON object", path);
        goto out;
    }
    char mode[16] = "second";
    int64_t port;
    if (!get_str(text, k, 0, "module", s->module, sizeof s->module, true, why, wcap) ||
        !get_str(text, k, 0, "node", s->node, sizeof s->node, true, why, wcap) ||
        !get_str(text, k, 0, "peer", s->peer, sizeof s->peer, true, why, wcap) ||
        !get_str(text, k, 0, "local_addr", s->local_addr, sizeof s->local_addr, true, why, wcap) ||
        !get_str(text, k, 0, "peer_addr", s->peer_addr, sizeof s->peer_addr, true, why, wcap) ||
        !get_str(text, k, 0, "key_file", s->key_file, sizeof s->key_file, true, why, wcap) ||
        !get_str(text, k, 0, "state_dir", s->state_dir, sizeof s->state_dir, true, why, wcap) ||
        !get_str(text, k, 0, "async_mode", mode, sizeof mode, false, why, wcap))
        goto out;
    if (!skj_int(text, k, skj_get(text, k, 0, "port"), &port) || port < 0 || port > 65535) {
        fail(why, wcap, "the spec's port is not a port number");
        goto out;
    }
    s->port = (int)port;
    if (strcmp(mode, "none") == 0) {
        s->async_none = true;
    } else if (strcmp(mode, "second") != 0) {
        fail(why, wcap, "the spec's async_mode is %s, not second or none", mode);
        goto out;
    }
    int dirs = skj_get(text, k, 0, "dirs");
    if (dirs < 0 || k[dirs].type != SKJ_ARR || k[dirs].size < 1 || k[dirs].size > SKS_MAX_DIRS) {
        fail(why, wcap, "the spec's dirs is not a list of 1 to %d directories", SKS_MAX_DIRS);
        goto out;
    }
    s->dirs = calloc((size_t)k[dirs].size, sizeof *s->dirs);
    if (!s->dirs) {
        fail(why, wcap, "out of memory");
        goto out;
    }
    s->ndirs = k[dirs].size;
    for (int i = 0; i < s->ndirs; i++) {
        int d = skj_elem(k, dirs, i);
        sks_dir_spec *ds = &s->dirs[i];
        if (!get_str(text, k, d, "path", ds->path, sizeof ds->path, true, why, wcap) ||
            !load_strings(text, k, skj_get(text, k, d, "notreplicated"), ds->excl, &ds->nexcl, true, why, wcap) ||
            !load_strings(text, k, skj_get(text, k, d, "notreplicated_regex"), ds->regex, &ds->nregex, false,
                          why, wcap))
            goto out;
    }
    int extra = skj_get(text, k, 0, "extra");
    if (extra >= 0 && k[extra].type == SKJ_OBJ) {
        get_bool(text, k, extra, "fullsync", &s->fullsync);
        get_bool(text, k, extra, "debug", &s->debug);
        get_bool(text, k, extra, "diverged", &s->diverged);
        int d = skj_get(text, k, extra, "diverged");
        if (d >= 0 && k[d].type == SKJ_OBJ) {
            s->diverged_json = strndup(text + k[d].start, k[d].end - k[d].start);
            if (!s->diverged_json) {
                fail(why, wcap, "out of memory");
                goto out;
            }
        }
        int py = skj_get(text, k, extra, "python");
        if (py >= 0 && k[py].type != SKJ_NULL && !skj_str(text, k, py, s->python, sizeof s->python)) {
            fail(why, wcap, "the spec's extra.python is not a string (or is too long)");
            goto out;
        }
    }
    if (!s->python[0])
        snprintf(s->python, sizeof s->python, "python3");
    ok = true;
out:
    free(k);
    free(text);
    if (!ok)
        sks_spec_free(s);
    return ok;
}

void sks_spec_free(sks_spec *s)
{
    for (int i = 0; s->dirs && i < s->ndirs; i++) {
        for (int j = 0; j < s->dirs[i].nexcl; j++)
            free(s->dirs[i].excl[j]);
        for (int j = 0; j < s->dirs[i].nregex; j++)
            free(s->dirs[i].regex[j]);
    }
    free(s->dirs);
    s->dirs = NULL;
    s->ndirs = 0;
    free(s->diverged_json);
    s->diverged_json = NULL;
}

/* ------------------------------------------------------------------ key file */

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int sks_base64_decode(const char *s, size_t n, uint8_t *out, size_t cap)
{
    if (n % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            char c = s[i + (size_t)j];
            if (c == '=' && i + 4 == n && j >= 2) {
                v[j] = 0;
                pad++;
                continue;
            }
            if (pad)
                return -1; /* a character after padding */
            v[j] = b64_value(c);
            if (v[j] < 0)
                return -1;
        }
        uint32_t w = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) | ((uint32_t)v[2] << 6) | (uint32_t)v[3];
        size_t bytes = 3 - (size_t)pad;
        if (o + bytes > cap)
            return -1;
        for (size_t j = 0; j < bytes; j++)
            out[o++] = (uint8_t)(w >> (16 - 8 * j));
    }
    return (int)o;
}

bool sks_key_load(const char *path, uint8_t key[SKS_KEY_SIZE], char *why, size_t wcap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return fail(why, wcap,
                        "%s: cluster key file not found; create it with 'safekit cluster genkey' and copy the "
                        "same file to every node",
                        path);
        return fail(why, wcap, "%s: cannot open cluster key file: %s", path, strerror(errno));
    }
    struct stat st;
    char *text = NULL;
    size_t len = 0;
    bool ok = false;
    if (fstat(fd, &st) != 0) {
        fail(why, wcap, "%s: %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        fail(why, wcap, "%s: the cluster key must be a regular file", path);
    } else if (st.st_mode & 077) {
        fail(why, wcap,
             "%s: cluster key file is accessible by group or others (mode %04o); fix it with: chmod 600 %s", path,
             (unsigned)(st.st_mode & 07777), path);
    } else if (st.st_uid != geteuid() && st.st_uid != 0) {
        fail(why, wcap, "%s: cluster key file is owned by uid %u, not by this user or root; fix it with: chown %u %s",
             path, (unsigned)st.st_uid, (unsigned)geteuid(), path);
    } else if (st.st_size > KEY_FILE_MAX) {
        fail(why, wcap, "%s: %lld bytes is too big for a cluster key file", path, (long long)st.st_size);
    } else if (!(text = read_small(fd, KEY_FILE_MAX, &len))) {
        fail(why, wcap, "%s: %s", path, strerror(errno));
    } else {
        ok = true;
    }
    close(fd);
    if (!ok)
        return false;
    ok = false;
    int lines = 0;
    const char *line = NULL;
    size_t line_len = 0;
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)text[i] >= 0x80 || text[i] == '\0') {
            fail(why, wcap, "%s: the cluster key file is not ASCII text", path);
            goto out;
        }
    }
    for (char *p = text; p < text + len;) {
        char *end = memchr(p, '\n', (size_t)(text + len - p));
        if (!end)
            end = text + len;
        char *a = p, *b = end;
        while (a < b && strchr(" \t\r\v\f", *a))
            a++;
        while (b > a && strchr(" \t\r\v\f", b[-1]))
            b--;
        if (b > a && *a != '#') {
            lines++;
            line = a;
            line_len = (size_t)(b - a);
        }
        p = end + 1;
    }
    if (lines != 1) {
        fail(why, wcap,
             "%s: expected exactly one key line '" KEY_PREFIX "<base64>', found %d; generate a new key with "
             "'safekit cluster genkey'",
             path, lines);
        goto out;
    }
    size_t plen = strlen(KEY_PREFIX);
    if (line_len < plen || memcmp(line, KEY_PREFIX, plen) != 0) {
        if (line_len > 21 && memcmp(line, "safekit-cluster-key-v", 21) == 0)
            fail(why, wcap, "%s: key format '%.*s' is not supported by this version of safekit (it reads "
                 "'safekit-cluster-key-v1'); upgrade safekit on this node",
                 path, (int)(memchr(line, ':', line_len) ? (const char *)memchr(line, ':', line_len) - line : 21),
                 line);
        else
            fail(why, wcap, "%s: the key line must start with '" KEY_PREFIX "'", path);
        goto out;
    }
    uint8_t raw[96];
    int n = sks_base64_decode(line + plen, line_len - plen, raw, sizeof raw);
    if (n < 0) {
        fail(why, wcap, "%s: the key is not valid base64", path);
    } else if (n != SKS_KEY_SIZE) {
        fail(why, wcap, "%s: the key must decode to %d bytes, it decodes to %d", path, SKS_KEY_SIZE, n);
    } else {
        memcpy(key, raw, SKS_KEY_SIZE);
        ok = true;
    }
    memset(raw, 0, sizeof raw);
out:
    memset(text, 0, len);
    free(text);
    return ok;
}
