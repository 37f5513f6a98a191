/* The FUSE front: a passthrough of one backing directory on libfuse3's low-level API that hands
 * every mutating operation to a replication sink (sink.h) after it was applied, in order. */
#ifndef SAFEKIT_FRONT_FRONT_H
#define SAFEKIT_FRONT_FRONT_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>

#include "nodes.h"
#include "sink.h"

#define SK_MAX_WRITE (1u << 20)
/* Bytes written to a file between two starts of its disk writeback (sync_file_range), as the
 * Python front and the secondary's apply do. */
#define SK_EARLY_WRITEBACK (16u << 20)

/* A file or directory handle the kernel holds (the front's list: those it never released, when
 * the connection was aborted at stop, are freed by sk_front_destroy). */
struct sk_live {
	struct sk_live *prev, *next;
	bool dir;
};

struct sk_front {
	struct sk_nodes nodes;
	pthread_mutex_t live_mu;
	struct sk_live *live;
	struct sk_sink *sink;
	/* Orders changes with their submission: shared for changes to one file's data or attributes
	 * (with that node's lock) and for lookups that record a name; exclusive for the operations
	 * that create, remove or move names. */
	pthread_rwlock_t order;
	bool writeback;  /* the kernel's writeback cache (off by default: see docs/native-front.md) */
	bool splice;     /* splice data between /dev/fuse and files where no copy is needed */
	bool early_writeback; /* start the disk writeback of a file every SK_EARLY_WRITEBACK bytes */
	double timeout;  /* attribute and entry cache timeout, seconds */
	/* <notreplicated>: an operation on a path this says is excluded (dir, path relative to that
	 * directory, NUL-terminated) is applied here only: neither submitted nor journaled. NULL:
	 * everything is replicated. */
	bool (*excluded)(void *arg, uint32_t dir, const char *path);
	void *excluded_arg;
};

/* 0 or a negative errno. */
int sk_front_init(struct sk_front *f, const char *backing, struct sk_sink *sink);
/* Several replicated directories under one mount: its root holds "0", "1", ... (read-only
 * there), each the root of dir_fds[i] (opened before anything was mounted; duplicated). Every
 * operation carries its directory's index and a path relative to it. */
int sk_front_init_multi(struct sk_front *f, const int *dir_fds, unsigned ndirs, struct sk_sink *sink);
void sk_front_destroy(struct sk_front *f);
/* The paths (relative to the mount, malloc'd, in a malloc'd array of *count) of the files the
 * kernel holds open for writing: with the writeback cache, where dirty pages may be. NULL with
 * *count 0 when out of memory. */
char **sk_front_written_files(struct sk_front *f, size_t *count);
extern const struct fuse_lowlevel_ops sk_front_ops;

#endif
