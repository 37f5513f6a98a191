/* A small JSON reader (tokens over the caller's text, no allocation) and writer (a growable buffer)
 * for what the secondary reads and writes as JSON: safekitd's spec file, the control channel's
 * lines, its state file.
 *
 * The writer escapes strings the way Python's json.dumps does by default (ensure_ascii: everything
 * outside printable ASCII as \uXXXX, surrogate pairs above U+FFFF), so the channel's lines are the
 * ones safekit.rfs.channel's encoder writes; bytes that are not UTF-8 become U+FFFD (Python's
 * errors="replace"). */
#ifndef SKS_JSON_H
#define SKS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum skj_type { SKJ_OBJ = 1, SKJ_ARR, SKJ_STR, SKJ_NUM, SKJ_TRUE, SKJ_FALSE, SKJ_NULL };

typedef struct skj_tok {
    int type;
    size_t start, end; /* the value's bytes in the text (strings: inside the quotes) */
    int size;          /* objects: keys; arrays: elements */
    int next;          /* index of the first token after this value (and its children) */
} skj_tok;

#define SKJ_MAX_DEPTH 32

/* Parse `len` bytes of text into at most `max` tokens (objects: key token, value token, ...).
 * Returns the token count, or -1 (malformed, too deep, too many tokens, trailing bytes). */
int skj_parse(const char *text, size_t len, skj_tok *toks, int max);

/* Index of the value of `key` in the object at token `obj`, or -1. */
int skj_get(const char *text, const skj_tok *toks, int obj, const char *key);
/* Index of element `i` of the array at token `arr`, or -1. */
int skj_elem(const skj_tok *toks, int arr, int i);

/* A string value unescaped into out (NUL-terminated); false if not a string, it holds a NUL, or it
 * does not fit. A lone \udc80-\udcff is the byte it escapes (Python's surrogateescape: a path
 * written by json.dumps(os.fsdecode(bytes))). */
bool skj_str(const char *text, const skj_tok *toks, int t, char *out, size_t cap);
/* An integer value (no fraction, no exponent); false otherwise. */
bool skj_int(const char *text, const skj_tok *toks, int t, int64_t *out);
/* A number value as a double (integers and fractions). */
bool skj_num(const char *text, const skj_tok *toks, int t, double *out);
bool skj_bool(const skj_tok *toks, int t, bool *out);

/* A growable output buffer; on allocation failure it is marked bad and later calls do nothing. */
typedef struct skj_buf {
    char *p;
    size_t len, cap;
    bool bad;
} skj_buf;

void skj_buf_free(skj_buf *b);
void skj_raw(skj_buf *b, const char *s, size_t n);
void skj_rawz(skj_buf *b, const char *s);
/* A JSON string of `n` bytes (escaped as json.dumps with ensure_ascii=True). */
void skj_string(skj_buf *b, const char *s, size_t n);
void skj_stringz(skj_buf *b, const char *s);
/* Bytes that may not be UTF-8 (a path) as Python's json.dumps(os.fsdecode(bytes)) writes them: a byte
 * outside a valid UTF-8 character is \udcXX, which skj_str reads back as that byte. */
void skj_fsstring(skj_buf *b, const char *s, size_t n);
void skj_i64(skj_buf *b, int64_t v);
void skj_u64(skj_buf *b, uint64_t v);
void skj_boolean(skj_buf *b, bool v);

#endif
