/* The front's FUSE loop: a fixed pool of workers (loop.h). */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "loop.h"

struct pool {
	struct fuse_session *se;
	sem_t finish;     /* posted by a worker that ends by itself */
	atomic_int error; /* the first negative errno of /dev/fuse */
};

struct worker {
	struct pool *pool;
	pthread_t thread;
	struct fuse_buf buf; /* libfuse's request buffer: mapped at the first receive, freed at the end */
	bool started;
};

/* As libfuse's own worker: cancellable only while it waits for a request, never in the middle
 * of one (a request taken is answered). */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct fuse_session *se = w->pool->se;
	while (!fuse_session_exited(se)) {
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		int res = fuse_session_receive_buf(se, &w->buf);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (res == -EINTR)
			continue;
		if (res <= 0) { /* 0: unmounted (libfuse has marked the session exited) */
			if (res < 0) {
				int none = 0;
				atomic_compare_exchange_strong(&w->pool->error, &none, res);
				fuse_session_exit(se);
			}
			break;
		}
		if (fuse_session_exited(se))
			break;
		fuse_session_process_buf(se, &w->buf);
	}
	sem_post(&w->pool->finish);
	return NULL;
}

int sk_front_loop(struct fuse_session *se, unsigned workers)
{
	if (workers < 1 || workers > 256)
		return -EINVAL;
	struct pool pool = {.se = se};
	atomic_init(&pool.error, 0);
	if (sem_init(&pool.finish, 0, 0) != 0)
		return -errno;
	struct worker *w = calloc(workers, sizeof(*w));
	if (!w) {
		sem_destroy(&pool.finish);
		return -ENOMEM;
	}
	/* the workers block every signal: a signal meant to end the loop reaches this thread */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	unsigned started = 0;
	for (unsigned i = 0; i < workers; i++) {
		w[i].pool = &pool;
		int rc = pthread_create(&w[i].thread, NULL, worker_main, &w[i]);
		if (rc != 0) {
			int none = 0;
			atomic_compare_exchange_strong(&pool.error, &none, -rc);
			fuse_session_exit(se);
			break;
		}
		w[i].started = true;
		started++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	while (!fuse_session_exited(se) && started > 0)
		sem_wait(&pool.finish); /* EINTR: look again */
	for (unsigned i = 0; i < workers; i++)
		if (w[i].started)
			pthread_cancel(w[i].thread);
	for (unsigned i = 0; i < workers; i++) {
		if (w[i].started)
			pthread_join(w[i].thread, NULL);
		free(w[i].buf.mem);
	}
	free(w);
	sem_destroy(&pool.finish);
	int err = atomic_load(&pool.error);
	fuse_session_reset(se);
	return err;
}
