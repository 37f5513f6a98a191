/* The secondary's manifest (see manifest.h). */
#include "manifest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "apply.h"
#include "sk_kdf.h"

#define PATH_CAP 4096

/* A chunk (maybe of no entry) goes at least this often while the walk reads and sums: the
 * primary hears the secondary working and does not count the wait as a stall (sendtimeout). */
static double keepalive_seconds = 1.0;

void sks_manifest_set_keepalive(double seconds)
{
    keepalive_seconds = seconds;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool sks_excl_build(sks_excl *x, const sks_dir_spec *d, char *why, size_t why_cap)
{
    memset(x, 0, sizeof *x);
    x->npaths = d->nexcl;
    x->paths = (const char *const *)d->excl;
    if (d->nregex == 0)
        return true;
    x->regex = calloc((size_t)d->nregex, sizeof *x->regex);
    if (!x->regex) {
        snprintf(why, why_cap, "out of memory");
        return false;
    }
    for (int i = 0; i < d->nregex; i++) {
        size_t n = strlen(d->regex[i]) + 8;
        char *full = malloc(n);
        if (!full) {
            snprintf(why, why_cap, "out of memory");
            sks_excl_free(x);
            return false;
        }
        snprintf(full, n, "^(%s)$", d->regex[i]);
        int rc = regcomp(&x->regex[i], full, REG_EXTENDED | REG_NOSUB);
        free(full);
        if (rc != 0) {
            char msg[128];
            regerror(rc, &x->regex[i], msg, sizeof msg);
            snprintf(why, why_cap, "notreplicated regexpath %s: %s", d->regex[i], msg);
            sks_excl_free(x);
            return false;
        }
        x->nregex = i + 1;
    }
    return true;
}

void sks_excl_free(sks_excl *x)
{
    for (int i = 0; i < x->nregex; i++)
        regfree(&x->regex[i]);
    free(x->regex);
    x->regex = NULL;
    x->nregex = 0;
}

bool sks_excluded(const sks_excl *x, const char *rel)
{
    if (!x || !*rel)
        return false;
    size_t n = strlen(rel);
    for (int i = 0; i < x->npaths; i++) {
        size_t m = strlen(x->paths[i]);
        if (n >= m && memcmp(rel, x->paths[i], m) == 0 && (rel[m] == '\0' || rel[m] == '/'))
            return true;
    }
    if (x->nregex == 0)
        return false;
    char prefix[PATH_CAP];
    if (n >= sizeof prefix)
        return false;
    for (size_t i = 0; i <= n; i++) {
        if (rel[i] != '/' && rel[i] != '\0')
            continue;
        memcpy(prefix, rel, i);
        prefix[i] = '\0';
        for (int j = 0; j < x->nregex; j++)
            if (regexec(&x->regex[j], prefix, 0, NULL, 0) == 0)
                return true;
    }
    return false;
}

typedef struct walker {
    bool walk_only;
    const sks_excl *x;
    sks_chunk_fn fn;
    void *ctx;
    uint8_t *chunk;  /* SKS_MANIFEST_CHUNK + room for one full entry */
    size_t chunk_cap;
    sk_manifest_writer w;
    uint8_t *sums;   /* SKS_SUMS_PER_ENTRY sums */
    uint8_t *block;  /* one zone */
    uint64_t entries;
    uint32_t per_entry;
    int stop;        /* the callback's non-zero value */
    double last_sent;
} walker;

static int flush(walker *k, bool last)
{
    size_t len;
    if (sk_manifest_writer_finish(&k->w, &len, NULL) != SK_OK)
        return -EINVAL;
    int rc = k->fn(k->ctx, k->chunk, len, last);
    if (rc != 0) {
        k->stop = rc;
        return rc;
    }
    k->last_sent = mono_now();
    sk_manifest_writer_init(&k->w, k->chunk, k->chunk_cap);
    return 0;
}

static int add(walker *k, const sk_entry *e)
{
    int rc = sk_manifest_writer_add(&k->w, e, NULL);
    if (rc == SK_ESPACE) {
        rc = flush(k, false);
        if (rc != 0)
            return rc;
        rc = sk_manifest_writer_add(&k->w, e, NULL);
    }
    if (rc != SK_OK)
        return k->stop ? k->stop : -EINVAL;
    k->entries++;
    if (k->w.pos >= SKS_MANIFEST_CHUNK || mono_now() - k->last_sent >= keepalive_seconds)
        return flush(k, false);
    return 0;
}

static void fill_entry(sk_entry *e, const char *rel, const struct stat *st)
{
    memset(e, 0, sizeof *e);
    e->path = sk_bytes_str(rel);
    e->kind = S_ISREG(st->st_mode) ? 'f' : S_ISDIR(st->st_mode) ? 'd' : S_ISLNK(st->st_mode) ? 'l' : 'o';
    e->mode = st->st_mode;
    e->uid = st->st_uid;
    e->gid = st->st_gid;
    e->size = e->kind == 'f' ? (uint64_t)st->st_size : 0;
    e->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    e->rdev = e->kind == 'o' ? (uint64_t)st->st_rdev : 0;
}

/* A file's entries with its block checksums (several entries for a large file). */
static int add_with_sums(walker *k, sk_entry *e, int fd, uint64_t size)
{
    uint64_t off = 0, index = 0;
    bool first = true;
    for (;;) {
        uint32_t n = 0;
        while (off < size && n < k->per_entry) {
            ssize_t got = pread(fd, k->block, SKS_ZONE, (off_t)off);
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0)
                return -errno;
            if (got == 0) {
                size = off; /* shrank meanwhile */
                break;
            }
            uint8_t digest[SK_HASH_SIZE];
            sk_iov iov = {k->block, (size_t)got};
            if (sk_sha256(&iov, 1, digest, NULL) != SK_OK)
                return -EIO;
            memcpy(k->sums + (size_t)n * SK_SUM_SIZE, digest, SK_SUM_SIZE);
            n++;
            off += (uint64_t)got;
            if ((n & 15) == 0 && mono_now() - k->last_sent >= keepalive_seconds) {
                int rc = flush(k, false); /* still working: what is there (maybe nothing) */
                if (rc != 0)
                    return rc;
            }
        }
        if (n == 0 && !first)
            return 0;
        e->has_sums = true;
        e->sums_first = index;
        e->nsums = n;
        e->sums = sk_bytes_of(k->sums, (size_t)n * SK_SUM_SIZE);
        int rc = add(k, e);
        if (rc != 0)
            return rc;
        first = false;
        index += n;
        if (off >= size)
            return 0;
    }
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int walk_dir(walker *k, int dfd, char *rel, size_t rel_len, bool sums, int depth)
{
    if (depth > 1024)
        return -ELOOP;
    /* a new open file description: a dup() would share the directory's read position with
     * dfd, and a second walk of the same directory fd would find it at its end (empty) */
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    char **names = NULL;
    size_t count = 0, cap = 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) {
                rc = -ENOMEM;
                break;
            }
            names = grown;
        }
        if (!(names[count] = strdup(de->d_name))) {
            rc = -ENOMEM;
            break;
        }
        count++;
    }
    closedir(d);
    if (rc == 0 && count)
        qsort(names, count, sizeof *names, cmp_names);
    bool *is_dir = rc == 0 ? calloc(count + 1, sizeof *is_dir) : NULL;
    if (rc == 0 && !is_dir)
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        size_t n = strlen(names[i]);
        if (rel_len + 1 + n >= PATH_CAP)
            continue;
        if (rel_len)
            rel[rel_len] = '/';
        memcpy(rel + (rel_len ? rel_len + 1 : 0), names[i], n + 1);
        struct stat st;
        if (sks_excluded(k->x, rel) || fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rel[rel_len] = '\0';
            continue;
        }
        sk_entry e;
        fill_entry(&e, rel, &st);
        char target[SK_SYMLINK_MAX + 1];
        if (e.kind == 'l') {
            ssize_t t = readlinkat(dfd, names[i], target, sizeof target);
            if (t <= 0 || (size_t)t > SK_SYMLINK_MAX) {
                rel[rel_len] = '\0';
                continue;
            }
            e.target = sk_bytes_of(target, (size_t)t);
        }
        if (sums && e.kind == 'f') {
            int f = openat(dfd, names[i], O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
            if (f >= 0) {
                rc = add_with_sums(k, &e, f, e.size);
                close(f);
            }
        } else {
            rc = add(k, &e);
        }
        is_dir[i] = e.kind == 'd';
        rel[rel_len] = '\0';
    }
    for (size_t i = 0; rc == 0 && i < count; i++) {
        if (!is_dir[i])
            continue;
        size_t n = strlen(names[i]);
        int sub = openat(dfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0)
            continue; /* gone or replaced meanwhile */
        if (rel_len)
            rel[rel_len] = '/';
        memcpy(rel + (rel_len ? rel_len + 1 : 0), names[i], n + 1);
        rc = walk_dir(k, sub, rel, rel_len ? rel_len + 1 + n : n, sums, depth + 1);
        close(sub);
        rel[rel_len] = '\0';
    }
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    free(is_dir);
    return rc;
}

static int paths_only(walker *k, int dir_fd, sk_manifest_req *req)
{
    sk_bytes p;
    while (sk_manifest_req_next(req, &p) == 1) {
        char rel[PATH_CAP];
        if (p.len == 0 || p.len >= sizeof rel)
            continue;
        memcpy(rel, p.ptr, p.len);
        rel[p.len] = '\0';
        int fd = sks_open_beneath(dir_fd, k->walk_only, rel, O_RDONLY | O_NONBLOCK, 0);
        if (fd < 0)
            continue; /* missing (or through a symlink): left out */
        struct stat st;
        int rc = 0;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
            sk_entry e;
            fill_entry(&e, rel, &st);
            rc = add_with_sums(k, &e, fd, e.size);
        }
        close(fd);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int sks_manifest(int dir_fd, bool walk_only, const sks_excl *x, sk_manifest_req *req, uint32_t sums_per_entry,
                 sks_chunk_fn fn, void *ctx, uint64_t *entries)
{
    walker k;
    memset(&k, 0, sizeof k);
    k.per_entry = sums_per_entry && sums_per_entry < SKS_SUMS_PER_ENTRY ? sums_per_entry : SKS_SUMS_PER_ENTRY;
    k.walk_only = walk_only;
    k.x = x;
    k.fn = fn;
    k.ctx = ctx;
    k.chunk_cap = SKS_MANIFEST_CHUNK + (size_t)SKS_SUMS_PER_ENTRY * SK_SUM_SIZE + 2 * PATH_CAP + 64;
    k.chunk = malloc(k.chunk_cap);
    k.sums = malloc((size_t)SKS_SUMS_PER_ENTRY * SK_SUM_SIZE);
    k.block = malloc(SKS_ZONE);
    int rc = 0;
    if (!k.chunk || !k.sums || !k.block) {
        rc = -ENOMEM;
        goto out;
    }
    sk_manifest_writer_init(&k.w, k.chunk, k.chunk_cap);
    k.last_sent = mono_now();
    if (req->sums == SK_SUMS_PATHS) {
        rc = paths_only(&k, dir_fd, req);
    } else {
        char rel[PATH_CAP] = "";
        rc = walk_dir(&k, dir_fd, rel, 0, req->sums == SK_SUMS_ALL, 0);
    }
    if (rc == 0)
        rc = flush(&k, true);
out:
    if (entries)
        *entries = k.entries;
    free(k.chunk);
    free(k.sums);
    free(k.block);
    return rc;
}
