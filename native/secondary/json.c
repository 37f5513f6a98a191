/* JSON reader and writer for the secondary (see json.h). */
#include "json.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    const char *s;
    size_t len, pos;
    skj_tok *toks;
    int max, count;
} parser;

static void skip_ws(parser *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' ||
                               p->s[p->pos] == '\r'))
        p->pos++;
}

static int new_tok(parser *p, int type, size_t start)
{
    if (p->count >= p->max)
        return -1;
    skj_tok *t = &p->toks[p->count];
    t->type = type;
    t->start = start;
    t->end = start;
    t->size = 0;
    t->next = p->count + 1;
    return p->count++;
}

static int parse_string(parser *p)
{
    /* p->s[p->pos] == '"' */
    size_t start = ++p->pos;
    while (p->pos < p->len) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            int t = new_tok(p, SKJ_STR, start);
            if (t < 0)
                return -1;
            p->toks[t].end = p->pos++;
            return t;
        }
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            if (++p->pos >= p->len)
                return -1;
            char e = p->s[p->pos];
            if (e == 'u') {
                for (int i = 1; i <= 4; i++) {
                    if (p->pos + (size_t)i >= p->len || !strchr("0123456789abcdefABCDEF", p->s[p->pos + (size_t)i]) ||
                        p->s[p->pos + (size_t)i] == '\0')
                        return -1;
                }
                p->pos += 4;
            } else if (!strchr("\"\\/bfnrt", e) || e == '\0') {
                return -1;
            }
        }
        p->pos++;
    }
    return -1;
}

static int parse_value(parser *p, int depth);

static int parse_container(parser *p, int depth, bool obj)
{
    if (depth >= SKJ_MAX_DEPTH)
        return -1;
    int t = new_tok(p, obj ? SKJ_OBJ : SKJ_ARR, p->pos);
    if (t < 0)
        return -1;
    p->pos++;
    skip_ws(p);
    char close = obj ? '}' : ']';
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        p->toks[t].end = p->pos;
        p->toks[t].next = p->count;
        return t;
    }
    for (;;) {
        skip_ws(p);
        if (obj) {
            if (p->pos >= p->len || p->s[p->pos] != '"' || parse_string(p) < 0)
                return -1;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':')
                return -1;
            p->pos++;
        }
        if (parse_value(p, depth + 1) < 0)
            return -1;
        p->toks[t].size++;
        skip_ws(p);
        if (p->pos >= p->len)
            return -1;
        if (p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->s[p->pos] != close)
            return -1;
        p->pos++;
        p->toks[t].end = p->pos;
        p->toks[t].next = p->count;
        return t;
    }
}

static int parse_value(parser *p, int depth)
{
    skip_ws(p);
    if (p->pos >= p->len)
        return -1;
    char c = p->s[p->pos];
    if (c == '{' || c == '[')
        return parse_container(p, depth, c == '{');
    if (c == '"')
        return parse_string(p);
    static const struct {
        const char *word;
        int type;
    } words[] = {{"true", SKJ_TRUE}, {"false", SKJ_FALSE}, {"null", SKJ_NULL}};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(words[i].word);
        if (p->len - p->pos >= n && memcmp(p->s + p->pos, words[i].word, n) == 0) {
            int t = new_tok(p, words[i].type, p->pos);
            if (t < 0)
                return -1;
            p->pos += n;
            p->toks[t].end = p->pos;
            return t;
        }
    }
    size_t start = p->pos;
    if (p->s[p->pos] == '-')
        p->pos++;
    size_t digits = p->pos;
    while (p->pos < p->len && strchr("0123456789.eE+-", p->s[p->pos]) && p->s[p->pos] != '\0')
        p->pos++;
    if (p->pos == digits || p->s[digits] < '0' || p->s[digits] > '9')
        return -1;
    int t = new_tok(p, SKJ_NUM, start);
    if (t < 0)
        return -1;
    p->toks[t].end = p->pos;
    return t;
}

int skj_parse(const char *text, size_t len, skj_tok *toks, int max)
{
    parser p = {text, len, 0, toks, max, 0};
    if (parse_value(&p, 0) < 0)
        return -1;
    skip_ws(&p);
    return p.pos == len ? p.count : -1;
}

static bool key_is(const char *text, const skj_tok *k, const char *key)
{
    size_t n = strlen(key);
    return k->type == SKJ_STR && k->end - k->start == n && memcmp(text + k->start, key, n) == 0;
}

int skj_get(const char *text, const skj_tok *toks, int obj, const char *key)
{
    if (obj < 0 || toks[obj].type != SKJ_OBJ)
        return -1;
    int t = obj + 1;
    for (int i = 0; i < toks[obj].size; i++) {
        int v = t + 1;
        if (key_is(text, &toks[t], key))
            return v;
        t = toks[v].next;
    }
    return -1;
}

int skj_elem(const skj_tok *toks, int arr, int i)
{
    if (arr < 0 || toks[arr].type != SKJ_ARR || i < 0 || i >= toks[arr].size)
        return -1;
    int t = arr + 1;
    while (i-- > 0)
        t = toks[t].next;
    return t;
}

static unsigned hex4(const char *s)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

bool skj_str(const char *text, const skj_tok *toks, int t, char *out, size_t cap)
{
    if (t < 0 || toks[t].type != SKJ_STR || cap == 0)
        return false;
    size_t o = 0;
    for (size_t i = toks[t].start; i < toks[t].end; i++) {
        char tmp[4];
        size_t n = 1;
        tmp[0] = text[i];
        if (text[i] == '\\') {
            char e = text[++i];
            switch (e) {
            case 'b': tmp[0] = '\b'; break;
            case 'f': tmp[0] = '\f'; break;
            case 'n': tmp[0] = '\n'; break;
            case 'r': tmp[0] = '\r'; break;
            case 't': tmp[0] = '\t'; break;
            case 'u': {
                unsigned cp = hex4(text + i + 1);
                i += 4;
                if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < toks[t].end && text[i + 1] == '\\' &&
                    text[i + 2] == 'u') {
                    unsigned lo = hex4(text + i + 3);
                    if (lo >= 0xDC00 && lo < 0xE000) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        i += 6;
                    }
                }
                if (cp == 0)
                    return false;
                if (cp >= 0xDC80 && cp <= 0xDCFF) { /* a lone \udcXX: the byte XX (os.fsencode) */
                    tmp[0] = (char)(cp - 0xDC00);
                    break;
                }
                n = put_utf8(tmp, cp);
                break;
            }
            default: tmp[0] = e; break;
            }
        }
        if (o + n >= cap)
            return false;
        memcpy(out + o, tmp, n);
        o += n;
    }
    out[o] = '\0';
    return true;
}

bool skj_int(const char *text, const skj_tok *toks, int t, int64_t *out)
{
    if (t < 0 || toks[t].type != SKJ_NUM)
        return false;
    size_t i = toks[t].start;
    bool neg = text[i] == '-';
    if (neg)
        i++;
    if (i == toks[t].end)
        return false;
    uint64_t v = 0;
    for (; i < toks[t].end; i++) {
        if (text[i] < '0' || text[i] > '9')
            return false;
        unsigned d = (unsigned)(text[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (v > (uint64_t)INT64_MAX + (neg ? 1u : 0u))
        return false;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

bool skj_num(const char *text, const skj_tok *toks, int t, double *out)
{
    if (t < 0 || toks[t].type != SKJ_NUM)
        return false;
    char tmp[64];
    size_t n = toks[t].end - toks[t].start;
    if (n >= sizeof tmp)
        return false;
    memcpy(tmp, text + toks[t].start, n);
    tmp[n] = '\0';
    char *end;
    *out = strtod(tmp, &end);
    return *end == '\0';
}

bool skj_bool(const skj_tok *toks, int t, bool *out)
{
    if (t < 0 || (toks[t].type != SKJ_TRUE && toks[t].type != SKJ_FALSE))
        return false;
    *out = toks[t].type == SKJ_TRUE;
    return true;
}

/* ------------------------------------------------------------------ writer */

void skj_buf_free(skj_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static bool reserve(skj_buf *b, size_t n)
{
    if (b->bad)
        return false;
    if (b->len + n + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->bad = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void skj_raw(skj_buf *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void skj_rawz(skj_buf *b, const char *s)
{
    skj_raw(b, s, strlen(s));
}

/* Decode one UTF-8 character at s[0..n); returns its length, or 0 if the bytes are not valid UTF-8
 * (overlong forms, surrogates and values above U+10FFFF refused, as Python's decoder does). */
static size_t utf8_char(const unsigned char *s, size_t n, unsigned *cp)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        len = 2, min = 0x80, c &= 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, min = 0x800, c &= 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, min = 0x10000, c &= 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c < 0xE000))
        return 0;
    *cp = c;
    return len;
}

static void put_u(skj_buf *b, unsigned v)
{
    char tmp[12];
    snprintf(tmp, sizeof tmp, "\\u%04x", v & 0xFFFFu);
    skj_raw(b, tmp, 6);
}

void skj_string(skj_buf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    skj_raw(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned cp;
        size_t len = utf8_char(u + i, n - i, &cp);
        if (len == 0) {
            cp = 0xFFFD;
            len = 1;
        }
        i += len;
        switch (cp) {
        case '"': skj_raw(b, "\\\"", 2); continue;
        case '\\': skj_raw(b, "\\\\", 2); continue;
        case '\n': skj_raw(b, "\\n", 2); continue;
        case '\r': skj_raw(b, "\\r", 2); continue;
        case '\t': skj_raw(b, "\\t", 2); continue;
        case '\b': skj_raw(b, "\\b", 2); continue;
        case '\f': skj_raw(b, "\\f", 2); continue;
        default: break;
        }
        if (cp >= 0x20 && cp < 0x7F) {
            char ch = (char)cp;
            skj_raw(b, &ch, 1);
        } else if (cp < 0x10000) {
            put_u(b, cp);
        } else {
            cp -= 0x10000;
            put_u(b, 0xD800 + (cp >> 10));
            put_u(b, 0xDC00 + (cp & 0x3FF));
        }
    }
    skj_raw(b, "\"", 1);
}

void skj_fsstring(skj_buf *b, const char *s, size_t n)
{
    /* Python's json.dumps(os.fsdecode(s)): valid UTF-8 as skj_string writes it, every byte that is
     * not part of a valid UTF-8 character as \udcXX (surrogateescape), which skj_str reads back */
    skj_raw(b, "\"", 1);
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t j = i, c;
        unsigned cp;
        while (j < n && (c = utf8_char(u + j, n - j, &cp)) != 0) /* the run of valid characters */
            j += c;
        size_t len = j - i;
        if (len == 0) {
            put_u(b, 0xDC00 + u[i]);
            i++;
            continue;
        }
        skj_buf run = {0};
        skj_string(&run, s + i, len);
        if (run.bad) {
            b->bad = true;
        } else {
            skj_raw(b, run.p + 1, run.len - 2); /* without its quotes */
        }
        skj_buf_free(&run);
        i += len;
    }
    skj_raw(b, "\"", 1);
}

void skj_stringz(skj_buf *b, const char *s)
{
    skj_string(b, s, strlen(s));
}

void skj_i64(skj_buf *b, int64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%" PRId64, v);
    skj_raw(b, tmp, (size_t)n);
}

void skj_u64(skj_buf *b, uint64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    skj_raw(b, tmp, (size_t)n);
}

void skj_boolean(skj_buf *b, bool v)
{
    skj_rawz(b, v ? "true" : "false");
}
