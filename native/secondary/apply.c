/* The ordered apply (see apply.h). */
#include "apply.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "sk_wire.h"

#define PATH_CAP 4096
#define RESOLVE_SAFE (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)

const char *sks_op_name(uint8_t type)
{
    switch (type) {
    case SK_T_CREATE: return "Create";
    case SK_T_WRITE: return "Write";
    case SK_T_TRUNCATE: return "Truncate";
    case SK_T_FALLOCATE: return "Fallocate";
    case SK_T_SETATTR: return "SetAttr";
    case SK_T_SETXATTR: return "SetXattr";
    case SK_T_REMOVEXATTR: return "RemoveXattr";
    case SK_T_MKDIR: return "Mkdir";
    case SK_T_RMDIR: return "Rmdir";
    case SK_T_UNLINK: return "Unlink";
    case SK_T_RENAME: return "Rename";
    case SK_T_SYMLINK: return "Symlink";
    case SK_T_MKNOD: return "Mknod";
    case SK_T_FSYNC: return "Fsync";
    case SK_T_LINK: return "Link";
    case SK_T_REMOVE_TREE: return "RemoveTree";
    case SK_T_CLEAR_XATTRS: return "ClearXattrs";
    default: return "Operation";
    }
}

/* ------------------------------------------------------------------ resolution beneath a directory */

static int openat2_beneath(int dir_fd, const char *path, int flags, unsigned mode)
{
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(flags | O_CLOEXEC);
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = RESOLVE_SAFE;
    for (;;) {
        long fd = syscall(SYS_openat2, dir_fd, path, &how, sizeof how);
        if (fd >= 0)
            return (int)fd;
        if (errno != EINTR && errno != EAGAIN)
            return -errno;
    }
}

/* Walk `len` bytes of `path` (components separated by '/') from dir_fd by O_NOFOLLOW opens; returns
 * an O_PATH fd of the last directory reached. A symlink on the way: -ELOOP. */
static int walk_dirs(int dir_fd, const char *path, size_t len)
{
    int cur = -1;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && path[j] != '/')
            j++;
        char comp[256];
        if (j - i >= sizeof comp) {
            if (cur >= 0)
                close(cur);
            return -ENAMETOOLONG;
        }
        memcpy(comp, path + i, j - i);
        comp[j - i] = '\0';
        int base = cur >= 0 ? cur : dir_fd;
        int next = openat(base, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int err = errno;
        if (next < 0) {
            struct stat st;
            if ((err == ENOTDIR || err == ELOOP) && fstatat(base, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISLNK(st.st_mode))
                err = ELOOP;
        }
        if (cur >= 0)
            close(cur);
        if (next < 0)
            return -err;
        cur = next;
        i = j + 1;
    }
    return cur >= 0 ? cur : fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
}

int sks_parent_of(int dir_fd, bool walk_only, const char *path, const char **name, bool *owned)
{
    const char *slash = strrchr(path, '/');
    *owned = false;
    if (!slash) {
        *name = path;
        return dir_fd;
    }
    *name = slash + 1;
    size_t len = (size_t)(slash - path);
    int fd;
    if (!walk_only) {
        char parent[PATH_CAP];
        memcpy(parent, path, len);
        parent[len] = '\0';
        fd = openat2_beneath(dir_fd, parent, O_PATH | O_DIRECTORY, 0);
        if (fd != -ENOSYS) {
            *owned = fd >= 0;
            return fd;
        }
    }
    fd = walk_dirs(dir_fd, path, len);
    *owned = fd >= 0;
    return fd;
}

int sks_open_beneath(int dir_fd, bool walk_only, const char *path, int flags, unsigned mode)
{
    flags |= O_NOFOLLOW | O_CLOEXEC;
    if (!walk_only) {
        int fd = openat2_beneath(dir_fd, path, flags, mode);
        if (fd != -ENOSYS)
            return fd;
    }
    const char *name;
    bool owned;
    int p = sks_parent_of(dir_fd, true, path, &name, &owned);
    if (p < 0)
        return p;
    int fd = openat(p, name, flags, mode);
    int err = errno;
    if (owned)
        close(p);
    return fd >= 0 ? fd : -err;
}

/* ------------------------------------------------------------------ helpers over (parent, name) */

typedef struct at {
    int fd;
    const char *name;
    bool owned;
} at;

static int at_open(sks_replica *r, uint32_t dir, const char *path, at *a)
{
    a->fd = sks_parent_of(r->dir_fds[dir], r->walk_only, path, &a->name, &a->owned);
    return a->fd < 0 ? a->fd : 0;
}

static void at_close(at *a)
{
    if (a->owned && a->fd >= 0)
        close(a->fd);
    a->fd = -1;
    a->owned = false;
}

static int neg(int rc)
{
    return rc == 0 ? 0 : -errno;
}

static int copy_path(sk_bytes b, char out[PATH_CAP])
{
    if (b.len >= PATH_CAP)
        return -ENAMETOOLONG;
    if (b.len)
        memcpy(out, b.ptr, b.len);
    out[b.len] = '\0';
    return 0;
}

/* "/proc/self/fd/N/name": reaches `name` in the directory of fd N (for the l*xattr calls, which have
 * no *at form); the magic link is the directory itself, the name is not followed by l* calls. */
static void proc_name(char *out, size_t cap, const at *a)
{
    snprintf(out, cap, "/proc/self/fd/%d/%s", a->fd, a->name);
}

/* ------------------------------------------------------------------ the open-file cache */

void sks_replica_init(sks_replica *r, const int *dir_fds, int ndirs)
{
    memset(r, 0, sizeof *r);
    r->dir_fds = dir_fds;
    r->ndirs = ndirs;
    for (int i = 0; i < SKS_OPEN_CACHE; i++)
        r->cache[i].fd = -1;
}

static void slot_close(sks_open_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    free(f->path);
    f->path = NULL;
    f->fd = -1;
    f->unflushed = 0;
    f->direct = 0;
}

void sks_replica_close(sks_replica *r)
{
    for (int i = 0; i < SKS_OPEN_CACHE; i++)
        slot_close(&r->cache[i]);
    free(r->abuf);
    r->abuf = NULL;
    r->abuf_cap = 0;
}

static sks_open_file *cache_find(sks_replica *r, uint32_t dir, const char *path)
{
    for (int i = 0; i < SKS_OPEN_CACHE; i++) {
        sks_open_file *f = &r->cache[i];
        if (f->fd >= 0 && f->dir == dir && strcmp(f->path, path) == 0) {
            f->used = ++r->tick;
            return f;
        }
    }
    return NULL;
}

/* Remember fd for (dir, path), replacing an entry of the same path, evicting the least recently used. */
static int cache_put(sks_replica *r, uint32_t dir, const char *path, int fd)
{
    sks_open_file *slot = NULL;
    for (int i = 0; i < SKS_OPEN_CACHE; i++) {
        sks_open_file *f = &r->cache[i];
        if (f->fd >= 0 && f->dir == dir && strcmp(f->path, path) == 0) {
            slot = f;
            break;
        }
        if (!slot || (slot->fd >= 0 && (f->fd < 0 || f->used < slot->used)))
            slot = f;
    }
    char *copy = strdup(path);
    if (!copy) {
        close(fd);
        return -ENOMEM;
    }
    if (slot->fd != fd)
        slot_close(slot);
    else
        free(slot->path);
    slot->dir = dir;
    slot->path = copy;
    slot->fd = fd;
    slot->used = ++r->tick;
    slot->unflushed = 0;
    slot->direct = 0;
    return 0;
}

/* Forget cached fds at or under `path` (it is being removed, replaced or renamed). */
static void cache_drop(sks_replica *r, uint32_t dir, const char *path)
{
    size_t n = strlen(path);
    for (int i = 0; i < SKS_OPEN_CACHE; i++) {
        sks_open_file *f = &r->cache[i];
        if (f->fd >= 0 && f->dir == dir && strncmp(f->path, path, n) == 0 && (f->path[n] == '\0' || f->path[n] == '/'))
            slot_close(f);
    }
}

/* ------------------------------------------------------------------ trees */

static int rmtree_at(int parent, const char *name, int depth)
{
    if (depth > 4096)
        return -ELOOP;
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int err = errno;
        close(fd);
        return -err;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (errno = 0, e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        bool is_dir = e->d_type == DT_DIR;
        if (e->d_type == DT_UNKNOWN) {
            struct stat st;
            is_dir = fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
        }
        if (is_dir)
            rc = rmtree_at(fd, e->d_name, depth + 1);
        else if (unlinkat(fd, e->d_name, 0) != 0 && errno != ENOENT)
            rc = -errno;
    }
    if (rc == 0 && errno != 0 && !e)
        rc = -errno;
    closedir(d);
    if (rc == 0 && unlinkat(parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
        rc = -errno;
    return rc;
}

/* Remove whatever is at path (a directory with everything under it). Missing: done. */
static int remove_tree(sks_replica *r, uint32_t dir, const char *path)
{
    if (!*path)
        return -EPERM; /* never the replicated directory itself */
    cache_drop(r, dir, path);
    at a;
    int rc = at_open(r, dir, path, &a);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    struct stat st;
    if (fstatat(a.fd, a.name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        rc = errno == ENOENT ? 0 : -errno;
    else if (S_ISDIR(st.st_mode))
        rc = rmtree_at(a.fd, a.name, 0);
    else if (unlinkat(a.fd, a.name, 0) != 0 && errno != ENOENT)
        rc = -errno;
    at_close(&a);
    return rc;
}

/* Lenient: create the missing parents of path (0755; the resync sends their real attributes);
 * something that is not a directory where one is needed is removed. */
static int make_parents(sks_replica *r, uint32_t dir, const char *path)
{
    char sub[PATH_CAP];
    size_t n = strlen(path);
    for (size_t i = 0; i < n; i++) {
        if (path[i] != '/')
            continue;
        memcpy(sub, path, i);
        sub[i] = '\0';
        at a;
        int rc = at_open(r, dir, sub, &a);
        if (rc < 0)
            return rc;
        if (mkdirat(a.fd, a.name, 0755) != 0) {
            struct stat st;
            rc = -errno;
            if (rc == -EEXIST) {
                rc = 0;
                if (fstatat(a.fd, a.name, &st, AT_SYMLINK_NOFOLLOW) != 0)
                    rc = -errno;
                else if (!S_ISDIR(st.st_mode)) {
                    rc = remove_tree(r, dir, sub);
                    if (rc == 0 && mkdirat(a.fd, a.name, 0755) != 0)
                        rc = -errno;
                }
            }
        }
        at_close(&a);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Lenient: remove what is at path unless it has the type `fmt` (S_IFREG, S_IFDIR). */
static int remove_if_not(sks_replica *r, uint32_t dir, const char *path, mode_t fmt)
{
    at a;
    int rc = at_open(r, dir, path, &a);
    if (rc < 0)
        return rc == -ENOENT ? 0 : rc;
    struct stat st;
    bool other = fstatat(a.fd, a.name, &st, AT_SYMLINK_NOFOLLOW) == 0 && (st.st_mode & S_IFMT) != fmt;
    at_close(&a);
    return other ? remove_tree(r, dir, path) : 0;
}

/* The cached read-write fd of a file (opened, and in lenient mode created with its parents). */
static int file_fd(sks_replica *r, uint32_t dir, const char *path, sks_open_file **slot)
{
    sks_open_file *f = cache_find(r, dir, path);
    if (f) {
        if (slot)
            *slot = f;
        return f->fd;
    }
    int dfd = r->dir_fds[dir];
    if (!*path)
        return -EISDIR;
    int fd = sks_open_beneath(dfd, r->walk_only, path, O_RDWR, 0);
    if (fd == -ENOENT && r->lenient) {
        int rc = make_parents(r, dir, path);
        if (rc < 0)
            return rc;
        fd = sks_open_beneath(dfd, r->walk_only, path, O_RDWR | O_CREAT, 0600);
    } else if (fd == -EISDIR && r->lenient) {
        int rc = remove_tree(r, dir, path); /* a stale directory where the primary has a file */
        if (rc < 0)
            return rc;
        fd = sks_open_beneath(dfd, r->walk_only, path, O_RDWR | O_CREAT, 0600);
    }
    if (fd < 0)
        return fd;
    int rc = cache_put(r, dir, path, fd);
    if (rc < 0)
        return rc;
    f = cache_find(r, dir, path);
    if (slot)
        *slot = f;
    return fd;
}

/* ------------------------------------------------------------------ operations */

/* Set or clear O_DIRECT on a cached fd. false: not possible (its file system refuses it: the
 * file is written through the page cache from then on). */
static bool set_direct(sks_open_file *f, bool on)
{
    if (f->direct < 0)
        return !on;
    if (f->direct == (on ? 1 : 0))
        return true;
    int fl = fcntl(f->fd, F_GETFL);
    if (fl < 0 || fcntl(f->fd, F_SETFL, on ? (fl | O_DIRECT) : (fl & ~O_DIRECT)) != 0) {
        if (on)
            f->direct = -1;
        return !on;
    }
    f->direct = on ? 1 : 0;
    return true;
}

static int pwrite_all(int fd, const uint8_t *p, size_t left, off_t off)
{
    while (left > 0) {
        ssize_t n = pwrite(fd, p, left, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        p += n;
        left -= (size_t)n;
        off += n;
    }
    return 0;
}

/* A large aligned write with O_DIRECT from the aligned buffer: 1 written, 0 not done (write it
 * through the page cache), -errno. The kernel writes back and drops any cached page of the range
 * first, so a reader of the copy sees these bytes either way. */
static int write_direct(sks_replica *r, sks_open_file *f, const sk_op *op)
{
    size_t len = op->data.len;
    if (len < SKS_DIRECT_MIN || len % SKS_DIRECT_ALIGN || op->offset % SKS_DIRECT_ALIGN || f->direct < 0)
        return 0;
    if (r->abuf_cap < len) {
        void *fresh = NULL;
        if (posix_memalign(&fresh, SKS_DIRECT_ALIGN, len) != 0)
            return 0;
        free(r->abuf);
        r->abuf = fresh;
        r->abuf_cap = len;
    }
    if (!set_direct(f, true))
        return 0;
    memcpy(r->abuf, op->data.ptr, len);
    size_t done = 0;
    bool refused = false;
    while (done < len) {
        ssize_t n = pwrite(f->fd, r->abuf + done, len - done, (off_t)(op->offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EINVAL) { /* an alignment this device wants beyond ours */
            refused = true;
            break;
        }
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        done += (size_t)n;
        if (done % SKS_DIRECT_ALIGN)
            break; /* a short write off the alignment: the rest through the page cache */
    }
    if (done < len) {
        if (!set_direct(f, false))
            return -EIO;
        if (refused)
            f->direct = -1;
        int rc = pwrite_all(f->fd, r->abuf + done, len - done, (off_t)(op->offset + done));
        if (rc < 0)
            return rc;
        f->unflushed += len - done;
    }
    r->bytes_direct += done;
    return 1;
}

static int op_write(sks_replica *r, uint32_t dir, const char *path, const sk_op *op)
{
    sks_open_file *f = NULL;
    int fd = file_fd(r, dir, path, &f);
    if (fd < 0)
        return fd;
    int d = write_direct(r, f, op);
    if (d < 0)
        return d;
    if (d == 0) {
        if (f->direct > 0 && !set_direct(f, false))
            return -EIO;
        int rc = pwrite_all(fd, op->data.ptr, op->data.len, (off_t)op->offset);
        if (rc < 0)
            return rc;
        f->unflushed += op->data.len;
    }
    r->bytes_written += op->data.len;
    if (f->unflushed >= SKS_WRITEBACK_EVERY) {
        /* start writing the file's dirty pages now, without waiting: a later fsync flushes little */
        sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        f->unflushed = 0;
    }
    return 0;
}

/* Resynchronising (lenient): make room for `path` to be created - its parents exist, and whatever
 * is there now goes, unless it is already of type `keep` (S_IFREG, S_IFDIR; 0: nothing is kept).
 * In sync: nothing to do. */
static int make_room(sks_replica *r, uint32_t dir, const char *path, mode_t keep)
{
    if (!r->lenient)
        return 0;
    int rc = make_parents(r, dir, path);
    if (rc == 0)
        rc = keep ? remove_if_not(r, dir, path, keep) : remove_tree(r, dir, path);
    return rc;
}

static int op_create(sks_replica *r, uint32_t dir, const char *path, const sk_op *op)
{
    cache_drop(r, dir, path);
    int room = make_room(r, dir, path, S_IFREG);
    if (room < 0)
        return room;
    int fd = sks_open_beneath(r->dir_fds[dir], r->walk_only, path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return fd;
    if (fchown(fd, op->uid, op->gid) != 0 || fchmod(fd, op->mode & 07777) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return cache_put(r, dir, path, fd);
}

static struct timespec ns_timespec(int64_t ns)
{
    struct timespec t = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    if (t.tv_nsec < 0) {
        t.tv_nsec += 1000000000;
        t.tv_sec -= 1;
    }
    return t;
}

static int op_setattr(sks_replica *r, uint32_t dir, const char *path, const sk_op *op)
{
    int dfd = r->dir_fds[dir];
    if (op->mask & SK_ATTR_SIZE) {
        int fd = file_fd(r, dir, path, NULL);
        if (fd < 0)
            return fd;
        if (ftruncate(fd, (off_t)op->size) != 0)
            return -errno;
    }
    struct timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    if (op->mask & SK_ATTR_ATIME)
        ts[0] = ns_timespec(op->atime_ns);
    if (op->mask & SK_ATTR_MTIME)
        ts[1] = ns_timespec(op->mtime_ns);
    /* The times alone of a file being written (the primary sends them at each fsync and close):
     * through the cached fd of its writes, a regular file's (no path walk, stat and close). */
    if (*path && (op->mask & ~(uint32_t)(SK_ATTR_ATIME | SK_ATTR_MTIME)) == 0) {
        sks_open_file *f = cache_find(r, dir, path);
        if (f)
            return neg(futimens(f->fd, ts));
    }
    at a = {dfd, "", false};
    if (*path) {
        int rc = at_open(r, dir, path, &a);
        if (rc < 0)
            return rc;
    }
    int flags = *path ? AT_SYMLINK_NOFOLLOW : AT_EMPTY_PATH;
    struct stat st;
    int rc = neg(fstatat(a.fd, a.name, &st, flags));
    if (rc == 0 && (op->mask & (SK_ATTR_UID | SK_ATTR_GID))) {
        uid_t uid = (op->mask & SK_ATTR_UID) ? op->uid : (uid_t)-1;
        gid_t gid = (op->mask & SK_ATTR_GID) ? op->gid : (gid_t)-1;
        rc = neg(fchownat(a.fd, a.name, uid, gid, flags));
    }
    if (rc == 0 && (op->mask & SK_ATTR_MODE) && !S_ISLNK(st.st_mode))
        rc = *path ? neg(fchmodat(a.fd, a.name, op->mode & 07777, AT_SYMLINK_NOFOLLOW))
                   : neg(fchmod(dfd, op->mode & 07777));
    if (rc == 0 && (op->mask & (SK_ATTR_ATIME | SK_ATTR_MTIME)))
        rc = *path ? neg(utimensat(a.fd, a.name, ts, AT_SYMLINK_NOFOLLOW)) : neg(futimens(dfd, ts));
    at_close(&a);
    return rc;
}

static int xattr_name(sk_bytes b, char out[SK_XATTR_NAME_MAX + 1])
{
    if (b.len == 0 || b.len > SK_XATTR_NAME_MAX)
        return -EINVAL;
    memcpy(out, b.ptr, b.len);
    out[b.len] = '\0';
    return 0;
}

/* set (value != NULL), remove (value == NULL) */
static int xattr_op(sks_replica *r, uint32_t dir, const char *path, const sk_op *op, bool set)
{
    char name[SK_XATTR_NAME_MAX + 1];
    int rc = xattr_name(op->name, name);
    if (rc < 0)
        return rc;
    int dfd = r->dir_fds[dir];
    if (!*path)
        return set ? neg(fsetxattr(dfd, name, op->value.ptr, op->value.len, 0)) : neg(fremovexattr(dfd, name));
    at a;
    rc = at_open(r, dir, path, &a);
    if (rc < 0)
        return rc;
    char proc[PATH_CAP + 64];
    proc_name(proc, sizeof proc, &a);
    rc = set ? neg(lsetxattr(proc, name, op->value.ptr, op->value.len, 0)) : neg(lremovexattr(proc, name));
    at_close(&a);
    return rc;
}

static int op_clear_xattrs(sks_replica *r, uint32_t dir, const char *path)
{
    int dfd = r->dir_fds[dir];
    at a = {dfd, "", false};
    char proc[PATH_CAP + 64];
    if (*path) {
        int rc = at_open(r, dir, path, &a);
        if (rc < 0)
            return rc;
        proc_name(proc, sizeof proc, &a);
    }
    char *list = NULL;
    ssize_t n = 0;
    for (int tries = 0; tries < 4; tries++) {
        n = *path ? llistxattr(proc, NULL, 0) : flistxattr(dfd, NULL, 0);
        if (n <= 0)
            break;
        free(list);
        list = malloc((size_t)n);
        if (!list) {
            n = -1;
            errno = ENOMEM;
            break;
        }
        n = *path ? llistxattr(proc, list, (size_t)n) : flistxattr(dfd, list, (size_t)n);
        if (n >= 0 || errno != ERANGE)
            break;
    }
    int rc = n < 0 ? -errno : 0;
    for (ssize_t i = 0; rc == 0 && i < n;) {
        const char *x = list + i;
        /* errors ignored: e.g. security.* attributes the kernel keeps */
        if (*path)
            lremovexattr(proc, x);
        else
            fremovexattr(dfd, x);
        i += (ssize_t)strlen(x) + 1;
    }
    free(list);
    at_close(&a);
    return rc;
}

static int op_mkdir(sks_replica *r, uint32_t dir, const char *path, const sk_op *op)
{
    int room = make_room(r, dir, path, S_IFDIR);
    if (room < 0)
        return room;
    at a;
    int rc = at_open(r, dir, path, &a);
    if (rc < 0)
        return rc;
    if (mkdirat(a.fd, a.name, 0700) != 0 && !(errno == EEXIST && r->lenient))
        rc = -errno;
    if (rc == 0)
        rc = neg(fchownat(a.fd, a.name, op->uid, op->gid, AT_SYMLINK_NOFOLLOW));
    if (rc == 0)
        rc = neg(fchmodat(a.fd, a.name, op->mode & 07777, AT_SYMLINK_NOFOLLOW));
    at_close(&a);
    return rc;
}

static int op_remove(sks_replica *r, uint32_t dir, const char *path, bool is_dir)
{
    cache_drop(r, dir, path);
    at a;
    int rc = at_open(r, dir, path, &a);
    if (rc == 0 && unlinkat(a.fd, a.name, is_dir ? AT_REMOVEDIR : 0) != 0)
        rc = -errno;
    at_close(&a);
    if (rc == -ENOENT && r->lenient)
        return 0;
    if (rc == -ENOTEMPTY && is_dir && r->lenient)
        return remove_tree(r, dir, path);
    return rc;
}

static int do_rename(sks_replica *r, uint32_t dir, const char *old, const char *new, unsigned flags)
{
    at a, b;
    int rc = at_open(r, dir, old, &a);
    if (rc < 0)
        return rc;
    rc = at_open(r, dir, new, &b);
    if (rc == 0) {
        rc = neg(renameat2(a.fd, a.name, b.fd, b.name, flags));
        at_close(&b);
    }
    at_close(&a);
    return rc;
}

static int op_rename(sks_replica *r, uint32_t dir, const char *old, const char *new, const sk_op *op)
{
    cache_drop(r, dir, old);
    cache_drop(r, dir, new);
    int rc = do_rename(r, dir, old, new, op->flags);
    if (rc == -ENOENT && r->lenient)
        return 0;
    if (r->lenient && (rc == -ENOTEMPTY || rc == -EISDIR || rc == -ENOTDIR)) {
        rc = remove_tree(r, dir, new);
        if (rc == 0)
            rc = do_rename(r, dir, old, new, op->flags);
    }
    return rc;
}

static int op_make(sks_replica *r, uint32_t dir, const char *path, const sk_op *op)
{
    cache_drop(r, dir, path);
    int room = make_room(r, dir, path, 0);
    if (room < 0)
        return room;
    at a;
    int rc = at_open(r, dir, path, &a);
    if (rc < 0)
        return rc;
    if (op->type == SK_T_SYMLINK) {
        char target[SK_SYMLINK_MAX + 1];
        if (op->target.len == 0 || op->target.len > SK_SYMLINK_MAX || memchr(op->target.ptr, 0, op->target.len)) {
            rc = -EINVAL;
        } else {
            memcpy(target, op->target.ptr, op->target.len);
            target[op->target.len] = '\0';
            rc = neg(symlinkat(target, a.fd, a.name));
        }
    } else {
        rc = neg(mknodat(a.fd, a.name, op->mode, (dev_t)op->rdev));
    }
    if (rc == 0)
        rc = neg(fchownat(a.fd, a.name, op->uid, op->gid, AT_SYMLINK_NOFOLLOW));
    at_close(&a);
    return rc;
}

static int do_link(sks_replica *r, uint32_t dir, const char *old, const char *new)
{
    at a, b;
    int rc = at_open(r, dir, old, &a);
    if (rc < 0)
        return rc;
    rc = at_open(r, dir, new, &b);
    if (rc == 0) {
        rc = neg(linkat(a.fd, a.name, b.fd, b.name, 0)); /* a symlink is linked, never followed */
        at_close(&b);
    }
    at_close(&a);
    return rc;
}

static int op_link(sks_replica *r, uint32_t dir, const char *old, const char *new)
{
    cache_drop(r, dir, new);
    int room = make_room(r, dir, new, 0);
    if (room < 0)
        return room;
    return do_link(r, dir, old, new);
}

int sks_replica_fsync(sks_replica *r, uint32_t dir, sk_bytes pathb, bool datasync)
{
    if (dir >= (uint32_t)r->ndirs)
        return -EINVAL;
    char path[PATH_CAP];
    int rc = copy_path(pathb, path);
    if (rc < 0)
        return rc;
    if (!*path)
        return neg(syncfs(r->dir_fds[dir]));
    sks_open_file *f = cache_find(r, dir, path);
    if (f)
        return datasync ? neg(fdatasync(f->fd)) : neg(fsync(f->fd));
    /* not cached: a read-only open reaches files and directories alike, and never changes the copy */
    int fd = sks_open_beneath(r->dir_fds[dir], r->walk_only, path, O_RDONLY | O_NONBLOCK, 0);
    if (fd < 0)
        return fd;
    rc = datasync ? neg(fdatasync(fd)) : neg(fsync(fd));
    close(fd);
    return rc;
}

int sks_replica_sync_all(sks_replica *r)
{
    int rc = 0;
    for (int i = 0; i < r->ndirs; i++)
        if (syncfs(r->dir_fds[i]) != 0 && rc == 0)
            rc = -errno;
    return rc;
}

static int apply_exact(sks_replica *r, uint32_t dir, const sk_op *op, const char *path, const char *path2)
{
    switch (op->type) {
    case SK_T_WRITE: return op_write(r, dir, path, op);
    case SK_T_CREATE: return op_create(r, dir, path, op);
    case SK_T_TRUNCATE: {
        int fd = file_fd(r, dir, path, NULL);
        return fd < 0 ? fd : neg(ftruncate(fd, (off_t)op->size));
    }
    case SK_T_FALLOCATE: {
        int fd = file_fd(r, dir, path, NULL);
        return fd < 0 ? fd : neg(fallocate(fd, (int)op->mode, (off_t)op->offset, (off_t)op->length));
    }
    case SK_T_SETATTR: return op_setattr(r, dir, path, op);
    case SK_T_SETXATTR: return xattr_op(r, dir, path, op, true);
    case SK_T_REMOVEXATTR: {
        int rc = xattr_op(r, dir, path, op, false);
        return rc == -ENODATA && r->lenient ? 0 : rc;
    }
    case SK_T_CLEAR_XATTRS: return op_clear_xattrs(r, dir, path);
    case SK_T_MKDIR: return op_mkdir(r, dir, path, op);
    case SK_T_RMDIR: return op_remove(r, dir, path, true);
    case SK_T_UNLINK: return op_remove(r, dir, path, false);
    case SK_T_RENAME: return op_rename(r, dir, path, path2, op);
    case SK_T_SYMLINK:
    case SK_T_MKNOD: return op_make(r, dir, path, op);
    case SK_T_LINK: return op_link(r, dir, path, path2);
    case SK_T_FSYNC: return sks_replica_fsync(r, dir, op->path, op->datasync);
    case SK_T_REMOVE_TREE: return remove_tree(r, dir, path);
    default: return -EINVAL;
    }
}

/* Lenient mode: make a live operation fit a copy that differs from the primary, or skip it when the
 * resynchronisation sends that object anyway. 1: handled (*rc the outcome), 0: not. */
static int repair(sks_replica *r, uint32_t dir, const sk_op *op, const char *path, const char *path2, int err,
                  int *rc)
{
    switch (op->type) {
    case SK_T_SETATTR:
    case SK_T_SETXATTR:
    case SK_T_REMOVEXATTR:
    case SK_T_CLEAR_XATTRS:
    case SK_T_FSYNC:
        *rc = 0;
        return err == -ENOENT; /* not on the copy yet: the resync sends it whole */
    case SK_T_UNLINK:
    case SK_T_RMDIR:
        if (err != -EISDIR && err != -ENOTDIR && err != -EPERM)
            return 0;
        *rc = remove_tree(r, dir, path);
        return 1;
    case SK_T_RENAME:
        if (err != -EEXIST)
            return 0;
        *rc = remove_tree(r, dir, path2);
        if (*rc == 0)
            *rc = do_rename(r, dir, path, path2, op->flags);
        return 1;
    case SK_T_LINK:
        *rc = 0;
        return err == -ENOENT; /* the source is not on the copy yet: the resync sends both */
    case SK_T_WRITE:
    case SK_T_TRUNCATE:
        if (err != -ENOTDIR)
            return 0;
        *rc = make_parents(r, dir, path); /* a stale file where the primary has a directory */
        if (*rc == 0)
            *rc = apply_exact(r, dir, op, path, path2);
        return 1;
    default:
        return 0;
    }
}

int sks_replica_apply(sks_replica *r, uint32_t dir, const sk_op *op)
{
    if (dir >= (uint32_t)r->ndirs)
        return -EINVAL;
    char path[PATH_CAP], path2[PATH_CAP];
    int rc = copy_path(op->path, path);
    if (rc == 0)
        rc = copy_path(op->path2, path2);
    if (rc < 0)
        return rc;
    rc = apply_exact(r, dir, op, path, path2);
    if (rc < 0 && r->lenient) {
        int fixed;
        if (repair(r, dir, op, path, path2, rc, &fixed))
            return fixed;
    }
    return rc;
}
