/* safekit-rfs-primary: the primary's replication process on the native data path (issue 15):
 * the FUSE front (native/front) over the replicated directory with the network sink (link.c),
 * speaking safekitd's control channel on stdin/stdout.
 *
 *   safekit-rfs-primary [--mountpoint=DIR] [--threads=N] SPEC.json
 *
 * SPEC.json is safekit.rfs.spec.RfsSpec as JSON (the file the Python primary takes). The one
 * replicated directory is served at DIR (default: <state_dir>/mnt); the binds over the
 * directory are not made here yet (see README.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
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
#include "channel.h"
#include "config.h"
#include "events.h"
#include "json.h"
#include "link.h"
#include "netsink.h"

#define STOP_FLUSH_TIMEOUT 2.0

static struct {
    struct fuse_session *se;
    struct skp_link *link;
    struct sk_front front;
    pthread_t main_thread;
    double sendtimeout;
    atomic_bool exiting, loop_done, abandoned;
} g;

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

/* End the process's service: flush (bounded) to an in-sync secondary, release every waiting
 * fsync (EIO if not acknowledged), end the FUSE loop. From the control or the signal thread. */
static void request_exit(bool flush, bool abandon)
{
    if (atomic_exchange(&g.exiting, true))
        return;
    if (abandon)
        atomic_store(&g.abandoned, true);
    double t = g.sendtimeout < STOP_FLUSH_TIMEOUT ? g.sendtimeout : STOP_FLUSH_TIMEOUT;
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
            skp_emit_verify_unsupported("verify is not implemented by the native primary yet");
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

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* What sks_spec_load does not read: sendtimeout, connect_interval, window_bytes, extra.generation. */
static bool load_extra(const char *path, skp_link_config *c, char *why, size_t cap)
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
    char why[1024];
    sks_spec spec;
    if (!sks_spec_load(argv[optind], &spec, why, sizeof why)) {
        fail_start("%s", why);
        return 1;
    }
    int ret = 1;
    int dir_fd = -1;
    struct sk_sink *sink = NULL;
    bool front_up = false;
    static skp_link_config lc;
    static char mnt[PATH_MAX + 8];
    if (spec.ndirs != 1) {
        fail_start("the native primary serves one replicated directory, the spec has %d", spec.ndirs);
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
    if (!load_extra(argv[optind], &lc, why, sizeof why)) {
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
    if (!mountpoint) {
        snprintf(mnt, sizeof mnt, "%s/mnt", spec.state_dir);
        mkdir(spec.state_dir, 0700);
        mkdir(mnt, 0755);
        mountpoint = mnt;
    }
    static char canonical[PATH_MAX];
    if (realpath(mountpoint, canonical))
        mountpoint = canonical;

    umask(0); /* the kernel applied the caller's umask to the modes it sends */
    raise_fd_limit();
    dir_fd = open(spec.dirs[0].path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
        fail_start("%s: %s", spec.dirs[0].path, strerror(errno));
        goto out_spec;
    }
    lc.dir_fd = dir_fd;
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
    int err = sk_front_init(&g.front, spec.dirs[0].path, sink);
    if (err < 0) {
        fail_start("%s: %s", spec.dirs[0].path, strerror(-err));
        goto out_link;
    }
    front_up = true;

    /* signals: SIGTERM/INT/HUP to a thread of their own (the stop path), SIGUSR1 wakes the loop */
    static sigset_t stops;
    sigemptyset(&stops);
    sigaddset(&stops, SIGTERM);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stops, NULL);
    struct sigaction sa = {.sa_handler = wake_main}; /* no SA_RESTART: sem_wait returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    g.main_thread = pthread_self();

    char *fuse_argv[] = {argv[0], "-o", "default_permissions,allow_other,fsname=safekit-rfs,subtype=safekit", NULL};
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
    const char *dirs[1] = {spec.dirs[0].path};
    skp_emit_mounted(dirs, 1);
    skp_emit_degraded("starting: the secondary's copy is not known to follow this one yet");
    skp_log(SKP_INFO, "replicated directory served: %s at %s", spec.dirs[0].path, mountpoint);

    pthread_t sig_thread, ctl_thread;
    if (pthread_create(&sig_thread, NULL, signal_main, &stops) == 0)
        pthread_detach(sig_thread);
    if (pthread_create(&ctl_thread, NULL, control_main, NULL) == 0)
        pthread_detach(ctl_thread);
    if (skp_link_start(g.link) != 0)
        skp_log(SKP_ERROR, "cannot start the replication thread: the secondary is not followed");

    struct fuse_loop_config *config = fuse_loop_cfg_create();
    if (config) {
        fuse_loop_cfg_set_max_threads(config, (unsigned)threads);
        fuse_loop_cfg_set_idle_threads(config, (unsigned)threads);
        ret = fuse_session_loop_mt(g.se, config) == 0 ? 0 : 1;
        fuse_loop_cfg_destroy(config);
    }
    /* unmounted by someone else, or stop/signal: the link ends (no new fsync can come) */
    skp_link_stop(g.link, g.sendtimeout < STOP_FLUSH_TIMEOUT ? g.sendtimeout : STOP_FLUSH_TIMEOUT);
    /* everything the secondary may miss is in the journal now (the link stopped): a clean stop */
    int jrc = skp_link_save_journal(g.link, journal_path, true);
    if (jrc != 0)
        skp_log(SKP_ERROR, "cannot save %s: %s (the next resync compares checksums)", journal_path, strerror(-jrc));
    atomic_store(&g.loop_done, true);
    if (!atomic_load(&g.abandoned))
        fuse_session_unmount(g.se);
out_session:
    fuse_session_destroy(g.se);
out_args:
    fuse_opt_free_args(&args);
out_link:
    if (front_up)
        sk_front_destroy(&g.front);
    sk_sink_close(sink);
    skp_link_free(g.link);
    if (dir_fd >= 0)
        close(dir_fd);
out_spec:
    sks_spec_free(&spec);
    return ret;
}
