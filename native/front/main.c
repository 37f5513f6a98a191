/* safekit-front: the FUSE front as a program of its own, for tests and benchmarks.
 *
 *   safekit-front [--writeback] [--sink=null|null-copy|record:FILE|record-eio:FILE]
 *                 [--threads=N] [--idle-threads=N] [--no-splice] [--no-early-writeback]
 *                 [--clone-fd] [--debug] [--also=DIR]... [--exclude=N:PATH]... BACKING MOUNTPOINT
 *
 * --also: several directories, the native primary's layout (the mount's root holds 0 = BACKING,
 * 1, 2, ... = each --also); --exclude: PATH (and what is under it) of directory N not replicated.
 *
 * Serves BACKING at MOUNTPOINT (default_permissions, allow_other) until it is unmounted in its
 * mount namespace (copies of the mount in other namespaces do not keep it: see the unmount watch
 * below) or gets SIGTERM/SIGINT/SIGHUP; prints "mounted" on stdout once the mount exists.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "front.h"
#include "loop.h"

#define MAX_EXCLUDES 64

static struct {
	unsigned dir[MAX_EXCLUDES];
	const char *path[MAX_EXCLUDES];
	int n;
} excludes;

/* --exclude's rule: the path and everything under it (tree.py's `notreplicated path=`). */
static bool excluded(void *arg, uint32_t dir, const char *path)
{
	(void)arg;
	for (int i = 0; i < excludes.n; i++) {
		size_t n = strlen(excludes.path[i]);
		if (excludes.dir[i] == dir && strncmp(path, excludes.path[i], n) == 0 &&
		    (path[n] == '\0' || path[n] == '/'))
			return true;
	}
	return false;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: safekit-front [--writeback] [--sink=null|null-copy|record:FILE|record-eio:FILE]\n"
		     "                     [--threads=N] [--idle-threads=N] [--no-splice] [--no-early-writeback]\n"
		     "                     [--clone-fd] [--debug] [--also=DIR]... [--exclude=N:PATH]...\n"
		     "                     BACKING MOUNTPOINT\n");
}

/* Every node holds an O_PATH descriptor, and the kernel's dentry cache decides how many nodes
 * there are (a tree of 20,000 files that were just written: 20,000). Root may raise its hard
 * limit to the system's maximum per process (fs.nr_open); anyone may raise the soft one. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	unsigned long nr_open = 0;
	FILE *f = fopen("/proc/sys/fs/nr_open", "re");
	if (f) {
		if (fscanf(f, "%lu", &nr_open) != 1)
			nr_open = 0;
		fclose(f);
	}
	if (nr_open > rl.rlim_max) {
		struct rlimit more = {nr_open, nr_open};
		if (setrlimit(RLIMIT_NOFILE, &more) == 0)
			return;
	}
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
}

/* glibc's allocator as safekit-rfs-primary sets it (ADR 0037): large buffers mapped and given
 * back at their free (the dynamic threshold would move them into the workers' arenas, which keep
 * them resident), two arenas, the heaps' free pages returned every 5 s. */
static void *trim_main(void *arg)
{
	(void)arg;
	for (;;) {
		sleep(5);
		malloc_trim(0);
	}
	return NULL;
}

static void tune_allocator(void)
{
	mallopt(M_MMAP_THRESHOLD, 128 << 10);
	mallopt(M_ARENA_MAX, 2);
	pthread_t t;
	if (pthread_create(&t, NULL, trim_main, NULL) == 0)
		pthread_detach(t);
}

/* ------------------------------------------------------------------ unmount watch
 *
 * The kernel ends the session (reads of /dev/fuse fail with ENODEV) only when the mount's last
 * copy is gone. A mount namespace created while the front is mounted (unshare -m, a lab host,
 * ip netns exec, a service with PrivateTmp) gets a copy of the mount; where propagation is
 * private (the default of unshare, and of / in containers) unmounting it here does not reach
 * that copy, and the front would serve it until that namespace dies. So the front watches the
 * mount table of its own namespace (/proc/self/mountinfo is pollable: POLLPRI at every change)
 * and ends the session when its mount has left it; closing /dev/fuse then aborts the connection,
 * and the copies elsewhere fail with ENOTCONN.
 */

struct watch {
	struct fuse_session *se;
	pthread_t main_thread;
	pthread_t thread;
	int mountinfo;       /* /proc/self/mountinfo, polled */
	int stop[2];         /* a pipe: closed writing end = stop */
	char id[32];         /* the mount's "ID" field in mountinfo */
	char dev[32];        /* its "major:minor": unique while the connection lives */
	atomic_bool unmounted; /* the mount left this namespace: the session was ended for it */
	atomic_bool loop_done;
};

static void wake_main(int sig)
{
	(void)sig; /* interrupts the loop's sem_wait, which then sees the session has exited */
}

/* The mount point field of mountinfo, unescaped in place (\040 and the like). */
static void unescape_octal(char *s)
{
	char *out = s;
	for (char *p = s; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' &&
		    p[3] <= '7') {
			*out++ = (char)((p[1] - '0') << 6 | (p[2] - '0') << 3 | (p[3] - '0'));
			p += 3;
		} else {
			*out++ = *p;
		}
	}
	*out = '\0';
}

/* Finds the mount at `path` of type fuse.safekit (the last one: the top of a stack), or checks
 * that the mount w->id / w->dev is still there (path NULL). 1 found, 0 not, -1 unreadable. */
static int scan_mountinfo(struct watch *w, const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -1;
	char *line = NULL;
	size_t cap = 0;
	int found = 0;
	while (getline(&line, &cap, f) > 0) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS */
		char *sep = strstr(line, " - ");
		if (!sep)
			continue;
		*sep = '\0';
		char *save = NULL, *fields[5];
		char *fstype = strtok_r(sep + 3, " \n", &save);
		int n = 0;
		for (char *tok = strtok_r(line, " ", &save); tok; tok = n < 5 ? strtok_r(NULL, " ", &save) : NULL)
			fields[n++] = tok;
		if (n < 5)
			continue;
		if (!fstype || strcmp(fstype, "fuse.safekit") != 0)
			continue;
		if (path) {
			unescape_octal(fields[4]);
			if (strcmp(fields[4], path) == 0 && strlen(fields[0]) < sizeof(w->id) &&
			    strlen(fields[2]) < sizeof(w->dev)) {
				strcpy(w->id, fields[0]);
				strcpy(w->dev, fields[2]);
				found = 1;
			}
		} else if (strcmp(fields[0], w->id) == 0 && strcmp(fields[2], w->dev) == 0) {
			found = 1;
			break;
		}
	}
	free(line);
	fclose(f);
	return found;
}

static void *watch_main(void *arg)
{
	struct watch *w = arg;
	bool gone = false;
	for (;;) {
		struct pollfd fds[2] = {{w->mountinfo, POLLPRI, 0}, {w->stop[0], POLLIN, 0}};
		/* once the mount is gone, the main thread is woken until its loop returns: a signal
		 * that came just before it blocked would be lost */
		int res = poll(fds, 2, gone ? 100 : -1);
		if (res < 0 && errno != EINTR)
			break;
		if (fds[1].revents || atomic_load(&w->loop_done))
			break;
		if (!gone && (fds[0].revents & (POLLPRI | POLLERR)) && scan_mountinfo(w, NULL) == 0) {
			gone = true;
			atomic_store(&w->unmounted, true);
			fuse_session_exit(w->se);
		}
		if (gone)
			pthread_kill(w->main_thread, SIGUSR1);
	}
	return NULL;
}

/* Starts watching the mount at `path` (canonical). false if it cannot (then only the kernel's
 * end of the session ends the loop, as before). */
static bool watch_start(struct watch *w, struct fuse_session *se, const char *path)
{
	memset(w, 0, sizeof(*w));
	w->se = se;
	w->main_thread = pthread_self();
	w->mountinfo = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
	if (w->mountinfo < 0)
		return false;
	/* read after opening the polled fd: a change from here on is seen */
	if (scan_mountinfo(w, path) != 1 || pipe2(w->stop, O_CLOEXEC) != 0) {
		close(w->mountinfo);
		return false;
	}
	struct sigaction sa = {.sa_handler = wake_main}; /* no SA_RESTART: sem_wait returns EINTR */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old); /* the watcher takes no process signal */
	int err = pthread_create(&w->thread, NULL, watch_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		close(w->stop[0]);
		close(w->stop[1]);
		close(w->mountinfo);
		return false;
	}
	return true;
}

/* For a session whose mount left this namespace (the loop has returned, its workers are
 * joined): closes /dev/fuse, which aborts the connection (the copies of the mount in other
 * namespaces fail with ENOTCONN from then on), without unmounting the path again: a lazy unmount
 * there could detach whatever is mounted at it now. libfuse 3.14 has no call for that: its
 * fuse_session_unmount skips the unmount when the fd polls POLLERR, as the fd of an aborted
 * connection does; the writing end of a pipe without a reader does too, and takes the fd's
 * place (dup2 closes /dev/fuse). fuse_session_unmount then closes it and frees the rest. */
static void end_connection(struct fuse_session *se)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) == 0) {
		close(p[0]);
		if (dup2(p[1], fuse_session_fd(se)) < 0)
			fprintf(stderr, "safekit-front: dup2: %s\n", strerror(errno));
		close(p[1]);
	}
	fuse_session_unmount(se);
}

static void watch_stop(struct watch *w)
{
	atomic_store(&w->loop_done, true);
	close(w->stop[1]);
	pthread_join(w->thread, NULL);
	close(w->stop[0]);
	close(w->mountinfo);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"writeback", no_argument, NULL, 'w'},
		{"sink", required_argument, NULL, 's'},
		{"threads", required_argument, NULL, 't'},
		{"no-splice", no_argument, NULL, 'n'},
		{"no-early-writeback", no_argument, NULL, 'e'},
		{"clone-fd", no_argument, NULL, 'c'},
		{"idle-threads", required_argument, NULL, 'i'},
		{"debug", no_argument, NULL, 'd'},
		{"also", required_argument, NULL, 'a'},
		{"exclude", required_argument, NULL, 'x'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	bool writeback = false, splice = true, early_writeback = true, clone_fd = false, debug = false;
	const char *sink_spec = "null";
	const char *also[SK_MAX_DIRS];
	unsigned nalso = 0;
	long threads = 8, idle = -1;
	int c;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'w': writeback = true; break;
		case 's': sink_spec = optarg; break;
		case 't': {
			char *end;
			threads = strtol(optarg, &end, 10);
			if (*end || threads < 1 || threads > 256) {
				fprintf(stderr, "safekit-front: --threads: 1 to 256, not %s\n", optarg);
				return 2;
			}
			break;
		}
		case 'i': {
			char *end;
			idle = strtol(optarg, &end, 10);
			if (*end || idle < 1 || idle > 256) {
				fprintf(stderr, "safekit-front: --idle-threads: 1 to 256, not %s\n", optarg);
				return 2;
			}
			break;
		}
		case 'n': splice = false; break;
		case 'e': early_writeback = false; break;
		case 'c': clone_fd = true; break;
		case 'd': debug = true; break;
		case 'a':
			if (nalso + 1 >= SK_MAX_DIRS) {
				fprintf(stderr, "safekit-front: at most %d directories\n", SK_MAX_DIRS);
				return 2;
			}
			also[nalso++] = optarg;
			break;
		case 'x': {
			char *end;
			unsigned long d = strtoul(optarg, &end, 10);
			if (*end != ':' || !end[1] || excludes.n == MAX_EXCLUDES) {
				fprintf(stderr, "safekit-front: --exclude: N:PATH, not %s\n", optarg);
				return 2;
			}
			excludes.dir[excludes.n] = (unsigned)d;
			excludes.path[excludes.n++] = end + 1;
			break;
		}
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return 2;
	}
	const char *backing = argv[optind], *mountpoint = argv[optind + 1];
	/* the path the mount table will show (the watch looks for it there) */
	static char canonical[PATH_MAX];
	if (realpath(mountpoint, canonical))
		mountpoint = canonical;

	umask(0); /* the kernel applied the caller's umask to the modes it sends */
	raise_fd_limit();
	tune_allocator();
	struct sk_sink *sink = sk_sink_open(sink_spec);
	if (!sink) {
		fprintf(stderr, "safekit-front: --sink=%s: %s\n", sink_spec, strerror(errno));
		return 2;
	}
	static struct sk_front front;
	int err;
	if (nalso == 0) {
		err = sk_front_init(&front, backing, sink);
	} else {
		int fds[SK_MAX_DIRS];
		unsigned n = 0;
		err = 0;
		for (; n <= nalso && !err; n++) {
			fds[n] = open(n == 0 ? backing : also[n - 1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (fds[n] < 0)
				err = -errno;
		}
		if (!err)
			err = sk_front_init_multi(&front, fds, nalso + 1, sink);
		for (unsigned i = 0; i < n; i++)
			if (fds[i] >= 0)
				close(fds[i]);
	}
	if (err < 0) {
		fprintf(stderr, "safekit-front: %s: %s\n", backing, strerror(-err));
		sk_sink_close(sink);
		return 1;
	}
	front.writeback = writeback;
	front.splice = splice;
	front.early_writeback = early_writeback;
	if (excludes.n)
		front.excluded = excluded;

	char *fuse_argv[] = {argv[0], "-o",
			     "default_permissions,allow_other,fsname=safekit-front,subtype=safekit", "-d", NULL};
	struct fuse_args args = FUSE_ARGS_INIT(debug ? 4 : 3, fuse_argv);
	int ret = 1;
	bool unmounted = false; /* by someone else, in this mount namespace */
	struct fuse_session *se = fuse_session_new(&args, &sk_front_ops, sizeof(sk_front_ops), &front);
	if (!se)
		goto out_front;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, mountpoint) != 0)
		goto out_signals;
	printf("mounted %s\n", mountpoint);
	fflush(stdout);

	struct fuse_loop_config *config = fuse_loop_cfg_create();
	if (!config)
		goto out_unmount;
	fuse_loop_cfg_set_max_threads(config, (unsigned)threads);
	/* idle workers stay: creating a thread per burst costs more than the memory they hold */
	fuse_loop_cfg_set_idle_threads(config, (unsigned)(idle > 0 ? idle : threads));
	fuse_loop_cfg_set_clone_fd(config, clone_fd);
	static struct watch watch;
	bool watching = watch_start(&watch, se, mountpoint);
	if (!watching)
		fprintf(stderr, "safekit-front: %s not found in /proc/self/mountinfo: its unmount is seen "
				"only when no copy of it is left in any mount namespace\n", mountpoint);
	/* the primary's loop (every worker from the start), unless asked for libfuse's own: workers
	 * that end when idle, or a /dev/fuse descriptor per worker */
	if (clone_fd || (idle > 0 && idle < threads))
		ret = fuse_session_loop_mt(se, config) == 0 ? 0 : 1;
	else
		ret = sk_front_loop(se, (unsigned)threads) == 0 ? 0 : 1;
	fuse_loop_cfg_destroy(config);
	if (watching) {
		watch_stop(&watch);
		unmounted = atomic_load(&watch.unmounted);
	}
out_unmount:
	if (unmounted)
		end_connection(se);
	else
		fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_front:
	fuse_opt_free_args(&args);
	sk_front_destroy(&front);
	sk_sink_close(sink);
	return ret;
}
