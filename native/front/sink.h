/* The replication sink: where the FUSE front hands every mutating operation, after it was applied
 * to the backing directory, in the order the operations were applied.
 *
 * The front calls submit() while it still holds the lock that orders the change (see front.c),
 * so the order of the submit() calls is the order of the changes: the sink numbers them and must
 * keep that order on the wire. Two submit() calls may run at the same time only for operations
 * on different files that no one could observe in the other order (see docs/native-front.md).
 *
 * Ownership: every pointer in an sk_op is borrowed for the duration of submit() only; a sink that
 * needs the bytes later copies them before it returns.
 */
#ifndef SAFEKIT_FRONT_SINK_H
#define SAFEKIT_FRONT_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Operation kinds: the wire's frame types where the wire has them (docs/replication.md). */
enum sk_kind {
	SK_CREATE = 10,      /* path, mode, uid, gid (create or truncate to 0) */
	SK_WRITE = 11,       /* path, offset, data/len: the offset where the bytes landed */
	SK_TRUNCATE = 12,    /* path, size (O_TRUNC in an open) */
	SK_FALLOCATE = 13,   /* path, flags = fallocate mode, offset, length */
	SK_SETATTR = 14,     /* path, mask (SK_ATTR_*), mode, uid, gid, atime_ns, mtime_ns, size */
	SK_SETXATTR = 15,    /* path, name, value, flags = XATTR_CREATE/REPLACE */
	SK_REMOVEXATTR = 16, /* path, name */
	SK_MKDIR = 17,       /* path, mode, uid, gid */
	SK_RMDIR = 18,       /* path */
	SK_UNLINK = 19,      /* path */
	SK_RENAME = 20,      /* path -> path2, flags = renameat2 flags */
	SK_SYMLINK = 21,     /* path, target, uid, gid */
	SK_MKNOD = 22,       /* path, mode, rdev, uid, gid */
	SK_FSYNC = 23,       /* path (empty: the root directory), flags = SK_FSYNC_DATASYNC */
	SK_LINK = 24,        /* path (an existing name) -> path2 (the new name). The wire number is
				the codec's to assign (native/common); 24 until it does. */
	SK_REMOVE_TREE = 31, /* path: removed with everything under it (before an object is sent
				whole: a rename from a path not replicated into a replicated one) */
};

/* SETATTR mask bits: the wire's. */
enum {
	SK_ATTR_MODE = 1,
	SK_ATTR_UID = 2,
	SK_ATTR_GID = 4,
	SK_ATTR_ATIME = 8,
	SK_ATTR_MTIME = 16,
	SK_ATTR_SIZE = 32,
};

enum { SK_FSYNC_DATASYNC = 1 };

/* One operation. Paths are relative to the mount root, without a leading '/', "" for the root,
 * never "." or ".." components; they are not NUL-terminated on purpose (use the lengths). */
struct sk_op {
	enum sk_kind kind;
	uint32_t dir;        /* replicated directory index (0 when the front serves one directory) */
	const char *path;
	size_t path_len;
	const char *path2;   /* RENAME: the new path; LINK: the new name */
	size_t path2_len;
	uint64_t offset;     /* WRITE, FALLOCATE */
	uint64_t length;     /* FALLOCATE */
	uint64_t size;       /* TRUNCATE, SETATTR */
	uint32_t mode;       /* with the file type bits */
	uint32_t uid;
	uint32_t gid;
	uint32_t mask;       /* SETATTR */
	uint32_t flags;      /* RENAME, FALLOCATE, SETXATTR, FSYNC */
	uint64_t rdev;       /* MKNOD */
	int64_t atime_ns;    /* SETATTR */
	int64_t mtime_ns;
	const char *name;    /* SETXATTR, REMOVEXATTR: the attribute's name */
	size_t name_len;
	const void *value;   /* SETXATTR: its value; SYMLINK: the target */
	size_t value_len;
	const void *data;    /* WRITE: the bytes written (NULL if the sink said it needs none) */
	size_t data_len;     /* WRITE: how many bytes were written */
};

struct sk_sink;

struct sk_sink_ops {
	/* Take one applied operation; returns its ticket (its sequence number, from 1, increasing
	 * in submission order). Never fails: a sink that loses its peer journals the operation. May
	 * block to apply back-pressure (a full window). */
	uint64_t (*submit)(struct sk_sink *sink, const struct sk_op *op);
	/* Block until every operation up to `ticket` is acknowledged as the sink's contract says
	 * (received and applied, or durable). Returns 0, or a negative errno (the fsync caller gets
	 * it: -EIO when replication is fenced). Called without any of the front's locks held. */
	int (*barrier)(struct sk_sink *sink, uint64_t ticket);
	/* Flush and free: nothing is submitted after this. */
	void (*close)(struct sk_sink *sink);
};

struct sk_sink {
	const struct sk_sink_ops *ops;
	/* false: WRITE records come without their data (replication off), which lets the front
	 * move data from /dev/fuse to the file by splice without reading it. */
	bool wants_data;
};

static inline uint64_t sk_submit(struct sk_sink *sink, const struct sk_op *op)
{
	return sink->ops->submit(sink, op);
}

static inline int sk_barrier(struct sk_sink *sink, uint64_t ticket)
{
	return sink->ops->barrier(sink, ticket);
}

/* The sinks of this directory. spec: "null" (replication off: the FUSE-only baseline),
 * "null-copy" (the same, but the written bytes are handed over, as to a replicating sink),
 * "record:FILE" (one line per operation, for tests), "record-eio:FILE" (the same, every barrier
 * fails with EIO: what a fenced replication does). NULL with errno set on a bad spec. */
struct sk_sink *sk_sink_open(const char *spec);
void sk_sink_close(struct sk_sink *sink);

/* The name of a kind ("WRITE"), for logs and the record sink. */
const char *sk_kind_name(enum sk_kind kind);

#endif
