/* Replication wire protocol, version 2: frame header, frame types, flags (docs/replication-wire-v2.md).
 *
 * A frame on the TCP stream:
 *
 *     header  24 bytes, big-endian: magic "SKRF" | version u8 (2) | type u8 | flags u16 |
 *             seq u64 | length u32 | dir u32
 *     body    `length` bytes: the payload, encrypted (plain for HELLO and HELLO_OK)
 *     tag     16 bytes: AEAD tag (HMAC-SHA256 truncated to 16 bytes for HELLO and HELLO_OK)
 *
 * This file decodes and checks headers only (pure, no I/O, no crypto). */
#ifndef SK_WIRE_H
#define SK_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sk_err.h"

#define SK_MAGIC "SKRF"
#define SK_WIRE_VERSION 2
#define SK_HEADER_SIZE 24
#define SK_TAG_SIZE 16
#define SK_FRAME_OVERHEAD (SK_HEADER_SIZE + SK_TAG_SIZE)
/* Largest payload (plaintext bytes) of any frame: a frame announcing more is refused before any
 * allocation. 8 MiB: a 1 MiB WRITE with room to spare, 2 MiB manifest chunks, and a bound on the
 * receiver's one frame buffer. */
#define SK_MAX_PAYLOAD (8u << 20)

enum sk_type {
    /* handshake */
    SK_T_HELLO = 1,      /* primary -> secondary, HMAC with the hello key */
    SK_T_HELLO_OK = 2,   /* secondary -> primary, HMAC with the hello key */
    SK_T_HELLO_DONE = 3, /* primary -> secondary, first AEAD frame (seq 0): key confirmation */
    /* operations, primary -> secondary, in the primary's order */
    SK_T_CREATE = 10,
    SK_T_WRITE = 11,
    SK_T_TRUNCATE = 12,
    SK_T_FALLOCATE = 13,
    SK_T_SETATTR = 14,
    SK_T_SETXATTR = 15,
    SK_T_REMOVEXATTR = 16,
    SK_T_MKDIR = 17,
    SK_T_RMDIR = 18,
    SK_T_UNLINK = 19,
    SK_T_RENAME = 20,
    SK_T_SYMLINK = 21,
    SK_T_MKNOD = 22,
    SK_T_FSYNC = 23,
    SK_T_LINK = 24, /* new in v2 */
    /* resynchronisation, primary -> secondary, ordered with the operations */
    SK_T_SYNC_BEGIN = 30,
    SK_T_REMOVE_TREE = 31,
    SK_T_SYNC_END = 32,
    SK_T_MANIFEST_REQ = 33,
    SK_T_CLEAR_XATTRS = 35,
    SK_T_PROGRESS = 36,
    /* secondary -> primary */
    SK_T_ACK = 40,
    SK_T_ERROR = 41,
    SK_T_MANIFEST = 42,
    /* both ways */
    SK_T_PING = 50,
    SK_T_BYE = 51,
};

enum sk_flag {
    SK_F_ACK = 0x0001,      /* a barrier: the sender waits for an ACK covering this frame */
    SK_F_LAST = 0x0002,     /* last frame of a multi-frame answer (MANIFEST) */
    SK_F_DATASYNC = 0x0004, /* FSYNC: fdatasync rather than fsync */
};
#define SK_F_KNOWN (SK_F_ACK | SK_F_LAST | SK_F_DATASYNC)

/* Who sends a frame; also the direction byte of the AEAD nonce. */
enum sk_dirn {
    SK_P2S = 1, /* primary -> secondary */
    SK_S2P = 2, /* secondary -> primary */
};

typedef struct sk_header {
    uint8_t version;
    uint8_t type;
    uint16_t flags;
    uint64_t seq;
    uint32_t length; /* payload bytes (plaintext = ciphertext length) */
    uint32_t dir;    /* replicated directory index */
} sk_header;

/* Name of a frame type ("WRITE"), or NULL for a type v2 does not define. */
const char *sk_type_name(uint8_t type);

/* Which side may send `type` (SK_P2S, SK_S2P, or both OR-ed); 0 for an unknown type. */
int sk_type_senders(uint8_t type);

/* Operation frames the secondary applies to its copy in order (CREATE..LINK, REMOVE_TREE,
 * CLEAR_XATTRS). */
bool sk_type_is_applied(uint8_t type);

/* Write the 24 header bytes. */
void sk_header_encode(const sk_header *h, uint8_t out[SK_HEADER_SIZE]);

/* Decode and check a header: magic, version (2 only: a v1 peer is named as such), type known in
 * v2, flags known, length within SK_MAX_PAYLOAD. SK_AGAIN if fewer than 24 bytes. */
int sk_header_decode(const uint8_t *buf, size_t len, sk_header *out, sk_err *err);

/* Header decode plus: is the whole frame in `buf`? SK_OK with *frame_len set, SK_AGAIN when more
 * is needed (*frame_len = bytes needed in total once the header is known, else SK_HEADER_SIZE). */
int sk_frame_span(const uint8_t *buf, size_t len, sk_header *out, size_t *frame_len, sk_err *err);

#endif
