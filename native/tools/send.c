/* safekit-rfs-send: a primary-side stub for testing the secondary without the FUSE front.
 *
 *   safekit-rfs-send --port P --key FILE --module M --node N --peer S [--host 127.0.0.1] [--dirs 1]
 *                    [--epoch E] [--first-seq 1] [--async second|none] [--v1-hello] SCRIPT|-
 *
 * It connects, runs the v2 HELLO as the primary (native/common), then sends the operations of the
 * script, one command a line, and reports what the secondary answers on stdout:
 *
 *   HELLO_OK node=.. epoch=.. trusted=0|1 in_sync=0|1 fullsync=0|1
 *   ACK received applied durable
 *   ERROR seq errno reason
 *   MANIFEST count last        then ENTRY path kind mode uid gid size mtime_ns target nsums first sums-hex
 *   CLOSED reason              the secondary ended the connection
 *   FAIL reason                a check of the script failed (exit code 1)
 *
 * Script: tokens separated by blanks; paths, names and data %XX-escaped, "." is the empty path.
 * A command name starting with '!' sends its frame with the ACK flag (a barrier).
 *   create P MODE UID GID | write P OFF DATA | writegen P OFF LEN SEED | truncate P SIZE
 *   fallocate P MODE OFF LEN | setattr P MASK MODE UID GID ATIME_NS MTIME_NS SIZE
 *   setxattr P NAME VALUE | removexattr P NAME | clear_xattrs P | mkdir P MODE UID GID | rmdir P
 *   unlink P | rename OLD NEW FLAGS | symlink P TARGET UID GID | mknod P MODE RDEV UID GID
 *   fsync P [data] | link OLD NEW | remove_tree P | dir N (the directory of later frames)
 *   sync_begin journal|checksum|full | sync_end GEN | progress DONE TOTAL | ping | bye
 *   manifest_req none|all|paths [P...]      waits for the whole answer
 *   wait                 PING as a barrier; waits for its ACK
 *   expect_ack R A D     waits for an ACK with applied >= A, checks the three values
 *   expect_error         waits for an ERROR
 *   expect_close         waits until the secondary closes the connection
 *   tamper               the next frame goes out with one byte of its body flipped
 *   replay               sends the previous frame again, byte for byte
 *   swap                 the next two frames go out in reverse order
 *   skip                 the next frame is sealed but never sent (a loss)
 *   sleep MS
 * MODE values are octal; numbers otherwise decimal. writegen's bytes: byte at file offset x is
 * (SEED * 31 + x * 7 + (x >> 8)) & 0xff. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "sk_frame.h"
#include "sk_hello.h"
#include "sk_ops.h"
#include "sk_wire.h"

#define BUF_CAP (SK_FRAME_OVERHEAD + SK_MAX_PAYLOAD)
#define MAX_TOKENS 64

typedef struct sender {
    int fd;
    sk_tx tx;
    sk_rx rx;
    uint8_t *out, *prev, *held, *in, *payload;
    size_t prev_len, held_len, in_len;
    uint32_t dir;
    bool tamper, swap, skip, closed;
    uint64_t last_seq;
    sk_ack ack;
    uint64_t acks, errors;
    int manifest_left; /* 1 while a manifest answer is not complete */
} sender;

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    return -1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* %XX unescape in place; returns the length. */
static size_t unescape(char *s)
{
    size_t o = 0;
    for (size_t i = 0; s[i]; i++) {
        unsigned v;
        if (s[i] == '%' && s[i + 1] && s[i + 2] && sscanf(s + i + 1, "%2x", &v) == 1) {
            s[o++] = (char)v;
            i += 2;
        } else {
            s[o++] = s[i];
        }
    }
    s[o] = '\0';
    return o;
}

static sk_bytes tok_bytes(char *t)
{
    if (strcmp(t, ".") == 0)
        return sk_bytes_of("", 0);
    size_t n = unescape(t);
    return sk_bytes_of(t, n);
}

static void print_escaped(const uint8_t *p, size_t n)
{
    if (n == 0)
        printf(".");
    for (size_t i = 0; i < n; i++) {
        if (p[i] > 0x20 && p[i] < 0x7f && p[i] != '%')
            putchar(p[i]);
        else
            printf("%%%02X", p[i]);
    }
}

static int send_raw(sender *s, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(s->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read what the secondary sent; wait at most `timeout_ms` for something. 0 ok, -1 closed. */
static int pump(sender *s, int timeout_ms)
{
    if (s->closed)
        return -1;
    struct pollfd p = {s->fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0)
        return 0;
    ssize_t n = recv(s->fd, s->in + s->in_len, BUF_CAP - s->in_len, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        printf("CLOSED %s\n", n == 0 ? "end of stream" : strerror(errno));
        fflush(stdout);
        s->closed = true;
        return -1;
    }
    s->in_len += (size_t)n;
    size_t off = 0;
    for (;;) {
        sk_header h;
        size_t used, need;
        sk_err e = {0, ""};
        int rc = sk_rx_open(&s->rx, s->in + off, s->in_len - off, &h, &used, &need, &e);
        if (rc == SK_AGAIN)
            break;
        if (rc != SK_OK) {
            printf("CLOSED refused a frame of the secondary: %s\n", e.reason);
            s->closed = true;
            return -1;
        }
        const uint8_t *pl = s->in + off + SK_HEADER_SIZE;
        if (h.type == SK_T_ACK) {
            if (sk_ack_decode(pl, h.length, &s->ack, &e) != SK_OK) {
                printf("CLOSED bad ACK: %s\n", e.reason);
                s->closed = true;
                return -1;
            }
            s->acks++;
            printf("ACK %lu %lu %lu\n", (unsigned long)s->ack.received, (unsigned long)s->ack.applied,
                   (unsigned long)s->ack.durable);
        } else if (h.type == SK_T_ERROR) {
            sk_error_msg m;
            if (sk_error_decode(pl, h.length, &m, &e) == SK_OK)
                printf("ERROR %lu %u %.*s\n", (unsigned long)m.seq, m.errnum, (int)m.reason.len,
                       (const char *)m.reason.ptr);
            s->errors++;
        } else if (h.type == SK_T_MANIFEST) {
            sk_manifest_iter it;
            uint32_t count;
            if (sk_manifest_begin(pl, h.length, &it, &count, &e) != SK_OK) {
                printf("CLOSED bad MANIFEST: %s\n", e.reason);
                s->closed = true;
                return -1;
            }
            printf("MANIFEST %u %d\n", count, (h.flags & SK_F_LAST) ? 1 : 0);
            sk_entry en;
            while (sk_manifest_next(&it, &en, &e) == 1) {
                printf("ENTRY ");
                print_escaped(en.path.ptr, en.path.len);
                printf(" %c %o %u %u %lu %ld ", en.kind, en.mode, en.uid, en.gid, (unsigned long)en.size,
                       (long)en.mtime_ns);
                print_escaped(en.target.ptr, en.target.len);
                printf(" %u %lu ", en.nsums, (unsigned long)en.sums_first);
                for (size_t i = 0; i < en.sums.len; i++)
                    printf("%02x", en.sums.ptr[i]);
                if (!en.sums.len)
                    printf("-");
                printf("\n");
            }
            if (h.flags & SK_F_LAST)
                s->manifest_left = 0;
        } else {
            printf("FRAME %s %lu\n", sk_type_name(h.type) ? sk_type_name(h.type) : "?", (unsigned long)h.seq);
        }
        off += used;
    }
    memmove(s->in, s->in + off, s->in_len - off);
    s->in_len -= off;
    fflush(stdout);
    return 0;
}

/* Seal a frame and send it (honouring tamper/swap/skip). */
static int send_frame(sender *s, uint8_t type, uint16_t flags, const uint8_t *payload, size_t len)
{
    sk_err e = {0, ""};
    sk_iov iov = {payload, len};
    size_t flen;
    if (sk_tx_seal(&s->tx, type, flags, s->dir, &iov, 1, s->out, BUF_CAP, &flen, &s->last_seq, &e) != SK_OK)
        return fail("seal %s: %s", sk_type_name(type), e.reason);
    if (s->tamper) {
        s->out[SK_HEADER_SIZE + (len ? len / 2 : 0)] ^= 0x01; /* a body byte (or the tag's first) */
        s->tamper = false;
    }
    if (s->skip) {
        s->skip = false;
        return 0;
    }
    if (s->swap) {
        memcpy(s->held, s->out, flen);
        s->held_len = flen;
        s->swap = false;
        return 0;
    }
    if (send_raw(s, s->out, flen) != 0) {
        pump(s, 200);
        return s->closed ? 0 : fail("send: %s", strerror(errno));
    }
    memcpy(s->prev, s->out, flen);
    s->prev_len = flen;
    if (s->held_len) {
        if (send_raw(s, s->held, s->held_len) != 0)
            return 0;
        s->held_len = 0;
    }
    pump(s, 0);
    return 0;
}

static int send_op(sender *s, const sk_op *op, uint16_t flags)
{
    sk_err e = {0, ""};
    size_t len;
    if (sk_op_encode(op, s->payload, BUF_CAP, &len, &e) != SK_OK)
        return fail("encode %s: %s", sk_type_name(op->type), e.reason);
    return send_frame(s, op->type, flags | (op->datasync ? SK_F_DATASYNC : 0), s->payload, len);
}

static int wait_ack(sender *s, uint64_t applied, int timeout_ms)
{
    double deadline = now() + timeout_ms / 1000.0;
    while (s->ack.applied < applied) {
        if (now() > deadline)
            return fail("no ACK for %lu within %d ms (last %lu)", (unsigned long)applied, timeout_ms,
                        (unsigned long)s->ack.applied);
        if (pump(s, 50) < 0)
            return fail("connection closed while waiting for the ACK of %lu", (unsigned long)applied);
    }
    return 0;
}

static uint64_t num(const char *t)
{
    return strtoull(t, NULL, 0);
}

static uint32_t oct(const char *t)
{
    return (uint32_t)strtoul(t, NULL, 8);
}

static int command(sender *s, char **t, int n)
{
    uint16_t flags = 0;
    char *name = t[0];
    if (name[0] == '!') {
        flags = SK_F_ACK;
        name++;
    }
#define NEED(k)                                                   \
    do {                                                          \
        if (n < (k))                                              \
            return fail("%s: %d arguments needed", name, (k) - 1); \
    } while (0)
    sk_op op;
    memset(&op, 0, sizeof op);
    size_t len;
    if (strcmp(name, "create") == 0 || strcmp(name, "mkdir") == 0) {
        NEED(5);
        op.type = name[0] == 'c' ? SK_T_CREATE : SK_T_MKDIR;
        op.path = tok_bytes(t[1]);
        op.mode = oct(t[2]);
        op.uid = (uint32_t)num(t[3]);
        op.gid = (uint32_t)num(t[4]);
    } else if (strcmp(name, "write") == 0) {
        NEED(4);
        op.type = SK_T_WRITE;
        op.path = tok_bytes(t[1]);
        op.offset = num(t[2]);
        op.data = tok_bytes(t[3]);
    } else if (strcmp(name, "writegen") == 0) {
        NEED(5);
        op.type = SK_T_WRITE;
        op.path = tok_bytes(t[1]);
        op.offset = num(t[2]);
        uint64_t count = num(t[3]), seed = num(t[4]);
        if (count > SK_MAX_PAYLOAD - 4096)
            return fail("writegen: at most %u bytes", SK_MAX_PAYLOAD - 4096);
        uint8_t *data = s->payload + SK_MAX_PAYLOAD / 2; /* the encoder writes the payload below it */
        if (count > SK_MAX_PAYLOAD / 2 - 4096) {
            data = malloc(count ? count : 1);
            if (!data)
                return fail("out of memory");
        }
        for (uint64_t i = 0; i < count; i++) {
            uint64_t x = op.offset + i;
            data[i] = (uint8_t)((seed * 31 + x * 7 + (x >> 8)) & 0xff);
        }
        uint8_t prefix[8192];
        sk_err e = {0, ""};
        op.data = sk_bytes_of(data, count);
        if (sk_op_encode_write_prefix(&op, prefix, sizeof prefix, &len, &e) != SK_OK)
            return fail("encode: %s", e.reason);
        memmove(s->payload + len, data, count);
        memcpy(s->payload, prefix, len);
        if (data != s->payload + SK_MAX_PAYLOAD / 2)
            free(data);
        return send_frame(s, SK_T_WRITE, flags, s->payload, len + count);
    } else if (strcmp(name, "truncate") == 0) {
        NEED(3);
        op.type = SK_T_TRUNCATE;
        op.path = tok_bytes(t[1]);
        op.size = num(t[2]);
    } else if (strcmp(name, "fallocate") == 0) {
        NEED(5);
        op.type = SK_T_FALLOCATE;
        op.path = tok_bytes(t[1]);
        op.mode = (uint32_t)num(t[2]);
        op.offset = num(t[3]);
        op.length = num(t[4]);
    } else if (strcmp(name, "setattr") == 0) {
        NEED(9);
        op.type = SK_T_SETATTR;
        op.path = tok_bytes(t[1]);
        op.mask = (uint32_t)num(t[2]);
        op.mode = oct(t[3]);
        op.uid = (uint32_t)num(t[4]);
        op.gid = (uint32_t)num(t[5]);
        op.atime_ns = strtoll(t[6], NULL, 10);
        op.mtime_ns = strtoll(t[7], NULL, 10);
        op.size = num(t[8]);
    } else if (strcmp(name, "setxattr") == 0) {
        NEED(4);
        op.type = SK_T_SETXATTR;
        op.path = tok_bytes(t[1]);
        op.name = tok_bytes(t[2]);
        op.value = tok_bytes(t[3]);
    } else if (strcmp(name, "removexattr") == 0) {
        NEED(3);
        op.type = SK_T_REMOVEXATTR;
        op.path = tok_bytes(t[1]);
        op.name = tok_bytes(t[2]);
    } else if (strcmp(name, "clear_xattrs") == 0 || strcmp(name, "rmdir") == 0 || strcmp(name, "unlink") == 0 ||
               strcmp(name, "remove_tree") == 0) {
        NEED(2);
        op.type = name[0] == 'c' ? SK_T_CLEAR_XATTRS : name[1] == 'm' ? SK_T_RMDIR : name[0] == 'u' ? SK_T_UNLINK
                                                                                              : SK_T_REMOVE_TREE;
        op.path = tok_bytes(t[1]);
    } else if (strcmp(name, "rename") == 0 || strcmp(name, "link") == 0) {
        NEED(name[0] == 'r' ? 4 : 3);
        op.type = name[0] == 'r' ? SK_T_RENAME : SK_T_LINK;
        op.path = tok_bytes(t[1]);
        op.path2 = tok_bytes(t[2]);
        op.flags = name[0] == 'r' ? (uint32_t)num(t[3]) : 0;
    } else if (strcmp(name, "symlink") == 0) {
        NEED(5);
        op.type = SK_T_SYMLINK;
        op.path = tok_bytes(t[1]);
        op.target = tok_bytes(t[2]);
        op.uid = (uint32_t)num(t[3]);
        op.gid = (uint32_t)num(t[4]);
    } else if (strcmp(name, "mknod") == 0) {
        NEED(6);
        op.type = SK_T_MKNOD;
        op.path = tok_bytes(t[1]);
        op.mode = oct(t[2]);
        op.rdev = num(t[3]);
        op.uid = (uint32_t)num(t[4]);
        op.gid = (uint32_t)num(t[5]);
    } else if (strcmp(name, "fsync") == 0) {
        NEED(2);
        op.type = SK_T_FSYNC;
        op.path = tok_bytes(t[1]);
        op.datasync = n > 2 && strcmp(t[2], "data") == 0;
    } else if (strcmp(name, "dir") == 0) {
        NEED(2);
        s->dir = (uint32_t)num(t[1]);
        return 0;
    } else if (strcmp(name, "sync_begin") == 0) {
        NEED(2);
        uint8_t mode = strcmp(t[1], "journal") == 0 ? SK_SYNC_JOURNAL : strcmp(t[1], "full") == 0 ? SK_SYNC_FULL
                                                                                                : SK_SYNC_CHECKSUM;
        sk_sync_begin_encode(mode, s->payload, BUF_CAP, &len, NULL);
        return send_frame(s, SK_T_SYNC_BEGIN, flags, s->payload, len);
    } else if (strcmp(name, "sync_end") == 0) {
        NEED(2);
        sk_sync_end_encode(num(t[1]), s->payload, BUF_CAP, &len, NULL);
        return send_frame(s, SK_T_SYNC_END, flags, s->payload, len);
    } else if (strcmp(name, "progress") == 0) {
        NEED(3);
        sk_progress pr = {num(t[1]), num(t[2])};
        sk_progress_encode(&pr, s->payload, BUF_CAP, &len, NULL);
        return send_frame(s, SK_T_PROGRESS, flags, s->payload, len);
    } else if (strcmp(name, "ping") == 0 || strcmp(name, "bye") == 0) {
        return send_frame(s, name[0] == 'p' ? SK_T_PING : SK_T_BYE, flags, s->payload, 0);
    } else if (strcmp(name, "manifest_req") == 0) {
        NEED(2);
        uint8_t sums = strcmp(t[1], "all") == 0 ? SK_SUMS_ALL : strcmp(t[1], "paths") == 0 ? SK_SUMS_PATHS : SK_SUMS_NONE;
        sk_bytes paths[MAX_TOKENS];
        uint32_t count = 0;
        for (int i = 2; i < n && sums == SK_SUMS_PATHS; i++)
            paths[count++] = tok_bytes(t[i]);
        sk_err e = {0, ""};
        if (sk_manifest_req_encode(sums, paths, count, s->payload, BUF_CAP, &len, &e) != SK_OK)
            return fail("manifest_req: %s", e.reason);
        s->manifest_left = 1;
        if (send_frame(s, SK_T_MANIFEST_REQ, flags, s->payload, len) != 0)
            return -1;
        double deadline = now() + 20;
        while (s->manifest_left) {
            if (now() > deadline || pump(s, 50) < 0)
                return fail("no complete MANIFEST");
        }
        return 0;
    } else if (strcmp(name, "wait") == 0) {
        if (send_frame(s, SK_T_PING, SK_F_ACK, s->payload, 0) != 0)
            return -1;
        return wait_ack(s, s->last_seq, 20000);
    } else if (strcmp(name, "expect_ack") == 0) {
        NEED(4);
        uint64_t r = num(t[1]), a = num(t[2]), d = num(t[3]);
        if (wait_ack(s, a, 20000) != 0)
            return -1;
        if (s->ack.received != r || s->ack.applied != a || s->ack.durable != d)
            return fail("ACK %lu %lu %lu, expected %lu %lu %lu", (unsigned long)s->ack.received,
                        (unsigned long)s->ack.applied, (unsigned long)s->ack.durable, (unsigned long)r,
                        (unsigned long)a, (unsigned long)d);
        return 0;
    } else if (strcmp(name, "expect_error") == 0) {
        double deadline = now() + 10;
        while (!s->errors) {
            if (now() > deadline || (pump(s, 50) < 0 && !s->errors))
                return fail("no ERROR from the secondary");
        }
        return 0;
    } else if (strcmp(name, "expect_close") == 0) {
        double deadline = now() + 10;
        while (!s->closed) {
            if (now() > deadline)
                return fail("the secondary did not close the connection");
            pump(s, 50);
        }
        return 0;
    } else if (strcmp(name, "tamper") == 0) {
        s->tamper = true;
        return 0;
    } else if (strcmp(name, "skip") == 0) {
        s->skip = true;
        return 0;
    } else if (strcmp(name, "swap") == 0) {
        s->swap = true;
        return 0;
    } else if (strcmp(name, "replay") == 0) {
        if (!s->prev_len)
            return fail("replay: nothing sent yet");
        if (send_raw(s, s->prev, s->prev_len) != 0)
            pump(s, 200);
        return 0;
    } else if (strcmp(name, "sleep") == 0) {
        NEED(2);
        double until = now() + (double)num(t[1]) / 1000.0;
        while (now() < until && pump(s, 10) == 0)
            ;
        return 0;
    } else {
        return fail("unknown command %s", name);
    }
    return send_op(s, &op, flags);
}

static int connect_to(const char *host, int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* What a version-1 primary sends first: a v1 header and a JSON HELLO (its MAC does not matter: the
 * v2 secondary refuses the version byte before anything else). */
static int v1_hello(sender *s)
{
    const char *json = "{\"module\":\"m\",\"node\":\"n\",\"nonce\":\"00\",\"epoch\":\"\",\"first_seq\":1,\"dirs\":1}";
    uint8_t f[512];
    size_t n = strlen(json);
    memcpy(f, "SKRF", 4);
    f[4] = 1;
    f[5] = 1;
    memset(f + 6, 0, 2 + 8);
    sk_store_be(f + 16, n, 4);
    sk_store_be(f + 20, 0, 4);
    memcpy(f + 24, json, n);
    memset(f + 24 + n, 0xab, 32);
    if (send_raw(s, f, 24 + n + 32) != 0)
        return fail("send: %s", strerror(errno));
    double deadline = now() + 5;
    while (now() < deadline) {
        uint8_t b[256];
        struct pollfd p = {s->fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t r = recv(s->fd, b, sizeof b, 0);
        if (r <= 0) {
            printf("CLOSED %s\n", r == 0 ? "end of stream" : strerror(errno));
            return 0;
        }
        return fail("the secondary answered a v1 HELLO (%zd bytes)", r);
    }
    return fail("the secondary did not close after a v1 HELLO");
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *keyfile = NULL, *module = NULL, *node = NULL, *peer = NULL, *epoch = "";
    const char *script = NULL;
    int port = 0;
    uint32_t dirs = 1;
    uint64_t first = 1;
    bool async_none = false, v1 = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--v1-hello") == 0) {
            v1 = true;
            continue;
        }
        if (a[0] == '-' && a[1] == '-' && !v) {
            fprintf(stderr, "%s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--host") == 0)
            host = v;
        else if (strcmp(a, "--port") == 0)
            port = atoi(v);
        else if (strcmp(a, "--key") == 0)
            keyfile = v;
        else if (strcmp(a, "--module") == 0)
            module = v;
        else if (strcmp(a, "--node") == 0)
            node = v;
        else if (strcmp(a, "--peer") == 0)
            peer = v;
        else if (strcmp(a, "--epoch") == 0)
            epoch = v;
        else if (strcmp(a, "--dirs") == 0)
            dirs = (uint32_t)atoi(v);
        else if (strcmp(a, "--first-seq") == 0)
            first = strtoull(v, NULL, 10);
        else if (strcmp(a, "--async") == 0)
            async_none = strcmp(v, "none") == 0;
        else {
            script = a;
            continue;
        }
        i++;
    }
    if (!port || !keyfile || !module || !node || !peer || !script) {
        fprintf(stderr, "usage: safekit-rfs-send --port P --key FILE --module M --node N --peer S [...] SCRIPT|-\n");
        return 2;
    }
    uint8_t key[SKS_KEY_SIZE];
    char why[512];
    if (!sks_key_load(keyfile, key, why, sizeof why)) {
        fail("%s", why);
        return 1;
    }
    sender s;
    memset(&s, 0, sizeof s);
    s.out = malloc(BUF_CAP);
    s.prev = malloc(BUF_CAP);
    s.held = malloc(BUF_CAP);
    s.in = malloc(BUF_CAP);
    s.payload = malloc(BUF_CAP);
    FILE *f = strcmp(script, "-") == 0 ? stdin : fopen(script, "r");
    s.fd = connect_to(host, port);
    if (!s.out || !s.prev || !s.held || !s.in || !s.payload || !f || s.fd < 0) {
        fail("cannot start: %s", strerror(errno));
        return 1;
    }
    int rc = 0;
    if (v1) {
        rc = v1_hello(&s);
        goto out;
    }
    sk_err e = {0, ""};
    sk_hello hs;
    sk_hello_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.role = SK_ROLE_PRIMARY;
    cfg.cluster_key = key;
    cfg.cluster_key_len = sizeof key;
    cfg.module = module;
    cfg.node = node;
    cfg.peer = peer;
    cfg.dirs = dirs;
    cfg.epoch = epoch;
    cfg.first_seq = first;
    cfg.async_none = async_none;
    uint8_t nonce[SK_HELLO_NONCE_SIZE], hout[SK_HELLO_OUT_MAX];
    size_t hlen;
    if (sk_hello_nonce(nonce, &e) != SK_OK || sk_hello_init(&hs, &cfg, nonce, &e) != SK_OK ||
        sk_hello_start(&hs, hout, sizeof hout, &hlen, &e) != SK_OK || send_raw(&s, hout, hlen) != 0) {
        rc = fail("HELLO: %s", e.reason);
        goto out;
    }
    while (sk_hello_state(&hs) != SK_HS_DONE) {
        ssize_t n = recv(s.fd, s.in + s.in_len, BUF_CAP - s.in_len, 0);
        if (n <= 0) {
            sk_hello_eof(&hs, &e);
            printf("CLOSED %s\n", e.reason);
            rc = -1;
            goto out;
        }
        s.in_len += (size_t)n;
        size_t used, olen;
        int r = sk_hello_receive(&hs, s.in, s.in_len, &used, hout, sizeof hout, &olen, &e);
        if (r == SK_AGAIN)
            continue;
        if (r != SK_OK) {
            rc = fail("handshake: %s", e.reason);
            goto out;
        }
        memmove(s.in, s.in + used, s.in_len - used);
        s.in_len -= used;
        if (olen && send_raw(&s, hout, olen) != 0) {
            rc = fail("send: %s", strerror(errno));
            goto out;
        }
    }
    printf("HELLO_OK node=%s epoch=%s trusted=%d in_sync=%d fullsync=%d\n", hs.peer.node, hs.peer.epoch,
           hs.peer.trusted, hs.peer.in_sync, hs.peer.fullsync);
    fflush(stdout);
    if (sk_hello_session(&hs, &s.tx, &s.rx, &e) != SK_OK) {
        rc = fail("session: %s", e.reason);
        goto out;
    }
    sk_hello_wipe(&hs);
    char *line = NULL;
    size_t cap = 0;
    while (rc == 0 && getline(&line, &cap, f) > 0) {
        char *t[MAX_TOKENS];
        int n = 0;
        for (char *p = strtok(line, " \t\r\n"); p && n < MAX_TOKENS; p = strtok(NULL, " \t\r\n"))
            t[n++] = p;
        if (n == 0 || t[0][0] == '#')
            continue;
        rc = command(&s, t, n);
    }
    free(line);
    pump(&s, 0);
    sk_tx_free(&s.tx);
    sk_rx_free(&s.rx);
out:
    fflush(stdout);
    if (f && f != stdin)
        fclose(f);
    close(s.fd);
    free(s.out);
    free(s.prev);
    free(s.held);
    free(s.in);
    free(s.payload);
    return rc == 0 ? 0 : 1;
}
