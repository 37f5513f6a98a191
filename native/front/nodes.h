/* The front's inode table: one node per backing object (keyed by device and inode number), each
 * with the kernel's lookup count and its names.
 *
 * A name is an alias (parent node, entry name): the path of a node is its first alias's parent's
 * path plus the name, up to the root. A renamed directory therefore carries every path below it
 * without a walk. A file with several hard links keeps the names it was seen under (up to
 * SK_MAX_ALIASES); any of them names the same object, here and on the secondary.
 *
 * Descriptors (ADR 0037): a directory's node holds an O_PATH descriptor of it for its whole life
 * (its children are reached through it). Any other node holds none while it has a known name: an
 * operation that needs one opens it through the first name (parent's descriptor + entry name) and
 * checks it is the same object (device, inode), then closes it (sk_nodes_fd). A file whose last
 * known name goes (unlink, a rename over it) gets a descriptor of its own just before
 * (sk_nodes_hold): an unlinked file still open keeps being served. So the descriptors held are
 * the directories the kernel caches plus such files, not one per cached inode: a tree of 30,000
 * files works under a limit of 20,000 (or 1,024).
 *
 * Locking: the table's mutex protects the hash, the counts and the aliases (it is held only for
 * memory work, never across a blocking call). Aliases change only while the front holds its
 * ordering lock (shared for lookups that add a name, exclusive for the namespace operations that
 * remove or move names): see front.c.
 */
#ifndef SAFEKIT_FRONT_NODES_H
#define SAFEKIT_FRONT_NODES_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#define SK_MAX_ALIASES 8

struct sk_node;

struct sk_alias {
	struct sk_node *parent; /* pinned (its pins count this alias) */
	char *name;
};

struct sk_node {
	struct sk_node *hnext;
	dev_t dev;
	ino_t ino;
	int fd;            /* O_PATH | O_NOFOLLOW, owned: directories; other objects once unnamed; else -1 */
	mode_t type;       /* S_IFMT bits */
	uint64_t nlookup;  /* the kernel's references (lookup replies not yet forgotten) */
	uint64_t pins;     /* aliases of other nodes whose parent this node is */
	struct sk_alias aliases[SK_MAX_ALIASES];
	unsigned naliases;
	bool gone;         /* its last link was removed: no path names it, nothing is replicated */
	pthread_mutex_t lock; /* orders a file's data changes with their submission to the sink */
};

#define SK_MAX_DIRS 64

struct sk_nodes {
	pthread_mutex_t lock;
	struct sk_node **buckets;
	size_t nbuckets;
	size_t count;
	size_t fds; /* descriptors held by nodes */
	struct sk_node root;
	/* Several replicated directories: the root is no backing directory (its fd is -1) but holds
	 * "0", "1", ... each the root of dir_fds[i]; every path then starts with that index. */
	bool multi;
	unsigned ndirs;
	int dir_fds[SK_MAX_DIRS]; /* O_PATH, owned */
};

/* Opens the backing directory (O_PATH): 0 or a negative errno. */
int sk_nodes_init(struct sk_nodes *t, const char *backing);
/* The root of several directories (their fds, opened before anything was mounted over them: each
 * is duplicated as O_PATH here, the caller keeps its own). 0 or a negative errno. */
int sk_nodes_init_multi(struct sk_nodes *t, const int *dir_fds, unsigned ndirs);
void sk_nodes_destroy(struct sk_nodes *t);
size_t sk_nodes_count(struct sk_nodes *t);

/* The node of the object `fd` (an O_PATH descriptor of parent/name, whose stat is st): the one
 * already known for (st_dev, st_ino), or a new one. Takes `fd` (closed if a node existed); adds
 * the alias (parent, name); adds `lookups` to the kernel's count. NULL on ENOMEM. */
struct sk_node *sk_nodes_intern(struct sk_nodes *t, struct sk_node *parent, const char *name, int fd,
				const struct stat *st, uint64_t lookups);
/* An O_PATH descriptor of node for one operation: its own, or one opened through its first known
 * name and checked to be the same object (*owned then: the caller closes it). The descriptor or a
 * negative errno (-ESTALE: no name reaches it any more; -ENOTSUP: the root of several
 * directories, which has none). Callable with or without the ordering lock. */
int sk_nodes_fd(struct sk_nodes *t, struct sk_node *node, bool *owned);
/* parent/name (an entry of the object (dev, ino)) is about to be removed or replaced, maybe its
 * last name: its node, if known, gets a descriptor of its own first (the caller holds the
 * ordering lock exclusively). */
void sk_nodes_hold(struct sk_nodes *t, dev_t dev, ino_t ino, struct sk_node *parent, const char *name);
/* Descriptors held by nodes (the root's and the directories' included). */
size_t sk_nodes_fds(struct sk_nodes *t);
/* The kernel forgot n lookups: frees the node when nothing refers to it any more. */
void sk_nodes_forget(struct sk_nodes *t, struct sk_node *node, uint64_t n);

/* Namespace changes, applied locally already (the caller holds the ordering lock exclusively).
 * The object is named by its (dev, ino) as it was stat'ed before the change; nothing happens if
 * no node is known for it. Looking it up and changing it happen under one hold of the table's
 * lock, so a FORGET running meanwhile cannot free it in between. */
/* parent/name no longer names the object; when that was its last link, its node is gone. */
void sk_nodes_unname(struct sk_nodes *t, dev_t dev, ino_t ino, struct sk_node *parent, const char *name);
/* The object's name oldparent/oldname is now newparent/newname. 0 or -ENOMEM. */
int sk_nodes_move(struct sk_nodes *t, dev_t dev, ino_t ino, struct sk_node *oldparent, const char *oldname,
		  struct sk_node *newparent, const char *newname);

/* The path of node relative to the root ("" for the root), malloc'd, NUL-terminated, its length
 * in *len. NULL with errno: ENOENT when no name reaches it (gone), ENOMEM. A node whose known
 * names were all removed while another hard link remains is found by a walk of the tree. */
char *sk_nodes_path(struct sk_nodes *t, struct sk_node *node, size_t *len);
/* The path of parent/name. NULL with errno as above. */
char *sk_nodes_child_path(struct sk_nodes *t, struct sk_node *parent, const char *name, size_t *len);

#endif
