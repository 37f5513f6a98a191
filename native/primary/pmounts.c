/* Mounts stacked over replicated directories (see pmounts.h). */
#include "pmounts.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#include "json.h"

#ifndef UMOUNT_NOFOLLOW
#define UMOUNT_NOFOLLOW 8
#endif

static void unescape_octal(char *s)
{
    char *out = s;
    for (char *p = s; *p; p++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' && p[3] <= '7') {
            *out++ = (char)((p[1] - '0') << 6 | (p[2] - '0') << 3 | (p[3] - '0'));
            p += 3;
        } else {
            *out++ = *p;
        }
    }
    *out = '\0';
}

bool skp_mountinfo_parse(char *line, skp_mountinfo *m)
{
    /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS */
    char *sep = strstr(line, " - ");
    if (!sep)
        return false;
    *sep = '\0';
    char *save = NULL, *fields[5];
    int n = 0;
    for (char *tok = strtok_r(line, " ", &save); tok && n < 5; tok = strtok_r(NULL, " ", &save))
        fields[n++] = tok;
    char *save2 = NULL;
    char *fstype = strtok_r(sep + 3, " \n", &save2);
    if (n < 5 || !fstype)
        return false;
    char *end;
    m->id = strtol(fields[0], &end, 10);
    if (*end)
        return false;
    unescape_octal(fields[3]);
    unescape_octal(fields[4]);
    m->dev = fields[2];
    m->root = fields[3];
    m->point = fields[4];
    m->fstype = fstype;
    return true;
}

bool skp_mount_point(const char *path, char *out, size_t cap)
{
    char abs[PATH_MAX];
    if (snprintf(abs, sizeof abs, "%s", path) >= (int)sizeof abs)
        return false;
    size_t n = strlen(abs);
    while (n > 1 && abs[n - 1] == '/')
        abs[--n] = '\0';
    if (strcmp(abs, "/") == 0)
        return snprintf(out, cap, "/") < (int)cap;
    char *slash = strrchr(abs, '/');
    const char *name = slash ? slash + 1 : abs;
    char parent[PATH_MAX], real[PATH_MAX];
    if (!slash)
        snprintf(parent, sizeof parent, ".");
    else if (slash == abs)
        snprintf(parent, sizeof parent, "/");
    else
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - abs), abs);
    if (!realpath(parent, real))
        snprintf(real, sizeof real, "%s", parent);
    if (strcmp(real, "/") == 0)
        return snprintf(out, cap, "/%s", name) < (int)cap;
    return snprintf(out, cap, "%s/%s", real, name) < (int)cap;
}

static bool recorded_match(const skp_mountinfo *m, const skp_mount_key *rec, int nrec)
{
    for (int i = 0; i < nrec; i++)
        if (rec[i].id == m->id && strcmp(rec[i].dev, m->dev) == 0 && strcmp(rec[i].root, m->root) == 0)
            return true;
    return false;
}

/* Is the top of the stack at point ours? 1 yes, 0 no (or nothing there), -errno. */
static int ours_on_top(const char *point, const skp_mount_key *rec, int nrec)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -errno;
    char *line = NULL;
    size_t cap = 0;
    int top = 0; /* the last mount at point decides */
    while (getline(&line, &cap, f) > 0) {
        skp_mountinfo m;
        if (!skp_mountinfo_parse(line, &m) || strcmp(m.point, point) != 0)
            continue;
        top = strcmp(m.fstype, SKP_FUSE_TYPE) == 0 || recorded_match(&m, rec, nrec);
    }
    free(line);
    fclose(f);
    return top;
}

int skp_detach_ours(const char *path, const skp_mount_key *recorded, int nrecorded, char *why, size_t cap)
{
    char point[PATH_MAX];
    if (!skp_mount_point(path, point, sizeof point)) {
        snprintf(why, cap, "%s: path too long", path);
        return -ENAMETOOLONG;
    }
    int removed = 0;
    for (int i = 0; i < SKP_MOUNTS_MAX_STACK; i++) {
        int top = ours_on_top(point, recorded, nrecorded);
        if (top < 0) {
            snprintf(why, cap, "/proc/self/mountinfo: %s", strerror(-top));
            return top;
        }
        if (!top)
            break;
        if (umount2(point, MNT_DETACH | UMOUNT_NOFOLLOW) != 0) {
            if (errno == EINVAL || errno == ENOENT) /* gone meanwhile */
                continue;
            int err = errno;
            snprintf(why, cap, "umount2 %s: %s", point, strerror(err));
            return -err;
        }
        removed++;
    }
    return removed;
}

int skp_recorded_mounts(const char *text, skp_mount_key *out, int max)
{
    size_t len = strlen(text);
    int ntok = (int)(len / 2 + 64);
    skj_tok *k = malloc(sizeof *k * (size_t)ntok);
    int n = 0;
    if (k && skj_parse(text, len, k, ntok) > 0 && k[0].type == SKJ_OBJ) {
        int arr = skj_get(text, k, 0, "mounts");
        if (arr >= 0 && k[arr].type == SKJ_ARR) {
            for (int i = 0; n < max && i < k[arr].size; i++) {
                int e = skj_elem(k, arr, i);
                if (e < 0 || k[e].type != SKJ_ARR || k[e].size < 3)
                    continue;
                int64_t id;
                skp_mount_key *key = &out[n];
                if (skj_int(text, k, skj_elem(k, e, 0), &id) &&
                    skj_str(text, k, skj_elem(k, e, 1), key->dev, sizeof key->dev) &&
                    skj_str(text, k, skj_elem(k, e, 2), key->root, sizeof key->root)) {
                    key->id = (long)id;
                    n++;
                }
            }
        }
    }
    free(k);
    return n;
}
