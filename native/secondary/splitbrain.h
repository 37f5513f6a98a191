/* A split brain this node lost (ARCHITECTURE rule 4, docs/replication.md): what it wrote since the
 * split is saved aside before the winner's resynchronisation overwrites it. The policy (which files,
 * the space rule, the manifest, the report) is Python's (safekit.rfs.splitbrain); this program plans
 * the save durably (recorded in secondary.json before anything depends on it), runs
 * `PYTHON -m safekit.rfs splitbrain-save SPEC` before it serves the primary, records the phase and
 * emits the event that step printed, and after the resynchronisation runs
 * `splitbrain-annotate SPEC DIR` (ADR 0023). Here: the pure parts, the
 * record in secondary.json "splitbrain" ({phase: saving|saved, dir, peer, generation,
 * peer_generation, split_at}). */
#ifndef SKS_SPLITBRAIN_H
#define SKS_SPLITBRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* A string field of a record (raw JSON: "phase", "dir", "peer"); false if the record is not an
 * object or the field is not a string that fits. */
bool sks_sb_str(const char *raw, const char *key, char *out, size_t cap);
/* Where the saves go: the state directory's parent + "/splitbrain" (Path(state_dir).parent). */
bool sks_sb_base(const char *state_dir, char *out, size_t cap);
/* A save's name: the UTC time as %Y%m%dT%H%M%SZ, with -2, -3... when `taken` says it exists. */
bool sks_sb_name(time_t t, bool (*taken)(void *ctx, const char *name), void *ctx, char *out, size_t cap);
/* The record of a save to do (phase "saving") from safekitd's extra["diverged"] (JSON object):
 * peer (or `default_peer`), generation, peer_generation, split_at as given (null when absent).
 * malloc'ed, NULL when out of memory or `diverged_json` is not an object. */
char *sks_sb_plan(const char *diverged_json, const char *dir, const char *default_peer);
/* The record with its phase replaced (malloc'ed; NULL: not an object or out of memory). */
char *sks_sb_with_phase(const char *raw, const char *phase);

#endif
