/* Big-endian byte reader and writer over caller-owned buffers (no allocation).
 *
 * Both are sticky: the first out-of-bounds access sets `bad` and every later call is a no-op that
 * reads zeros, so a decoder reads all its fields and checks `bad` once. Nothing is ever read or
 * written outside [p, p + len). */
#ifndef SK_BYTES_H
#define SK_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A view of bytes owned by someone else (usually the frame buffer being decoded). */
typedef struct sk_bytes {
    const uint8_t *ptr;
    size_t len;
} sk_bytes;

typedef struct sk_rd {
    const uint8_t *p;
    size_t len;
    size_t pos;
    bool bad;
} sk_rd;

typedef struct sk_wr {
    uint8_t *p;
    size_t cap;
    size_t pos;
    bool bad;
} sk_wr;

static inline sk_rd sk_rd_make(const uint8_t *p, size_t len)
{
    sk_rd r = {p, len, 0, false};
    return r;
}

static inline sk_wr sk_wr_make(uint8_t *p, size_t cap)
{
    sk_wr w = {p, cap, 0, false};
    return w;
}

static inline const uint8_t *sk_rd_take(sk_rd *r, size_t n)
{
    if (r->bad || n > r->len - r->pos) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *v = r->p + r->pos;
    r->pos += n;
    return v;
}

static inline uint64_t sk_load_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static inline void sk_store_be(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static inline uint8_t sk_rd_u8(sk_rd *r)
{
    const uint8_t *p = sk_rd_take(r, 1);
    return p ? p[0] : 0;
}

static inline uint16_t sk_rd_u16(sk_rd *r)
{
    const uint8_t *p = sk_rd_take(r, 2);
    return p ? (uint16_t)sk_load_be(p, 2) : 0;
}

static inline uint32_t sk_rd_u32(sk_rd *r)
{
    const uint8_t *p = sk_rd_take(r, 4);
    return p ? (uint32_t)sk_load_be(p, 4) : 0;
}

static inline uint64_t sk_rd_u64(sk_rd *r)
{
    const uint8_t *p = sk_rd_take(r, 8);
    return p ? sk_load_be(p, 8) : 0;
}

static inline int64_t sk_rd_i64(sk_rd *r)
{
    uint64_t u = sk_rd_u64(r);
    int64_t v;
    memcpy(&v, &u, sizeof v); /* two's complement on every target we build for */
    return v;
}

/* n bytes as a view (no copy). */
static inline sk_bytes sk_rd_bytes(sk_rd *r, size_t n)
{
    const uint8_t *p = sk_rd_take(r, n);
    sk_bytes b = {p, p ? n : 0};
    return b;
}

/* u16 length + bytes (paths, names). */
static inline sk_bytes sk_rd_lp16(sk_rd *r)
{
    return sk_rd_bytes(r, sk_rd_u16(r));
}

/* u32 length + bytes (blobs). */
static inline sk_bytes sk_rd_lp32(sk_rd *r)
{
    return sk_rd_bytes(r, sk_rd_u32(r));
}

static inline sk_bytes sk_rd_rest(sk_rd *r)
{
    return sk_rd_bytes(r, r->bad ? 0 : r->len - r->pos);
}

static inline bool sk_rd_done(const sk_rd *r)
{
    return !r->bad && r->pos == r->len;
}

static inline void sk_wr_put(sk_wr *w, const void *src, size_t n)
{
    if (w->bad || n > w->cap - w->pos) {
        w->bad = true;
        return;
    }
    if (n)
        memcpy(w->p + w->pos, src, n);
    w->pos += n;
}

static inline void sk_wr_be(sk_wr *w, uint64_t v, size_t n)
{
    if (w->bad || n > w->cap - w->pos) {
        w->bad = true;
        return;
    }
    sk_store_be(w->p + w->pos, v, n);
    w->pos += n;
}

static inline void sk_wr_u8(sk_wr *w, uint8_t v) { sk_wr_be(w, v, 1); }
static inline void sk_wr_u16(sk_wr *w, uint16_t v) { sk_wr_be(w, v, 2); }
static inline void sk_wr_u32(sk_wr *w, uint32_t v) { sk_wr_be(w, v, 4); }
static inline void sk_wr_u64(sk_wr *w, uint64_t v) { sk_wr_be(w, v, 8); }

static inline void sk_wr_i64(sk_wr *w, int64_t v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    sk_wr_be(w, u, 8);
}

/* u16 length + bytes; a view longer than 65535 bytes marks the writer bad. */
static inline void sk_wr_lp16(sk_wr *w, sk_bytes b)
{
    if (b.len > 0xFFFF) {
        w->bad = true;
        return;
    }
    sk_wr_u16(w, (uint16_t)b.len);
    sk_wr_put(w, b.ptr, b.len);
}

static inline void sk_wr_lp32(sk_wr *w, sk_bytes b)
{
    if (b.len > 0xFFFFFFFFu) {
        w->bad = true;
        return;
    }
    sk_wr_u32(w, (uint32_t)b.len);
    sk_wr_put(w, b.ptr, b.len);
}

static inline sk_bytes sk_bytes_of(const void *p, size_t n)
{
    sk_bytes b = {(const uint8_t *)p, n};
    return b;
}

static inline sk_bytes sk_bytes_str(const char *s)
{
    return sk_bytes_of(s, s ? strlen(s) : 0);
}

static inline bool sk_bytes_eq(sk_bytes a, sk_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

#endif
