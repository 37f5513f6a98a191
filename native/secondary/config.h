/* What the secondary is told: safekitd's spec file (safekit.rfs.spec.RfsSpec as JSON, the same file
 * the Python process reads) and the cluster key file (safekit.membership.clusterkey's format and
 * safety rules). */
#ifndef SKS_CONFIG_H
#define SKS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SKS_MAX_DIRS 64
#define SKS_MAX_EXCL 64
#define SKS_NAME 256
#define SKS_PATH 4096
#define SKS_KEY_SIZE 32

typedef struct sks_dir_spec {
    char path[SKS_PATH];
    int nexcl, nregex;
    char *excl[SKS_MAX_EXCL];  /* <notreplicated path=...>, stripped of '/' at both ends */
    char *regex[SKS_MAX_EXCL]; /* <notreplicated regexpath=...> (POSIX extended syntax here) */
} sks_dir_spec;

typedef struct sks_spec {
    char module[SKS_NAME], node[SKS_NAME], peer[SKS_NAME];
    char local_addr[64], peer_addr[64];
    int port;
    char key_file[SKS_PATH], state_dir[SKS_PATH];
    bool async_none;
    int ndirs;
    sks_dir_spec *dirs; /* ndirs, owned */
    /* extra */
    bool fullsync, debug, diverged;
    char *diverged_json;   /* extra["diverged"] when it is an object (a split brain lost): its JSON, owned */
    char python[SKS_PATH]; /* extra["python"]: the interpreter of the split-brain steps ("python3") */
} sks_spec;

/* Load the spec file; on failure returns false with a reason in `why`. */
bool sks_spec_load(const char *path, sks_spec *out, char *why, size_t why_cap);
void sks_spec_free(sks_spec *s);

/* Read the cluster key file: one line "safekit-cluster-key-v1:<base64 of 32 bytes>" (blank and '#'
 * lines ignored), a regular file without group/other permission bits, owned by this user or root,
 * at most 4096 bytes. The reasons are the Python loader's; they never hold key material. */
bool sks_key_load(const char *path, uint8_t key[SKS_KEY_SIZE], char *why, size_t why_cap);

/* Strict base64 (standard alphabet, padding required, no whitespace); returns the byte count or -1. */
int sks_base64_decode(const char *s, size_t n, uint8_t *out, size_t cap);

#endif
