/* The mounts the secondary stacks over its replicated directories (rule 5: applications on this
 * node cannot write the copy): a read-only bind of each directory over itself, recorded in
 * secondary.json "mounts" exactly as safekit.host.mounts.Mount.key records them ([id, "major:minor",
 * root]) so that a later secondary or primary, and safekitd's recovery, removes them; and the removal of what
 * safekit stacked at a directory (a recorded bind, a safekit FUSE mount, live or dead, and its binds)
 * by the rules of safekit.host.mounts.detach_ours, WITHOUT looking through it: a stat of a FUSE
 * mount whose server does not answer hangs forever. Nothing here stats or opens the mount point: its
 * name is its parent's real path plus its own name, the stack is read from /proc/self/mountinfo, and
 * the unmount is umount2(MNT_DETACH | UMOUNT_NOFOLLOW).
 *
 * Fields are bytes (mountinfo's octal escapes decoded, nothing else converted); the recorded root is
 * written in JSON as Python writes os.fsdecode(root) (a non-UTF-8 byte as \udcXX) and read back to the
 * same bytes, so the JSON is byte for byte safekit.host.mounts' and keys compare on bytes. */
#ifndef SKS_MOUNTS_H
#define SKS_MOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"

#define SKS_FUSE_TYPE "fuse.safekit"
#define SKS_MOUNT_STACK_MAX 16
#define SKS_MOUNT_FIELD 8192

typedef struct sks_mkey {
    int64_t id;
    char dev[32];
    char root[SKS_MOUNT_FIELD]; /* bytes, octal escapes decoded */
} sks_mkey;

typedef struct sks_mount {
    sks_mkey key;
    char point[SKS_MOUNT_FIELD]; /* bytes, octal escapes decoded */
    char fstype[128];
} sks_mount;

/* One line of mountinfo; false if it is not one (skipped, as Python does). */
bool sks_mountinfo_line(const char *line, size_t len, sks_mount *out);
/* Is `m` (the top of a stack) safekit's: a fuse.safekit mount or one of the recorded keys? */
bool sks_mount_ours(const sks_mount *m, const sks_mkey *recorded, int nrecorded);
/* The kernel's name of the mount point at `path` (absolute, normalised): its parent's real path and
 * its own name, the last component not resolved. False if it does not fit. */
bool sks_mount_point(const char *path, char *out, size_t cap);
/* The top of the stack at `point` in /proc/self/mountinfo: 1 found, 0 none, -errno. `depth` gets
 * the stack's height (may be NULL). */
int sks_mount_top(const char *point, sks_mount *top, int *depth);

/* Detach what safekit stacked at `path`, from the top, stopping at the first mount that is not
 * ours. Returns how many were removed, or -1 with a reason. */
int sks_detach_ours(const char *path, const sks_mkey *recorded, int nrecorded, char *why, size_t wcap);
/* Bind `path` over itself read-only (MS_BIND, then MS_REMOUNT|MS_BIND|MS_RDONLY); the new mount's
 * key in *key. A bind whose remount failed is detached again. False with a reason. */
bool sks_bind_ro(const char *path, sks_mkey *key, char *why, size_t wcap);

/* The keys as JSON ([[id, "dev", "root"], ...]); parse them back from the state's raw "mounts"
 * (entries that are not [int, str, str] are skipped; NULL or "null": none). Returns the count, or -1
 * when out of memory; *keys is malloc'ed (free it). */
void sks_mkeys_json(skj_buf *b, const sks_mkey *keys, int n);
int sks_mkeys_parse(const char *raw, sks_mkey **keys);

#endif
