/* The mounts the primary stacks over replicated directories (src/safekit/host/mounts.py in C):
 * found and removed without ever resolving a path through them. A FUSE mount whose server no
 * longer answers blocks every stat of its root forever, so nothing here stats a mount point: it is
 * named by the real path of its parent plus its own name, the stack is read from
 * /proc/self/mountinfo, and the unmount is umount2(MNT_DETACH | UMOUNT_NOFOLLOW) of that name. */
#ifndef SKP_MOUNTS_H
#define SKP_MOUNTS_H

#include <stdbool.h>
#include <stddef.h>

#define SKP_MOUNTS_MAX_STACK 16
#define SKP_FUSE_TYPE "fuse.safekit"

/* A mount recorded to be recognised later as ours (mounts.py's Mount.key: id, device, root). */
typedef struct skp_mount_key {
    long id;
    char dev[32];
    char root[256];
} skp_mount_key;

/* One line of mountinfo (the fields used here); the strings point into the line. */
typedef struct skp_mountinfo {
    long id;
    const char *dev, *root, *point, *fstype;
} skp_mountinfo;

/* Parse one line of /proc/self/mountinfo in place (unescapes \040 and the like). false: not one. */
bool skp_mountinfo_parse(char *line, skp_mountinfo *m);

/* The kernel's name of the mount point at path: its parent's real path and its own name (the last
 * component is not resolved: it may be a dead FUSE mount). false if it does not fit. */
bool skp_mount_point(const char *path, char *out, size_t cap);

/* Lazily unmount what safekit stacked at path (a FUSE mount, live or dead, its binds, a recorded
 * mount), from the top, stopping at the first that is not ours. Returns how many were removed,
 * or -errno (the reason in why). */
int skp_detach_ours(const char *path, const skp_mount_key *recorded, int nrecorded, char *why, size_t cap);

/* secondary.json's "mounts" ([[id, dev, root], ...]): at most max keys into out. */
int skp_recorded_mounts(const char *secondary_json, skp_mount_key *out, int max);

#endif
