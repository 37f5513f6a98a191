/* The primary's wire payloads (see pwire.h). */
#include "pwire.h"

#include <stdio.h>
#include <string.h>

#include "sk_ops.h"
#include "sk_wire.h"

static void to_common(const skp_op *in, sk_op *op)
{
    memset(op, 0, sizeof *op);
    op->type = in->type;
    op->datasync = in->type == SK_T_FSYNC && (in->flags & 1);
    op->path = sk_bytes_of(in->path, in->path_len);
    op->path2 = sk_bytes_of(in->path2, in->path2_len);
    op->name = sk_bytes_of(in->name, in->name_len);
    op->uid = in->uid;
    op->gid = in->gid;
    op->offset = in->offset;
    op->length = in->length;
    op->size = in->size;
    op->rdev = in->rdev;
    op->mask = in->mask;
    op->atime_ns = in->atime_ns;
    op->mtime_ns = in->mtime_ns;
    op->mode = in->mode;
    switch (in->type) {
    case SK_T_SETXATTR:
        op->value = sk_bytes_of(in->value, in->value_len);
        break;
    case SK_T_SYMLINK:
        op->target = sk_bytes_of(in->value, in->value_len);
        break;
    case SK_T_WRITE:
        op->data = sk_bytes_of(in->data, in->data_len);
        break;
    case SK_T_FALLOCATE:
        op->mode = in->flags; /* the fallocate mode travels in the mode field */
        break;
    case SK_T_RENAME:
        op->flags = in->flags;
        break;
    case SK_T_SETATTR:
        /* fields not in the mask should be 0 (the wire's rule) */
        if (!(in->mask & SK_ATTR_MODE))
            op->mode = 0;
        if (!(in->mask & SK_ATTR_UID))
            op->uid = 0;
        if (!(in->mask & SK_ATTR_GID))
            op->gid = 0;
        if (!(in->mask & SK_ATTR_ATIME))
            op->atime_ns = 0;
        if (!(in->mask & SK_ATTR_MTIME))
            op->mtime_ns = 0;
        if (!(in->mask & SK_ATTR_SIZE))
            op->size = 0;
        break;
    default:
        break;
    }
}

uint16_t skp_op_frame_flags(const skp_op *op)
{
    if (op->type != SK_T_FSYNC)
        return 0;
    return (uint16_t)(SK_F_ACK | ((op->flags & 1) ? SK_F_DATASYNC : 0));
}

int skp_op_size(const skp_op *in, size_t *len, sk_err *err)
{
    if (!sk_op_type(in->type) || in->type == SK_T_CLEAR_XATTRS)
        return sk_fail(err, SK_ETYPE, "operation kind %u is not one the front sends", in->type);
    sk_op op;
    to_common(in, &op);
    return sk_op_size(&op, len, err);
}

int skp_op_encode(const skp_op *in, uint8_t *out, size_t cap, size_t *len, sk_err *err)
{
    sk_op op;
    to_common(in, &op);
    return sk_op_encode(&op, out, cap, len, err);
}

int skp_sync_begin(uint8_t mode, uint8_t *out, size_t cap, size_t *len)
{
    return sk_sync_begin_encode(mode, out, cap, len, NULL);
}

int skp_sync_end(uint64_t generation, uint8_t *out, size_t cap, size_t *len)
{
    return sk_sync_end_encode(generation, out, cap, len, NULL);
}

int skp_manifest_req_none(uint8_t *out, size_t cap, size_t *len)
{
    return sk_manifest_req_encode(SK_SUMS_NONE, NULL, 0, out, cap, len, NULL);
}

int skp_setattr_root(uint32_t mode, uint32_t uid, uint32_t gid, int64_t atime_ns, int64_t mtime_ns, uint8_t *out,
                     size_t cap, size_t *len)
{
    sk_op op;
    memset(&op, 0, sizeof op);
    op.type = SK_T_SETATTR;
    op.path = sk_bytes_of("", 0);
    op.mask = SK_ATTR_MODE | SK_ATTR_UID | SK_ATTR_GID | SK_ATTR_ATIME | SK_ATTR_MTIME;
    op.mode = mode;
    op.uid = uid;
    op.gid = gid;
    op.atime_ns = atime_ns;
    op.mtime_ns = mtime_ns;
    return sk_op_encode(&op, out, cap, len, NULL);
}

int skp_path_only(uint8_t type, const char *path, size_t path_len, uint8_t *out, size_t cap, size_t *len)
{
    sk_op op;
    memset(&op, 0, sizeof op);
    op.type = type;
    op.path = sk_bytes_of(path, path_len);
    return sk_op_encode(&op, out, cap, len, NULL);
}

int skp_setxattr(const char *path, size_t path_len, const void *name, size_t name_len, const void *value,
                 size_t value_len, uint8_t *out, size_t cap, size_t *len)
{
    sk_op op;
    memset(&op, 0, sizeof op);
    op.type = SK_T_SETXATTR;
    op.path = sk_bytes_of(path, path_len);
    op.name = sk_bytes_of(name, name_len);
    op.value = sk_bytes_of(value, value_len);
    return sk_op_encode(&op, out, cap, len, NULL);
}

int skp_answer_decode(uint8_t type, uint16_t flags, const uint8_t *p, size_t len, skp_answer *a, sk_err *err)
{
    memset(a, 0, sizeof *a);
    switch (type) {
    case SK_T_ACK: {
        sk_ack ack;
        int rc = sk_ack_decode(p, len, &ack, err);
        if (rc != SK_OK)
            return rc;
        a->kind = SKP_A_ACK;
        a->received = ack.received;
        a->applied = ack.applied;
        a->durable = ack.durable;
        return SK_OK;
    }
    case SK_T_ERROR: {
        sk_error_msg m;
        int rc = sk_error_decode(p, len, &m, err);
        if (rc != SK_OK)
            return rc;
        a->kind = SKP_A_ERROR;
        a->err_seq = m.seq;
        a->err_errno = m.errnum;
        snprintf(a->reason, sizeof a->reason, "%.*s", (int)(m.reason.len < 1024 ? m.reason.len : 1024),
                 (const char *)m.reason.ptr);
        return SK_OK;
    }
    case SK_T_MANIFEST: {
        sk_manifest_iter it;
        uint32_t count;
        int rc = sk_manifest_begin(p, len, &it, &count, err);
        if (rc != SK_OK)
            return rc;
        a->kind = SKP_A_MANIFEST;
        a->entries = count;
        a->last = (flags & SK_F_LAST) != 0;
        sk_entry e;
        while ((rc = sk_manifest_next(&it, &e, err)) == 1)
            if (e.path.len)
                a->non_root++;
        return rc < 0 ? rc : SK_OK;
    }
    case SK_T_PING:
        a->kind = SKP_A_PING;
        return SK_OK;
    case SK_T_BYE:
        a->kind = SKP_A_BYE;
        return SK_OK;
    }
    return sk_fail(err, SK_ETYPE, "unexpected %s frame from the secondary", sk_type_name(type) ? sk_type_name(type) : "unknown");
}
