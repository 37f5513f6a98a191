/* The secondary's persisted state, <state_dir>/secondary.json: the file and keys
 * safekitd's recovery and the primary read (epoch, in_sync, clean, boot_id, generation, dirs, mounts,
 * splitbrain), written the way safekit.daemon.persist does (temporary file, fsync, rename, directory
 * fsync) before anything that depends on it. `mounts` and `splitbrain` are held as raw JSON (made
 * by mounts.c and splitbrain.c, the formats Python writes). `applied_seq` is added (informational: the
 * primary's last applied sequence number when the state was written; the Python reader ignores it). */
#ifndef SKS_STATE_H
#define SKS_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SKS_STATE_FILE "secondary.json"

typedef struct sks_state {
    char epoch[256];
    bool in_sync, clean;
    char boot_id[64];
    int64_t generation;
    uint64_t applied_seq;
    int ndirs;          /* -1: no "dirs" (null) */
    uint64_t (*dirs)[2]; /* (device, inode) of each replicated directory, owned */
    char *mounts;       /* raw JSON of "mounts" (NULL: null), owned */
    char *splitbrain;   /* raw JSON of "splitbrain" (NULL: null), owned */
} sks_state;

/* Load the state (a missing file: the defaults; a corrupt one: the defaults and *corrupt = true). */
bool sks_state_load(const char *path, sks_state *st, bool *corrupt, char *why, size_t why_cap);
/* Write it atomically and durably; false with a reason (errno kept). */
bool sks_state_save(const char *path, const sks_state *st, char *why, size_t why_cap);
void sks_state_free(sks_state *st);

/* /proc/sys/kernel/random/boot_id ("" if unreadable). */
void sks_boot_id(char *out, size_t cap);

/* Write `len` bytes to `path` atomically: .<name>.tmp, fsync, rename, fsync of the directory. */
int sks_write_atomic(const char *path, const char *data, size_t len, unsigned mode);

#endif
