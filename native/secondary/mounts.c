/* The read-only binds and the removal of safekit's mounts (see mounts.h). */
#include "mounts.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "channel.h"

#ifndef UMOUNT_NOFOLLOW
#define UMOUNT_NOFOLLOW 8
#endif

/* mountinfo escapes space, tab, newline and backslash as \ooo; every other byte is the path's own
 * (a UTF-8 name or not): decoded on bytes, nothing else converted. */
static size_t unescape(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        if (s[i] == '\\' && i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3' &&
            s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
            out[o++] = (char)((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return o;
}

bool sks_mountinfo_line(const char *line, size_t len, sks_mount *out)
{
    /* fields split on whitespace, as Python's str.split() */
    const char *f[64];
    size_t flen[64];
    int nf = 0, sep = -1;
    size_t i = 0;
    while (i < len && nf < 64) {
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i >= len)
            break;
        size_t start = i;
        while (i < len && line[i] != ' ' && line[i] != '\t')
            i++;
        f[nf] = line + start;
        flen[nf] = i - start;
        if (sep < 0 && flen[nf] == 1 && f[nf][0] == '-')
            sep = nf;
        nf++;
    }
    if (nf < 10 || sep < 0 || sep + 1 >= nf)
        return false;
    char num[24];
    if (flen[0] == 0 || flen[0] >= sizeof num)
        return false;
    memcpy(num, f[0], flen[0]);
    num[flen[0]] = '\0';
    char *end;
    errno = 0;
    long long id = strtoll(num, &end, 10);
    if (*end || errno)
        return false;
    out->key.id = id;
    if (flen[2] >= sizeof out->key.dev || flen[sep + 1] >= sizeof out->fstype)
        return false;
    size_t colon = 0; /* major:minor, decimal */
    for (size_t j = 0; j < flen[2]; j++) {
        if (f[2][j] == ':' && !colon && j > 0)
            colon = j;
        else if (f[2][j] < '0' || f[2][j] > '9')
            return false;
    }
    if (!colon || colon + 1 == flen[2])
        return false;
    memcpy(out->key.dev, f[2], flen[2]);
    out->key.dev[flen[2]] = '\0';
    memcpy(out->fstype, f[sep + 1], flen[sep + 1]);
    out->fstype[flen[sep + 1]] = '\0';
    unescape(f[3], flen[3], out->key.root, sizeof out->key.root);
    unescape(f[4], flen[4], out->point, sizeof out->point);
    return true;
}

static bool key_eq(const sks_mkey *a, const sks_mkey *b)
{
    return a->id == b->id && strcmp(a->dev, b->dev) == 0 && strcmp(a->root, b->root) == 0;
}

bool sks_mount_ours(const sks_mount *m, const sks_mkey *recorded, int nrecorded)
{
    if (strcmp(m->fstype, SKS_FUSE_TYPE) == 0)
        return true;
    for (int i = 0; i < nrecorded; i++)
        if (key_eq(&m->key, &recorded[i]))
            return true;
    return false;
}

/* os.path.normpath(os.path.abspath(path)) */
static bool normalise(const char *path, char *out, size_t cap)
{
    char buf[PATH_MAX * 2];
    if (path[0] == '/') {
        snprintf(buf, sizeof buf, "%s", path);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            return false;
        if ((size_t)snprintf(buf, sizeof buf, "%s/%s", cwd, path) >= sizeof buf)
            return false;
    }
    size_t o = 0;
    out[0] = '\0';
    char *save = NULL;
    for (char *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0)
            continue;
        if (strcmp(c, "..") == 0) {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
            out[o] = '\0';
            continue;
        }
        size_t n = strlen(c);
        if (o + 1 + n + 1 > cap)
            return false;
        out[o++] = '/';
        memcpy(out + o, c, n);
        o += n;
        out[o] = '\0';
    }
    if (o == 0) {
        if (cap < 2)
            return false;
        strcpy(out, "/");
    }
    return true;
}

bool sks_mount_point(const char *path, char *out, size_t cap)
{
    char norm[PATH_MAX];
    if (!normalise(path, norm, sizeof norm))
        return false;
    if (strcmp(norm, "/") == 0) {
        if (cap < 2)
            return false;
        strcpy(out, "/");
        return true;
    }
    char *slash = strrchr(norm, '/');
    const char *name = slash + 1;
    char parent[PATH_MAX];
    if (slash == norm) {
        strcpy(parent, "/");
    } else {
        *slash = '\0';
        char real[PATH_MAX];
        /* the parent is resolved (it is not ours); a parent that does not exist holds no mount */
        snprintf(parent, sizeof parent, "%s", realpath(norm, real) ? real : norm);
    }
    int n = strcmp(parent, "/") == 0 ? snprintf(out, cap, "/%s", name) : snprintf(out, cap, "%s/%s", parent, name);
    return n > 0 && (size_t)n < cap;
}

int sks_mount_top(const char *point, sks_mount *top, int *depth)
{
    int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    if (!text) {
        close(fd);
        return -ENOMEM;
    }
    for (;;) {
        if (len == cap) {
            char *more = realloc(text, cap * 2);
            if (!more) {
                free(text);
                close(fd);
                return -ENOMEM;
            }
            text = more;
            cap *= 2;
        }
        ssize_t r = read(fd, text + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int err = errno;
            free(text);
            close(fd);
            return -err;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    sks_mount *m = malloc(sizeof *m);
    if (!m) {
        free(text);
        return -ENOMEM;
    }
    int found = 0;
    size_t i = 0;
    while (i < len) {
        char *nl = memchr(text + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (text + i)) : len - i;
        if (sks_mountinfo_line(text + i, n, m) && strcmp(m->point, point) == 0) {
            *top = *m;
            found++;
        }
        i += n + 1;
    }
    free(m);
    free(text);
    if (depth)
        *depth = found;
    return found ? 1 : 0;
}

int sks_detach_ours(const char *path, const sks_mkey *recorded, int nrecorded, char *why, size_t wcap)
{
    char point[PATH_MAX];
    if (!sks_mount_point(path, point, sizeof point)) {
        snprintf(why, wcap, "%.900s: the path is too long", path);
        return -1;
    }
    sks_mount *top = malloc(sizeof *top);
    if (!top) {
        snprintf(why, wcap, "out of memory");
        return -1;
    }
    int removed = 0;
    for (int round = 0; round < SKS_MOUNT_STACK_MAX; round++) {
        int rc = sks_mount_top(point, top, NULL);
        if (rc < 0) {
            snprintf(why, wcap, "/proc/self/mountinfo: %s", strerror(-rc));
            free(top);
            return -1;
        }
        if (rc == 0 || !sks_mount_ours(top, recorded, nrecorded))
            break;
        if (umount2(point, MNT_DETACH | UMOUNT_NOFOLLOW) != 0) {
            if (errno == EINVAL || errno == ENOENT) /* gone meanwhile */
                continue;
            snprintf(why, wcap, "umount2 %.900s: %s", point, strerror(errno));
            free(top);
            return -1;
        }
        sks_log(SKS_INFO, "detached %s mount %ld at %s", top->fstype, (long)top->key.id, point);
        removed++;
    }
    free(top);
    return removed;
}

bool sks_bind_ro(const char *path, sks_mkey *key, char *why, size_t wcap)
{
    char point[PATH_MAX];
    if (!sks_mount_point(path, point, sizeof point)) {
        snprintf(why, wcap, "%.900s: the path is too long", path);
        return false;
    }
    if (mount(path, path, NULL, MS_BIND, NULL) != 0) {
        snprintf(why, wcap, "mount --bind %.900s %.900s: %s", path, path, strerror(errno));
        return false;
    }
    /* keep the flags the bind has (a remount sets them all) and add read-only */
    unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY;
    struct statvfs vfs;
    if (statvfs(path, &vfs) == 0) {
        if (vfs.f_flag & ST_NOSUID)
            flags |= MS_NOSUID;
        if (vfs.f_flag & ST_NODEV)
            flags |= MS_NODEV;
        if (vfs.f_flag & ST_NOEXEC)
            flags |= MS_NOEXEC;
        if (vfs.f_flag & ST_NOATIME)
            flags |= MS_NOATIME;
        if (vfs.f_flag & ST_NODIRATIME)
            flags |= MS_NODIRATIME;
        if (vfs.f_flag & ST_RELATIME)
            flags |= MS_RELATIME;
    }
    if (mount(NULL, path, NULL, flags, NULL) != 0) {
        int err = errno;
        umount2(point, MNT_DETACH | UMOUNT_NOFOLLOW);
        snprintf(why, wcap, "mount -o remount,bind,ro %.900s: %s", path, strerror(err));
        return false;
    }
    sks_mount *top = malloc(sizeof *top);
    if (!top) {
        snprintf(why, wcap, "out of memory");
        return false;
    }
    int rc = sks_mount_top(point, top, NULL);
    if (rc <= 0) {
        free(top);
        snprintf(why, wcap, "the read-only bind at %.900s is not in /proc/self/mountinfo", point);
        return false;
    }
    *key = top->key;
    free(top);
    return true;
}

void sks_mkeys_json(skj_buf *b, const sks_mkey *keys, int n)
{
    skj_rawz(b, "[");
    for (int i = 0; i < n; i++) {
        if (i)
            skj_rawz(b, ", ");
        skj_rawz(b, "[");
        skj_i64(b, keys[i].id);
        skj_rawz(b, ", ");
        skj_fsstring(b, keys[i].dev, strlen(keys[i].dev));
        skj_rawz(b, ", ");
        skj_fsstring(b, keys[i].root, strlen(keys[i].root));
        skj_rawz(b, "]");
    }
    skj_rawz(b, "]");
}

int sks_mkeys_parse(const char *raw, sks_mkey **keys)
{
    *keys = NULL;
    if (!raw)
        return 0;
    size_t len = strlen(raw);
    int max = (int)(len / 2 + 8);
    skj_tok *k = malloc((size_t)max * sizeof *k);
    if (!k)
        return -1;
    int nt = skj_parse(raw, len, k, max);
    if (nt <= 0 || k[0].type != SKJ_ARR) {
        free(k);
        return 0;
    }
    sks_mkey *out = calloc((size_t)k[0].size + 1, sizeof *out);
    if (!out) {
        free(k);
        return -1;
    }
    int n = 0;
    for (int i = 0; i < k[0].size; i++) {
        int e = skj_elem(k, 0, i);
        if (e < 0 || k[e].type != SKJ_ARR || k[e].size != 3)
            continue;
        sks_mkey *m = &out[n];
        if (skj_int(raw, k, skj_elem(k, e, 0), &m->id) && skj_str(raw, k, skj_elem(k, e, 1), m->dev, sizeof m->dev) &&
            skj_str(raw, k, skj_elem(k, e, 2), m->root, sizeof m->root))
            n++;
    }
    free(k);
    *keys = out;
    return n;
}
