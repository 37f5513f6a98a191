/* The secondary's persisted state (see state.h). */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

#define STATE_MAX_BYTES (1u << 20)

void sks_state_free(sks_state *st)
{
    free(st->dirs);
    free(st->mounts);
    free(st->splitbrain);
    st->dirs = NULL;
    st->mounts = st->splitbrain = NULL;
}

static char *raw_copy(const char *text, const skj_tok *k, int t)
{
    if (t < 0 || k[t].type == SKJ_NULL)
        return NULL;
    size_t start = k[t].type == SKJ_STR ? k[t].start - 1 : k[t].start;
    size_t end = k[t].type == SKJ_STR ? k[t].end + 1 : k[t].end;
    return strndup(text + start, end - start);
}

bool sks_state_load(const char *path, sks_state *st, bool *corrupt, char *why, size_t why_cap)
{
    memset(st, 0, sizeof *st);
    st->ndirs = -1;
    *corrupt = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return true;
        snprintf(why, why_cap, "%s: %s", path, strerror(errno));
        return false;
    }
    char *text = malloc(STATE_MAX_BYTES + 1);
    size_t len = 0;
    ssize_t r = 0;
    while (text && len <= STATE_MAX_BYTES && (r = read(fd, text + len, STATE_MAX_BYTES + 1 - len)) > 0)
        len += (size_t)r;
    int saved = errno;
    close(fd);
    if (!text || r < 0) {
        free(text);
        snprintf(why, why_cap, "%s: %s", path, strerror(text ? saved : ENOMEM));
        return false;
    }
    int max = (int)(len / 2 + 64);
    skj_tok *k = malloc(sizeof *k * (size_t)max);
    if (!k || len > STATE_MAX_BYTES || skj_parse(text, len, k, max) < 0 || k[0].type != SKJ_OBJ) {
        *corrupt = true;
        goto out;
    }
    bool b;
    int64_t v;
    int t = skj_get(text, k, 0, "epoch");
    if (t >= 0 && !skj_str(text, k, t, st->epoch, sizeof st->epoch))
        *corrupt = true;
    if (skj_bool(k, skj_get(text, k, 0, "in_sync"), &b))
        st->in_sync = b;
    if (skj_bool(k, skj_get(text, k, 0, "clean"), &b))
        st->clean = b;
    t = skj_get(text, k, 0, "boot_id");
    if (t >= 0 && !skj_str(text, k, t, st->boot_id, sizeof st->boot_id))
        st->boot_id[0] = '\0';
    if (skj_int(text, k, skj_get(text, k, 0, "generation"), &v))
        st->generation = v;
    if (skj_int(text, k, skj_get(text, k, 0, "applied_seq"), &v) && v >= 0)
        st->applied_seq = (uint64_t)v;
    t = skj_get(text, k, 0, "dirs");
    if (t >= 0 && k[t].type == SKJ_ARR) {
        st->dirs = calloc((size_t)k[t].size + 1, sizeof *st->dirs);
        st->ndirs = st->dirs ? k[t].size : -1;
        for (int i = 0; st->dirs && i < k[t].size; i++) {
            int pair = skj_elem(k, t, i);
            int64_t dev = -1, ino = -1;
            if (!skj_int(text, k, skj_elem(k, pair, 0), &dev) || !skj_int(text, k, skj_elem(k, pair, 1), &ino) ||
                dev < 0 || ino < 0)
                st->ndirs = -2; /* unreadable: differs from any identity */
            else {
                st->dirs[i][0] = (uint64_t)dev;
                st->dirs[i][1] = (uint64_t)ino;
            }
        }
    }
    st->mounts = raw_copy(text, k, skj_get(text, k, 0, "mounts"));
    st->splitbrain = raw_copy(text, k, skj_get(text, k, 0, "splitbrain"));
out:
    if (*corrupt) {
        sks_state_free(st);
        memset(st, 0, sizeof *st);
        st->ndirs = -1;
    }
    free(k);
    free(text);
    return true;
}

int sks_write_atomic(const char *path, const char *data, size_t len, unsigned mode)
{
    char tmp[4200], dir[4200];
    const char *slash = strrchr(path, '/');
    if (strlen(path) >= 4096)
        return -ENAMETOOLONG;
    /* lengths checked above: neither result is cut */
    if (slash) {
        int dl = (int)(slash - path);
        snprintf(dir, sizeof dir, "%.*s", dl, path);
        snprintf(tmp, sizeof tmp, "%.*s/.%.255s.tmp", dl, path, slash + 1);
    } else {
        snprintf(dir, sizeof dir, ".");
        snprintf(tmp, sizeof tmp, ".%.255s.tmp", path);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (fchmod(fd, mode) != 0)
        rc = -errno;
    for (size_t off = 0; rc == 0 && off < len;) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = -errno;
        else
            off += (size_t)n;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0) {
        unlink(tmp);
        return rc;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    if (fsync(dfd) != 0)
        rc = -errno;
    close(dfd);
    return rc;
}

bool sks_state_save(const char *path, const sks_state *st, char *why, size_t why_cap)
{
    skj_buf b = {0};
    skj_rawz(&b, "{\n  \"applied_seq\": ");
    skj_u64(&b, st->applied_seq);
    skj_rawz(&b, ",\n  \"boot_id\": ");
    skj_stringz(&b, st->boot_id);
    skj_rawz(&b, ",\n  \"clean\": ");
    skj_boolean(&b, st->clean);
    skj_rawz(&b, ",\n  \"dirs\": ");
    if (st->ndirs < 0 || !st->dirs) {
        skj_rawz(&b, "null");
    } else {
        skj_rawz(&b, "[");
        for (int i = 0; i < st->ndirs; i++) {
            skj_rawz(&b, i ? ", [" : "[");
            skj_u64(&b, st->dirs[i][0]);
            skj_rawz(&b, ", ");
            skj_u64(&b, st->dirs[i][1]);
            skj_rawz(&b, "]");
        }
        skj_rawz(&b, "]");
    }
    skj_rawz(&b, ",\n  \"epoch\": ");
    skj_stringz(&b, st->epoch);
    skj_rawz(&b, ",\n  \"generation\": ");
    skj_i64(&b, st->generation);
    skj_rawz(&b, ",\n  \"in_sync\": ");
    skj_boolean(&b, st->in_sync);
    skj_rawz(&b, ",\n  \"mounts\": ");
    skj_rawz(&b, st->mounts ? st->mounts : "null");
    skj_rawz(&b, ",\n  \"splitbrain\": ");
    skj_rawz(&b, st->splitbrain ? st->splitbrain : "null");
    skj_rawz(&b, "\n}\n");
    if (b.bad) {
        skj_buf_free(&b);
        snprintf(why, why_cap, "out of memory");
        errno = ENOMEM;
        return false;
    }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *d = dirname(dir);
    for (char *p = d + 1; *p; p++) { /* mkdir -p of the state directory */
        if (*p == '/') {
            *p = '\0';
            mkdir(d, 0755);
            *p = '/';
        }
    }
    mkdir(d, 0755);
    int rc = sks_write_atomic(path, b.p, b.len, 0600);
    skj_buf_free(&b);
    if (rc != 0) {
        snprintf(why, why_cap, "could not save %s: %s", path, strerror(-rc));
        errno = -rc;
        return false;
    }
    return true;
}

void sks_boot_id(char *out, size_t cap)
{
    out[0] = '\0';
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (!f)
        return;
    if (fgets(out, (int)cap, f)) {
        size_t n = strlen(out);
        while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
            out[--n] = '\0';
    }
    fclose(f);
}
