/* The sinks that need no network: null (replication off) and record (tests). */
#include "sink.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *sk_kind_name(enum sk_kind kind)
{
	switch (kind) {
	case SK_CREATE: return "CREATE";
	case SK_WRITE: return "WRITE";
	case SK_TRUNCATE: return "TRUNCATE";
	case SK_FALLOCATE: return "FALLOCATE";
	case SK_SETATTR: return "SETATTR";
	case SK_SETXATTR: return "SETXATTR";
	case SK_REMOVEXATTR: return "REMOVEXATTR";
	case SK_MKDIR: return "MKDIR";
	case SK_RMDIR: return "RMDIR";
	case SK_UNLINK: return "UNLINK";
	case SK_RENAME: return "RENAME";
	case SK_SYMLINK: return "SYMLINK";
	case SK_MKNOD: return "MKNOD";
	case SK_FSYNC: return "FSYNC";
	case SK_LINK: return "LINK";
	case SK_REMOVE_TREE: return "REMOVE_TREE";
	}
	return "?";
}

/* ------------------------------------------------------------------ null */

struct null_sink {
	struct sk_sink base;
	_Atomic uint64_t seq;
};

static uint64_t null_submit(struct sk_sink *sink, const struct sk_op *op)
{
	(void)op;
	struct null_sink *s = (struct null_sink *)sink;
	return atomic_fetch_add_explicit(&s->seq, 1, memory_order_relaxed) + 1;
}

static int null_barrier(struct sk_sink *sink, uint64_t ticket)
{
	(void)sink;
	(void)ticket;
	return 0;
}

static void null_close(struct sk_sink *sink)
{
	free(sink);
}

static const struct sk_sink_ops null_ops = {null_submit, null_barrier, null_close};

/* ------------------------------------------------------------------ record */

struct record_sink {
	struct sk_sink base;
	pthread_mutex_t lock;
	FILE *out;
	uint64_t seq;
	int barrier_error; /* 0, or the errno every barrier fails with */
};

/* Bytes that would break a space-separated line, and '%', as %XX. */
static void put_escaped(FILE *out, const void *bytes, size_t len)
{
	const unsigned char *p = bytes;
	if (len == 0) {
		fputc('.', out); /* the root: "." is never a component of a real path */
		return;
	}
	for (size_t i = 0; i < len; i++) {
		if (p[i] <= 0x20 || p[i] >= 0x7f || p[i] == '%')
			fprintf(out, "%%%02X", p[i]);
		else
			fputc(p[i], out);
	}
}

/* FNV-1a of the bytes written: lets a test check that the data handed over is what landed. */
static uint32_t fnv1a(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

static uint64_t record_submit(struct sk_sink *sink, const struct sk_op *op)
{
	struct record_sink *s = (struct record_sink *)sink;
	pthread_mutex_lock(&s->lock);
	uint64_t seq = ++s->seq;
	FILE *f = s->out;
	fprintf(f, "%" PRIu64 " %s ", seq, sk_kind_name(op->kind));
	put_escaped(f, op->path, op->path_len);
	switch (op->kind) {
	case SK_CREATE:
	case SK_MKDIR:
		fprintf(f, " mode=%o uid=%u gid=%u", op->mode, op->uid, op->gid);
		break;
	case SK_MKNOD:
		fprintf(f, " mode=%o rdev=%" PRIu64 " uid=%u gid=%u", op->mode, op->rdev, op->uid, op->gid);
		break;
	case SK_WRITE:
		fprintf(f, " off=%" PRIu64 " len=%zu", op->offset, op->data_len);
		if (op->data)
			fprintf(f, " fnv=%08x", fnv1a(op->data, op->data_len));
		break;
	case SK_TRUNCATE:
		fprintf(f, " size=%" PRIu64, op->size);
		break;
	case SK_FALLOCATE:
		fprintf(f, " mode=%u off=%" PRIu64 " len=%" PRIu64, op->flags, op->offset, op->length);
		break;
	case SK_SETATTR:
		if (op->mask & SK_ATTR_MODE)
			fprintf(f, " mode=%o", op->mode);
		if (op->mask & SK_ATTR_UID)
			fprintf(f, " uid=%u", op->uid);
		if (op->mask & SK_ATTR_GID)
			fprintf(f, " gid=%u", op->gid);
		if (op->mask & SK_ATTR_SIZE)
			fprintf(f, " size=%" PRIu64, op->size);
		if (op->mask & SK_ATTR_ATIME)
			fprintf(f, " atime=%" PRId64, op->atime_ns);
		if (op->mask & SK_ATTR_MTIME)
			fprintf(f, " mtime=%" PRId64, op->mtime_ns);
		break;
	case SK_SETXATTR:
		fputs(" name=", f);
		put_escaped(f, op->name, op->name_len);
		fprintf(f, " len=%zu flags=%u", op->value_len, op->flags);
		break;
	case SK_REMOVEXATTR:
		fputs(" name=", f);
		put_escaped(f, op->name, op->name_len);
		break;
	case SK_RENAME:
	case SK_LINK:
		fputc(' ', f);
		put_escaped(f, op->path2, op->path2_len);
		if (op->kind == SK_RENAME)
			fprintf(f, " flags=%u", op->flags);
		break;
	case SK_SYMLINK:
		fputs(" target=", f);
		put_escaped(f, op->value, op->value_len);
		fprintf(f, " uid=%u gid=%u", op->uid, op->gid);
		break;
	case SK_FSYNC:
		fprintf(f, " datasync=%u", op->flags & SK_FSYNC_DATASYNC);
		break;
	case SK_RMDIR:
	case SK_UNLINK:
	case SK_REMOVE_TREE:
		break;
	}
	if (op->dir)
		fprintf(f, " dir=%u", op->dir);
	fputc('\n', f);
	fflush(f); /* a test reads the file while the front runs */
	pthread_mutex_unlock(&s->lock);
	return seq;
}

static int record_barrier(struct sk_sink *sink, uint64_t ticket)
{
	struct record_sink *s = (struct record_sink *)sink;
	pthread_mutex_lock(&s->lock);
	int err = ticket > s->seq ? -EINVAL : -s->barrier_error;
	pthread_mutex_unlock(&s->lock);
	return err;
}

static void record_close(struct sk_sink *sink)
{
	struct record_sink *s = (struct record_sink *)sink;
	fclose(s->out);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const struct sk_sink_ops record_ops = {record_submit, record_barrier, record_close};

static struct sk_sink *record_open(const char *file, int barrier_error)
{
	struct record_sink *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->out = fopen(file, "we");
	if (!s->out) {
		int err = errno;
		free(s);
		errno = err;
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->base.ops = &record_ops;
	s->base.wants_data = true; /* as a replicating sink: the test covers the copying path */
	s->barrier_error = barrier_error;
	return &s->base;
}

/* ------------------------------------------------------------------ */

struct sk_sink *sk_sink_open(const char *spec)
{
	bool copy = strcmp(spec, "null-copy") == 0;
	if (copy || strcmp(spec, "null") == 0) {
		struct null_sink *s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
		s->base.ops = &null_ops;
		s->base.wants_data = copy; /* null-copy: what a replicating sink costs the front */
		atomic_init(&s->seq, 0);
		return &s->base;
	}
	if (strncmp(spec, "record:", 7) == 0 && spec[7])
		return record_open(spec + 7, 0);
	if (strncmp(spec, "record-eio:", 11) == 0 && spec[11])
		return record_open(spec + 11, EIO);
	errno = EINVAL;
	return NULL;
}

void sk_sink_close(struct sk_sink *sink)
{
	if (sink)
		sink->ops->close(sink);
}
