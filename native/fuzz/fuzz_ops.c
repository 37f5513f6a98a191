/* libFuzzer target: payload decoders (sk_ops). Byte 0 is the frame type, bytes 1-2 the flags, the
 * rest the payload. Whatever decodes must encode back to the very same bytes (one encoding per
 * value), and decoded views must stay inside the payload. */
#include <stdlib.h>
#include <string.h>

#include "sk_ops.h"
#include "sk_wire.h"

static void inside(sk_bytes b, const uint8_t *p, size_t len)
{
    if (b.len && (b.ptr < p || b.ptr + b.len > p + len))
        abort();
}

static void check_op(uint8_t type, uint16_t flags, const uint8_t *p, size_t len)
{
    sk_op op;
    sk_err e;
    if (sk_op_decode(type, flags, p, len, &op, &e) != SK_OK)
        return;
    inside(op.path, p, len);
    inside(op.path2, p, len);
    inside(op.name, p, len);
    inside(op.value, p, len);
    inside(op.target, p, len);
    inside(op.data, p, len);
    uint8_t *out = malloc(len ? len : 1);
    size_t n;
    if (!out || sk_op_encode(&op, out, len, &n, &e) != SK_OK || n != len || memcmp(out, p, len) != 0)
        abort();
    free(out);
}

static void check_manifest(const uint8_t *p, size_t len)
{
    sk_manifest_iter it;
    uint32_t count;
    sk_err e;
    if (sk_manifest_begin(p, len, &it, &count, &e) != SK_OK)
        return;
    uint8_t *out = malloc(len ? len : 1);
    if (!out)
        abort();
    sk_manifest_writer w;
    sk_manifest_writer_init(&w, out, len);
    sk_entry en;
    uint32_t seen = 0;
    int rc;
    while ((rc = sk_manifest_next(&it, &en, &e)) == 1) {
        inside(en.path, p, len);
        inside(en.sums, p, len);
        if (sk_manifest_writer_add(&w, &en, &e) != SK_OK)
            abort();
        seen++;
    }
    size_t n;
    if (rc != 0 || seen != count || sk_manifest_writer_finish(&w, &n, &e) != SK_OK || n != len ||
        memcmp(out, p, len) != 0)
        abort();
    free(out);
}

static void check_control(uint8_t type, const uint8_t *p, size_t len)
{
    uint8_t out[2048];
    size_t n = 0;
    sk_err e;
    int rc = SK_EINVAL;
    if (len > sizeof out)
        return;
    switch (type) {
    case SK_T_ACK: {
        sk_ack a;
        if (sk_ack_decode(p, len, &a, &e) == SK_OK)
            rc = sk_ack_encode(&a, out, sizeof out, &n, &e);
        break;
    }
    case SK_T_ERROR: {
        sk_error_msg m;
        if (sk_error_decode(p, len, &m, &e) == SK_OK)
            rc = sk_error_encode(&m, out, sizeof out, &n, &e);
        break;
    }
    case SK_T_SYNC_BEGIN: {
        uint8_t mode;
        if (sk_sync_begin_decode(p, len, &mode, &e) == SK_OK)
            rc = sk_sync_begin_encode(mode, out, sizeof out, &n, &e);
        break;
    }
    case SK_T_SYNC_END: {
        uint64_t g;
        if (sk_sync_end_decode(p, len, &g, &e) == SK_OK)
            rc = sk_sync_end_encode(g, out, sizeof out, &n, &e);
        break;
    }
    case SK_T_PROGRESS: {
        sk_progress pr;
        if (sk_progress_decode(p, len, &pr, &e) == SK_OK)
            rc = sk_progress_encode(&pr, out, sizeof out, &n, &e);
        break;
    }
    case SK_T_MANIFEST_REQ: {
        sk_manifest_req q;
        if (sk_manifest_req_decode(p, len, &q, &e) == SK_OK) {
            sk_bytes paths[64], path;
            uint32_t k = 0;
            while (sk_manifest_req_next(&q, &path) == 1) {
                inside(path, p, len);
                if (k < 64)
                    paths[k] = path;
                k++;
            }
            if (k != q.count)
                abort();
            if (k <= 64)
                rc = sk_manifest_req_encode(q.sums, paths, k, out, sizeof out, &n, &e);
            else
                return;
        }
        break;
    }
    default:
        return;
    }
    if (rc == SK_EINVAL)
        return; /* did not decode */
    if (rc != SK_OK || n != len || memcmp(out, p, len) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t type = data[0];
    uint16_t flags = (uint16_t)(data[1] << 8 | data[2]);
    const uint8_t *p = data + 3;
    size_t len = size - 3;
    sk_err e;
    sk_payload_check(type, flags, p, len, &e);
    if (sk_type_is_applied(type))
        check_op(type, flags, p, len);
    else if (type == SK_T_MANIFEST)
        check_manifest(p, len);
    else
        check_control(type, p, len);
    return 0;
}
