/* Payloads of the v2 frames: replicated operations and control messages (docs/replication-wire-v2.md).
 *
 * Paths are relative to the replicated directory, u16 length + bytes, validated on both sides
 * (never absolute, no NUL, no empty, "." or ".." component; empty means the directory itself and
 * is allowed only where it has a meaning). Blobs are u32 length + bytes; integers big-endian.
 *
 * Decoders are pure and bounds-checked: the decoded struct points into the caller's payload buffer
 * (sk_bytes views, no copies), so it is valid as long as that buffer is. A payload with a field
 * missing, a trailing byte or a refused value is an error: the connection ends. */
#ifndef SK_OPS_H
#define SK_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sk_bytes.h"
#include "sk_err.h"

#define SK_XATTR_NAME_MAX 255
#define SK_XATTR_VALUE_MAX 65536
#define SK_SYMLINK_MAX 4095
#define SK_ERROR_REASON_MAX 1024
#define SK_SUM_SIZE 16 /* a 64 KiB block's checksum: SHA-256 truncated to 16 bytes */

/* SETATTR mask */
enum {
    SK_ATTR_MODE = 1,
    SK_ATTR_UID = 2,
    SK_ATTR_GID = 4,
    SK_ATTR_ATIME = 8,
    SK_ATTR_MTIME = 16,
    SK_ATTR_SIZE = 32,
};
#define SK_ATTR_KNOWN 63u

/* RENAME flags (Linux renameat2 values) */
#define SK_RENAME_KNOWN 7u /* NOREPLACE 1, EXCHANGE 2, WHITEOUT 4 */

/* One replicated operation (frame types CREATE..LINK, REMOVE_TREE, CLEAR_XATTRS). Fields that a
 * type does not carry are zero. */
typedef struct sk_op {
    uint8_t type;
    bool datasync;   /* FSYNC: from the frame's SK_F_DATASYNC flag */
    sk_bytes path;   /* every type; RENAME and LINK: the old path */
    sk_bytes path2;  /* RENAME, LINK: the new path */
    sk_bytes name;   /* SETXATTR, REMOVEXATTR */
    sk_bytes value;  /* SETXATTR */
    sk_bytes target; /* SYMLINK */
    sk_bytes data;   /* WRITE: the rest of the payload */
    uint32_t mode;   /* CREATE, MKDIR, MKNOD, SETATTR; FALLOCATE: its mode argument */
    uint32_t uid, gid;
    uint32_t mask;   /* SETATTR */
    uint32_t flags;  /* RENAME */
    uint64_t offset; /* WRITE, FALLOCATE */
    uint64_t length; /* FALLOCATE */
    uint64_t size;   /* TRUNCATE, SETATTR */
    uint64_t rdev;   /* MKNOD */
    int64_t atime_ns, mtime_ns; /* SETATTR */
} sk_op;

/* Check a relative path; `empty_ok`: the empty path (the replicated directory) is accepted. */
int sk_path_check(sk_bytes path, bool empty_ok, sk_err *err);

/* Is `type` an operation this file encodes (sk_type_is_applied)? */
bool sk_op_type(uint8_t type);

/* Payload size of `op` (validated as sk_op_encode does). */
int sk_op_size(const sk_op *op, size_t *size, sk_err *err);

/* Encode `op`'s payload into out (cap bytes); *len = bytes written. Refuses what a receiver would
 * refuse (bad paths, oversize names...). */
int sk_op_encode(const sk_op *op, uint8_t *out, size_t cap, size_t *len, sk_err *err);

/* WRITE only: everything before the data (path, offset), to send the data from its own buffer. */
int sk_op_encode_write_prefix(const sk_op *op, uint8_t *out, size_t cap, size_t *len, sk_err *err);

/* Decode the payload of an operation frame (type and flags from its header). */
int sk_op_decode(uint8_t type, uint16_t flags, const uint8_t *payload, size_t len, sk_op *out, sk_err *err);

/* ------------------------------------------------------------------ control payloads */

typedef struct sk_ack {
    uint64_t received, applied, durable; /* highest primary sequence numbers; durable <= applied <= received */
} sk_ack;
#define SK_ACK_SIZE 24

typedef struct sk_error_msg {
    uint64_t seq;     /* the primary's frame that failed (0: none) */
    uint32_t errnum;  /* Linux errno */
    sk_bytes reason;  /* UTF-8 text, at most SK_ERROR_REASON_MAX bytes */
} sk_error_msg;

enum sk_sync_mode { SK_SYNC_JOURNAL = 1, SK_SYNC_CHECKSUM = 2, SK_SYNC_FULL = 3 };
enum sk_sums { SK_SUMS_NONE = 0, SK_SUMS_ALL = 1, SK_SUMS_PATHS = 2 };

typedef struct sk_progress {
    uint64_t done, total;
} sk_progress;

/* MANIFEST_REQ: which checksums; with SK_SUMS_PATHS, `count` paths follow (read them with
 * sk_manifest_req_next). */
typedef struct sk_manifest_req {
    uint8_t sums;
    uint32_t count;
    sk_rd paths; /* the remaining paths, for sk_manifest_req_next */
} sk_manifest_req;

/* One entry of a MANIFEST chunk: a file system object of the secondary's copy. */
typedef struct sk_entry {
    sk_bytes path;
    uint8_t kind; /* 'f' file, 'd' directory, 'l' symlink, 'o' other (fifo, socket, device) */
    bool has_sums;
    uint32_t mode, uid, gid;
    uint64_t size;
    int64_t mtime_ns;
    uint64_t rdev;
    sk_bytes target;     /* symlinks */
    uint64_t sums_first; /* index of the first 64 KiB block summed: a file's sums may span entries */
    uint32_t nsums;
    sk_bytes sums;       /* nsums * SK_SUM_SIZE bytes */
} sk_entry;

typedef struct sk_manifest_iter {
    sk_rd r;
    uint32_t left;
} sk_manifest_iter;

typedef struct sk_manifest_writer {
    uint8_t *out;
    size_t cap, pos;
    uint32_t count;
} sk_manifest_writer;

int sk_ack_encode(const sk_ack *a, uint8_t *out, size_t cap, size_t *len, sk_err *err);
int sk_ack_decode(const uint8_t *p, size_t len, sk_ack *out, sk_err *err);
/* A reason above SK_ERROR_REASON_MAX bytes is cut to it (at a UTF-8 character boundary). */
int sk_error_encode(const sk_error_msg *e, uint8_t *out, size_t cap, size_t *len, sk_err *err);
int sk_error_decode(const uint8_t *p, size_t len, sk_error_msg *out, sk_err *err);
int sk_sync_begin_encode(uint8_t mode, uint8_t *out, size_t cap, size_t *len, sk_err *err);
int sk_sync_begin_decode(const uint8_t *p, size_t len, uint8_t *mode, sk_err *err);
int sk_sync_end_encode(uint64_t generation, uint8_t *out, size_t cap, size_t *len, sk_err *err);
int sk_sync_end_decode(const uint8_t *p, size_t len, uint64_t *generation, sk_err *err);
int sk_progress_encode(const sk_progress *pr, uint8_t *out, size_t cap, size_t *len, sk_err *err);
int sk_progress_decode(const uint8_t *p, size_t len, sk_progress *out, sk_err *err);

/* MANIFEST_REQ: `paths` (count of them) only with SK_SUMS_PATHS. */
int sk_manifest_req_encode(uint8_t sums, const sk_bytes *paths, uint32_t count, uint8_t *out, size_t cap,
                           size_t *len, sk_err *err);
/* Checks every path before returning (a bad path anywhere refuses the whole request). */
int sk_manifest_req_decode(const uint8_t *p, size_t len, sk_manifest_req *out, sk_err *err);
/* 1: *path set; 0: no more. */
int sk_manifest_req_next(sk_manifest_req *req, sk_bytes *path);

void sk_manifest_writer_init(sk_manifest_writer *w, uint8_t *out, size_t cap);
/* SK_ESPACE when the entry does not fit (the writer is unchanged: send the chunk, start another). */
int sk_manifest_writer_add(sk_manifest_writer *w, const sk_entry *e, sk_err *err);
/* Patches the count; returns the chunk's payload length in *len. */
int sk_manifest_writer_finish(sk_manifest_writer *w, size_t *len, sk_err *err);

/* Checks the whole chunk first (every entry), then iterate with sk_manifest_next. */
int sk_manifest_begin(const uint8_t *p, size_t len, sk_manifest_iter *it, uint32_t *count, sk_err *err);
/* 1: *e set; 0: end; negative: malformed (only if sk_manifest_begin was not used). */
int sk_manifest_next(sk_manifest_iter *it, sk_entry *e, sk_err *err);

/* The order of a manifest's entries (a directory walk): the directory itself ("") first; then,
 * level by level, a directory's entries in byte order of their names before the entries under its
 * subdirectories, subdirectories taken in byte order of their names. A path is before every path
 * under it. Negative, 0 or positive, like memcmp. Both sides walk in this order, so two manifests
 * can be compared in one pass without sorting either. */
int sk_walk_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

/* Check the payload of any v2 frame type (operations and control), as the receiver does before
 * acting on it. HELLO and HELLO_OK payloads are checked by sk_hello. */
int sk_payload_check(uint8_t type, uint16_t flags, const uint8_t *p, size_t len, sk_err *err);

#endif
