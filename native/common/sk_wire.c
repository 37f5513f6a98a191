#include "sk_wire.h"

#include <string.h>

#include "sk_bytes.h"

const char *sk_type_name(uint8_t type)
{
    switch (type) {
    case SK_T_HELLO: return "HELLO";
    case SK_T_HELLO_OK: return "HELLO_OK";
    case SK_T_HELLO_DONE: return "HELLO_DONE";
    case SK_T_CREATE: return "CREATE";
    case SK_T_WRITE: return "WRITE";
    case SK_T_TRUNCATE: return "TRUNCATE";
    case SK_T_FALLOCATE: return "FALLOCATE";
    case SK_T_SETATTR: return "SETATTR";
    case SK_T_SETXATTR: return "SETXATTR";
    case SK_T_REMOVEXATTR: return "REMOVEXATTR";
    case SK_T_MKDIR: return "MKDIR";
    case SK_T_RMDIR: return "RMDIR";
    case SK_T_UNLINK: return "UNLINK";
    case SK_T_RENAME: return "RENAME";
    case SK_T_SYMLINK: return "SYMLINK";
    case SK_T_MKNOD: return "MKNOD";
    case SK_T_FSYNC: return "FSYNC";
    case SK_T_LINK: return "LINK";
    case SK_T_SYNC_BEGIN: return "SYNC_BEGIN";
    case SK_T_REMOVE_TREE: return "REMOVE_TREE";
    case SK_T_SYNC_END: return "SYNC_END";
    case SK_T_MANIFEST_REQ: return "MANIFEST_REQ";
    case SK_T_CLEAR_XATTRS: return "CLEAR_XATTRS";
    case SK_T_PROGRESS: return "PROGRESS";
    case SK_T_ACK: return "ACK";
    case SK_T_ERROR: return "ERROR";
    case SK_T_MANIFEST: return "MANIFEST";
    case SK_T_PING: return "PING";
    case SK_T_BYE: return "BYE";
    default: return NULL;
    }
}

int sk_type_senders(uint8_t type)
{
    if (!sk_type_name(type))
        return 0;
    switch (type) {
    case SK_T_HELLO_OK:
    case SK_T_ACK:
    case SK_T_ERROR:
    case SK_T_MANIFEST:
        return SK_S2P;
    case SK_T_PING:
    case SK_T_BYE:
        return SK_P2S | SK_S2P;
    default:
        return SK_P2S;
    }
}

bool sk_type_is_applied(uint8_t type)
{
    return (type >= SK_T_CREATE && type <= SK_T_LINK) || type == SK_T_REMOVE_TREE ||
           type == SK_T_CLEAR_XATTRS;
}

void sk_header_encode(const sk_header *h, uint8_t out[SK_HEADER_SIZE])
{
    memcpy(out, SK_MAGIC, 4);
    out[4] = h->version;
    out[5] = h->type;
    sk_store_be(out + 6, h->flags, 2);
    sk_store_be(out + 8, h->seq, 8);
    sk_store_be(out + 16, h->length, 4);
    sk_store_be(out + 20, h->dir, 4);
}

int sk_header_decode(const uint8_t *buf, size_t len, sk_header *out, sk_err *err)
{
    if (len < SK_HEADER_SIZE)
        return SK_AGAIN;
    if (memcmp(buf, SK_MAGIC, 4) != 0)
        return sk_fail(err, SK_EMAGIC, "not a safekit replication stream (bad magic)");
    sk_header h;
    h.version = buf[4];
    h.type = buf[5];
    h.flags = (uint16_t)sk_load_be(buf + 6, 2);
    h.seq = sk_load_be(buf + 8, 8);
    h.length = (uint32_t)sk_load_be(buf + 16, 4);
    h.dir = (uint32_t)sk_load_be(buf + 20, 4);
    if (h.version == 1)
        return sk_fail(err, SK_EVERSION,
                       "the peer speaks replication protocol version 1, this node version 2 only: "
                       "upgrade the peer (no fallback to the unencrypted v1)");
    if (h.version != SK_WIRE_VERSION)
        return sk_fail(err, SK_EVERSION, "replication protocol version %u, this node speaks version %u",
                       h.version, SK_WIRE_VERSION);
    if (h.length > SK_MAX_PAYLOAD)
        return sk_fail(err, SK_ETOOBIG, "frame announces %u payload bytes, above the limit of %u",
                       h.length, SK_MAX_PAYLOAD);
    if (!sk_type_name(h.type))
        return sk_fail(err, SK_ETYPE, "unknown frame type %u", h.type);
    if (h.flags & ~SK_F_KNOWN)
        return sk_fail(err, SK_EMALFORMED, "%s frame with unknown flags 0x%04x", sk_type_name(h.type),
                       h.flags);
    *out = h;
    return SK_OK;
}

int sk_frame_span(const uint8_t *buf, size_t len, sk_header *out, size_t *frame_len, sk_err *err)
{
    *frame_len = SK_HEADER_SIZE;
    int rc = sk_header_decode(buf, len, out, err);
    if (rc != SK_OK)
        return rc;
    *frame_len = (size_t)SK_FRAME_OVERHEAD + out->length;
    return len >= *frame_len ? SK_OK : SK_AGAIN;
}
