/* The inode table (see nodes.h). */
#include "nodes.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WALK_MAX_DEPTH 128

static size_t bucket_of(const struct sk_nodes *t, dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev * 0xC2B2AE3D27D4EB4Full;
	h ^= h >> 29;
	return (size_t)(h & (t->nbuckets - 1));
}

static void hash_insert(struct sk_nodes *t, struct sk_node *n)
{
	size_t b = bucket_of(t, n->dev, n->ino);
	n->hnext = t->buckets[b];
	t->buckets[b] = n;
	t->count++;
}

static void hash_remove(struct sk_nodes *t, struct sk_node *n)
{
	struct sk_node **p = &t->buckets[bucket_of(t, n->dev, n->ino)];
	while (*p && *p != n)
		p = &(*p)->hnext;
	if (*p) {
		*p = n->hnext;
		t->count--;
	}
}

static void hash_grow(struct sk_nodes *t)
{
	size_t nb = t->nbuckets * 2;
	struct sk_node **fresh = calloc(nb, sizeof(*fresh));
	if (!fresh)
		return; /* longer chains, still correct */
	struct sk_node **old = t->buckets;
	size_t ob = t->nbuckets;
	t->buckets = fresh;
	t->nbuckets = nb;
	t->count = 0;
	for (size_t i = 0; i < ob; i++) {
		struct sk_node *n = old[i];
		while (n) {
			struct sk_node *next = n->hnext;
			hash_insert(t, n);
			n = next;
		}
	}
	free(old);
}

static struct sk_node *hash_find(const struct sk_nodes *t, dev_t dev, ino_t ino)
{
	for (struct sk_node *n = t->buckets[bucket_of(t, dev, ino)]; n; n = n->hnext)
		if (n->dev == dev && n->ino == ino)
			return n;
	return NULL;
}

int sk_nodes_init(struct sk_nodes *t, const char *backing)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
	t->nbuckets = 1024;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	if (!t->buckets)
		return -ENOMEM;
	struct stat st;
	int fd = open(backing, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		free(t->buckets);
		t->buckets = NULL;
		return -err;
	}
	struct sk_node *root = &t->root;
	root->fd = fd;
	root->dev = st.st_dev;
	root->ino = st.st_ino;
	root->type = S_IFDIR;
	root->nlookup = 1;
	pthread_mutex_init(&root->lock, NULL);
	hash_insert(t, root);
	t->fds = 1;
	return 0;
}

int sk_nodes_init_multi(struct sk_nodes *t, const int *dir_fds, unsigned ndirs)
{
	memset(t, 0, sizeof(*t));
	if (ndirs == 0 || ndirs > SK_MAX_DIRS)
		return -EINVAL;
	pthread_mutex_init(&t->lock, NULL);
	t->nbuckets = 1024;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	if (!t->buckets)
		return -ENOMEM;
	for (unsigned i = 0; i < ndirs; i++) {
		t->dir_fds[i] = openat(dir_fds[i], ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (t->dir_fds[i] < 0) {
			int err = errno;
			while (i-- > 0)
				close(t->dir_fds[i]);
			free(t->buckets);
			t->buckets = NULL;
			return -err;
		}
	}
	t->multi = true;
	t->ndirs = ndirs;
	struct sk_node *root = &t->root;
	root->fd = -1; /* no backing directory: the front answers for it */
	root->dev = (dev_t)-1;
	root->ino = (ino_t)-1;
	root->type = S_IFDIR;
	root->nlookup = 1;
	pthread_mutex_init(&root->lock, NULL);
	hash_insert(t, root);
	return 0;
}

static void free_node(struct sk_nodes *t, struct sk_node *n)
{
	if (n->fd >= 0) {
		close(n->fd);
		t->fds--;
	}
	pthread_mutex_destroy(&n->lock);
	free(n);
}

/* Frees n and the parents it alone kept, when nothing refers to them. Table lock held. */
static void release_if_unused(struct sk_nodes *t, struct sk_node *n)
{
	if (n == &t->root || n->nlookup > 0 || n->pins > 0)
		return;
	hash_remove(t, n);
	for (unsigned i = 0; i < n->naliases; i++) {
		struct sk_node *parent = n->aliases[i].parent;
		free(n->aliases[i].name);
		parent->pins--;
		release_if_unused(t, parent);
	}
	free_node(t, n);
}

void sk_nodes_destroy(struct sk_nodes *t)
{
	if (!t->buckets)
		return;
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct sk_node *n = t->buckets[i];
		while (n) {
			struct sk_node *next = n->hnext;
			for (unsigned a = 0; a < n->naliases; a++)
				free(n->aliases[a].name);
			if (n == &t->root) {
				if (n->fd >= 0)
					close(n->fd);
				pthread_mutex_destroy(&n->lock);
			} else {
				free_node(t, n);
			}
			n = next;
		}
	}
	free(t->buckets);
	t->buckets = NULL;
	for (unsigned i = 0; i < t->ndirs; i++)
		close(t->dir_fds[i]);
	t->ndirs = 0;
	pthread_mutex_destroy(&t->lock);
}

size_t sk_nodes_count(struct sk_nodes *t)
{
	pthread_mutex_lock(&t->lock);
	size_t n = t->count;
	pthread_mutex_unlock(&t->lock);
	return n;
}

static int find_alias(const struct sk_node *n, const struct sk_node *parent, const char *name)
{
	for (unsigned i = 0; i < n->naliases; i++)
		if (n->aliases[i].parent == parent && strcmp(n->aliases[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* Removes alias i (keeps the order of the others: the first one names the node). Lock held. The
 * caller releases the old parent when it may be unused. */
static struct sk_node *drop_alias(struct sk_node *n, unsigned i)
{
	struct sk_node *parent = n->aliases[i].parent;
	free(n->aliases[i].name);
	memmove(&n->aliases[i], &n->aliases[i + 1], (n->naliases - i - 1) * sizeof(n->aliases[0]));
	n->naliases--;
	parent->pins--;
	return parent;
}

/* Adds parent/name as n's newest name (the first one stays the one paths use). Lock held. */
static int add_alias(struct sk_nodes *t, struct sk_node *n, struct sk_node *parent, const char *name)
{
	if (n == &t->root || find_alias(n, parent, name) >= 0)
		return 0;
	char *copy = strdup(name);
	if (!copy)
		return -ENOMEM;
	struct sk_node *evicted = NULL;
	if (n->naliases == SK_MAX_ALIASES)
		evicted = drop_alias(n, n->naliases - 1);
	n->aliases[n->naliases].parent = parent;
	n->aliases[n->naliases].name = copy;
	n->naliases++;
	parent->pins++;
	if (evicted)
		release_if_unused(t, evicted);
	return 0;
}

struct sk_node *sk_nodes_intern(struct sk_nodes *t, struct sk_node *parent, const char *name, int fd,
				const struct stat *st, uint64_t lookups)
{
	pthread_mutex_lock(&t->lock);
	struct sk_node *n = hash_find(t, st->st_dev, st->st_ino);
	if (n) {
		close(fd);
	} else {
		n = calloc(1, sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&t->lock);
			close(fd);
			return NULL;
		}
		n->dev = st->st_dev;
		n->ino = st->st_ino;
		n->type = st->st_mode & S_IFMT;
		/* a directory keeps its descriptor (its entries are reached through it); anything
		 * else is opened through its name when needed (ADR 0037) */
		if (n->type == S_IFDIR) {
			n->fd = fd;
			t->fds++;
		} else {
			n->fd = -1;
			close(fd);
		}
		pthread_mutex_init(&n->lock, NULL);
		if (t->count >= t->nbuckets)
			hash_grow(t);
		hash_insert(t, n);
	}
	/* found again under a name: linked again, or an inode number reused after a file we had
	 * marked gone was freed by the backing file system */
	n->gone = false;
	n->nlookup += lookups;
	if (add_alias(t, n, parent, name) < 0) {
		n->nlookup -= lookups;
		release_if_unused(t, n);
		n = NULL;
	}
	pthread_mutex_unlock(&t->lock);
	return n;
}

void sk_nodes_forget(struct sk_nodes *t, struct sk_node *node, uint64_t n)
{
	pthread_mutex_lock(&t->lock);
	node->nlookup = node->nlookup > n ? node->nlookup - n : 0;
	release_if_unused(t, node);
	pthread_mutex_unlock(&t->lock);
}

/* When n has no known name left: gone if it has no link either (or no descriptor: then nothing
 * reaches it). Lock held. */
static void check_gone(struct sk_node *n)
{
	struct stat st;
	if (n->naliases == 0 && (n->fd < 0 || (fstatat(n->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 &&
						st.st_nlink == 0)))
		n->gone = true;
}

/* Opens parent/name (O_PATH) and checks it is (dev, ino): the descriptor or -1. */
static int open_checked(int parent_fd, const char *name, dev_t dev, ino_t ino)
{
	if (parent_fd < 0)
		return -1;
	int fd = openat(parent_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd >= 0 && (fstat(fd, &st) < 0 || st.st_dev != dev || st.st_ino != ino)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

int sk_nodes_fd(struct sk_nodes *t, struct sk_node *n, bool *owned)
{
	*owned = false;
	int own = __atomic_load_n(&n->fd, __ATOMIC_ACQUIRE);
	if (own >= 0)
		return own;
	if (n == &t->root)
		return -ENOTSUP; /* the root of several directories */
	/* a rename may move the name between the copy and the open: the check sees it, try again */
	for (int attempt = 0; attempt < 8; attempt++) {
		char name[NAME_MAX + 1];
		pthread_mutex_lock(&t->lock);
		if (n->fd >= 0) {
			own = n->fd;
			pthread_mutex_unlock(&t->lock);
			return own;
		}
		if (n->naliases == 0) {
			pthread_mutex_unlock(&t->lock);
			return -ESTALE;
		}
		struct sk_node *parent = n->aliases[0].parent;
		size_t len = strlen(n->aliases[0].name);
		if (len > NAME_MAX) {
			pthread_mutex_unlock(&t->lock);
			return -ENAMETOOLONG;
		}
		memcpy(name, n->aliases[0].name, len + 1);
		parent->pins++; /* its descriptor stays open meanwhile */
		pthread_mutex_unlock(&t->lock);
		int fd = open_checked(parent->fd, name, n->dev, n->ino);
		int err = errno;
		pthread_mutex_lock(&t->lock);
		parent->pins--;
		release_if_unused(t, parent);
		pthread_mutex_unlock(&t->lock);
		if (fd >= 0) {
			*owned = true;
			return fd;
		}
		if (err == EMFILE || err == ENFILE || err == ENOMEM)
			return -err;
	}
	return -ESTALE;
}

void sk_nodes_hold(struct sk_nodes *t, dev_t dev, ino_t ino, struct sk_node *parent, const char *name)
{
	pthread_mutex_lock(&t->lock);
	struct sk_node *n = hash_find(t, dev, ino);
	if (!n || n->fd >= 0) {
		pthread_mutex_unlock(&t->lock);
		return;
	}
	n->pins++; /* alive meanwhile (a FORGET may come) */
	pthread_mutex_unlock(&t->lock);
	int fd = open_checked(parent->fd, name, dev, ino);
	pthread_mutex_lock(&t->lock);
	if (fd >= 0 && n->fd < 0) {
		__atomic_store_n(&n->fd, fd, __ATOMIC_RELEASE);
		t->fds++;
		fd = -1;
	}
	n->pins--;
	release_if_unused(t, n);
	pthread_mutex_unlock(&t->lock);
	if (fd >= 0)
		close(fd);
}

size_t sk_nodes_fds(struct sk_nodes *t)
{
	pthread_mutex_lock(&t->lock);
	size_t n = t->fds;
	pthread_mutex_unlock(&t->lock);
	return n;
}

void sk_nodes_unname(struct sk_nodes *t, dev_t dev, ino_t ino, struct sk_node *parent, const char *name)
{
	pthread_mutex_lock(&t->lock);
	struct sk_node *node = hash_find(t, dev, ino);
	if (!node) {
		pthread_mutex_unlock(&t->lock);
		return;
	}
	int i = find_alias(node, parent, name);
	struct sk_node *old = i >= 0 ? drop_alias(node, (unsigned)i) : NULL;
	check_gone(node);
	if (node->type == S_IFDIR && node->naliases == 0)
		node->gone = true; /* a directory has one name: removed, or replaced by a rename */
	if (old)
		release_if_unused(t, old);
	pthread_mutex_unlock(&t->lock);
}

int sk_nodes_move(struct sk_nodes *t, dev_t dev, ino_t ino, struct sk_node *oldparent, const char *oldname,
		  struct sk_node *newparent, const char *newname)
{
	int err = 0;
	pthread_mutex_lock(&t->lock);
	struct sk_node *node = hash_find(t, dev, ino);
	if (!node) {
		pthread_mutex_unlock(&t->lock);
		return 0;
	}
	int i = find_alias(node, oldparent, oldname);
	if (i >= 0 && find_alias(node, newparent, newname) < 0) {
		char *copy = strdup(newname);
		if (!copy) {
			err = -ENOMEM;
		} else {
			/* in place: the name paths use stays the one paths use */
			struct sk_alias *a = &node->aliases[i];
			free(a->name);
			a->name = copy;
			if (a->parent != newparent) {
				a->parent = newparent;
				newparent->pins++;
				oldparent->pins--;
				release_if_unused(t, oldparent);
			}
		}
	} else if (i >= 0) {
		/* both names are links of it: rename() left both in place (the caller does not call
		 * this then); nothing to change */
	} else {
		err = add_alias(t, node, newparent, newname);
	}
	node->gone = false;
	pthread_mutex_unlock(&t->lock);
	return err;
}

/* ------------------------------------------------------------------ paths */

/* Builds the path of n, table lock held. Returns NULL with errno; *unnamed gets the node (n or an
 * ancestor) that has no known name but may still have a link (a walk can find it). */
static char *build_path(struct sk_nodes *t, struct sk_node *n, size_t *len, struct sk_node **unnamed)
{
	size_t total = 0;
	unsigned depth = 0;
	*unnamed = NULL;
	for (struct sk_node *p = n; p != &t->root; p = p->aliases[0].parent) {
		if (p->naliases == 0) {
			if (!p->gone)
				*unnamed = p;
			errno = ENOENT;
			return NULL;
		}
		total += strlen(p->aliases[0].name) + (depth ? 1 : 0);
		if (++depth > 4096) { /* a cycle would be a bug: never loop */
			errno = ELOOP;
			return NULL;
		}
	}
	char *out = malloc(total + 1);
	if (!out) {
		errno = ENOMEM;
		return NULL;
	}
	out[total] = '\0';
	size_t end = total;
	for (struct sk_node *p = n; p != &t->root; p = p->aliases[0].parent) {
		const char *name = p->aliases[0].name;
		size_t l = strlen(name);
		if (end != total)
			out[--end] = '/';
		end -= l;
		memcpy(out + end, name, l);
	}
	*len = total;
	return out;
}

/* Depth-first search of the backing tree below dirfd for (dev, ino); the components of the path
 * found are in names[0..*depth). 1 found, 0 not, negative errno. */
static int walk_for(int at, dev_t dev, ino_t ino, char **names, unsigned *depth)
{
	if (*depth >= WALK_MAX_DEPTH)
		return 0;
	int fd = openat(at, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	DIR *dp = fdopendir(fd);
	if (!dp) {
		close(fd);
		return 0;
	}
	int found = 0;
	struct dirent *e;
	while (!found && (e = readdir(dp)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		struct stat st;
		if (e->d_ino == ino || e->d_type == DT_DIR || e->d_type == DT_UNKNOWN) {
			if (fstatat(dirfd(dp), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != dev)
				continue;
		} else {
			continue;
		}
		names[*depth] = strdup(e->d_name);
		if (!names[*depth]) {
			found = -ENOMEM;
			break;
		}
		(*depth)++;
		if (st.st_ino == ino) {
			found = 1;
		} else if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(dp), e->d_name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0) {
				found = walk_for(sub, dev, ino, names, depth);
				close(sub);
			}
		}
		if (found == 0) {
			(*depth)--;
			free(names[*depth]);
		}
	}
	closedir(dp);
	return found;
}

/* Finds a name of n (all of its known names were removed, another link remains) and records it,
 * with the directories leading to it. 0 or a negative errno. */
static int name_by_walk(struct sk_nodes *t, struct sk_node *n)
{
	char *names[WALK_MAX_DEPTH];
	unsigned depth = 0;
	int found = 0;
	if (!t->multi) {
		found = walk_for(t->root.fd, n->dev, n->ino, names, &depth);
	} else {
		/* names[0] is the directory's index under the root */
		for (unsigned d = 0; found == 0 && d < t->ndirs; d++) {
			char idx[16];
			snprintf(idx, sizeof(idx), "%u", d);
			names[0] = strdup(idx);
			if (!names[0])
				return -ENOMEM;
			depth = 1;
			found = walk_for(t->dir_fds[d], n->dev, n->ino, names, &depth);
			if (found != 1) {
				free(names[0]);
				depth = 0;
			}
		}
	}
	int err = found == 1 ? 0 : found == 0 ? -ENOENT : found;
	struct sk_node *parent = &t->root;
	for (unsigned i = 0; i < depth; i++) {
		if (!err) {
			struct stat st;
			int fd = parent == &t->root && t->multi
					 ? openat(t->dir_fds[strtoul(names[i], NULL, 10) % t->ndirs], ".",
						  O_PATH | O_DIRECTORY | O_CLOEXEC)
					 : openat(parent->fd, names[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0 || fstat(fd, &st) < 0) {
				err = -errno;
				if (fd >= 0)
					close(fd);
			} else {
				/* intermediate nodes hold no kernel reference: the alias below pins them */
				parent = sk_nodes_intern(t, parent, names[i], fd, &st, 0);
				if (!parent)
					err = -ENOMEM;
			}
		}
		free(names[i]);
	}
	return err;
}

char *sk_nodes_path(struct sk_nodes *t, struct sk_node *node, size_t *len)
{
	for (int attempt = 0;; attempt++) {
		struct sk_node *unnamed;
		pthread_mutex_lock(&t->lock);
		char *path = build_path(t, node, len, &unnamed);
		int err = errno;
		pthread_mutex_unlock(&t->lock);
		if (path || !unnamed || attempt > 0) {
			errno = err;
			return path;
		}
		/* The walk runs under the caller's ordering lock: names cannot change meanwhile. */
		int werr = name_by_walk(t, unnamed);
		if (werr < 0) {
			pthread_mutex_lock(&t->lock);
			check_gone(unnamed);
			pthread_mutex_unlock(&t->lock);
			errno = -werr;
			return NULL;
		}
	}
}

char *sk_nodes_child_path(struct sk_nodes *t, struct sk_node *parent, const char *name, size_t *len)
{
	size_t plen;
	char *ppath = sk_nodes_path(t, parent, &plen);
	if (!ppath)
		return NULL;
	size_t nlen = strlen(name);
	size_t total = plen + (plen ? 1 : 0) + nlen;
	char *out = realloc(ppath, total + 1);
	if (!out) {
		free(ppath);
		errno = ENOMEM;
		return NULL;
	}
	if (plen)
		out[plen++] = '/';
	memcpy(out + plen, name, nlen + 1);
	*len = total;
	return out;
}
