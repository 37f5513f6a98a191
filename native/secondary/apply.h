/* The ordered apply: one replicated operation at a time on the copies of a module's replicated
 * directories, through directory fds opened before anything was mounted over them
 * (each operation leaves the copy as the same operation left the primary's directory).
 *
 * Paths never leave the replicated directory: every path is resolved beneath its directory fd
 * without following any symlink (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or a walk of
 * O_NOFOLLOW opens on kernels without openat2); the last component is acted on with the *at calls'
 * no-follow forms. A symlink anywhere in a path fails the operation with ELOOP.
 *
 * `lenient` is for a resynchronisation: the copy differs from the primary and the resynchronisation
 * repairs what an operation could not find (a write to a missing file creates it and its parents;
 * removing something already gone succeeds). In sync, an operation that cannot be applied exactly
 * fails: the caller reports it and the copy no longer follows. */
#ifndef SKS_APPLY_H
#define SKS_APPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sk_ops.h"

#define SKS_OPEN_CACHE 64
#define SKS_WRITEBACK_EVERY (16u << 20) /* bytes written to a file between early writeback starts */
/* A WRITE of at least SKS_DIRECT_MIN bytes whose offset and length are multiples of SKS_DIRECT_ALIGN
 * goes to the disk with O_DIRECT (ADR 0061): no page cache copy, no dirty pages for the kernel to
 * write back later, the copy's pages not cached a second time on a disk the primary shares. */
#define SKS_DIRECT_MIN (256u << 10)
#define SKS_DIRECT_ALIGN 4096u

typedef struct sks_open_file {
    uint32_t dir;
    char *path; /* owned, NUL-terminated */
    int fd;     /* -1: free slot */
    uint64_t used;
    uint64_t unflushed;
    int8_t direct; /* the fd's O_DIRECT: 0 off, 1 on, -1 its file system refuses it */
} sks_open_file;

typedef struct sks_replica {
    int ndirs;
    const int *dir_fds; /* not owned */
    bool lenient;
    bool walk_only; /* resolve by O_NOFOLLOW walks (no openat2: old kernels, and the tests) */
    sks_open_file cache[SKS_OPEN_CACHE];
    uint64_t tick;
    uint64_t bytes_written;
    uint64_t bytes_direct; /* of bytes_written, written with O_DIRECT */
    uint8_t *abuf;         /* aligned buffer of direct writes (owned), abuf_cap bytes */
    size_t abuf_cap;
} sks_replica;

void sks_replica_init(sks_replica *r, const int *dir_fds, int ndirs);
/* Close every cached fd. */
void sks_replica_close(sks_replica *r);

/* Apply one operation (CREATE..LINK, REMOVE_TREE, CLEAR_XATTRS; FSYNC syncs). 0 or -errno. */
int sks_replica_apply(sks_replica *r, uint32_t dir, const sk_op *op);
/* fsync/fdatasync of one object (the empty path: syncfs of the directory's file system). */
int sks_replica_fsync(sks_replica *r, uint32_t dir, sk_bytes path, bool datasync);
/* syncfs of every replicated directory's file system. */
int sks_replica_sync_all(sks_replica *r);

/* The parent directory of `path` (NUL-terminated, relative, checked) beneath `dir_fd`, never
 * through a symlink: an O_PATH fd (or dir_fd itself, *owned = false); *name is the last component.
 * -errno on failure. */
int sks_parent_of(int dir_fd, bool walk_only, const char *path, const char **name, bool *owned);
/* open(2) of `path` beneath `dir_fd` with `flags` (O_NOFOLLOW added), never through a symlink. */
int sks_open_beneath(int dir_fd, bool walk_only, const char *path, int flags, unsigned mode);

/* Python's class name of an operation type ("Write", "SetAttr", ...), for reasons. */
const char *sks_op_name(uint8_t type);

#endif
