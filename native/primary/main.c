/* safekit-rfs-primary: the primary's replication process on the native data path (issue 15):
 * the FUSE front (native/front) over the replicated directories with the network sink (link.c),
 * speaking safekitd's control channel on stdin/stdout.
 *
 *   safekit-rfs-primary [--mountpoint=DIR] [--threads=N] SPEC.json
 *
 * SPEC.json is safekit.rfs.spec.RfsSpec as JSON (the file safekitd writes). The layout safekitd
 * runs (no --mountpoint): one FUSE mount at <state_dir>/mnt whose root
 * holds 0, 1, ... (each the root of dirs[i], opened before anything is mounted), and mnt/i bound
 * read-write over dirs[i], where the application works. --mountpoint=DIR (tests, benchmarks):
 * one replicated directory served at DIR, no binds.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "front.h"
#include "loop.h"
#include "channel.h"
#include "config.h"
#include "events.h"
#include "json.h"
#include "link.h"
#include "excl.h"
#include "pmounts.h"
#include "netsink.h"
#include <sys/mount.h>

#define STOP_FLUSH_TIMEOUT 2.0

static struct {
    struct fuse_session *se;
    struct skp_link *link;
    struct sk_front front;
    pthread_t main_thread;
    double sendtimeout;
    atomic_bool exiting, loop_done, abandoned, failed;
    sks_spec *spec;
    struct sks_excl *excl; /* one per directory */
    const char *mountpoint;
    bool layout;      /* <state_dir>/mnt with the binds (not --mountpoint) */
    int nbound;       /* binds made over the directories */
    sigset_t stops;
} g;

static bool excluded(void *arg, uint32_t dir, const char *path)
{
    (void)arg;
    return skp_excl_match(g.excl, g.spec->ndirs, dir, path);
}

static void wake_main(int sig)
{
    (void)sig; /* interrupts the loop's sem_wait, which then sees the session has exited */
}

static void pause_front(void *arg)
{
    pthread_rwlock_wrlock(&((struct sk_front *)arg)->order);
}

static void resume_front(void *arg)
{
    pthread_rwlock_unlock(&((struct sk_front *)arg)->order);
}

/* With the writeback cache, what applications wrote and neither synced nor closed is in the
 * kernel's page cache only: aborting the connection would lose it here too (without the cache it
 * was in the file when write() returned). Every file the kernel holds open for writing is
 * fdatasync'd through the mount: the kernel writes its dirty pages back (WRITEs served by the
 * FUSE workers, replicated like any other) and waits for them. Not syncfs: on this kernel
 * (6.18) syncfs and sync start FUSE writeback without waiting for it (measured: 16 of 40 files
 * not written back when syncfs returned). Bounded: a write held by the link (degraded, waiting
 * for safekitd) must not hold the stop; the abort then ends the calls. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
} wb = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};

static void *write_back_main(void *arg)
{
    (void)arg;
    size_t n = 0;
    char **paths = sk_front_written_files(&g.front, &n);
    for (size_t i = 0; i < n; i++) {
        char full[PATH_MAX];
        if (snprintf(full, sizeof full, "%s/%s", g.mountpoint, paths[i]) < (int)sizeof full) {
            int fd = open(full, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
            if (fd < 0 || fdatasync(fd) != 0)
                skp_log(SKP_WARNING, "writing back %s at stop: %s", paths[i], strerror(errno));
            if (fd >= 0)
                close(fd);
        }
        free(paths[i]);
    }
    free(paths);
    pthread_mutex_lock(&wb.mu);
    wb.done = true;
    pthread_cond_signal(&wb.cv);
    pthread_mutex_unlock(&wb.mu);
    return NULL;
}

static void write_cache_back(double timeout)
{
    if (!g.front.writeback || !g.mountpoint)
        return;
    pthread_t t;
    if (pthread_create(&t, NULL, write_back_main, NULL) != 0)
        return;
    pthread_detach(t);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)timeout;
    until.tv_nsec += (long)((timeout - (double)(time_t)timeout) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&wb.mu);
    int rc = 0;
    while (!wb.done && rc == 0)
        rc = pthread_cond_timedwait(&wb.cv, &wb.mu, &until);
    bool done = wb.done;
    pthread_mutex_unlock(&wb.mu);
    if (!done)
        skp_log(SKP_WARNING, "the kernel's writeback cache was not written back within %.0f s at stop: "
                             "unsynced data of files still open is lost", timeout);
}

/* End the process's service: flush (bounded) to an in-sync secondary, release every waiting
 * fsync (EIO if not acknowledged), end the FUSE loop. From the control or the signal thread. */
static void request_exit(bool flush, bool abandon)
{
    if (atomic_exchange(&g.exiting, true))
        return;
    if (abandon)
        atomic_store(&g.abandoned, true);
    double t = g.sendtimeout < STOP_FLUSH_TIMEOUT ? g.sendtimeout : STOP_FLUSH_TIMEOUT;
    if (flush)
        write_cache_back(STOP_FLUSH_TIMEOUT);
    skp_link_stop(g.link, flush ? t : 0);
    fuse_session_exit(g.se);
    while (!atomic_load(&g.loop_done)) {
        pthread_kill(g.main_thread, SIGUSR1);
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void *signal_main(void *arg)
{
    sigset_t *set = arg;
    int sig;
    if (sigwait(set, &sig) == 0) {
        skp_log(SKP_INFO, "signal %d: stopping", sig);
        request_exit(true, false);
    }
    return NULL;
}

static void *control_main(void *arg)
{
    (void)arg;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    bool stopped = false;
    while (!stopped && (n = getline(&line, &cap, stdin)) > 0) {
        char name[64];
        if (!sks_command_name(line, (size_t)n, name, sizeof name))
            continue;
        if (strcmp(name, "stop") == 0) {
            stopped = true;
        } else if (strcmp(name, "degrade_ok") == 0) {
            skp_link_degrade_ok(g.link);
        } else if (strcmp(name, "fence") == 0) {
            skp_link_fence(g.link);
        } else if (strcmp(name, "peer_lost") == 0) {
            skp_link_lose(g.link, "the peer is lost (all heartbeats)");
        } else if (strcmp(name, "replication_lan_lost") == 0) {
            skp_link_lose(g.link, "heartbeats lost on the replication LAN");
        } else if (strcmp(name, "status") == 0) {
            skp_link_emit_status(g.link);
        } else if (strcmp(name, "generation") == 0) {
            skj_tok toks[64];
            int64_t v;
            if (skj_parse(line, (size_t)n, toks, 64) > 0 && skj_int(line, toks, skj_get(line, toks, 0, "value"), &v))
                skp_link_set_generation(g.link, v);
            else
                skp_log(SKP_WARNING, "generation command without an integer value ignored");
        } else if (strcmp(name, "verify") == 0) {
            skp_link_verify(g.link);
        } else if (strcmp(name, "fullsync") == 0) {
            skp_link_fullsync(g.link);
        } else {
            skp_log(SKP_WARNING, "unknown command from safekitd ignored: '%s'", name);
        }
    }
    free(line);
    if (stopped) {
        skp_log(SKP_INFO, "stop requested");
        request_exit(true, false);
    } else {
        /* safekitd died: the mount stays, dead (ENOTCONN), for the restarted safekitd */
        skp_log(SKP_WARNING, "safekitd is gone: the replicated directory fails (ENOTCONN) until it cleans up");
        request_exit(false, true);
    }
    return NULL;
}

static void *control_main(void *arg);

/* After the FUSE loop runs (a bind looks its source up through this very mount): mnt/i bound
 * over dirs[i], `mounted`, then the link and the control channel. */
static void *start_main(void *arg)
{
    (void)arg;
    const sks_spec *spec = g.spec;
    for (int i = 0; g.layout && i < spec->ndirs; i++) {
        char src[PATH_MAX + 32];
        snprintf(src, sizeof src, "%s/%d", g.mountpoint, i);
        if (mount(src, spec->dirs[i].path, NULL, MS_BIND, NULL) != 0) {
            char why[3 * PATH_MAX];
            snprintf(why, sizeof why, "mount --bind %s %s: %s", src, spec->dirs[i].path, strerror(errno));
            skp_log(SKP_ERROR, "replication (primary) failed: %s", why);
            skp_emit_failed(why);
            atomic_store(&g.failed, true);
            request_exit(false, false);
            return NULL;
        }
        g.nbound = i + 1;
    }
    const char *dirs[SKS_MAX_DIRS];
    for (int i = 0; i < spec->ndirs; i++)
        dirs[i] = spec->dirs[i].path;
    skp_emit_mounted(dirs, spec->ndirs);
    skp_emit_degraded("starting: the secondary's copy is not known to follow this one yet");
    skp_log(SKP_INFO, "replicated directories served: %s%s (writeback cache %s)", spec->dirs[0].path,
            spec->ndirs > 1 ? ", ..." : "", g.front.writeback ? "on" : "off");
    if (atomic_load(&g.exiting))
        return NULL; /* a signal came first: the process is stopping */
    if (skp_link_start(g.link) != 0)
        skp_log(SKP_ERROR, "cannot start the replication thread: the secondary is not followed");
    control_main(NULL);
    return NULL;
}

/* What a dead replication process left (its dead FUSE mount, its binds; the read-only binds
 * recorded in secondary.json when this node was secondary) is detached without looking through
 * it; a missing directory is made (mkdir -p, 0755), then the directories are opened, then this
 * node's record as a secondary is removed (its copy is the reference now). false with why set. */
static bool prepare(const sks_spec *spec, int *dir_fds, char *why, size_t cap)
{
    if (g.layout && skp_detach_ours(g.mountpoint, NULL, 0, why, cap) < 0)
        return false;
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/secondary.json", spec->state_dir);
    static skp_mount_key recorded[64];
    int nrec = 0;
    FILE *f = fopen(path, "re");
    if (f) {
        static char text[256 << 10];
        size_t len = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[len] = '\0';
        nrec = skp_recorded_mounts(text, recorded, 64);
    }
    for (int i = 0; i < spec->ndirs; i++) {
        if (g.layout && skp_detach_ours(spec->dirs[i].path, recorded, nrec, why, cap) < 0)
            return false;
        /* os.makedirs(path, 0o755, exist_ok=True) */
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s", spec->dirs[i].path);
        for (char *c = p + 1; *c; c++) {
            if (*c == '/') {
                *c = '\0';
                mkdir(p, 0755);
                *c = '/';
            }
        }
        mkdir(p, 0755);
        dir_fds[i] = open(spec->dirs[i].path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fds[i] < 0) {
            snprintf(why, cap, "%s: %s", spec->dirs[i].path, strerror(errno));
            return false;
        }
    }
    if (unlink(path) != 0 && errno != ENOENT)
        skp_log(SKP_WARNING, "cannot remove %s: %s", path, strerror(errno));
    return true;
}

/* Closes /dev/fuse without unmounting (front/main.c's end_connection): every waiting and later
 * request fails with ENOTCONN, nothing answers through a dead server any more. */
static void abort_connection(struct fuse_session *se)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) == 0) {
        close(p[0]);
        if (dup2(p[1], fuse_session_fd(se)) < 0)
            skp_log(SKP_ERROR, "dup2: %s", strerror(errno));
        close(p[1]);
    }
    fuse_session_unmount(se); /* the fd polls POLLERR: closed, no unmount */
}

/* The front holds a descriptor per directory the kernel caches (and per unlinked file still
 * open), not per file (ADR 0037); the soft limit is still raised to the hard one, and the hard one
 * to the system's maximum (fs.nr_open) where the process may (CAP_SYS_RESOURCE). */
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
    if (nr_open > 1048576)
        nr_open = 1048576;
    if (nr_open > rl.rlim_max) {
        struct rlimit more = {nr_open, nr_open};
        if (setrlimit(RLIMIT_NOFILE, &more) == 0)
            return;
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* glibc's allocator, set for a process whose large buffers are short-lived (docs/replication.md,
 * "Memory and descriptors"; ADR 0037): a fixed mmap threshold (the dynamic one rises to 2 MiB
 * after the first large free, then every 1 MiB write copy and libfuse request buffer came from the
 * threads' arenas and stayed resident there after their free: +4..+17 MiB per benchmark round),
 * two arenas (16 FUSE threads each growing its own), and the free pages of the heaps given back
 * every TRIM_EVERY seconds (as safekitd does, ADR 0013). */
#define TRIM_EVERY 5
static void *trim_main(void *arg)
{
    (void)arg;
    for (;;) {
        sleep(TRIM_EVERY);
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

/* What sks_spec_load does not read: sendtimeout, connect_interval, window_bytes, extra.generation,
 * and writeback (the kernel's writeback cache on the front: `<rfs writeback="on">`, ADR 0030). */
static bool load_extra(const char *path, skp_link_config *c, bool *writeback, char *why, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return snprintf(why, cap, "%s: %s", path, strerror(errno)), false;
    static char text[256 << 10];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    int max = (int)(len / 2 + 64);
    skj_tok *k = malloc(sizeof *k * (size_t)max);
    bool ok = k && skj_parse(text, len, k, max) > 0 && k[0].type == SKJ_OBJ;
    double d;
    int64_t v;
    if (ok) {
        if (skj_num(text, k, skj_get(text, k, 0, "sendtimeout"), &d) && d > 0)
            c->sendtimeout = d;
        if (skj_num(text, k, skj_get(text, k, 0, "connect_interval"), &d) && d > 0)
            c->connect_interval = d;
        if (skj_int(text, k, skj_get(text, k, 0, "window_bytes"), &v) && v > 0)
            c->window_bytes = (uint64_t)v;
        bool b;
        if (skj_bool(k, skj_get(text, k, 0, "writeback"), &b))
            *writeback = b;
        int extra = skj_get(text, k, 0, "extra");
        if (extra >= 0 && skj_int(text, k, skj_get(text, k, extra, "generation"), &v))
            c->generation = v;
    } else {
        snprintf(why, cap, "%s: not a JSON object", path);
    }
    free(k);
    return ok;
}

static void fail_start(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail_start(const char *fmt, ...)
{
    char why[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    skp_log(SKP_ERROR, "replication (primary) failed: %s", why);
    skp_emit_failed(why);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"mountpoint", required_argument, NULL, 'm'},
        {"threads", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    const char *mountpoint = NULL;
    long threads = 16;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == 'm')
            mountpoint = optarg;
        else if (c == 't')
            threads = strtol(optarg, NULL, 10);
        else
            return 2;
    }
    if (argc - optind != 1 || threads < 1 || threads > 256) {
        fprintf(stderr, "usage: safekit-rfs-primary [--mountpoint=DIR] [--threads=N] SPEC.json\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    tune_allocator();
    char why[PATH_MAX + 256];
    static sks_spec spec;
    if (!sks_spec_load(argv[optind], &spec, why, sizeof why)) {
        fail_start("%s", why);
        return 1;
    }
    g.spec = &spec;
    int ret = 1;
    int dir_fds[SKS_MAX_DIRS];
    for (int i = 0; i < SKS_MAX_DIRS; i++)
        dir_fds[i] = -1;
    struct sk_sink *sink = NULL;
    bool front_up = false;
    static skp_link_config lc;
    static char mnt[PATH_MAX + 8];
    if (spec.ndirs < 1 || spec.ndirs > SKP_MAX_DIRS || (mountpoint && spec.ndirs != 1)) {
        fail_start("the spec has %d replicated directories (--mountpoint serves exactly one)", spec.ndirs);
        goto out_spec;
    }
    why[0] = '\0';
    g.excl = skp_excl_new(&spec, why, sizeof why);
    if (!g.excl) {
        fail_start("%s", why[0] ? why : "out of memory");
        goto out_spec;
    }
    snprintf(lc.module, sizeof lc.module, "%s", spec.module);
    snprintf(lc.node, sizeof lc.node, "%s", spec.node);
    snprintf(lc.peer, sizeof lc.peer, "%s", spec.peer);
    snprintf(lc.local_addr, sizeof lc.local_addr, "%s", spec.local_addr);
    snprintf(lc.peer_addr, sizeof lc.peer_addr, "%s", spec.peer_addr);
    lc.port = spec.port;
    lc.async_none = spec.async_none;
    lc.sendtimeout = 30.0;
    lc.connect_interval = 1.0;
    lc.window_bytes = 64u << 20;
    bool writeback = false;
    if (!load_extra(argv[optind], &lc, &writeback, why, sizeof why)) {
        fail_start("%s", why);
        goto out_spec;
    }
    uint8_t key[SKS_KEY_SIZE];
    if (!sks_key_load(spec.key_file, key, why, sizeof why)) {
        fail_start("%s", why);
        goto out_spec;
    }
    memcpy(lc.key, key, sizeof key);
    lc.key_len = sizeof key;
    memset(key, 0, sizeof key);
    static char journal_path[PATH_MAX + 32];
    static skp_journal journal;
    snprintf(journal_path, sizeof journal_path, "%s/journal.json", spec.state_dir);
    mkdir(spec.state_dir, 0700);
    {
        struct timespec wt;
        clock_gettime(CLOCK_REALTIME, &wt);
        double wall = (double)wt.tv_sec + (double)wt.tv_nsec / 1e9;
        int lrc = skp_journal_load(journal_path, wall, &journal, why, sizeof why);
        if (lrc > 0) {
            memcpy(lc.epoch, journal.epoch, sizeof journal.epoch < sizeof lc.epoch ? sizeof journal.epoch : sizeof lc.epoch);
            lc.epoch[sizeof lc.epoch - 1] = '\0';
            if (!journal.trusted)
                skp_log(SKP_WARNING, "the journal was not saved by a clean stop: the next resync compares checksums");
        } else {
            if (lrc < 0) {
                skp_log(SKP_WARNING, "journal unreadable (%s): the next resync compares checksums", why);
                skp_journal_free(&journal);
            }
            lc.epoch[0] = '\0';
        }
    }
    if (!lc.epoch[0]) {
        /* a new history: nothing of an earlier one is trusted */
        uint8_t r[16];
        FILE *u = fopen("/dev/urandom", "re");
        if (!u || fread(r, 1, sizeof r, u) != sizeof r) {
            if (u)
                fclose(u);
            fail_start("cannot read /dev/urandom");
            goto out_spec;
        }
        fclose(u);
        for (size_t i = 0; i < sizeof r; i++)
            snprintf(lc.epoch + 2 * i, 3, "%02x", r[i]);
        if (skp_journal_init(&journal, lc.epoch, false) != 0) {
            fail_start("out of memory");
            goto out_spec;
        }
    }
    g.sendtimeout = lc.sendtimeout;
    g.layout = !mountpoint;
    if (!mountpoint) {
        snprintf(mnt, sizeof mnt, "%s/mnt", spec.state_dir);
        mountpoint = mnt;
    }
    g.mountpoint = mountpoint;

    umask(0); /* the kernel applied the caller's umask to the modes it sends */
    raise_fd_limit();
    if (!prepare(&spec, dir_fds, why, sizeof why)) {
        fail_start("%s", why);
        goto out_spec;
    }
    if (g.layout)
        mkdir(mnt, 0755);
    static char canonical[PATH_MAX];
    if (realpath(mountpoint, canonical))
        g.mountpoint = mountpoint = canonical;
    lc.ndirs = spec.ndirs;
    for (int i = 0; i < spec.ndirs; i++) {
        lc.dir_fds[i] = dir_fds[i];
        lc.dir_paths[i] = spec.dirs[i].path;
    }
    lc.excl = g.excl;
    lc.pause = pause_front;
    lc.resume = resume_front;
    lc.hook_arg = &g.front;
    g.link = skp_link_open(&lc);
    memset(lc.key, 0, sizeof lc.key);
    if (g.link)
        skp_link_set_journal(g.link, &journal);
    skp_journal_free(&journal);
    /* from now on a crash leaves an untrusted journal: what happens after this save is not in it */
    if (g.link && skp_link_save_journal(g.link, journal_path, false) != 0) {
        fail_start("cannot save %s: %s", journal_path, strerror(errno));
        goto out_link;
    }
    sink = g.link ? skp_netsink_open(g.link) : NULL;
    if (!sink) {
        fail_start("out of memory");
        goto out_link;
    }
    int err = g.layout ? sk_front_init_multi(&g.front, dir_fds, (unsigned)spec.ndirs, sink)
                       : sk_front_init(&g.front, spec.dirs[0].path, sink);
    if (err < 0) {
        fail_start("%s: %s", spec.dirs[0].path, strerror(-err));
        goto out_link;
    }
    g.front.excluded = excluded;
    g.front.writeback = writeback; /* fr_init clears it if the kernel cannot */
    front_up = true;

    /* signals: SIGTERM/INT/HUP to a thread of their own (the stop path), SIGUSR1 wakes the loop */
    sigemptyset(&g.stops);
    sigaddset(&g.stops, SIGTERM);
    sigaddset(&g.stops, SIGINT);
    sigaddset(&g.stops, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &g.stops, NULL);
    struct sigaction sa = {.sa_handler = wake_main}; /* no SA_RESTART: sem_wait returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    g.main_thread = pthread_self();

    char opts[SKS_NAME + 128];
    snprintf(opts, sizeof opts, "default_permissions,allow_other,fsname=safekit-%s,subtype=safekit", spec.module);
    for (char *o = opts; *o; o++)
        if (*o == ' ' || *o == '\\')
            *o = '_';
    char *fuse_argv[] = {argv[0], "-o", opts, NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, fuse_argv);
    g.se = fuse_session_new(&args, &sk_front_ops, sizeof(sk_front_ops), &g.front);
    if (!g.se) {
        fail_start("cannot create the FUSE session");
        goto out_args;
    }
    if (fuse_session_mount(g.se, mountpoint) != 0) {
        fail_start("cannot mount %s", mountpoint);
        goto out_session;
    }

    pthread_t sig_thread, start_thread;
    if (pthread_create(&sig_thread, NULL, signal_main, &g.stops) == 0)
        pthread_detach(sig_thread);
    /* the binds, `mounted`, the link and the control channel: once the loop serves */
    if (pthread_create(&start_thread, NULL, start_main, NULL) == 0)
        pthread_detach(start_thread);

    /* every worker (and, after its first read answered by splice, its pipe) from the start: the
     * process's threads and descriptors do not grow with the run's bursts (sk_front_loop) */
    int loop_err = sk_front_loop(g.se, (unsigned)threads);
    if (loop_err < 0)
        skp_log(SKP_ERROR, "FUSE loop: %s", strerror(-loop_err));
    ret = loop_err == 0 ? 0 : 1;
    atomic_store(&g.loop_done, true);
    if (atomic_load(&g.failed))
        ret = 1;
    /* Nothing answers FUSE requests any more: a stat of a replicated directory (its bind is this
     * very mount) would wait forever. The connection is aborted first (every waiting and later
     * request fails with ENOTCONN), then the binds and the mount are detached by name. */
    abort_connection(g.se);
    /* unmounted by someone else, or stop/signal: the link ends (no new fsync can come) */
    skp_link_stop(g.link, g.sendtimeout < STOP_FLUSH_TIMEOUT ? g.sendtimeout : STOP_FLUSH_TIMEOUT);
    /* everything the secondary may miss is in the journal now (the link stopped): a clean stop */
    int jrc = skp_link_save_journal(g.link, journal_path, true);
    if (jrc != 0)
        skp_log(SKP_ERROR, "cannot save %s: %s (the next resync compares checksums)", journal_path, strerror(-jrc));
    if (atomic_load(&g.abandoned)) {
        /* safekitd died: the application it started may still run. The dead mounts stay over the
         * directories (ENOTCONN), so nothing is written there unreplicated; the restarted
         * safekitd stops the application, then removes them. */
    } else {
        for (int i = 0; g.layout && i < spec.ndirs; i++) {
            if (skp_detach_ours(spec.dirs[i].path, NULL, 0, why, sizeof why) < 0)
                skp_log(SKP_ERROR, "%s: could not detach the replication mount: %s", spec.dirs[i].path, why);
        }
        if (skp_detach_ours(mountpoint, NULL, 0, why, sizeof why) < 0)
            skp_log(SKP_ERROR, "%s: could not detach the FUSE mount: %s", mountpoint, why);
    }
out_session:
    fuse_session_destroy(g.se);
out_args:
    fuse_opt_free_args(&args);
out_link:
    if (front_up)
        sk_front_destroy(&g.front);
    sk_sink_close(sink);
    skp_link_free(g.link);
out_spec:
    for (int i = 0; i < SKS_MAX_DIRS; i++)
        if (dir_fds[i] >= 0)
            close(dir_fds[i]);
    skp_excl_free(g.excl, spec.ndirs);
    sks_spec_free(&spec);
    return ret;
}
