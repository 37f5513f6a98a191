/* The FUSE front's operations (front.h).
 *
 * Every handler answers with an errno on failure: nothing escapes. A mutating handler applies the
 * change to the backing directory and submits it to the sink under the ordering lock (and, for a
 * file's data and attributes, the node's lock), so that the sink sees the changes in the order
 * they took effect; a barrier (fsync) is waited for after every lock is released.
 */
#include "front.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

_Static_assert(sizeof(fuse_ino_t) >= sizeof(uintptr_t), "node pointers are the FUSE inode numbers");

struct handle {
	struct sk_live live; /* first: the list's entry is the handle */
	int fd;
	struct sk_node *node;
	bool append;   /* O_APPEND on the backing fd: a write lands at the end, wherever that is */
	bool sync;     /* O_SYNC / O_DSYNC: each write is a barrier */
	bool datasync; /* O_DSYNC without O_SYNC */
	bool writable; /* opened for writing: with the writeback cache, its file may hold dirty pages */
	bool wrote;    /* written since the file's times were last submitted (at fsync and close) */
	uint64_t unflushed; /* bytes written since the disk writeback of the file was last started */
};

struct dir_handle {
	struct sk_live live; /* first */
	DIR *dp;     /* NULL: the root of several directories (its entries are made up here) */
	struct dirent *entry;
	off_t offset;
};

static void live_add(struct sk_front *f, struct sk_live *x, bool dir)
{
	x->dir = dir;
	x->prev = NULL;
	pthread_mutex_lock(&f->live_mu);
	x->next = f->live;
	if (f->live)
		f->live->prev = x;
	f->live = x;
	pthread_mutex_unlock(&f->live_mu);
}

static void live_del(struct sk_front *f, struct sk_live *x)
{
	pthread_mutex_lock(&f->live_mu);
	if (x->prev)
		x->prev->next = x->next;
	else
		f->live = x->next;
	if (x->next)
		x->next->prev = x->prev;
	pthread_mutex_unlock(&f->live_mu);
}

static void handle_free(struct sk_front *f, struct handle *h)
{
	live_del(f, &h->live);
	close(h->fd);
	free(h);
}

static void dir_handle_free(struct sk_front *f, struct dir_handle *d)
{
	live_del(f, &d->live);
	if (d->dp)
		closedir(d->dp);
	free(d);
}

static struct sk_front *front_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct sk_node *node_of(fuse_req_t req, fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return &front_of(req)->nodes.root;
	return (struct sk_node *)(uintptr_t)ino;
}

static fuse_ino_t ino_of(struct sk_front *f, struct sk_node *n)
{
	return n == &f->nodes.root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

static struct handle *handle_of(struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
}

static void proc_path(char *buf, size_t size, int fd)
{
	snprintf(buf, size, "/proc/self/fd/%d", fd);
}

/* An O_PATH descriptor of a node for one call (nodes.h's sk_nodes_fd), released by node_fd_put. */
struct nfd {
	int fd;
	bool owned;
};

static int node_fd_get(struct sk_front *f, struct sk_node *n, struct nfd *x)
{
	x->fd = sk_nodes_fd(&f->nodes, n, &x->owned);
	return x->fd < 0 ? -x->fd : 0;
}

static void node_fd_put(struct nfd *x)
{
	if (x->owned && x->fd >= 0)
		close(x->fd);
	x->fd = -1;
	x->owned = false;
}

static void order_shared(struct sk_front *f)
{
	pthread_rwlock_rdlock(&f->order);
}

static void order_exclusive(struct sk_front *f)
{
	pthread_rwlock_wrlock(&f->order);
}

static void order_unlock(struct sk_front *f)
{
	pthread_rwlock_unlock(&f->order);
}

static int64_t ns_of(struct timespec ts)
{
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The root of several directories (its entries are the directories: nothing is created there). */
static bool is_multi_root(struct sk_front *f, struct sk_node *n)
{
	return f->nodes.multi && n == &f->nodes.root;
}

/* A path of the mount as (directory index, offset of the path relative to it): with several
 * directories the first component is the index. false for the mount's root (not replicated). */
static bool split_path(struct sk_front *f, const char *path, size_t len, uint32_t *dir, size_t *skip)
{
	if (!f->nodes.multi) {
		*dir = 0;
		*skip = 0;
		return true;
	}
	if (len == 0)
		return false;
	size_t i = 0;
	uint32_t d = 0;
	while (i < len && path[i] != '/')
		d = d * 10 + (uint32_t)(path[i++] - '0');
	*dir = d;
	*skip = i < len ? i + 1 : i;
	return true;
}

static bool path_excluded(struct sk_front *f, uint32_t dir, const char *rel)
{
	return f->excluded && f->excluded(f->excluded_arg, dir, rel);
}

/* Submits op at the mount path `path` (NUL-terminated): split into its directory and relative
 * path; 0 (nothing submitted) for the mount root and excluded paths. */
static uint64_t submit_path(struct sk_front *f, struct sk_op *op, const char *path, size_t len)
{
	uint32_t dir;
	size_t skip;
	if (!split_path(f, path, len, &dir, &skip) || path_excluded(f, dir, path + skip))
		return 0;
	op->dir = dir;
	op->path = path + skip;
	op->path_len = len - skip;
	return sk_submit(f->sink, op);
}

/* Submits op for `node` (its path filled in here); 0 when nothing names the node any more (an
 * unlinked file still open: no path to replicate to). Ordering locks held by the caller. */
static uint64_t submit_for(struct sk_front *f, struct sk_node *node, struct sk_op *op)
{
	size_t len;
	char *path = sk_nodes_path(&f->nodes, node, &len);
	if (!path) {
		if (errno != ENOENT)
			fuse_log(FUSE_LOG_ERR, "safekit-front: no path for a changed file (%s): not replicated\n",
				 strerror(errno));
		return 0;
	}
	uint64_t ticket = submit_path(f, op, path, len);
	free(path);
	return ticket;
}

/* Submits op for the entry parent/name. */
static uint64_t submit_child(struct sk_front *f, struct sk_node *parent, const char *name, struct sk_op *op)
{
	size_t len;
	char *path = sk_nodes_child_path(&f->nodes, parent, name, &len);
	if (!path) {
		if (errno != ENOENT)
			fuse_log(FUSE_LOG_ERR, "safekit-front: no path for %s (%s): not replicated\n", name,
				 strerror(errno));
		return 0;
	}
	uint64_t ticket = submit_path(f, op, path, len);
	free(path);
	return ticket;
}

static void submit_times(struct sk_front *f, struct handle *h)
{
	struct stat st;
	if (!h->wrote || fstat(h->fd, &st) < 0)
		return;
	h->wrote = false;
	struct sk_op op = {.kind = SK_SETATTR, .mask = SK_ATTR_ATIME | SK_ATTR_MTIME,
			   .atime_ns = ns_of(st.st_atim), .mtime_ns = ns_of(st.st_mtim)};
	submit_for(f, h->node, &op);
}

/* ------------------------------------------------------------------ lookups */

/* Looks parent/name up and records it as a name of its node (one kernel reference). The caller
 * holds the ordering lock (shared at least). 0 or an errno. */
static int do_lookup(struct sk_front *f, struct sk_node *parent, const char *name, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->attr_timeout = f->timeout;
	e->entry_timeout = f->timeout;
	int fd;
	if (is_multi_root(f, parent)) {
		/* "0", "1", ...: the roots of the replicated directories (their own fds: a path to
		 * them leads through the binds of this very mount) */
		char *end;
		unsigned long i = strtoul(name, &end, 10);
		char canon[24];
		snprintf(canon, sizeof(canon), "%lu", i);
		if (*end || i >= f->nodes.ndirs || strcmp(canon, name) != 0)
			return ENOENT;
		fd = openat(f->nodes.dir_fds[i], ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	} else {
		fd = openat(parent->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd < 0)
		return errno;
	if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		int err = errno;
		close(fd);
		return err;
	}
	struct sk_node *n = sk_nodes_intern(&f->nodes, parent, name, fd, &e->attr, 1);
	if (!n)
		return ENOMEM;
	e->ino = ino_of(f, n);
	return 0;
}

/* Answers with an entry; if the answer did not reach the kernel (the request was interrupted),
 * the lookup it counted is undone: the kernel will never forget it. */
static void reply_entry(fuse_req_t req, struct sk_front *f, const struct fuse_entry_param *e)
{
	if (fuse_reply_entry(req, e) == -ENOENT && e->ino)
		sk_nodes_forget(&f->nodes, node_of(req, e->ino), 1);
}

static void fr_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct sk_front *f = front_of(req);
	struct fuse_entry_param e;
	order_shared(f);
	int err = do_lookup(f, node_of(req, parent), name, &e);
	order_unlock(f);
	if (err == ENOENT) {
		/* a negative entry, cached for the timeout: saves the lookup before each create */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = f->timeout;
		fuse_reply_entry(req, &e);
	} else if (err) {
		fuse_reply_err(req, err);
	} else {
		reply_entry(req, f, &e);
	}
}

static void fr_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	sk_nodes_forget(&front_of(req)->nodes, node_of(req, ino), nlookup);
	fuse_reply_none(req);
}

static void fr_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct sk_front *f = front_of(req);
	for (size_t i = 0; i < count; i++)
		sk_nodes_forget(&f->nodes, node_of(req, forgets[i].ino), forgets[i].nlookup);
	fuse_reply_none(req);
}

/* The attributes of the root of several directories: a directory of root's, 0755. */
static int multi_root_stat(struct sk_front *f, struct stat *st)
{
	if (fstat(f->nodes.dir_fds[0], st) < 0)
		return -1;
	st->st_ino = FUSE_ROOT_ID;
	st->st_mode = S_IFDIR | 0755;
	st->st_nlink = 2 + f->nodes.ndirs;
	st->st_uid = 0;
	st->st_gid = 0;
	st->st_size = 0;
	return 0;
}

static void fr_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	if (!fi && is_multi_root(front_of(req), node_of(req, ino))) {
		if (multi_root_stat(front_of(req), &st) < 0)
			fuse_reply_err(req, errno);
		else
			fuse_reply_attr(req, &st, front_of(req)->timeout);
		return;
	}
	int res;
	if (fi) {
		res = fstat(handle_of(fi)->fd, &st);
	} else {
		struct nfd x;
		int err = node_fd_get(front_of(req), node_of(req, ino), &x);
		if (err)
			return (void)fuse_reply_err(req, err);
		res = fstatat(x.fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
		int saved = errno;
		node_fd_put(&x);
		errno = saved;
	}
	if (res < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_attr(req, &st, front_of(req)->timeout);
}

static void fr_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	struct nfd x;
	int err = node_fd_get(front_of(req), node_of(req, ino), &x);
	if (err)
		return (void)fuse_reply_err(req, err);
	ssize_t n = readlinkat(x.fd, "", buf, sizeof(buf));
	err = errno;
	node_fd_put(&x);
	if (n < 0)
		fuse_reply_err(req, err);
	else if ((size_t)n == sizeof(buf))
		fuse_reply_err(req, ENAMETOOLONG);
	else {
		buf[n] = '\0';
		fuse_reply_readlink(req, buf);
	}
}

static void fr_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	struct sk_front *f = front_of(req);
	struct sk_node *n = node_of(req, ino);
	if (is_multi_root(f, n)) {
		if (fstatvfs(f->nodes.dir_fds[0], &sv) < 0)
			return (void)fuse_reply_err(req, errno);
		return (void)fuse_reply_statfs(req, &sv);
	}
	struct nfd x;
	int err = node_fd_get(f, n, &x);
	if (err)
		return (void)fuse_reply_err(req, err);
	int res = fstatvfs(x.fd, &sv);
	err = errno;
	node_fd_put(&x);
	if (res < 0)
		fuse_reply_err(req, err);
	else
		fuse_reply_statfs(req, &sv);
}

/* ------------------------------------------------------------------ attributes */

/* Applies the parts of a setattr in turn; *done gets the SK_ATTR_* bits of those applied (a
 * failure stops there: what was applied is still replicated). 0 or an errno. */
static int apply_setattr(int nfd, struct stat *attr, int valid, struct handle *h, uint32_t *done)
{
	char procname[64];
	proc_path(procname, sizeof(procname), nfd);
	*done = 0;
	if (valid & FUSE_SET_ATTR_MODE) {
		int res = h ? fchmod(h->fd, attr->st_mode) : chmod(procname, attr->st_mode);
		if (res < 0)
			return errno;
		*done |= SK_ATTR_MODE;
	}
	if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;
		if (fchownat(nfd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return errno;
		*done |= ((valid & FUSE_SET_ATTR_UID) ? SK_ATTR_UID : 0) |
			 ((valid & FUSE_SET_ATTR_GID) ? SK_ATTR_GID : 0);
	}
	if (valid & FUSE_SET_ATTR_SIZE) {
		int res = h ? ftruncate(h->fd, attr->st_size) : -1;
		if (res < 0 && (!h || errno == EBADF || errno == EINVAL))
			res = truncate(procname, attr->st_size);
		if (res < 0)
			return errno;
		/* the peer's truncate gives its copy its own times: ours go with it */
		*done |= SK_ATTR_SIZE | SK_ATTR_ATIME | SK_ATTR_MTIME;
	}
	if (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
		struct timespec tv[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
		if (valid & FUSE_SET_ATTR_ATIME_NOW)
			tv[0].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_ATIME)
			tv[0] = attr->st_atim;
		if (valid & FUSE_SET_ATTR_MTIME_NOW)
			tv[1].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_MTIME)
			tv[1] = attr->st_mtim;
		int res = h ? futimens(h->fd, tv) : utimensat(nfd, "", tv, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
		if (res < 0)
			return errno;
		*done |= ((valid & FUSE_SET_ATTR_ATIME) ? SK_ATTR_ATIME : 0) |
			 ((valid & FUSE_SET_ATTR_MTIME) ? SK_ATTR_MTIME : 0);
	}
	return 0;
}

static void fr_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid, struct fuse_file_info *fi)
{
	struct sk_front *f = front_of(req);
	struct sk_node *n = node_of(req, ino);
	struct handle *h = fi ? handle_of(fi) : NULL;
	struct stat st;
	uint32_t done;
	if (is_multi_root(f, n))
		return (void)fuse_reply_err(req, EPERM);
	struct nfd x;
	int xerr = node_fd_get(f, n, &x);
	if (xerr)
		return (void)fuse_reply_err(req, xerr);
	order_shared(f);
	pthread_mutex_lock(&n->lock);
	int err = apply_setattr(x.fd, attr, valid, h, &done);
	int serr = fstatat(x.fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? errno : 0;
	if (done && !serr) {
		/* the values as they are now (a mode the kernel computed, a time set to "now") */
		struct sk_op op = {.kind = SK_SETATTR, .mask = done, .mode = st.st_mode, .uid = st.st_uid,
				   .gid = st.st_gid, .atime_ns = ns_of(st.st_atim),
				   .mtime_ns = ns_of(st.st_mtim), .size = (uint64_t)st.st_size};
		submit_for(f, n, &op);
	}
	pthread_mutex_unlock(&n->lock);
	order_unlock(f);
	node_fd_put(&x);
	if (err || serr)
		fuse_reply_err(req, err ? err : serr);
	else
		fuse_reply_attr(req, &st, f->timeout);
}

/* The /proc/self/fd name of n's descriptor for a path-based xattr call (x: released by the
 * caller with node_fd_put once done). 0 or an errno. */
static int xattr_target(struct sk_front *f, struct sk_node *n, char *procname, size_t size, struct nfd *x)
{
	x->fd = -1;
	x->owned = false;
	if (is_multi_root(f, n))
		return ENOTSUP; /* the root of several directories: none */
	if (n->type == S_IFLNK)
		return ENOTSUP; /* the /proc link would reach the symlink's target */
	int err = node_fd_get(f, n, x);
	if (err)
		return err;
	proc_path(procname, size, x->fd);
	return 0;
}

static void fr_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
			int flags)
{
	struct sk_front *f = front_of(req);
	struct sk_node *n = node_of(req, ino);
	char procname[64];
	struct nfd x;
	int err = xattr_target(f, n, procname, sizeof(procname), &x);
	if (err)
		return (void)fuse_reply_err(req, err);
	order_shared(f);
	pthread_mutex_lock(&n->lock);
	if (setxattr(procname, name, value, size, flags) < 0) {
		err = errno;
	} else {
		struct sk_op op = {.kind = SK_SETXATTR, .name = name, .name_len = strlen(name),
				   .value = value, .value_len = size, .flags = (uint32_t)flags};
		submit_for(f, n, &op);
	}
	pthread_mutex_unlock(&n->lock);
	order_unlock(f);
	node_fd_put(&x);
	fuse_reply_err(req, err);
}

static void fr_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct sk_front *f = front_of(req);
	struct sk_node *n = node_of(req, ino);
	char procname[64];
	struct nfd x;
	int err = xattr_target(f, n, procname, sizeof(procname), &x);
	if (err)
		return (void)fuse_reply_err(req, err);
	order_shared(f);
	pthread_mutex_lock(&n->lock);
	if (removexattr(procname, name) < 0) {
		err = errno;
	} else {
		struct sk_op op = {.kind = SK_REMOVEXATTR, .name = name, .name_len = strlen(name)};
		submit_for(f, n, &op);
	}
	pthread_mutex_unlock(&n->lock);
	order_unlock(f);
	node_fd_put(&x);
	fuse_reply_err(req, err);
}

static void fr_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char procname[64];
	struct nfd x;
	int err = xattr_target(front_of(req), node_of(req, ino), procname, sizeof(procname), &x);
	if (err)
		return (void)fuse_reply_err(req, err == ENOTSUP ? ENODATA : err);
	char *buf = size ? malloc(size) : NULL;
	ssize_t n = -1;
	if (size && !buf)
		errno = ENOMEM;
	else
		n = getxattr(procname, name, buf, size);
	err = errno;
	node_fd_put(&x);
	if (n < 0)
		fuse_reply_err(req, err);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void fr_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char procname[64];
	struct nfd x;
	int err = xattr_target(front_of(req), node_of(req, ino), procname, sizeof(procname), &x);
	if (err == ENOTSUP)
		return (void)(size ? fuse_reply_buf(req, NULL, 0) : fuse_reply_xattr(req, 0));
	if (err)
		return (void)fuse_reply_err(req, err);
	char *buf = size ? malloc(size) : NULL;
	ssize_t n = -1;
	if (size && !buf)
		errno = ENOMEM;
	else
		n = listxattr(procname, buf, size);
	err = errno;
	node_fd_put(&x);
	if (n < 0)
		fuse_reply_err(req, err);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

/* ------------------------------------------------------------------ whole objects */

static bool dot_or_dotdot(const char *name)
{
	return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

/* Path joined: a/b (a may be ""), malloc'd. */
static char *join_path(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *out = malloc(la + lb + 2);
	if (!out)
		return NULL;
	memcpy(out, a, la);
	size_t k = la;
	if (la)
		out[k++] = '/';
	memcpy(out + k, b, lb + 1);
	return out;
}

static void submit_rel(struct sk_front *f, uint32_t dir, const char *rel, struct sk_op *op)
{
	op->dir = dir;
	op->path = rel;
	op->path_len = strlen(rel);
	sk_submit(f->sink, op);
}

static void send_xattrs(struct sk_front *f, uint32_t dir, const char *rel, int fd)
{
	char procname[64];
	proc_path(procname, sizeof(procname), fd);
	ssize_t n = listxattr(procname, NULL, 0);
	if (n <= 0)
		return;
	char *names = malloc((size_t)n);
	char *value = malloc(65536);
	if (names && value && (n = listxattr(procname, names, (size_t)n)) > 0) {
		for (char *x = names; x < names + n; x += strlen(x) + 1) {
			ssize_t v = getxattr(procname, x, value, 65536);
			if (v < 0)
				continue;
			struct sk_op op = {.kind = SK_SETXATTR, .name = x, .name_len = strlen(x), .value = value,
					   .value_len = (size_t)v};
			submit_rel(f, dir, rel, &op);
		}
	}
	free(names);
	free(value);
}

static void send_attrs(struct sk_front *f, uint32_t dir, const char *rel, const struct stat *st, bool symlink)
{
	struct sk_op op = {.kind = SK_SETATTR, .mask = SK_ATTR_UID | SK_ATTR_GID | SK_ATTR_ATIME | SK_ATTR_MTIME,
			   .mode = st->st_mode, .uid = st->st_uid, .gid = st->st_gid,
			   .atime_ns = ns_of(st->st_atim), .mtime_ns = ns_of(st->st_mtim)};
	if (!symlink)
		op.mask |= SK_ATTR_MODE;
	submit_rel(f, dir, rel, &op);
}

/* The object at pfd/name, sent whole as path `rel` of directory `dir` (a directory with what is
 * under it, excluded paths left out), for an object renamed from a path
 * not replicated into a replicated one. The ordering lock is held exclusively: nothing changes
 * meanwhile, and the stream gets the object as it is at this point of the order. */
static void send_object(struct sk_front *f, uint32_t dir, const char *rel, int pfd, const char *name,
			unsigned depth)
{
	struct stat st;
	if (depth > 256 || fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	struct sk_op op = {.mode = st.st_mode, .uid = st.st_uid, .gid = st.st_gid};
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX + 1];
		ssize_t t = readlinkat(pfd, name, target, sizeof(target));
		if (t < 0 || (size_t)t >= sizeof(target))
			return;
		op.kind = SK_SYMLINK;
		op.value = target;
		op.value_len = (size_t)t;
		submit_rel(f, dir, rel, &op);
		send_attrs(f, dir, rel, &st, true);
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		op.kind = SK_MKDIR;
		submit_rel(f, dir, rel, &op);
		int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return;
		send_xattrs(f, dir, rel, fd);
		DIR *dp = fdopendir(fd);
		if (!dp) {
			close(fd);
			return;
		}
		struct dirent *e;
		while ((e = readdir(dp)) != NULL) {
			if (dot_or_dotdot(e->d_name))
				continue;
			char *child = join_path(rel, e->d_name);
			if (child && !path_excluded(f, dir, child))
				send_object(f, dir, child, dirfd(dp), e->d_name, depth + 1);
			free(child);
		}
		closedir(dp);
		send_attrs(f, dir, rel, &st, false); /* after its entries: they changed its times */
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		op.kind = SK_MKNOD;
		op.rdev = (uint64_t)st.st_rdev;
		submit_rel(f, dir, rel, &op);
		send_attrs(f, dir, rel, &st, false);
		return;
	}
	op.kind = SK_CREATE;
	submit_rel(f, dir, rel, &op);
	struct sk_op tr = {.kind = SK_TRUNCATE, .size = (uint64_t)st.st_size};
	submit_rel(f, dir, rel, &tr);
	int fd = openat(pfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0) {
		char *buf = malloc(SK_MAX_WRITE);
		off_t pos = 0;
		while (buf && pos < st.st_size) {
			off_t data = lseek(fd, pos, SEEK_DATA);
			if (data < 0)
				break; /* ENXIO: only a hole is left */
			ssize_t n = pread(fd, buf, SK_MAX_WRITE, data);
			if (n <= 0)
				break;
			struct sk_op w = {.kind = SK_WRITE, .offset = (uint64_t)data,
					  .data = f->sink->wants_data ? buf : NULL, .data_len = (size_t)n};
			submit_rel(f, dir, rel, &w);
			pos = data + n;
		}
		free(buf);
		send_xattrs(f, dir, rel, fd);
		close(fd);
	}
	send_attrs(f, dir, rel, &st, false);
}

/* A removal of the whole object at rel (before it is sent whole, or when it left the replicated
 * paths). */
static void submit_remove_tree(struct sk_front *f, uint32_t dir, const char *rel)
{
	struct sk_op op = {.kind = SK_REMOVE_TREE};
	submit_rel(f, dir, rel, &op);
}

/* ------------------------------------------------------------------ namespace */

/* The owner of a new entry: the caller, with the group of a set-group-ID parent. */
static void new_owner(fuse_req_t req, struct sk_node *parent, uid_t *uid, gid_t *gid)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat pst;
	*uid = ctx->uid;
	*gid = ctx->gid;
	if (fstatat(parent->fd, "", &pst, AT_EMPTY_PATH) == 0 && (pst.st_mode & S_ISGID))
		*gid = pst.st_gid;
}

/* mkdir, mknod, symlink: created as root (the kernel checked the caller's permissions), then
 * given to the caller; removed again if that fails, so nothing unreplicated stays. */
static void make_node(fuse_req_t req, fuse_ino_t parent_ino, const char *name, mode_t mode, dev_t rdev,
		      const char *target)
{
	struct sk_front *f = front_of(req);
	struct sk_node *parent = node_of(req, parent_ino);
	uid_t uid;
	gid_t gid;
	struct fuse_entry_param e;
	if (is_multi_root(f, parent))
		return (void)fuse_reply_err(req, EPERM);
	new_owner(req, parent, &uid, &gid);
	order_exclusive(f);
	int res;
	if (target)
		res = symlinkat(target, parent->fd, name);
	else if (S_ISDIR(mode))
		res = mkdirat(parent->fd, name, mode & 07777);
	else
		res = mknodat(parent->fd, name, mode, rdev);
	int err = res < 0 ? errno : 0;
	if (!err && fchownat(parent->fd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
		err = errno;
		unlinkat(parent->fd, name, S_ISDIR(mode) ? AT_REMOVEDIR : 0);
	}
	if (!err) {
		err = do_lookup(f, parent, name, &e);
		if (err) /* it exists, but cannot be served: the kernel will not see it, nor the peer */
			unlinkat(parent->fd, name, S_ISDIR(mode) ? AT_REMOVEDIR : 0);
	}
	if (!err) {
		struct sk_op op = {.uid = uid, .gid = gid, .mode = e.attr.st_mode};
		if (target) {
			op.kind = SK_SYMLINK;
			op.value = target;
			op.value_len = strlen(target);
		} else if (S_ISDIR(mode)) {
			op.kind = SK_MKDIR;
		} else {
			op.kind = SK_MKNOD;
			op.rdev = (uint64_t)rdev;
		}
		submit_child(f, parent, name, &op);
	}
	order_unlock(f);
	if (err)
		fuse_reply_err(req, err);
	else
		reply_entry(req, f, &e);
}

static void fr_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	make_node(req, parent, name, S_IFDIR | (mode & 07777), 0, NULL);
}

static void fr_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	make_node(req, parent, name, mode, rdev, NULL);
}

static void fr_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	make_node(req, parent, name, S_IFLNK | 0777, 0, target);
}

static void fr_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent_ino, const char *newname)
{
	struct sk_front *f = front_of(req);
	struct sk_node *n = node_of(req, ino);
	struct sk_node *newparent = node_of(req, newparent_ino);
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.attr_timeout = f->timeout;
	e.entry_timeout = f->timeout;
	if (is_multi_root(f, newparent) || is_multi_root(f, n))
		return (void)fuse_reply_err(req, EPERM);
	order_exclusive(f);
	/* The existing name the LINK names: one the secondary has too (it has every name, links
	 * included, since they are replicated), taken before the new name is recorded. */
	size_t oldlen = 0, newlen = 0;
	char *oldpath = sk_nodes_path(&f->nodes, n, &oldlen);
	char *newpath = sk_nodes_child_path(&f->nodes, newparent, newname, &newlen);
	uint32_t odir = 0, ndir = 0;
	size_t oskip = 0, nskip = 0;
	bool oknown = oldpath && split_path(f, oldpath, oldlen, &odir, &oskip);
	bool nknown = newpath && split_path(f, newpath, newlen, &ndir, &nskip);
	struct nfd x = {-1, false};
	int err = 0;
	if (oknown && nknown && odir != ndir)
		err = EXDEV; /* two replicated directories: two file systems to the application */
	else if ((err = node_fd_get(f, n, &x)) != 0)
		;
	else if (linkat(x.fd, "", newparent->fd, newname, AT_EMPTY_PATH) < 0) {
		char procname[64];
		proc_path(procname, sizeof(procname), x.fd);
		if (linkat(AT_FDCWD, procname, newparent->fd, newname, AT_SYMLINK_FOLLOW) < 0)
			err = errno;
	}
	if (!err && fstatat(x.fd, "", &e.attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		err = errno;
	node_fd_put(&x);
	if (!err) {
		int fd = openat(newparent->fd, newname, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		struct sk_node *same = fd < 0 ? NULL : sk_nodes_intern(&f->nodes, newparent, newname, fd, &e.attr, 1);
		if (!same)
			err = fd < 0 ? errno : ENOMEM;
		else
			e.ino = ino_of(f, same);
	}
	if (!err && nknown && !path_excluded(f, ndir, newpath + nskip)) {
		if (oknown && !path_excluded(f, odir, oldpath + oskip)) {
			struct sk_op op = {.kind = SK_LINK, .dir = ndir, .path = oldpath + oskip,
					   .path_len = oldlen - oskip, .path2 = newpath + nskip,
					   .path2_len = newlen - nskip};
			sk_submit(f->sink, &op);
		} else {
			/* a file not replicated gets a replicated name: the secondary gets a copy */
			submit_remove_tree(f, ndir, newpath + nskip);
			send_object(f, ndir, newpath + nskip, newparent->fd, newname, 0);
		}
	}
	order_unlock(f);
	free(oldpath);
	free(newpath);
	if (err)
		fuse_reply_err(req, err);
	else
		reply_entry(req, f, &e);
}

static void remove_entry(fuse_req_t req, fuse_ino_t parent_ino, const char *name, bool dir)
{
	struct sk_front *f = front_of(req);
	struct sk_node *parent = node_of(req, parent_ino);
	struct stat st;
	if (is_multi_root(f, parent))
		return (void)fuse_reply_err(req, EPERM);
	order_exclusive(f);
	int err = 0;
	bool known = fstatat(parent->fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
	if (known && !dir)
		sk_nodes_hold(&f->nodes, st.st_dev, st.st_ino, parent, name); /* it may stay open */
	if (unlinkat(parent->fd, name, dir ? AT_REMOVEDIR : 0) < 0) {
		err = errno;
	} else {
		if (known)
			sk_nodes_unname(&f->nodes, st.st_dev, st.st_ino, parent, name);
		struct sk_op op = {.kind = dir ? SK_RMDIR : SK_UNLINK};
		submit_child(f, parent, name, &op);
	}
	order_unlock(f);
	fuse_reply_err(req, err);
}

static void fr_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_entry(req, parent, name, false);
}

static void fr_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_entry(req, parent, name, true);
}

static void fr_rename(fuse_req_t req, fuse_ino_t parent_ino, const char *name, fuse_ino_t newparent_ino,
		      const char *newname, unsigned int flags)
{
	struct sk_front *f = front_of(req);
	struct sk_node *parent = node_of(req, parent_ino);
	struct sk_node *newparent = node_of(req, newparent_ino);
	struct stat sst, dst;
	if (is_multi_root(f, parent) || is_multi_root(f, newparent))
		return (void)fuse_reply_err(req, EPERM);
	order_exclusive(f);
	int err = 0;
	size_t oldlen = 0, newlen = 0;
	/* the paths before the change: the secondary's copy still has the old names */
	char *oldpath = sk_nodes_child_path(&f->nodes, parent, name, &oldlen);
	char *newpath = sk_nodes_child_path(&f->nodes, newparent, newname, &newlen);
	uint32_t odir = 0, ndir = 0;
	size_t oskip = 0, nskip = 0;
	bool oknown = oldpath && split_path(f, oldpath, oldlen, &odir, &oskip);
	bool nknown = newpath && split_path(f, newpath, newlen, &ndir, &nskip);
	bool src_known = fstatat(parent->fd, name, &sst, AT_SYMLINK_NOFOLLOW) == 0;
	bool dst_known = fstatat(newparent->fd, newname, &dst, AT_SYMLINK_NOFOLLOW) == 0;
	if (dst_known && !(flags & RENAME_EXCHANGE) && !S_ISDIR(dst.st_mode))
		sk_nodes_hold(&f->nodes, dst.st_dev, dst.st_ino, newparent, newname); /* replaced, maybe open */
	if (oknown && nknown && odir != ndir) {
		err = EXDEV; /* two replicated directories: two file systems to the application */
	} else if (renameat2(parent->fd, name, newparent->fd, newname, flags) < 0) {
		err = errno;
	} else {
		bool same = src_known && dst_known && sst.st_dev == dst.st_dev && sst.st_ino == dst.st_ino;
		if (same) {
			/* two links of one file: rename() changed nothing */
		} else if (flags & RENAME_EXCHANGE) {
			if (src_known)
				sk_nodes_move(&f->nodes, sst.st_dev, sst.st_ino, parent, name, newparent, newname);
			if (dst_known)
				sk_nodes_move(&f->nodes, dst.st_dev, dst.st_ino, newparent, newname, parent, name);
		} else {
			if (dst_known)
				sk_nodes_unname(&f->nodes, dst.st_dev, dst.st_ino, newparent, newname);
			if (src_known)
				sk_nodes_move(&f->nodes, sst.st_dev, sst.st_ino, parent, name, newparent, newname);
		}
		if (oknown && nknown) {
			/* a rename across the notreplicated boundary: into the replicated paths the object is sent
			 * whole, out of them it is removed on the secondary, within them it is a rename */
			bool orepl = !path_excluded(f, odir, oldpath + oskip);
			bool nrepl = !path_excluded(f, ndir, newpath + nskip);
			if (orepl && nrepl) {
				struct sk_op op = {.kind = SK_RENAME, .dir = odir, .path = oldpath + oskip,
						   .path_len = oldlen - oskip, .path2 = newpath + nskip,
						   .path2_len = newlen - nskip, .flags = flags};
				sk_submit(f->sink, &op);
			} else if (nrepl) { /* into a replicated path: the whole object goes over */
				submit_remove_tree(f, ndir, newpath + nskip);
				send_object(f, ndir, newpath + nskip, newparent->fd, newname, 0);
			} else if (orepl) { /* out of the replicated paths: gone there */
				submit_remove_tree(f, odir, oldpath + oskip);
				if (flags & RENAME_EXCHANGE)
					send_object(f, odir, oldpath + oskip, parent->fd, name, 0);
			}
		}
	}
	order_unlock(f);
	free(oldpath);
	free(newpath);
	fuse_reply_err(req, err);
}

/* ------------------------------------------------------------------ files */

static int backing_flags(struct sk_front *f, int flags)
{
	/* O_NOFOLLOW: the kernel already refused a symlink as the last component (ELOOP) before
	 * asking us; passed on, it would fail the reopen through /proc/self/fd/N (a magic link)
	 * with ELOOP for every caller that opens with it (MariaDB's Aria tables do). */
	flags &= ~(O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW);
	/* O_DIRECT: the kernel already bypasses the mount's page cache for such an open (its writes
	 * reach the front at once, and it drops the cached pages they cover); on the backing fd it
	 * would fail every write whose bytes are not block-aligned in memory, as they never are in
	 * libfuse's request buffer (EINVAL for InnoDB's O_DIRECT data files). Durability is the
	 * fsync's, with or without it. */
	flags &= ~O_DIRECT;
	if (f->writeback) {
		/* the kernel reads pages of files open for writing, and places appends itself */
		if ((flags & O_ACCMODE) == O_WRONLY)
			flags = (flags & ~O_ACCMODE) | O_RDWR;
		flags &= ~O_APPEND;
	}
	return flags | O_CLOEXEC;
}

static struct handle *new_handle(struct sk_front *f, int fd, struct sk_node *n, int flags)
{
	struct handle *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->fd = fd;
	h->node = n;
	h->append = !f->writeback && (flags & O_APPEND);
	h->sync = !f->writeback && (flags & (O_SYNC | O_DSYNC));
	h->datasync = (flags & O_SYNC) != O_SYNC;
	h->writable = (flags & O_ACCMODE) != O_RDONLY;
	live_add(f, &h->live, false);
	return h;
}

static void set_open_flags(struct sk_front *f, struct fuse_file_info *fi)
{
	(void)f;
	fi->keep_cache = 1; /* only this front changes the files: the page cache stays valid */
	/* No FLUSH at close: one round trip less. This front serves no locks (the kernel keeps them
	 * locally) and writes nothing late without the writeback cache; with it, the kernel still
	 * writes the dirty pages back at close (it ignores noflush then). */
	fi->noflush = 1;
}

static void fr_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct sk_front *f = front_of(req);
	struct sk_node *n = node_of(req, ino);
	char procname[64];
	struct nfd x;
	int xerr = node_fd_get(f, n, &x);
	if (xerr)
		return (void)fuse_reply_err(req, xerr);
	proc_path(procname, sizeof(procname), x.fd);
	int flags = backing_flags(f, fi->flags);
	bool truncates = (fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY;
	if (truncates) {
		order_shared(f);
		pthread_mutex_lock(&n->lock);
	}
	int fd = open(procname, flags);
	int err = fd < 0 ? errno : 0;
	node_fd_put(&x);
	if (!err && truncates) {
		/* atomic_o_trunc: the truncation came as an open flag; it is replicated as a truncate */
		struct sk_op op = {.kind = SK_TRUNCATE, .size = 0};
		submit_for(f, n, &op);
	}
	if (truncates) {
		pthread_mutex_unlock(&n->lock);
		order_unlock(f);
	}
	if (err)
		return (void)fuse_reply_err(req, err);
	struct handle *h = new_handle(f, fd, n, fi->flags);
	if (!h) {
		close(fd);
		return (void)fuse_reply_err(req, ENOMEM);
	}
	h->wrote = truncates;
	fi->fh = (uintptr_t)h;
	set_open_flags(f, fi);
	if (fuse_reply_open(req, fi) == -ENOENT) /* interrupted: the kernel will not release it */
		handle_free(f, h);
}

static void fr_create(fuse_req_t req, fuse_ino_t parent_ino, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct sk_front *f = front_of(req);
	struct sk_node *parent = node_of(req, parent_ino);
	uid_t uid;
	gid_t gid;
	struct fuse_entry_param e;
	if (is_multi_root(f, parent))
		return (void)fuse_reply_err(req, EPERM);
	new_owner(req, parent, &uid, &gid);
	int flags = backing_flags(f, fi->flags);
	order_exclusive(f);
	bool created = true;
	int fd = openat(parent->fd, name, flags | O_CREAT | O_EXCL | O_NOFOLLOW, mode & 07777);
	if (fd < 0 && errno == EEXIST && !(fi->flags & O_EXCL)) {
		/* it appeared since the kernel's lookup: an open, not a creation (no CREATE, which
		 * would empty the peer's copy) */
		created = false;
		fd = openat(parent->fd, name, flags | O_NOFOLLOW);
	}
	int err = fd < 0 ? errno : 0;
	if (!err && created && fchown(fd, uid, gid) < 0) {
		err = errno;
		close(fd);
		unlinkat(parent->fd, name, 0);
	}
	if (!err) {
		err = do_lookup(f, parent, name, &e);
		if (err) {
			close(fd);
			if (created)
				unlinkat(parent->fd, name, 0);
		}
	}
	struct handle *h = NULL;
	if (!err) {
		struct sk_op op = {.kind = SK_CREATE, .mode = e.attr.st_mode, .uid = uid, .gid = gid};
		if (!created)
			op = (struct sk_op){.kind = SK_TRUNCATE, .size = 0};
		if (created || (fi->flags & O_TRUNC))
			submit_child(f, parent, name, &op);
		h = new_handle(f, fd, node_of(req, e.ino), fi->flags);
		if (!h) {
			err = ENOMEM;
			close(fd);
			sk_nodes_forget(&f->nodes, node_of(req, e.ino), 1);
		} else {
			h->wrote = true; /* its creation time is this node's: sent at close */
		}
	}
	order_unlock(f);
	if (err)
		return (void)fuse_reply_err(req, err);
	fi->fh = (uintptr_t)h;
	set_open_flags(f, fi);
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		handle_free(f, h);
		sk_nodes_forget(&f->nodes, node_of(req, e.ino), 1);
	}
}

static void fr_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	struct sk_front *f = front_of(req);
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = handle_of(fi)->fd;
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, f->splice ? FUSE_BUF_SPLICE_MOVE : FUSE_BUF_NO_SPLICE);
}

/* A thread's buffer for the bytes of a write that must be in memory (for the sink, or because an
 * O_APPEND file cannot take a splice). Grows to the largest write (1 MiB); freed with the thread. */
static pthread_key_t write_buffer_key;
static pthread_once_t write_buffer_once = PTHREAD_ONCE_INIT;

struct write_buffer {
	size_t size;
	char data[];
};

static void write_buffer_key_init(void)
{
	pthread_key_create(&write_buffer_key, free);
}

static void *write_buffer(size_t size)
{
	pthread_once(&write_buffer_once, write_buffer_key_init);
	struct write_buffer *wb = pthread_getspecific(write_buffer_key);
	if (!wb || wb->size < size) {
		size_t want = size < SK_MAX_WRITE ? SK_MAX_WRITE : size;
		struct write_buffer *fresh = realloc(wb, sizeof(*wb) + want);
		if (!fresh)
			return NULL;
		fresh->size = want;
		wb = fresh;
		pthread_setspecific(write_buffer_key, wb);
	}
	return wb->data;
}

/* libfuse's request buffer of each FUSE worker (1 MiB and 4 KiB) stays resident once a large
 * write filled it: giving its pages back after each write of 256 KiB or more (ADR 0037) made the
 * next request land in fresh zero pages, a page fault and a cleared page for every 4 KiB read from
 * /dev/fuse, 35% of the primary's CPU in a sequential write (ADR 0061). 16 workers: at most 16 MiB. */

static ssize_t pwrite_all(int fd, const char *data, size_t size, off_t off)
{
	size_t done = 0;
	while (done < size) {
		ssize_t n = pwrite(fd, data + done, size - done, off + (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return done ? (ssize_t)done : -1;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static void fr_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
			 struct fuse_file_info *fi)
{
	(void)ino;
	struct sk_front *f = front_of(req);
	struct handle *h = handle_of(fi);
	struct sk_node *n = h->node;
	size_t size = fuse_buf_size(in);
	const char *data = NULL;
	if (f->sink->wants_data || h->append) {
		if (in->count == 1 && !(in->buf[0].flags & FUSE_BUF_IS_FD)) {
			data = (const char *)in->buf[0].mem + in->off;
			size = in->buf[0].size - in->off;
		} else {
			char *mem = write_buffer(size);
			if (!mem)
				return (void)fuse_reply_err(req, ENOMEM);
			struct fuse_bufvec to = FUSE_BUFVEC_INIT(size);
			to.buf[0].mem = mem;
			ssize_t got = fuse_buf_copy(&to, in, 0);
			if (got < 0)
				return (void)fuse_reply_err(req, (int)-got);
			data = mem;
			size = (size_t)got;
		}
	}
	uint64_t ticket = 0;
	order_shared(f);
	pthread_mutex_lock(&n->lock);
	ssize_t written;
	if (data) {
		written = pwrite_all(h->fd, data, size, off);
		if (written < 0)
			written = -errno;
	} else {
		struct fuse_bufvec to = FUSE_BUFVEC_INIT(size);
		to.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
		to.buf[0].fd = h->fd;
		to.buf[0].pos = off;
		written = fuse_buf_copy(&to, in, f->splice ? FUSE_BUF_SPLICE_MOVE : FUSE_BUF_NO_SPLICE);
	}
	if (written > 0) {
		uint64_t landed = (uint64_t)off;
		struct stat st;
		if (h->append && fstat(h->fd, &st) == 0) /* where O_APPEND put it: this node's lock held */
			landed = (uint64_t)st.st_size - (uint64_t)written;
		struct sk_op op = {.kind = SK_WRITE, .offset = landed, .data = data, .data_len = (size_t)written};
		ticket = submit_for(f, n, &op);
		h->wrote = true;
	}
	if (written > 0 && h->sync && ticket) { /* O_SYNC: durable here (the fd has it) and there */
		struct sk_op op = {.kind = SK_FSYNC, .flags = h->datasync ? SK_FSYNC_DATASYNC : 0};
		ticket = submit_for(f, n, &op);
	}
	bool start_writeback = false;
	if (written > 0 && f->early_writeback) {
		h->unflushed += (uint64_t)written;
		start_writeback = h->unflushed >= SK_EARLY_WRITEBACK;
		if (start_writeback)
			h->unflushed = 0;
	}
	pthread_mutex_unlock(&n->lock);
	order_unlock(f);
	if (start_writeback) /* the disk starts now: the final fsync of a large write flushes little */
		sync_file_range(h->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	if (written < 0)
		return (void)fuse_reply_err(req, (int)-written);
	if (h->sync && ticket) {
		int err = sk_barrier(f->sink, ticket);
		if (err < 0)
			return (void)fuse_reply_err(req, -err);
	}
	fuse_reply_write(req, (size_t)written);
}

static void fr_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void fr_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	struct sk_front *f = front_of(req);
	struct handle *h = handle_of(fi);
	if (h->wrote && !f->writeback) {
		/* the peer's writes gave its copy its own times: ours follow the writes */
		order_shared(f);
		pthread_mutex_lock(&h->node->lock);
		submit_times(f, h);
		pthread_mutex_unlock(&h->node->lock);
		order_unlock(f);
	}
	handle_free(f, h);
	fuse_reply_err(req, 0);
}

/* Submits the barrier of `n` (and the file's times first), then syncs fd here while the sink
 * waits for its acknowledgement: the caller is answered when both are done. */
static void sync_and_barrier(fuse_req_t req, struct sk_node *n, struct handle *h, int fd, int datasync)
{
	struct sk_front *f = front_of(req);
	order_shared(f);
	pthread_mutex_lock(&n->lock);
	if (h && !f->writeback)
		submit_times(f, h);
	struct sk_op op = {.kind = SK_FSYNC, .flags = datasync ? SK_FSYNC_DATASYNC : 0};
	uint64_t ticket = submit_for(f, n, &op);
	pthread_mutex_unlock(&n->lock);
	order_unlock(f);
	int res = datasync ? fdatasync(fd) : fsync(fd);
	int err = res < 0 ? errno : 0;
	if (ticket) {
		int berr = sk_barrier(f->sink, ticket);
		if (berr < 0 && !err)
			err = -berr;
	}
	fuse_reply_err(req, err);
}

static void fr_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	struct handle *h = handle_of(fi);
	sync_and_barrier(req, h->node, h, h->fd, datasync);
}

static void fr_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
			 struct fuse_file_info *fi)
{
	(void)ino;
	struct sk_front *f = front_of(req);
	struct handle *h = handle_of(fi);
	order_shared(f);
	pthread_mutex_lock(&h->node->lock);
	int err = 0;
	if (fallocate(h->fd, mode, offset, length) < 0) {
		err = errno;
	} else {
		struct sk_op op = {.kind = SK_FALLOCATE, .flags = (uint32_t)mode, .offset = (uint64_t)offset,
				   .length = (uint64_t)length};
		submit_for(f, h->node, &op);
		h->wrote = true;
	}
	pthread_mutex_unlock(&h->node->lock);
	order_unlock(f);
	fuse_reply_err(req, err);
}

static void fr_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
	(void)ino;
	off_t res = lseek(handle_of(fi)->fd, off, whence);
	if (res < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_lseek(req, res);
}

/* ------------------------------------------------------------------ directories */

static void fr_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct sk_front *f = front_of(req);
	struct dir_handle *d = calloc(1, sizeof(*d));
	if (!d)
		return (void)fuse_reply_err(req, ENOMEM);
	if (is_multi_root(f, node_of(req, ino))) {
		live_add(f, &d->live, true);
		fi->fh = (uintptr_t)d; /* dp NULL: the entries are the directories' indexes */
		if (fuse_reply_open(req, fi) == -ENOENT)
			dir_handle_free(f, d);
		return;
	}
	struct nfd x;
	int xerr = node_fd_get(f, node_of(req, ino), &x);
	if (xerr) {
		free(d);
		return (void)fuse_reply_err(req, xerr);
	}
	int fd = openat(x.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		node_fd_put(&x);
		errno = err;
	} else {
		node_fd_put(&x);
	}
	if (fd < 0 || !(d->dp = fdopendir(fd))) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		free(d);
		return (void)fuse_reply_err(req, err);
	}
	live_add(f, &d->live, true);
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT)
		dir_handle_free(f, d);
}

/* The root of several directories: ".", "..", then "0", "1", ... (entry k at offset k + 1). */
static void multi_root_readdir(fuse_req_t req, struct sk_front *f, char *buf, size_t size, off_t offset, bool plus)
{
	char *p = buf;
	size_t rem = size;
	int err = 0;
	if (plus)
		order_shared(f);
	for (off_t k = offset; k < 2 + (off_t)f->nodes.ndirs; k++) {
		char name[24];
		struct fuse_entry_param e;
		memset(&e, 0, sizeof(e));
		struct sk_node *looked_up = NULL;
		if (k < 2) {
			snprintf(name, sizeof(name), k == 0 ? "." : "..");
			e.attr.st_ino = FUSE_ROOT_ID;
			e.attr.st_mode = S_IFDIR;
		} else {
			snprintf(name, sizeof(name), "%lld", (long long)(k - 2));
			if (plus) {
				err = do_lookup(f, &f->nodes.root, name, &e);
				if (err)
					break;
				looked_up = node_of(req, e.ino);
			} else {
				e.attr.st_ino = (ino_t)(k + 1);
				e.attr.st_mode = S_IFDIR;
			}
		}
		size_t entsize = plus ? fuse_add_direntry_plus(req, p, rem, name, &e, k + 1)
				      : fuse_add_direntry(req, p, rem, name, &e.attr, k + 1);
		if (entsize > rem) {
			if (looked_up)
				sk_nodes_forget(&f->nodes, looked_up, 1);
			break;
		}
		p += entsize;
		rem -= entsize;
	}
	if (plus)
		order_unlock(f);
	if (err && rem == size)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, size - rem);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info *fi,
		       bool plus)
{
	struct sk_front *f = front_of(req);
	struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;
	char *buf = malloc(size);
	if (!buf)
		return (void)fuse_reply_err(req, ENOMEM);
	if (!d->dp) {
		multi_root_readdir(req, f, buf, size, offset, plus);
		free(buf);
		return;
	}
	if (offset != d->offset) {
		seekdir(d->dp, offset);
		d->entry = NULL;
		d->offset = offset;
	}
	char *p = buf;
	size_t rem = size;
	int err = 0;
	if (plus)
		order_shared(f); /* the names recorded by these lookups stay true meanwhile */
	for (;;) {
		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (!d->entry) {
				err = errno;
				break;
			}
		}
		off_t next = d->entry->d_off;
		const char *name = d->entry->d_name;
		size_t entsize;
		struct sk_node *looked_up = NULL;
		if (plus) {
			struct fuse_entry_param e;
			if (dot_or_dotdot(name)) {
				memset(&e, 0, sizeof(e));
				e.attr.st_ino = d->entry->d_ino;
				e.attr.st_mode = (mode_t)d->entry->d_type << 12;
			} else {
				err = do_lookup(f, node_of(req, ino), name, &e);
				if (err == ENOENT) { /* removed since readdir saw it */
					err = 0;
					d->entry = NULL;
					d->offset = next;
					continue;
				}
				if (err)
					break;
				looked_up = node_of(req, e.ino);
			}
			entsize = fuse_add_direntry_plus(req, p, rem, name, &e, next);
		} else {
			struct stat st = {.st_ino = d->entry->d_ino, .st_mode = (mode_t)d->entry->d_type << 12};
			entsize = fuse_add_direntry(req, p, rem, name, &st, next);
		}
		if (entsize > rem) {
			if (looked_up) /* not sent: the kernel will not count it */
				sk_nodes_forget(&f->nodes, looked_up, 1);
			break;
		}
		p += entsize;
		rem -= entsize;
		d->entry = NULL;
		d->offset = next;
	}
	if (plus)
		order_unlock(f);
	/* an error after some entries: send those (their lookups are counted), the error next time */
	if (err && rem == size)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, size - rem);
	free(buf);
}

static void fr_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, offset, fi, false);
}

static void fr_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, offset, fi, true);
}

static void fr_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	dir_handle_free(front_of(req), (struct dir_handle *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void fr_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;
	if (!d->dp)
		return (void)fuse_reply_err(req, 0); /* the root of several directories: nothing here */
	sync_and_barrier(req, node_of(req, ino), NULL, dirfd(d->dp), datasync);
}

/* ------------------------------------------------------------------ session */

static void fr_init(void *userdata, struct fuse_conn_info *conn)
{
	struct sk_front *f = userdata;
	if (f->writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	else
		f->writeback = false;
	/* O_TRUNC reaches open (replicated as a truncate), not a separate setattr */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* Writes here are made as root, which keeps set-user-ID bits: let the kernel clear them
	 * (a setattr of the mode, replicated like any other). */
	conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
	/* The page cache of a file is not thrown away when its mtime moves (ADR 0054): every change
	 * to the backing files while the mount is up comes through this mount, and the kernel keeps
	 * its pages true for each (a write-through write updates the cached pages it covers, a
	 * truncate, punch hole or direct write drops what it changes). With libfuse's default
	 * (auto_inval_data) the first stat or read after the attribute timeout that follows any
	 * write dropped the whole file's cached pages: a database reread what it had just read. A
	 * size the kernel did not expect still trims the cache (the kernel does that in any mode). */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	if (f->splice) {
		/* reads answered by splice from the backing file; writes taken by splice from
		 * /dev/fuse only when their bytes need not be in memory (replication off) */
		conn->want |= conn->capable & (FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
		if (f->sink->wants_data)
			conn->want &= ~FUSE_CAP_SPLICE_READ;
		else
			conn->want |= conn->capable & FUSE_CAP_SPLICE_READ;
	} else {
		conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	}
	conn->max_write = SK_MAX_WRITE;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
}

const struct fuse_lowlevel_ops sk_front_ops = {
	.init = fr_init,
	.lookup = fr_lookup,
	.forget = fr_forget,
	.forget_multi = fr_forget_multi,
	.getattr = fr_getattr,
	.setattr = fr_setattr,
	.readlink = fr_readlink,
	.mknod = fr_mknod,
	.mkdir = fr_mkdir,
	.unlink = fr_unlink,
	.rmdir = fr_rmdir,
	.symlink = fr_symlink,
	.rename = fr_rename,
	.link = fr_link,
	.open = fr_open,
	.read = fr_read,
	.write_buf = fr_write_buf,
	.flush = fr_flush,
	.release = fr_release,
	.fsync = fr_fsync,
	.opendir = fr_opendir,
	.readdir = fr_readdir,
	.readdirplus = fr_readdirplus,
	.releasedir = fr_releasedir,
	.fsyncdir = fr_fsyncdir,
	.statfs = fr_statfs,
	.setxattr = fr_setxattr,
	.getxattr = fr_getxattr,
	.listxattr = fr_listxattr,
	.removexattr = fr_removexattr,
	.create = fr_create,
	.fallocate = fr_fallocate,
	.lseek = fr_lseek,
};

static void front_init_common(struct sk_front *f, struct sk_sink *sink)
{
	memset(f, 0, sizeof(*f));
	f->sink = sink;
	f->timeout = 1.0;
	f->splice = true;
	f->early_writeback = true;
	pthread_rwlockattr_t attr;
	pthread_rwlockattr_init(&attr);
	/* a namespace change must not wait behind an endless stream of writes */
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&f->order, &attr);
	pthread_rwlockattr_destroy(&attr);
	pthread_mutex_init(&f->live_mu, NULL);
	f->live = NULL;
}

int sk_front_init(struct sk_front *f, const char *backing, struct sk_sink *sink)
{
	front_init_common(f, sink);
	return sk_nodes_init(&f->nodes, backing);
}

int sk_front_init_multi(struct sk_front *f, const int *dir_fds, unsigned ndirs, struct sk_sink *sink)
{
	front_init_common(f, sink);
	return sk_nodes_init_multi(&f->nodes, dir_fds, ndirs);
}

char **sk_front_written_files(struct sk_front *f, size_t *count)
{
	*count = 0;
	size_t cap = 16;
	char **out = malloc(cap * sizeof(*out));
	if (!out)
		return NULL;
	order_shared(f); /* names do not change meanwhile (sk_nodes_path's walk needs it) */
	pthread_mutex_lock(&f->live_mu);
	for (struct sk_live *x = f->live; x; x = x->next) {
		struct handle *h = (struct handle *)x;
		if (x->dir || !h->writable)
			continue;
		bool seen = false;
		for (struct sk_live *y = f->live; y != x && !seen; y = y->next)
			seen = !y->dir && ((struct handle *)y)->writable && ((struct handle *)y)->node == h->node;
		size_t len;
		char *path = seen ? NULL : sk_nodes_path(&f->nodes, h->node, &len);
		if (!path)
			continue; /* the same file again, or unlinked: nothing of it goes anywhere */
		if (*count == cap) {
			char **more = realloc(out, 2 * cap * sizeof(*out));
			if (!more) {
				free(path);
				break;
			}
			out = more;
			cap *= 2;
		}
		out[(*count)++] = path;
	}
	pthread_mutex_unlock(&f->live_mu);
	order_unlock(f);
	return out;
}

void sk_front_destroy(struct sk_front *f)
{
	/* handles the kernel never released (the connection aborted at stop) */
	while (f->live) {
		struct sk_live *x = f->live;
		if (x->dir)
			dir_handle_free(f, (struct dir_handle *)x);
		else
			handle_free(f, (struct handle *)x);
	}
	pthread_mutex_destroy(&f->live_mu);
	sk_nodes_destroy(&f->nodes);
	pthread_rwlock_destroy(&f->order);
}
