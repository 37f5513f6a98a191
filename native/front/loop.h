/* The FUSE loop of the front's programs: a fixed pool of workers, all started with the loop. */
#ifndef SK_FRONT_LOOP_H
#define SK_FRONT_LOOP_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>

/* Serves `se` with `workers` threads (1 to 256) started at once and kept until the session
 * exits (fuse_session_exit, an unmount, an error reading /dev/fuse), then cancelled and joined.
 * libfuse's fuse_session_loop_mt starts a worker only when every other one is busy, so how many
 * there are (and how many splice pipes, two descriptors each, libfuse gives a worker at its first
 * read answered by splice) grows with the run's bursts up to its maximum; here the count is the
 * same from the start. Returns 0, or a negative errno of /dev/fuse. Like fuse_session_loop_mt,
 * a signal to the calling thread (no SA_RESTART) makes it look again whether the session has
 * exited; the workers block every signal. */
int sk_front_loop(struct fuse_session *se, unsigned workers);

#endif
