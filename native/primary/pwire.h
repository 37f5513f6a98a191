/* The primary's side of the wire payloads: the front's operation record (copied into a plain
 * struct: sink.h and native/common's sk_ops.h both name a `struct sk_op`, so no file includes
 * both) encoded as a v2 operation payload, and the secondary's answers decoded.
 *
 * Pure: no I/O, no threads. */
#ifndef SKP_PWIRE_H
#define SKP_PWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sk_err.h"

/* One operation as the front hands it (sink.h's fields), kinds = the wire's frame types. */
typedef struct skp_op {
    uint8_t type;       /* sink.h's kind: CREATE 10 .. LINK 24 (= the v2 frame types) */
    uint32_t dir;
    const char *path;
    size_t path_len;
    const char *path2;  /* RENAME, LINK: the new name */
    size_t path2_len;
    uint64_t offset, length, size, rdev;
    uint32_t mode, uid, gid, mask;
    uint32_t flags;     /* RENAME: renameat2 flags; FALLOCATE: its mode; FSYNC: 1 = datasync */
    int64_t atime_ns, mtime_ns;
    const void *name;   /* SETXATTR, REMOVEXATTR */
    size_t name_len;
    const void *value;  /* SETXATTR: the value; SYMLINK: the target */
    size_t value_len;
    const void *data;   /* WRITE */
    size_t data_len;
} skp_op;

/* The frame flags of an operation: FSYNC is a barrier (ACK wanted; DATASYNC for fdatasync). */
uint16_t skp_op_frame_flags(const skp_op *op);

/* Payload bytes of `op`, checked as the encoder checks (SK_OK or a refusal: the front sent what
 * the wire cannot carry; the operation cannot be replicated). */
int skp_op_size(const skp_op *op, size_t *len, sk_err *err);
/* Encode into out (cap >= skp_op_size). */
int skp_op_encode(const skp_op *op, uint8_t *out, size_t cap, size_t *len, sk_err *err);

/* Control payloads. */
int skp_sync_begin(uint8_t mode, uint8_t *out, size_t cap, size_t *len);
int skp_sync_end(uint64_t generation, uint8_t *out, size_t cap, size_t *len);
int skp_manifest_req_none(uint8_t *out, size_t cap, size_t *len);
int skp_setattr_root(uint32_t mode, uint32_t uid, uint32_t gid, int64_t atime_ns, int64_t mtime_ns, uint8_t *out,
                     size_t cap, size_t *len);
int skp_path_only(uint8_t type, const char *path, size_t path_len, uint8_t *out, size_t cap, size_t *len);
int skp_setxattr(const char *path, size_t path_len, const void *name, size_t name_len, const void *value,
                 size_t value_len, uint8_t *out, size_t cap, size_t *len);

/* The secondary's frames. */
typedef struct skp_answer {
    int kind;           /* SKP_A_ACK, SKP_A_ERROR, SKP_A_MANIFEST, SKP_A_OTHER */
    uint64_t received, applied, durable; /* ACK */
    uint64_t err_seq;   /* ERROR */
    uint32_t err_errno;
    char reason[SK_REASON_MAX + 64];
    uint32_t entries;   /* MANIFEST: entries in this chunk */
    uint32_t non_root;  /* ... of which not the directory itself */
    bool last;          /* MANIFEST: the last chunk */
} skp_answer;
enum { SKP_A_ACK = 1, SKP_A_ERROR, SKP_A_MANIFEST, SKP_A_PING, SKP_A_BYE };

/* Decode an opened frame's payload. SK_OK, or a refusal (the connection ends). */
int skp_answer_decode(uint8_t type, uint16_t flags, const uint8_t *payload, size_t len, skp_answer *a, sk_err *err);

#endif
