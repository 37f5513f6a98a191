/* The secondary's ordered apply (native/secondary/apply.c): each operation, path safety (nothing
 * ever reached through a symlink, in both resolution modes), errors in sync, lenient repairs, the
 * open-file cache. Runs in a fresh directory under /tmp. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "apply.h"
#include "sk_test.h"
#include "sk_wire.h"

typedef struct fixture {
    char root[64];    /* /tmp/sks-apply-XXXXXX: holds rep/ and outside/ */
    char rep[96];
    int dfd;
    sks_replica r;
} fixture;

static bool setup(fixture *f, bool walk_only)
{
    snprintf(f->root, sizeof f->root, "/tmp/sks-apply-XXXXXX");
    if (!mkdtemp(f->root))
        return false;
    snprintf(f->rep, sizeof f->rep, "%s/rep", f->root);
    char outside[96];
    snprintf(outside, sizeof outside, "%s/outside", f->root);
    if (mkdir(f->rep, 0755) != 0 || mkdir(outside, 0755) != 0)
        return false;
    f->dfd = open(f->rep, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    sks_replica_init(&f->r, &f->dfd, 1);
    f->r.walk_only = walk_only;
    return f->dfd >= 0;
}

static void teardown(fixture *f)
{
    sks_replica_close(&f->r);
    close(f->dfd);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->root);
    if (system(cmd) != 0)
        printf("    (could not remove %s)\n", f->root);
}

static sk_op op_of(uint8_t type, const char *path)
{
    sk_op op;
    memset(&op, 0, sizeof op);
    op.type = type;
    op.path = sk_bytes_str(path);
    return op;
}

static int apply(fixture *f, sk_op op)
{
    return sks_replica_apply(&f->r, 0, &op);
}

static int mk(fixture *f, uint8_t type, const char *path, uint32_t mode)
{
    sk_op op = op_of(type, path);
    op.mode = mode;
    return apply(f, op);
}

static int wr(fixture *f, const char *path, uint64_t off, const char *data)
{
    sk_op op = op_of(SK_T_WRITE, path);
    op.offset = off;
    op.data = sk_bytes_str(data);
    return apply(f, op);
}

static int two(fixture *f, uint8_t type, const char *a, const char *b, uint32_t flags)
{
    sk_op op = op_of(type, a);
    op.path2 = sk_bytes_str(b);
    op.flags = flags;
    return apply(f, op);
}

static bool lst(fixture *f, const char *rel, struct stat *st)
{
    return fstatat(f->dfd, rel, st, AT_SYMLINK_NOFOLLOW) == 0;
}

static bool content(fixture *f, const char *rel, const char *want)
{
    char buf[256];
    int fd = openat(f->dfd, rel, O_RDONLY);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    return n == (ssize_t)strlen(want) && memcmp(buf, want, (size_t)n) == 0;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n;
}

static void each_operation(void)
{
    fixture f;
    CHECK(setup(&f, false));
    struct stat st;
    CHECK(mk(&f, SK_T_MKDIR, "d", 0750) == 0);
    CHECK(lst(&f, "d", &st) && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0750);
    CHECK(mk(&f, SK_T_CREATE, "d/f", 0640) == 0);
    CHECK(lst(&f, "d/f", &st) && S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0640 && st.st_size == 0);
    CHECK(wr(&f, "d/f", 0, "hello world") == 0);
    CHECK(wr(&f, "d/f", 6, "WORLD") == 0);
    CHECK(content(&f, "d/f", "hello WORLD"));
    sk_op t = op_of(SK_T_TRUNCATE, "d/f");
    t.size = 5;
    CHECK(apply(&f, t) == 0 && content(&f, "d/f", "hello"));
    sk_op fa = op_of(SK_T_FALLOCATE, "d/f");
    fa.offset = 0;
    fa.length = 1 << 20;
    CHECK(apply(&f, fa) == 0 && lst(&f, "d/f", &st) && st.st_size == 1 << 20);
    fa.mode = 1; /* FALLOC_FL_KEEP_SIZE */
    fa.offset = 2 << 20;
    CHECK(apply(&f, fa) == 0 && lst(&f, "d/f", &st) && st.st_size == 1 << 20);
    sk_op sa = op_of(SK_T_SETATTR, "d/f");
    sa.mask = SK_ATTR_MODE | SK_ATTR_UID | SK_ATTR_GID | SK_ATTR_MTIME | SK_ATTR_SIZE;
    sa.mode = 0600;
    sa.uid = 1234;
    sa.gid = 4321;
    sa.mtime_ns = 1500000000123456789LL;
    sa.size = 3;
    CHECK(apply(&f, sa) == 0 && lst(&f, "d/f", &st));
    CHECK((st.st_mode & 07777) == 0600 && st.st_uid == 1234 && st.st_gid == 4321 && st.st_size == 3);
    CHECK(st.st_mtim.tv_sec == 1500000000 && st.st_mtim.tv_nsec == 123456789);
    sk_op x = op_of(SK_T_SETXATTR, "d/f");
    x.name = sk_bytes_str("user.k");
    x.value = sk_bytes_str("v1");
    CHECK(apply(&f, x) == 0);
    char val[16];
    char path[160];
    snprintf(path, sizeof path, "%s/d/f", f.rep);
    CHECK(lgetxattr(path, "user.k", val, sizeof val) == 2 && memcmp(val, "v1", 2) == 0);
    x.name = sk_bytes_str("user.k2");
    CHECK(apply(&f, x) == 0);
    sk_op rx = op_of(SK_T_REMOVEXATTR, "d/f");
    rx.name = sk_bytes_str("user.k");
    CHECK(apply(&f, rx) == 0 && lgetxattr(path, "user.k", val, sizeof val) < 0 && errno == ENODATA);
    CHECK(apply(&f, rx) == -ENODATA); /* in sync: an attribute that is not there is a divergence */
    CHECK(apply(&f, op_of(SK_T_CLEAR_XATTRS, "d/f")) == 0 && llistxattr(path, val, sizeof val) == 0);
    sk_op xr = op_of(SK_T_SETXATTR, ""); /* the replicated directory itself */
    xr.name = sk_bytes_str("user.root");
    xr.value = sk_bytes_str("r");
    CHECK(apply(&f, xr) == 0 && getxattr(f.rep, "user.root", val, sizeof val) == 1);
    sk_op sl = op_of(SK_T_SYMLINK, "d/s");
    sl.target = sk_bytes_str("f");
    sl.uid = 7;
    CHECK(apply(&f, sl) == 0 && lst(&f, "d/s", &st) && S_ISLNK(st.st_mode) && st.st_uid == 7);
    CHECK(mk(&f, SK_T_MKNOD, "d/fifo", S_IFIFO | 0600) == 0 && lst(&f, "d/fifo", &st) && S_ISFIFO(st.st_mode));
    CHECK(two(&f, SK_T_LINK, "d/f", "d/hard", 0) == 0 && lst(&f, "d/hard", &st) && st.st_nlink == 2);
    CHECK(two(&f, SK_T_LINK, "d/s", "d/s2", 0) == 0 && lst(&f, "d/s2", &st) && S_ISLNK(st.st_mode));
    CHECK(two(&f, SK_T_RENAME, "d/hard", "d/moved", 0) == 0 && !lst(&f, "d/hard", &st) && lst(&f, "d/moved", &st));
    CHECK(two(&f, SK_T_RENAME, "d/moved", "d/f", 1 /* NOREPLACE */) == -EEXIST);
    CHECK(two(&f, SK_T_RENAME, "d/moved", "d/f", 2 /* EXCHANGE */) == 0);
    CHECK(apply(&f, op_of(SK_T_UNLINK, "d/moved")) == 0 && !lst(&f, "d/moved", &st));
    sk_op fs = op_of(SK_T_FSYNC, "d/f");
    CHECK(apply(&f, fs) == 0);
    fs.datasync = true;
    CHECK(apply(&f, fs) == 0);
    CHECK(apply(&f, op_of(SK_T_FSYNC, "d")) == 0 && apply(&f, op_of(SK_T_FSYNC, "")) == 0);
    CHECK(mk(&f, SK_T_MKDIR, "e", 0755) == 0 && apply(&f, op_of(SK_T_RMDIR, "e")) == 0 && !lst(&f, "e", &st));
    CHECK(apply(&f, op_of(SK_T_REMOVE_TREE, "d")) == 0 && !lst(&f, "d", &st));
    CHECK(apply(&f, op_of(SK_T_REMOVE_TREE, "d")) == 0); /* nothing there: done */
    teardown(&f);
}

/* An operation never reaches through a symlink, whichever resolution is used. */
static void never_through_symlinks_mode(bool walk_only)
{
    fixture f;
    CHECK(setup(&f, walk_only));
    struct stat st;
    char outside[128];
    snprintf(outside, sizeof outside, "%s/outside", f.root);
    sk_op sl = op_of(SK_T_SYMLINK, "esc");
    sl.target = sk_bytes_str(outside);
    CHECK(apply(&f, sl) == 0);
    sl = op_of(SK_T_SYMLINK, "rel");
    sl.target = sk_bytes_str("../outside");
    CHECK(apply(&f, sl) == 0);
    CHECK(mk(&f, SK_T_MKDIR, "d", 0755) == 0);
    sl = op_of(SK_T_SYMLINK, "d/up");
    sl.target = sk_bytes_str("..");
    CHECK(apply(&f, sl) == 0);
    const char *through[] = {"esc/x", "rel/x", "d/up/x"};
    for (size_t i = 0; i < 3; i++) {
        CHECK(mk(&f, SK_T_CREATE, through[i], 0644) == -ELOOP);
        CHECK(wr(&f, through[i], 0, "x") == -ELOOP);
        CHECK(mk(&f, SK_T_MKDIR, through[i], 0755) == -ELOOP);
        CHECK(apply(&f, op_of(SK_T_UNLINK, through[i])) == -ELOOP);
        CHECK(two(&f, SK_T_RENAME, "d", through[i], 0) == -ELOOP);
        CHECK(two(&f, SK_T_LINK, "d/up", through[i], 0) == -ELOOP);
        sk_op x = op_of(SK_T_SETXATTR, through[i]);
        x.name = sk_bytes_str("user.x");
        x.value = sk_bytes_str("1");
        CHECK(apply(&f, x) == -ELOOP);
        sk_op sa = op_of(SK_T_SETATTR, through[i]);
        sa.mask = SK_ATTR_MODE;
        sa.mode = 0777;
        CHECK(apply(&f, sa) == -ELOOP);
        CHECK(apply(&f, op_of(SK_T_REMOVE_TREE, through[i])) == -ELOOP);
    }
    /* the last component: the symlink itself, never its target */
    CHECK(wr(&f, "esc", 0, "x") == -ELOOP);
    CHECK(mk(&f, SK_T_CREATE, "esc", 0644) == -ELOOP);
    sk_op sa = op_of(SK_T_SETATTR, "esc");
    sa.mask = SK_ATTR_MODE;
    sa.mode = 0700;
    CHECK(apply(&f, sa) == 0);
    CHECK(stat(outside, &st) == 0 && (st.st_mode & 07777) == 0755);
    /* lenient mode does not follow them either (its repairs replace a symlink by a directory) */
    f.r.lenient = true;
    CHECK(wr(&f, "d/up/x", 0, "x") == -ELOOP);
    CHECK(mk(&f, SK_T_CREATE, "esc/y", 0644) == 0 && lst(&f, "esc", &st) && S_ISDIR(st.st_mode));
    CHECK(apply(&f, op_of(SK_T_UNLINK, "esc/y")) == 0);
    DIR *d = opendir(outside);
    int entries = 0;
    while (d && readdir(d))
        entries++;
    if (d)
        closedir(d);
    CHECK(entries == 2); /* only . and .. : nothing was ever written outside */
    teardown(&f);
}

static void never_through_symlinks(void)
{
    never_through_symlinks_mode(false);
}

static void never_through_symlinks_walk(void)
{
    never_through_symlinks_mode(true);
}

static void in_sync_errors(void)
{
    fixture f;
    CHECK(setup(&f, false));
    CHECK(apply(&f, op_of(SK_T_UNLINK, "missing")) == -ENOENT);
    CHECK(wr(&f, "missing", 0, "x") == -ENOENT);
    CHECK(wr(&f, "a/b/c", 0, "x") == -ENOENT);
    CHECK(mk(&f, SK_T_CREATE, "a/b", 0644) == -ENOENT);
    CHECK(mk(&f, SK_T_MKDIR, "a", 0755) == 0 && mk(&f, SK_T_MKDIR, "a", 0755) == -EEXIST);
    CHECK(mk(&f, SK_T_CREATE, "a/f", 0644) == 0);
    CHECK(apply(&f, op_of(SK_T_RMDIR, "a")) == -ENOTEMPTY);
    CHECK(apply(&f, op_of(SK_T_RMDIR, "a/f")) == -ENOTDIR);
    CHECK(apply(&f, op_of(SK_T_REMOVE_TREE, "")) == -EPERM);
    CHECK(wr(&f, "a", 0, "x") == -EISDIR);
    sk_op sa = op_of(SK_T_SETATTR, "nothing");
    sa.mask = SK_ATTR_MTIME;
    CHECK(apply(&f, sa) == -ENOENT);
    sk_op bad = op_of(SK_T_WRITE, "a/f");
    CHECK(sks_replica_apply(&f.r, 1, &bad) == -EINVAL); /* no directory #1 */
    teardown(&f);
}

static void lenient_repairs(void)
{
    fixture f;
    CHECK(setup(&f, false));
    struct stat st;
    f.r.lenient = true;
    CHECK(wr(&f, "a/b/c", 0, "data") == 0 && content(&f, "a/b/c", "data"));
    CHECK(apply(&f, op_of(SK_T_UNLINK, "gone")) == 0 && apply(&f, op_of(SK_T_RMDIR, "gone")) == 0);
    CHECK(mk(&f, SK_T_CREATE, "a", 0644) == 0 && lst(&f, "a", &st) && S_ISREG(st.st_mode)); /* dir replaced */
    CHECK(mk(&f, SK_T_MKDIR, "a", 0700) == 0 && lst(&f, "a", &st) && S_ISDIR(st.st_mode));
    CHECK(mk(&f, SK_T_MKDIR, "a", 0700) == 0); /* already there */
    CHECK(wr(&f, "a/x/y", 0, "1") == 0 && wr(&f, "t/z", 0, "2") == 0);
    CHECK(two(&f, SK_T_RENAME, "t", "a", 0) == 0 && content(&f, "a/z", "2")); /* over a non-empty dir */
    CHECK(two(&f, SK_T_RENAME, "nothing", "other", 0) == 0);
    sk_op sa = op_of(SK_T_SETATTR, "nothing");
    sa.mask = SK_ATTR_MTIME;
    CHECK(apply(&f, sa) == 0);
    CHECK(mk(&f, SK_T_MKDIR, "dd", 0755) == 0 && wr(&f, "dd/in", 0, "1") == 0);
    CHECK(apply(&f, op_of(SK_T_UNLINK, "dd")) == 0 && !lst(&f, "dd", &st)); /* EISDIR: removed whole */
    CHECK(mk(&f, SK_T_MKDIR, "keep", 0755) == 0);
    CHECK(apply(&f, op_of(SK_T_FSYNC, "keep")) == 0 && lst(&f, "keep", &st) && S_ISDIR(st.st_mode));
    CHECK(two(&f, SK_T_LINK, "no-source", "l", 0) == 0);
    teardown(&f);
}

static void open_file_cache(void)
{
    fixture f;
    CHECK(setup(&f, false));
    int before = count_fds();
    for (int i = 0; i < 200; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%d", i);
        CHECK(mk(&f, SK_T_CREATE, name, 0644) == 0 && wr(&f, name, 0, "x") == 0);
    }
    CHECK(count_fds() - before <= SKS_OPEN_CACHE);
    CHECK(wr(&f, "f199", 1, "y") == 0);
    CHECK(two(&f, SK_T_RENAME, "f199", "g", 0) == 0);
    CHECK(wr(&f, "f199", 0, "z") == -ENOENT); /* the cached fd of the old name is gone */
    CHECK(wr(&f, "g", 2, "z") == 0 && content(&f, "g", "xyz"));
    sks_replica_close(&f.r);
    CHECK(count_fds() == before);
    teardown(&f);
}

/* Large aligned writes go with O_DIRECT where the file system takes it (ADR 0061), the others
 * through the page cache, on the same cached fd: whatever the mix, the file holds exactly what the
 * writes put there, in their order (a later small write over a direct one, a direct one over
 * cached pages, an unaligned large one, a direct one past the end). */
static void direct_writes_keep_contents(void)
{
    fixture f;
    CHECK(setup(&f, false));
    const size_t big = SKS_DIRECT_MIN * 2, total = big * 3;
    uint8_t *want = calloc(1, total), *data = malloc(big), *got = malloc(total);
    CHECK(want && data && got);
    CHECK(mk(&f, SK_T_CREATE, "db", 0644) == 0);
    struct {
        uint64_t off;
        size_t len;
    } steps[] = {
        {0, big},                          /* direct (aligned), into an empty file */
        {100, 10},                         /* small: the page cache, over direct bytes */
        {big, big},                        /* direct over nothing cached */
        {4096, SKS_DIRECT_ALIGN * 2},      /* small aligned: the page cache */
        {0, big},                          /* direct over cached pages */
        {big * 2 + 1, big - 1},            /* large but unaligned: the page cache, to the end */
        {big * 2, big},                    /* direct, over the cached end */
        {7, 3},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        for (size_t k = 0; k < steps[i].len; k++)
            data[k] = (uint8_t)(i * 31 + k * 7 + (k >> 12));
        sk_op op = op_of(SK_T_WRITE, "db");
        op.offset = steps[i].off;
        op.data = sk_bytes_of(data, steps[i].len);
        CHECK(apply(&f, op) == 0);
        memcpy(want + steps[i].off, data, steps[i].len);
    }
    int fd = openat(f.dfd, "db", O_RDONLY);
    CHECK(fd >= 0);
    CHECK(pread(fd, got, total, 0) == (ssize_t)total);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && (size_t)st.st_size == total);
    close(fd);
    CHECK(memcmp(got, want, total) == 0);
    CHECK(f.r.bytes_written == big * 4 + 10 + SKS_DIRECT_ALIGN * 2 + big - 1 + 3);
    printf("    (%llu of %llu bytes written with O_DIRECT here)\n", (unsigned long long)f.r.bytes_direct,
           (unsigned long long)f.r.bytes_written);
    free(want);
    free(data);
    free(got);
    teardown(&f);
}

const sk_test sk_tests_apply[] = {
    {"each_operation", each_operation},
    {"never_through_symlinks", never_through_symlinks},
    {"never_through_symlinks_walk", never_through_symlinks_walk},
    {"in_sync_errors", in_sync_errors},
    {"lenient_repairs", lenient_repairs},
    {"open_file_cache", open_file_cache},
    {"direct_writes_keep_contents", direct_writes_keep_contents},
    SK_TESTS_END,
};
