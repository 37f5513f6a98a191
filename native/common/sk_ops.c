#include "sk_ops.h"

#include <string.h>

#include "sk_wire.h"

int sk_path_check(sk_bytes path, bool empty_ok, sk_err *err)
{
    if (path.len == 0) {
        if (empty_ok)
            return SK_OK;
        return sk_fail(err, SK_EPATH, "refused empty path (the replicated directory itself)");
    }
    if (path.len > 0xFFFF)
        return sk_fail(err, SK_EPATH, "refused path of %zu bytes", path.len);
    if (path.ptr[0] == '/')
        return sk_fail(err, SK_EPATH, "refused absolute path");
    if (memchr(path.ptr, 0, path.len))
        return sk_fail(err, SK_EPATH, "refused path with a NUL byte");
    size_t start = 0;
    for (size_t i = 0; i <= path.len; i++) {
        if (i < path.len && path.ptr[i] != '/')
            continue;
        size_t n = i - start;
        const uint8_t *c = path.ptr + start;
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return sk_fail(err, SK_EPATH, "refused path with an empty, '.' or '..' component");
        start = i + 1;
    }
    return SK_OK;
}

bool sk_op_type(uint8_t type)
{
    return sk_type_is_applied(type);
}

/* Where the empty path (the replicated directory itself) means something. */
static bool empty_path_ok(uint8_t type)
{
    switch (type) {
    case SK_T_FSYNC:
    case SK_T_SETATTR:
    case SK_T_SETXATTR:
    case SK_T_REMOVEXATTR:
    case SK_T_CLEAR_XATTRS:
        return true;
    default:
        return false;
    }
}

static int check_name(sk_bytes b, const char *what, size_t max, sk_err *err)
{
    if (b.len == 0)
        return sk_fail(err, SK_EMALFORMED, "empty %s", what);
    if (b.len > max)
        return sk_fail(err, SK_ETOOBIG, "%s of %zu bytes, above %zu", what, b.len, max);
    if (memchr(b.ptr, 0, b.len))
        return sk_fail(err, SK_EMALFORMED, "%s with a NUL byte", what);
    return SK_OK;
}

/* The checks both the encoder and the decoder make, on a decoded or to-be-encoded op. */
static int op_validate(const sk_op *op, sk_err *err)
{
    const char *name = sk_type_name(op->type);
    if (!sk_op_type(op->type))
        return sk_fail(err, SK_ETYPE, "%s (type %u) is not an operation", name ? name : "unknown", op->type);
    int rc = sk_path_check(op->path, empty_path_ok(op->type), err);
    if (rc != SK_OK)
        return rc;
    switch (op->type) {
    case SK_T_RENAME:
        if (op->flags & ~SK_RENAME_KNOWN)
            return sk_fail(err, SK_EMALFORMED, "RENAME with unknown flags 0x%x", op->flags);
        /* fall through */
    case SK_T_LINK:
        return sk_path_check(op->path2, false, err);
    case SK_T_SETATTR:
        if (op->mask & ~SK_ATTR_KNOWN)
            return sk_fail(err, SK_EMALFORMED, "SETATTR with unknown mask bits 0x%x", op->mask);
        return SK_OK;
    case SK_T_SETXATTR:
        if (op->value.len > SK_XATTR_VALUE_MAX)
            return sk_fail(err, SK_ETOOBIG, "extended attribute value of %zu bytes, above %d",
                           op->value.len, SK_XATTR_VALUE_MAX);
        /* fall through */
    case SK_T_REMOVEXATTR:
        return check_name(op->name, "extended attribute name", SK_XATTR_NAME_MAX, err);
    case SK_T_SYMLINK:
        return check_name(op->target, "symlink target", SK_SYMLINK_MAX, err);
    case SK_T_FALLOCATE:
        if (op->length == 0)
            return sk_fail(err, SK_EMALFORMED, "FALLOCATE of length 0");
        if (op->offset > INT64_MAX || op->length > (uint64_t)INT64_MAX - op->offset)
            return sk_fail(err, SK_EMALFORMED, "FALLOCATE range beyond 2^63");
        return SK_OK;
    case SK_T_WRITE:
        if (op->offset > INT64_MAX || op->data.len > (uint64_t)INT64_MAX - op->offset)
            return sk_fail(err, SK_EMALFORMED, "WRITE range beyond 2^63");
        return SK_OK;
    case SK_T_TRUNCATE:
        if (op->size > INT64_MAX)
            return sk_fail(err, SK_EMALFORMED, "TRUNCATE to a size beyond 2^63");
        return SK_OK;
    default:
        return SK_OK;
    }
}

static void op_write(sk_wr *w, const sk_op *op, bool with_data)
{
    sk_wr_lp16(w, op->path);
    switch (op->type) {
    case SK_T_CREATE:
    case SK_T_MKDIR:
        sk_wr_u32(w, op->mode);
        sk_wr_u32(w, op->uid);
        sk_wr_u32(w, op->gid);
        break;
    case SK_T_WRITE:
        sk_wr_u64(w, op->offset);
        if (with_data)
            sk_wr_put(w, op->data.ptr, op->data.len);
        break;
    case SK_T_TRUNCATE:
        sk_wr_u64(w, op->size);
        break;
    case SK_T_FALLOCATE:
        sk_wr_u32(w, op->mode);
        sk_wr_u64(w, op->offset);
        sk_wr_u64(w, op->length);
        break;
    case SK_T_SETATTR:
        sk_wr_u32(w, op->mask);
        sk_wr_u32(w, op->mode);
        sk_wr_u32(w, op->uid);
        sk_wr_u32(w, op->gid);
        sk_wr_i64(w, op->atime_ns);
        sk_wr_i64(w, op->mtime_ns);
        sk_wr_u64(w, op->size);
        break;
    case SK_T_SETXATTR:
        sk_wr_lp32(w, op->name);
        sk_wr_lp32(w, op->value);
        break;
    case SK_T_REMOVEXATTR:
        sk_wr_lp32(w, op->name);
        break;
    case SK_T_RENAME:
        sk_wr_lp16(w, op->path2);
        sk_wr_u32(w, op->flags);
        break;
    case SK_T_LINK:
        sk_wr_lp16(w, op->path2);
        break;
    case SK_T_SYMLINK:
        sk_wr_lp32(w, op->target);
        sk_wr_u32(w, op->uid);
        sk_wr_u32(w, op->gid);
        break;
    case SK_T_MKNOD:
        sk_wr_u32(w, op->mode);
        sk_wr_u64(w, op->rdev);
        sk_wr_u32(w, op->uid);
        sk_wr_u32(w, op->gid);
        break;
    default: /* RMDIR, UNLINK, FSYNC, REMOVE_TREE, CLEAR_XATTRS: the path only */
        break;
    }
}

int sk_op_size(const sk_op *op, size_t *size, sk_err *err)
{
    int rc = op_validate(op, err);
    if (rc != SK_OK)
        return rc;
    size_t n = 2 + op->path.len;
    switch (op->type) {
    case SK_T_CREATE:
    case SK_T_MKDIR: n += 12; break;
    case SK_T_WRITE: n += 8 + op->data.len; break;
    case SK_T_TRUNCATE: n += 8; break;
    case SK_T_FALLOCATE: n += 20; break;
    case SK_T_SETATTR: n += 40; break;
    case SK_T_SETXATTR: n += 8 + op->name.len + op->value.len; break;
    case SK_T_REMOVEXATTR: n += 4 + op->name.len; break;
    case SK_T_RENAME: n += 2 + op->path2.len + 4; break;
    case SK_T_LINK: n += 2 + op->path2.len; break;
    case SK_T_SYMLINK: n += 4 + op->target.len + 8; break;
    case SK_T_MKNOD: n += 20; break;
    default: break;
    }
    if (n > SK_MAX_PAYLOAD)
        return sk_fail(err, SK_ETOOBIG, "%s payload of %zu bytes, above the limit of %u",
                       sk_type_name(op->type), n, SK_MAX_PAYLOAD);
    *size = n;
    return SK_OK;
}

int sk_op_encode(const sk_op *op, uint8_t *out, size_t cap, size_t *len, sk_err *err)
{
    size_t n;
    int rc = sk_op_size(op, &n, err);
    if (rc != SK_OK)
        return rc;
    if (n > cap)
        return sk_fail(err, SK_ESPACE, "%s payload of %zu bytes does not fit in %zu", sk_type_name(op->type),
                       n, cap);
    sk_wr w = sk_wr_make(out, cap);
    op_write(&w, op, true);
    if (w.bad || w.pos != n)
        return sk_fail(err, SK_EINVAL, "internal: %s encoded to %zu bytes, %zu expected",
                       sk_type_name(op->type), w.pos, n);
    *len = w.pos;
    return SK_OK;
}

int sk_op_encode_write_prefix(const sk_op *op, uint8_t *out, size_t cap, size_t *len, sk_err *err)
{
    if (op->type != SK_T_WRITE)
        return sk_fail(err, SK_EINVAL, "not a WRITE");
    size_t n;
    int rc = sk_op_size(op, &n, err);
    if (rc != SK_OK)
        return rc;
    sk_wr w = sk_wr_make(out, cap);
    op_write(&w, op, false);
    if (w.bad)
        return sk_fail(err, SK_ESPACE, "WRITE prefix does not fit in %zu bytes", cap);
    *len = w.pos;
    return SK_OK;
}

int sk_op_decode(uint8_t type, uint16_t flags, const uint8_t *payload, size_t len, sk_op *out, sk_err *err)
{
    sk_op op;
    memset(&op, 0, sizeof op);
    op.type = type;
    if (!sk_op_type(type)) {
        const char *name = sk_type_name(type);
        return sk_fail(err, SK_ETYPE, "%s (type %u) is not an operation", name ? name : "unknown", type);
    }
    if (len > SK_MAX_PAYLOAD)
        return sk_fail(err, SK_ETOOBIG, "payload of %zu bytes, above the limit", len);
    sk_rd r = sk_rd_make(payload, len);
    op.path = sk_rd_lp16(&r);
    switch (type) {
    case SK_T_CREATE:
    case SK_T_MKDIR:
        op.mode = sk_rd_u32(&r);
        op.uid = sk_rd_u32(&r);
        op.gid = sk_rd_u32(&r);
        break;
    case SK_T_WRITE:
        op.offset = sk_rd_u64(&r);
        op.data = sk_rd_rest(&r);
        break;
    case SK_T_TRUNCATE:
        op.size = sk_rd_u64(&r);
        break;
    case SK_T_FALLOCATE:
        op.mode = sk_rd_u32(&r);
        op.offset = sk_rd_u64(&r);
        op.length = sk_rd_u64(&r);
        break;
    case SK_T_SETATTR:
        op.mask = sk_rd_u32(&r);
        op.mode = sk_rd_u32(&r);
        op.uid = sk_rd_u32(&r);
        op.gid = sk_rd_u32(&r);
        op.atime_ns = sk_rd_i64(&r);
        op.mtime_ns = sk_rd_i64(&r);
        op.size = sk_rd_u64(&r);
        break;
    case SK_T_SETXATTR:
        op.name = sk_rd_lp32(&r);
        op.value = sk_rd_lp32(&r);
        break;
    case SK_T_REMOVEXATTR:
        op.name = sk_rd_lp32(&r);
        break;
    case SK_T_RENAME:
        op.path2 = sk_rd_lp16(&r);
        op.flags = sk_rd_u32(&r);
        break;
    case SK_T_LINK:
        op.path2 = sk_rd_lp16(&r);
        break;
    case SK_T_SYMLINK:
        op.target = sk_rd_lp32(&r);
        op.uid = sk_rd_u32(&r);
        op.gid = sk_rd_u32(&r);
        break;
    case SK_T_MKNOD:
        op.mode = sk_rd_u32(&r);
        op.rdev = sk_rd_u64(&r);
        op.uid = sk_rd_u32(&r);
        op.gid = sk_rd_u32(&r);
        break;
    case SK_T_FSYNC:
        op.datasync = (flags & SK_F_DATASYNC) != 0;
        break;
    default:
        break;
    }
    if (r.bad)
        return sk_fail(err, SK_EMALFORMED, "truncated %s payload", sk_type_name(type));
    if (!sk_rd_done(&r))
        return sk_fail(err, SK_EMALFORMED, "%zu unexpected bytes at the end of a %s payload", len - r.pos,
                       sk_type_name(type));
    int rc = op_validate(&op, err);
    if (rc != SK_OK)
        return rc;
    *out = op;
    return SK_OK;
}

/* ------------------------------------------------------------------ control payloads */

static int finish_wr(const sk_wr *w, const char *what, size_t *len, sk_err *err)
{
    if (w->bad)
        return sk_fail(err, SK_ESPACE, "%s does not fit in %zu bytes", what, w->cap);
    *len = w->pos;
    return SK_OK;
}

static int finish_rd(const sk_rd *r, const char *what, sk_err *err)
{
    if (r->bad)
        return sk_fail(err, SK_EMALFORMED, "truncated %s payload", what);
    if (r->pos != r->len)
        return sk_fail(err, SK_EMALFORMED, "%zu unexpected bytes at the end of a %s payload", r->len - r->pos,
                       what);
    return SK_OK;
}

static int ack_validate(const sk_ack *a, sk_err *err)
{
    if (a->durable > a->applied || a->applied > a->received)
        return sk_fail(err, SK_EMALFORMED, "ACK with durable %llu > applied %llu or applied > received %llu",
                       (unsigned long long)a->durable, (unsigned long long)a->applied,
                       (unsigned long long)a->received);
    return SK_OK;
}

int sk_ack_encode(const sk_ack *a, uint8_t *out, size_t cap, size_t *len, sk_err *err)
{
    int rc = ack_validate(a, err);
    if (rc != SK_OK)
        return rc;
    sk_wr w = sk_wr_make(out, cap);
    sk_wr_u64(&w, a->received);
    sk_wr_u64(&w, a->applied);
    sk_wr_u64(&w, a->durable);
    return finish_wr(&w, "ACK", len, err);
}

int sk_ack_decode(const uint8_t *p, size_t len, sk_ack *out, sk_err *err)
{
    sk_rd r = sk_rd_make(p, len);
    sk_ack a;
    a.received = sk_rd_u64(&r);
    a.applied = sk_rd_u64(&r);
    a.durable = sk_rd_u64(&r);
    int rc = finish_rd(&r, "ACK", err);
    if (rc == SK_OK)
        rc = ack_validate(&a, err);
    if (rc == SK_OK)
        *out = a;
    return rc;
}

int sk_error_encode(const sk_error_msg *e, uint8_t *out, size_t cap, size_t *len, sk_err *err)
{
    /* A long reason is cut (at a UTF-8 character boundary), never a reason not to report. */
    sk_bytes reason = e->reason;
    if (reason.len > SK_ERROR_REASON_MAX) {
        reason.len = SK_ERROR_REASON_MAX;
        while (reason.len && (reason.ptr[reason.len] & 0xC0) == 0x80)
            reason.len--;
    }
    sk_wr w = sk_wr_make(out, cap);
    sk_wr_u64(&w, e->seq);
    sk_wr_u32(&w, e->errnum);
    sk_wr_lp16(&w, reason);
    return finish_wr(&w, "ERROR", len, err);
}

int sk_error_decode(const uint8_t *p, size_t len, sk_error_msg *out, sk_err *err)
{
    sk_rd r = sk_rd_make(p, len);
    sk_error_msg e;
    e.seq = sk_rd_u64(&r);
    e.errnum = sk_rd_u32(&r);
    e.reason = sk_rd_lp16(&r);
    int rc = finish_rd(&r, "ERROR", err);
    if (rc != SK_OK)
        return rc;
    if (e.reason.len > SK_ERROR_REASON_MAX)
        return sk_fail(err, SK_ETOOBIG, "ERROR reason of %zu bytes, above %d", e.reason.len,
                       SK_ERROR_REASON_MAX);
    *out = e;
    return SK_OK;
}

int sk_sync_begin_encode(uint8_t mode, uint8_t *out, size_t cap, size_t *len, sk_err *err)
{
    if (mode < SK_SYNC_JOURNAL || mode > SK_SYNC_FULL)
        return sk_fail(err, SK_EINVAL, "unknown resync mode %u", mode);
    sk_wr w = sk_wr_make(out, cap);
    sk_wr_u8(&w, mode);
    return finish_wr(&w, "SYNC_BEGIN", len, err);
}

int sk_sync_begin_decode(const uint8_t *p, size_t len, uint8_t *mode, sk_err *err)
{
    sk_rd r = sk_rd_make(p, len);
    uint8_t m = sk_rd_u8(&r);
    int rc = finish_rd(&r, "SYNC_BEGIN", err);
    if (rc != SK_OK)
        return rc;
    if (m < SK_SYNC_JOURNAL || m > SK_SYNC_FULL)
        return sk_fail(err, SK_EMALFORMED, "unknown resync mode %u", m);
    *mode = m;
    return SK_OK;
}

int sk_sync_end_encode(uint64_t generation, uint8_t *out, size_t cap, size_t *len, sk_err *err)
{
    sk_wr w = sk_wr_make(out, cap);
    sk_wr_u64(&w, generation);
    return finish_wr(&w, "SYNC_END", len, err);
}

int sk_sync_end_decode(const uint8_t *p, size_t len, uint64_t *generation, sk_err *err)
{
    sk_rd r = sk_rd_make(p, len);
    uint64_t g = sk_rd_u64(&r);
    int rc = finish_rd(&r, "SYNC_END", err);
    if (rc == SK_OK)
        *generation = g;
    return rc;
}

int sk_progress_encode(const sk_progress *pr, uint8_t *out, size_t cap, size_t *len, sk_err *err)
{
    if (pr->done > pr->total)
        return sk_fail(err, SK_EINVAL, "PROGRESS with done > total");
    sk_wr w = sk_wr_make(out, cap);
    sk_wr_u64(&w, pr->done);
    sk_wr_u64(&w, pr->total);
    return finish_wr(&w, "PROGRESS", len, err);
}

int sk_progress_decode(const uint8_t *p, size_t len, sk_progress *out, sk_err *err)
{
    sk_rd r = sk_rd_make(p, len);
    sk_progress pr;
    pr.done = sk_rd_u64(&r);
    pr.total = sk_rd_u64(&r);
    int rc = finish_rd(&r, "PROGRESS", err);
    if (rc != SK_OK)
        return rc;
    if (pr.done > pr.total)
        return sk_fail(err, SK_EMALFORMED, "PROGRESS with done %llu > total %llu",
                       (unsigned long long)pr.done, (unsigned long long)pr.total);
    *out = pr;
    return SK_OK;
}

int sk_manifest_req_encode(uint8_t sums, const sk_bytes *paths, uint32_t count, uint8_t *out, size_t cap,
                           size_t *len, sk_err *err)
{
    if (sums > SK_SUMS_PATHS)
        return sk_fail(err, SK_EINVAL, "unknown sums %u", sums);
    if (sums != SK_SUMS_PATHS && count)
        return sk_fail(err, SK_EINVAL, "paths are only sent with SK_SUMS_PATHS");
    sk_wr w = sk_wr_make(out, cap);
    sk_wr_u8(&w, sums);
    sk_wr_u32(&w, count);
    for (uint32_t i = 0; i < count; i++) {
        int rc = sk_path_check(paths[i], false, err);
        if (rc != SK_OK)
            return rc;
        sk_wr_lp16(&w, paths[i]);
    }
    if (w.pos > SK_MAX_PAYLOAD)
        return sk_fail(err, SK_ETOOBIG, "MANIFEST_REQ above the payload limit");
    return finish_wr(&w, "MANIFEST_REQ", len, err);
}

int sk_manifest_req_decode(const uint8_t *p, size_t len, sk_manifest_req *out, sk_err *err)
{
    sk_rd r = sk_rd_make(p, len);
    sk_manifest_req q;
    q.sums = sk_rd_u8(&r);
    q.count = sk_rd_u32(&r);
    if (r.bad)
        return sk_fail(err, SK_EMALFORMED, "truncated MANIFEST_REQ payload");
    if (q.sums > SK_SUMS_PATHS)
        return sk_fail(err, SK_EMALFORMED, "MANIFEST_REQ with unknown sums %u", q.sums);
    if (q.sums != SK_SUMS_PATHS && q.count)
        return sk_fail(err, SK_EMALFORMED, "MANIFEST_REQ with paths but sums %u", q.sums);
    q.paths = sk_rd_make(p + r.pos, len - r.pos);
    /* Each path takes at least 3 bytes: a count above that is a lie, refused before looping. */
    if (q.count > (len - r.pos) / 3)
        return sk_fail(err, SK_EMALFORMED, "MANIFEST_REQ announces %u paths in %zu bytes", q.count, len - r.pos);
    for (uint32_t i = 0; i < q.count; i++) {
        sk_bytes path = sk_rd_lp16(&r);
        if (r.bad)
            return sk_fail(err, SK_EMALFORMED, "truncated MANIFEST_REQ payload");
        int rc = sk_path_check(path, false, err);
        if (rc != SK_OK)
            return rc;
    }
    int rc = finish_rd(&r, "MANIFEST_REQ", err);
    if (rc == SK_OK)
        *out = q;
    return rc;
}

int sk_manifest_req_next(sk_manifest_req *req, sk_bytes *path)
{
    if (req->paths.pos >= req->paths.len || req->paths.bad)
        return 0;
    *path = sk_rd_lp16(&req->paths);
    return req->paths.bad ? 0 : 1;
}

static int entry_validate(const sk_entry *e, sk_err *err)
{
    int rc = sk_path_check(e->path, true, err);
    if (rc != SK_OK)
        return rc;
    if (e->kind != 'f' && e->kind != 'd' && e->kind != 'l' && e->kind != 'o')
        return sk_fail(err, SK_EMALFORMED, "manifest entry of unknown kind 0x%02x", e->kind);
    if (e->kind == 'l') {
        rc = check_name(e->target, "symlink target", SK_SYMLINK_MAX, err);
        if (rc != SK_OK)
            return rc;
    } else if (e->target.len) {
        return sk_fail(err, SK_EMALFORMED, "manifest entry with a target but not a symlink");
    }
    if (e->has_sums && e->kind != 'f')
        return sk_fail(err, SK_EMALFORMED, "manifest entry with checksums but not a file");
    if (!e->has_sums && (e->nsums || e->sums_first))
        return sk_fail(err, SK_EMALFORMED, "manifest entry with checksum fields but no checksums");
    if ((uint64_t)e->nsums * SK_SUM_SIZE != e->sums.len)
        return sk_fail(err, SK_EMALFORMED, "manifest entry with %u checksums in %zu bytes", e->nsums, e->sums.len);
    return SK_OK;
}

static void entry_write(sk_wr *w, const sk_entry *e)
{
    sk_wr_lp16(w, e->path);
    sk_wr_u8(w, e->kind);
    sk_wr_u8(w, e->has_sums ? 1 : 0);
    sk_wr_u32(w, e->mode);
    sk_wr_u32(w, e->uid);
    sk_wr_u32(w, e->gid);
    sk_wr_u64(w, e->size);
    sk_wr_i64(w, e->mtime_ns);
    sk_wr_u64(w, e->rdev);
    sk_wr_lp16(w, e->target);
    if (e->has_sums) {
        sk_wr_u64(w, e->sums_first);
        sk_wr_u32(w, e->nsums);
        sk_wr_put(w, e->sums.ptr, e->sums.len);
    }
}

static int entry_read(sk_rd *r, sk_entry *out, sk_err *err)
{
    sk_entry e;
    memset(&e, 0, sizeof e);
    e.path = sk_rd_lp16(r);
    e.kind = sk_rd_u8(r);
    uint8_t has = sk_rd_u8(r);
    e.mode = sk_rd_u32(r);
    e.uid = sk_rd_u32(r);
    e.gid = sk_rd_u32(r);
    e.size = sk_rd_u64(r);
    e.mtime_ns = sk_rd_i64(r);
    e.rdev = sk_rd_u64(r);
    e.target = sk_rd_lp16(r);
    if (has > 1)
        return sk_fail(err, SK_EMALFORMED, "manifest entry with has_sums %u", has);
    e.has_sums = has == 1;
    if (e.has_sums) {
        e.sums_first = sk_rd_u64(r);
        e.nsums = sk_rd_u32(r);
        if (!r->bad && e.nsums > (r->len - r->pos) / SK_SUM_SIZE)
            return sk_fail(err, SK_EMALFORMED, "manifest entry announces %u checksums beyond the payload", e.nsums);
        e.sums = sk_rd_bytes(r, (size_t)e.nsums * SK_SUM_SIZE);
    }
    if (r->bad)
        return sk_fail(err, SK_EMALFORMED, "truncated MANIFEST entry");
    int rc = entry_validate(&e, err);
    if (rc == SK_OK)
        *out = e;
    return rc;
}

void sk_manifest_writer_init(sk_manifest_writer *w, uint8_t *out, size_t cap)
{
    w->out = out;
    w->cap = cap < SK_MAX_PAYLOAD ? cap : SK_MAX_PAYLOAD;
    w->pos = 4;
    w->count = 0;
}

int sk_manifest_writer_add(sk_manifest_writer *w, const sk_entry *e, sk_err *err)
{
    int rc = entry_validate(e, err);
    if (rc != SK_OK)
        return rc;
    if (w->count == UINT32_MAX || w->pos > w->cap)
        return sk_fail(err, SK_ESPACE, "manifest chunk full");
    sk_wr wr = sk_wr_make(w->out + w->pos, w->cap - w->pos);
    entry_write(&wr, e);
    if (wr.bad)
        return sk_fail(err, SK_ESPACE, "manifest entry does not fit in this chunk");
    w->pos += wr.pos;
    w->count++;
    return SK_OK;
}

int sk_manifest_writer_finish(sk_manifest_writer *w, size_t *len, sk_err *err)
{
    if (w->cap < 4)
        return sk_fail(err, SK_ESPACE, "manifest chunk buffer below 4 bytes");
    sk_store_be(w->out, w->count, 4);
    *len = w->pos;
    return SK_OK;
}

int sk_manifest_begin(const uint8_t *p, size_t len, sk_manifest_iter *it, uint32_t *count, sk_err *err)
{
    if (len > SK_MAX_PAYLOAD)
        return sk_fail(err, SK_ETOOBIG, "MANIFEST above the payload limit");
    sk_rd r = sk_rd_make(p, len);
    uint32_t n = sk_rd_u32(&r);
    if (r.bad)
        return sk_fail(err, SK_EMALFORMED, "truncated MANIFEST payload");
    sk_manifest_iter check = {r, n};
    sk_entry e;
    int rc;
    while ((rc = sk_manifest_next(&check, &e, err)) == 1)
        ;
    if (rc < 0)
        return rc;
    rc = finish_rd(&check.r, "MANIFEST", err);
    if (rc != SK_OK)
        return rc;
    it->r = r;
    it->left = n;
    *count = n;
    return SK_OK;
}

int sk_manifest_next(sk_manifest_iter *it, sk_entry *e, sk_err *err)
{
    if (it->left == 0)
        return 0;
    /* An entry takes at least 42 bytes: refuse a count that cannot be there (no long loop). */
    if (it->r.bad || it->r.len - it->r.pos < 42)
        return sk_fail(err, SK_EMALFORMED, "MANIFEST announces more entries than it holds");
    int rc = entry_read(&it->r, e, err);
    if (rc != SK_OK)
        return rc;
    it->left--;
    return 1;
}

static int expect_empty(uint8_t type, size_t len, sk_err *err)
{
    if (len)
        return sk_fail(err, SK_EMALFORMED, "%s with a %zu-byte payload (must be empty)", sk_type_name(type), len);
    return SK_OK;
}

int sk_payload_check(uint8_t type, uint16_t flags, const uint8_t *p, size_t len, sk_err *err)
{
    if (sk_op_type(type)) {
        sk_op op;
        return sk_op_decode(type, flags, p, len, &op, err);
    }
    union {
        sk_ack ack;
        sk_error_msg error;
        uint8_t mode;
        uint64_t generation;
        sk_progress progress;
        sk_manifest_req req;
        sk_manifest_iter it;
    } u;
    uint32_t count;
    switch (type) {
    case SK_T_ACK: return sk_ack_decode(p, len, &u.ack, err);
    case SK_T_ERROR: return sk_error_decode(p, len, &u.error, err);
    case SK_T_SYNC_BEGIN: return sk_sync_begin_decode(p, len, &u.mode, err);
    case SK_T_SYNC_END: return sk_sync_end_decode(p, len, &u.generation, err);
    case SK_T_PROGRESS: return sk_progress_decode(p, len, &u.progress, err);
    case SK_T_MANIFEST_REQ: return sk_manifest_req_decode(p, len, &u.req, err);
    case SK_T_MANIFEST: return sk_manifest_begin(p, len, &u.it, &count, err);
    case SK_T_PING:
    case SK_T_BYE: return expect_empty(type, len, err);
    default: {
        const char *name = sk_type_name(type);
        return sk_fail(err, SK_ETYPE, "%s (type %u): no payload check here", name ? name : "unknown", type);
    }
    }
}

int sk_walk_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    /* the common prefix, and where its last complete component ends (the deepest common parent) */
    size_t i = 0, start = 0;
    while (i < alen && i < blen && a[i] == b[i]) {
        if (a[i] == '/')
            start = i + 1;
        i++;
    }
    if (i == alen && i == blen)
        return 0;
    /* one is the other's parent (or the directory itself, ""): the parent first */
    if (i == alen && (alen == 0 || b[i] == '/'))
        return -1;
    if (i == blen && (blen == 0 || a[i] == '/'))
        return 1;
    /* below the common parent: an entry of it before anything deeper */
    bool deep_a = memchr(a + start, '/', alen - start) != NULL;
    bool deep_b = memchr(b + start, '/', blen - start) != NULL;
    if (deep_a != deep_b)
        return deep_a ? 1 : -1;
    /* then the names of the first components below it, in byte order (a shorter name that is a
     * prefix of the other first, as strcmp) */
    size_t ea = start, eb = start;
    while (ea < alen && a[ea] != '/')
        ea++;
    while (eb < blen && b[eb] != '/')
        eb++;
    size_t na = ea - start, nb = eb - start, n = na < nb ? na : nb;
    int c = memcmp(a + start, b + start, n);
    if (c)
        return c < 0 ? -1 : 1;
    return na < nb ? -1 : na > nb ? 1 : 0;
}
