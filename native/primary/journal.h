/* The primary's reintegration journal (src/safekit/rfs/journal.py's, in C): what changed on the
 * primary that the secondary may not have. While a session streams, an operation's marks wait in
 * the link until the secondary applied it (and return here if the link breaks first); while no
 * session streams, every operation's marks land here. When the secondary returns, a `journal`
 * resynchronisation sends only what the journal names: the 4 KiB pages written in a file, the
 * smallest size a file was truncated to, attributes, and whole objects created, renamed into place
 * or replaced (a directory with its subtree).
 *
 * Pure (no I/O but the two file helpers at the end, no clock: wall-clock times are passed in).
 * Saved as journal.json in the Python primary's format (version 1), so either program, and the
 * secondary's split-brain save, reads the other's: an entry's "z" holds the 64 KiB zones (what
 * journal.py reads), and "p" the 4 KiB pages within them (what this reader uses when it agrees
 * with "z"; journal.py ignores it and a journal it saves has none: its zones are read whole).
 * ADR 0026. */
#ifndef SKP_JOURNAL_H
#define SKP_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "pwire.h"

#define SKP_ZONE (64u << 10) /* journal.py's ZONE ("z" in journal.json), the checksum block */
#define SKP_PAGE 4096u       /* the journal's unit in memory ("p" in journal.json) */
#define SKP_PAGES_PER_ZONE (SKP_ZONE / SKP_PAGE)
/* An entry with more page ranges than this is rounded out to whole zones (bounded memory for a
 * file written at random all over while the secondary is away: 16 bytes per range). */
#define SKP_RANGES_MAX 65536u
/* ... and an entry that grows while the whole journal holds more than this many (4 MiB) too. */
#define SKP_JOURNAL_RANGES_MAX 262144u
#define SKP_EPOCH_MAX 128

typedef struct skp_jentry {
    struct skp_jentry *hnext;
    uint32_t dir;
    bool whole;    /* send the whole object (a directory: its subtree), replacing the secondary's */
    bool meta;     /* attributes, existence or type may differ */
    int64_t trunc; /* smallest size the file was truncated to; -1: none */
    uint64_t (*z)[2]; /* pages (SKP_PAGE) written: sorted, disjoint, non-adjacent ranges [lo, hi] */
    size_t nz, zcap;
    size_t path_len;
    char path[]; /* NUL-terminated */
} skp_jentry;

typedef struct skp_journal {
    char epoch[SKP_EPOCH_MAX]; /* this primary's continuous history */
    bool trusted;              /* false: something may be missing (a crash): reintegrate by checksums */
    uint64_t seq;              /* the last ticket of this history (saved so that a restart continues it) */
    uint64_t changes;          /* changes recorded (0: nothing to save) */
    bool has_since, has_gap;
    double since;              /* when the first change went into the empty journal */
    double gap_from, gap_to;   /* changes between these times may be missing (a crash) */
    skp_jentry **buckets;
    size_t nbuckets, count;
    size_t ranges;             /* page ranges held by every entry (bounded: SKP_JOURNAL_RANGES_MAX) */
} skp_journal;

/* What the journal keeps of an operation (no data): journal.py's Mark. */
enum { SKP_M_WROTE = 'w', SKP_M_TRUNC = 't', SKP_M_META = 'm', SKP_M_REPLACED = 'r', SKP_M_REMOVED = 'x' };
/* A new hard link: replaced, and the journal stops being enough (it names paths, not which of
 * them share an inode): the next reintegration compares checksums, whose walk finds every name
 * of a file and links them again. */
enum { SKP_M_LINKED = 'l' };
typedef struct skp_mark {
    char kind;
    uint32_t dir;
    const char *path;
    size_t path_len;
    uint64_t a, b; /* WROTE: offset, length; TRUNC: size */
} skp_mark;

/* 0, or -1 (out of memory). */
int skp_journal_init(skp_journal *j, const char *epoch, bool trusted);
void skp_journal_free(skp_journal *j);
/* Every entry removed, since and gap forgotten (epoch, trust and seq kept). */
void skp_journal_clear(skp_journal *j);
/* The journal's content moves to *dst (initialised here); *j becomes an empty trusted journal of
 * the same epoch and seq. 0 or -1. */
int skp_journal_take(skp_journal *j, skp_journal *dst);

/* The marks of one operation (0, 1 or 2 written to out). Paths point into op. */
int skp_marks_of(const skp_op *op, skp_mark out[2]);
/* Record one mark at wall-clock time `now`. 0 or -1 (out of memory: the journal is then not trusted). */
int skp_journal_mark(skp_journal *j, const skp_mark *m, double now);
/* Everything `src` names is named by `j` too. 0 or -1. */
int skp_journal_merge(skp_journal *j, const skp_journal *src, double now);

size_t skp_journal_len(const skp_journal *j);
uint64_t skp_journal_dirty_bytes(const skp_journal *j);
const skp_jentry *skp_journal_find(const skp_journal *j, uint32_t dir, const char *path, size_t len);

/* The order reintegration visits the entries of directory `dir`: parents before children, nothing
 * under an ancestor sent whole. A malloc'd array of *n pointers into j (free it, not them). NULL
 * with *n = 0 when empty or out of memory (*n = SIZE_MAX then). */
const skp_jentry **skp_journal_plan(const skp_journal *j, uint32_t dir, size_t *n);
/* Paths in reintegration order: '/' sorts before every other byte ("a" < "a/b" < "a-b"). */
int skp_path_cmp(const char *a, size_t alen, const char *b, size_t blen);

/* journal.json (journal.py's to_json): `clean` = the process stops cleanly; `now` = wall clock. */
void skp_journal_encode(const skp_journal *j, bool clean, double now, skj_buf *out);
/* Read a saved journal at wall-clock time `now` (journal.py's from_json: a save that was not a
 * clean stop leaves a gap from then until now, and the journal is trusted only after a clean
 * stop). 0, or -1 with why set (*j is then left empty: free it anyway). */
int skp_journal_decode(const char *text, size_t len, double now, skp_journal *j, char *why, size_t cap);

/* Files: save atomically (0 or -errno); load: 1 loaded, 0 no file, -1 unreadable (why set). */
int skp_journal_save(const skp_journal *j, const char *path, bool clean, double now);
int skp_journal_load(const char *path, double now, skp_journal *j, char *why, size_t cap);

#endif
