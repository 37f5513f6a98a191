/* The secondary's other pieces: JSON reading and the channel's exact event lines, the key file's
 * rules, the state file round trip, the manifest (order, exclusions, checksums, chunking). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "channel.h"
#include "config.h"
#include "json.h"
#include "manifest.h"
#include "mounts.h"
#include "sk_kdf.h"
#include "sk_test.h"
#include "splitbrain.h"
#include "state.h"

static void json_reading(void)
{
    const char *t = "{\"a\": [1, -2, {\"b\": \"x\\u00e9\\ud83d\\ude00\\n\"}], \"c\": true, \"d\": null, \"e\": 1.5}";
    skj_tok k[32];
    CHECK(skj_parse(t, strlen(t), k, 32) > 0);
    int a = skj_get(t, k, 0, "a");
    int64_t v;
    CHECK(skj_int(t, k, skj_elem(k, a, 0), &v) && v == 1);
    CHECK(skj_int(t, k, skj_elem(k, a, 1), &v) && v == -2);
    char s[32];
    CHECK(skj_str(t, k, skj_get(t, k, skj_elem(k, a, 2), "b"), s, sizeof s));
    CHECK(strcmp(s, "x\xc3\xa9\xf0\x9f\x98\x80\n") == 0);
    bool b;
    CHECK(skj_bool(k, skj_get(t, k, 0, "c"), &b) && b);
    CHECK(k[skj_get(t, k, 0, "d")].type == SKJ_NULL);
    CHECK(!skj_int(t, k, skj_get(t, k, 0, "e"), &v));
    CHECK(skj_get(t, k, 0, "zz") == -1);
    const char *bad[] = {"{", "{\"a\":}", "[1,]", "{\"a\":1} x", "\"\\x\"", "[\"\x01\"]", "tru"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(skj_parse(bad[i], strlen(bad[i]), k, 32) < 0);
    CHECK(skj_parse("[[[[1]]]]", 9, k, 3) < 0); /* too many tokens */
    char deep[80];
    memset(deep, '[', 40);
    memset(deep + 40, ']', 40);
    CHECK(skj_parse(deep, 80, k, 32) < 0); /* too deep (and too many) */
    CHECK(sks_command_name("{\"cmd\":\"stop\"}", 14, s, sizeof s) == 1 && strcmp(s, "stop") == 0);
    CHECK(sks_command_name("{\"cmd\":1}", 9, s, sizeof s) == 0);
}

/* The lines json.dumps(obj, separators=(",", ":")) writes (ensure_ascii): checked against Python's
 * own output by tests/native/test_secondary.py too. */
static void event_lines(void)
{
    skj_buf f = {0}, line = {0};
    skj_stringz(&f, "reason");
    skj_rawz(&f, ":");
    skj_string(&f, "d\xc3\xa9j\xc3\xa0 \"q\" \\ \x01 \xff \xf0\x9f\x98\x80\t", 22);
    sks_event_line(&line, "disconnected", f.p);
    CHECK(strcmp(line.p, "{\"event\":\"disconnected\",\"reason\":\"d\\u00e9j\\u00e0 \\\"q\\\" \\\\ \\u0001 \\ufffd "
                         "\\ud83d\\ude00\\t\"}\n") == 0);
    skj_buf_free(&f);
    skj_buf_free(&line);
}

static bool write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return false;
    bool ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    close(fd);
    return ok && chmod(path, mode) == 0;
}

static void key_file(void)
{
    char dir[] = "/tmp/sks-key-XXXXXX";
    CHECK(mkdtemp(dir));
    char path[64], why[512];
    snprintf(path, sizeof path, "%s/key", dir);
    uint8_t key[32];
    /* 32 bytes 00..1f */
    const char *good = "# a comment\n\nsafekit-cluster-key-v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";
    CHECK(write_file(path, good, 0600) && sks_key_load(path, key, why, sizeof why));
    CHECK(key[0] == 0 && key[31] == 31);
    CHECK(write_file(path, good, 0640) && !sks_key_load(path, key, why, sizeof why) && strstr(why, "chmod 600"));
    CHECK(write_file(path, "safekit-cluster-key-v1:AAEC\n", 0600) && !sks_key_load(path, key, why, sizeof why) &&
          strstr(why, "decodes to 3"));
    CHECK(write_file(path, "safekit-cluster-key-v1:A*==\n", 0600) && !sks_key_load(path, key, why, sizeof why) &&
          strstr(why, "not valid base64"));
    CHECK(write_file(path, "safekit-cluster-key-v2:AAAA\n", 0600) && !sks_key_load(path, key, why, sizeof why) &&
          strstr(why, "upgrade safekit"));
    CHECK(write_file(path, "a\nb\n", 0600) && !sks_key_load(path, key, why, sizeof why) && strstr(why, "found 2"));
    unlink(path);
    CHECK(!sks_key_load(path, key, why, sizeof why) && strstr(why, "genkey"));
    rmdir(dir);
    uint8_t out[8];
    CHECK(sks_base64_decode("YWJj", 4, out, sizeof out) == 3 && memcmp(out, "abc", 3) == 0);
    CHECK(sks_base64_decode("YQ==", 4, out, sizeof out) == 1 && sks_base64_decode("Y===", 4, out, sizeof out) < 0);
    CHECK(sks_base64_decode("YQ=a", 4, out, sizeof out) < 0 && sks_base64_decode("YQ", 2, out, sizeof out) < 0);
}

static void state_round_trip(void)
{
    char dir[] = "/tmp/sks-state-XXXXXX";
    CHECK(mkdtemp(dir));
    char path[96], why[512];
    snprintf(path, sizeof path, "%s/sub/secondary.json", dir);
    sks_state st, back;
    bool corrupt;
    CHECK(sks_state_load(path, &st, &corrupt, why, sizeof why) && !corrupt && !st.in_sync && st.ndirs == -1);
    snprintf(st.epoch, sizeof st.epoch, "ep\"och");
    st.in_sync = true;
    st.generation = 42;
    st.applied_seq = 99;
    snprintf(st.boot_id, sizeof st.boot_id, "b");
    st.ndirs = 1;
    st.dirs = calloc(1, sizeof *st.dirs);
    CHECK(st.dirs);
    st.dirs[0][0] = 2049;
    st.dirs[0][1] = 77;
    st.mounts = strdup("[[\"/x\", 12, 3]]");
    st.splitbrain = strdup("{\"phase\": \"saved\", \"dir\": \"/d\"}");
    CHECK(sks_state_save(path, &st, why, sizeof why));
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    CHECK(sks_state_load(path, &back, &corrupt, why, sizeof why) && !corrupt);
    CHECK(strcmp(back.epoch, "ep\"och") == 0 && back.in_sync && back.generation == 42 && back.applied_seq == 99);
    CHECK(back.ndirs == 1 && back.dirs[0][0] == 2049 && back.dirs[0][1] == 77);
    CHECK(strcmp(back.mounts, st.mounts) == 0 && strcmp(back.splitbrain, st.splitbrain) == 0);
    sks_state_free(&back);
    CHECK(write_file(path, "{not json", 0600));
    CHECK(sks_state_load(path, &back, &corrupt, why, sizeof why) && corrupt && !back.in_sync);
    sks_state_free(&back);
    sks_state_free(&st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

typedef struct collected {
    int chunks, lasts;
    char names[64][64];
    char kinds[64];
    uint32_t nsums[64];
    uint64_t first[64];
    uint8_t sum0[64][16];
    int n;
} collected;

static int collect(void *ctx, const uint8_t *payload, size_t len, bool last)
{
    collected *c = ctx;
    sk_manifest_iter it;
    uint32_t count;
    if (sk_manifest_begin(payload, len, &it, &count, NULL) != SK_OK)
        return 1;
    c->chunks++;
    c->lasts += last;
    sk_entry e;
    while (sk_manifest_next(&it, &e, NULL) == 1 && c->n < 64) {
        snprintf(c->names[c->n], 64, "%.*s", (int)e.path.len, (const char *)e.path.ptr);
        c->kinds[c->n] = (char)e.kind;
        c->nsums[c->n] = e.nsums;
        c->first[c->n] = e.sums_first;
        if (e.nsums)
            memcpy(c->sum0[c->n], e.sums.ptr, 16);
        c->n++;
    }
    return 0;
}

/* A fresh directory from `tmpl` (mkdtemp), then `script` run in it by the shell. */
static bool tree_in(char *tmpl, const char *script)
{
    if (!mkdtemp(tmpl))
        return false;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cd %s && %s", tmpl, script);
    return system(cmd) == 0;
}

static void manifest(void)
{
    char dir[] = "/tmp/sks-man-XXXXXX";
    CHECK(tree_in(dir, "mkdir -p b/sub a skip keep && printf hello > b/f && ln -s b/f a/link && printf x > skip/x "
                       "&& printf y > keep/y.tmp && printf z > keep/z && mkfifo a/fifo"));
    char cmd[512];
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    sks_dir_spec ds;
    memset(&ds, 0, sizeof ds);
    char *ex[] = {"skip"}, *re[] = {".*\\.tmp"};
    ds.nexcl = 1;
    ds.excl[0] = ex[0];
    ds.nregex = 1;
    ds.regex[0] = re[0];
    sks_excl x;
    char why[256];
    CHECK(sks_excl_build(&x, &ds, why, sizeof why));
    CHECK(sks_excluded(&x, "skip") && sks_excluded(&x, "skip/x") && !sks_excluded(&x, "skipper"));
    CHECK(sks_excluded(&x, "keep/y.tmp") && !sks_excluded(&x, "keep/z") && !sks_excluded(&x, ""));
    collected *c = calloc(1, sizeof *c);
    CHECK(c);
    sk_manifest_req req;
    memset(&req, 0, sizeof req);
    req.sums = SK_SUMS_ALL;
    uint64_t entries;
    CHECK(sks_manifest(dfd, false, &x, &req, 0, collect, c, &entries) == 0);
    /* parents before children, names in byte order, each directory's entries before its subdirs' */
    const char *want[] = {"a", "b", "keep", "a/fifo", "a/link", "b/f", "b/sub", "keep/z"};
    CHECK(c->n == 8 && entries == 8 && c->chunks == 1 && c->lasts == 1);
    for (int i = 0; i < 8; i++)
        CHECK(strcmp(c->names[i], want[i]) == 0);
    CHECK(c->kinds[3] == 'o' && c->kinds[4] == 'l' && c->kinds[5] == 'f' && c->kinds[6] == 'd');
    /* a second walk of the same directory fd sees everything again (a dup'd fd shared the read
     * position, and the second manifest of a long-lived process was empty) */
    memset(c, 0, sizeof *c);
    CHECK(sks_manifest(dfd, false, &x, &req, 0, collect, c, &entries) == 0);
    CHECK(c->n == 8 && entries == 8);
    uint8_t digest[32];
    sk_iov iov = {"hello", 5};
    CHECK(sk_sha256(&iov, 1, digest, NULL) == SK_OK);
    CHECK(c->nsums[5] == 1 && memcmp(c->sum0[5], digest, 16) == 0);
    /* only the paths asked, files only, missing ones left out */
    uint8_t reqbuf[256];
    size_t len;
    sk_bytes paths[] = {sk_bytes_str("b/f"), sk_bytes_str("a/link"), sk_bytes_str("missing"), sk_bytes_str("b")};
    CHECK(sk_manifest_req_encode(SK_SUMS_PATHS, paths, 4, reqbuf, sizeof reqbuf, &len, NULL) == SK_OK);
    CHECK(sk_manifest_req_decode(reqbuf, len, &req, NULL) == SK_OK);
    memset(c, 0, sizeof *c);
    CHECK(sks_manifest(dfd, false, &x, &req, 0, collect, c, &entries) == 0);
    CHECK(c->n == 1 && strcmp(c->names[0], "b/f") == 0 && c->nsums[0] == 1 && c->lasts == 1);
    /* a file of more blocks than an entry holds: its sums continue in the next entries */
    snprintf(cmd, sizeof cmd, "truncate -s %llu %s/b/big", (unsigned long long)SKS_ZONE * 7 + 5, dir);
    CHECK(system(cmd) == 0);
    sk_bytes big[] = {sk_bytes_str("b/big")};
    CHECK(sk_manifest_req_encode(SK_SUMS_PATHS, big, 1, reqbuf, sizeof reqbuf, &len, NULL) == SK_OK);
    CHECK(sk_manifest_req_decode(reqbuf, len, &req, NULL) == SK_OK);
    memset(c, 0, sizeof *c);
    CHECK(sks_manifest(dfd, false, &x, &req, 3, collect, c, &entries) == 0);
    CHECK(c->n == 3 && c->nsums[0] == 3 && c->nsums[1] == 3 && c->nsums[2] == 2 && c->first[2] == 6);
    /* a long pass sends chunks as it goes (possibly empty): the same entries, more chunks */
    sks_manifest_set_keepalive(0);
    CHECK(sk_manifest_req_decode(reqbuf, len, &req, NULL) == SK_OK);
    memset(c, 0, sizeof *c);
    CHECK(sks_manifest(dfd, false, &x, &req, 3, collect, c, &entries) == 0);
    sks_manifest_set_keepalive(1.0);
    CHECK(c->n == 3 && c->nsums[2] == 2 && c->first[2] == 6 && c->chunks > 3 && c->lasts == 1);
    free(c);
    sks_excl_free(&x);
    close(dfd);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* The walk's entries come in sk_walk_cmp's order (what the primary's verify merges on), with
 * names that byte order, depth-first order and the walk order each place differently. */
static void manifest_walk_order(void)
{
    char dir[] = "/tmp/sks-order-XXXXXX";
    CHECK(tree_in(dir, "mkdir -p a/x/deep a-b ab a.b $(printf '\\377') && touch a/x/1 a/x/deep/f a/y a-b/c ab/d "
                       "a.b/e $(printf '\\377')/g b b-c && ln -s a a/z"));
    char cmd[1024];
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    CHECK(dfd >= 0);
    collected *c = calloc(1, sizeof *c);
    CHECK(c);
    sk_manifest_req req;
    memset(&req, 0, sizeof req);
    req.sums = SK_SUMS_NONE;
    uint64_t entries;
    CHECK(sks_manifest(dfd, false, NULL, &req, 0, collect, c, &entries) == 0);
    close(dfd);
    CHECK(c->n == 17);
    for (int i = 1; i < c->n; i++)
        CHECK(sk_walk_cmp((const uint8_t *)c->names[i - 1], strlen(c->names[i - 1]), (const uint8_t *)c->names[i],
                          strlen(c->names[i])) < 0);
    CHECK(strcmp(c->names[0], "a") == 0 && strcmp(c->names[6], "\xff") == 0 && strcmp(c->names[7], "a/x") == 0);
    free(c);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* mountinfo lines as safekit.host.mounts.parse_mountinfo reads them (octal escapes decoded on the
 * bytes, nothing else converted; JSON as Python's json.dumps(os.fsdecode(root))) */
static void mountinfo(void)
{
    sks_mount *m = malloc(sizeof *m);
    CHECK(m);
    const char *line = "48 27 254:0 /tmp/a\\040b/\xc3\xbc /tmp/a\\040b/\xc3\xbc ro,relatime shared:1 - ext4 /dev/vda rw";
    CHECK(sks_mountinfo_line(line, strlen(line), m));
    CHECK(m->key.id == 48 && strcmp(m->key.dev, "254:0") == 0 && strcmp(m->fstype, "ext4") == 0);
    CHECK(strcmp(m->point, "/tmp/a b/\xc3\xbc") == 0); /* the bytes of the path */
    CHECK(strcmp(m->key.root, "/tmp/a b/\xc3\xbc") == 0);
    skj_buf b = {0};
    sks_mkeys_json(&b, &m->key, 1);
    CHECK(!b.bad && strcmp(b.p, "[[48, \"254:0\", \"/tmp/a b/\\u00fc\"]]") == 0); /* json.dumps's: U+00FC */
    sks_mkey *keys;
    CHECK(sks_mkeys_parse(b.p, &keys) == 1);
    CHECK(sks_mount_ours(m, keys, 1));
    /* a name that is not UTF-8 (a lone \xff, a truncated \xe2\x82), a tab, a newline, a backslash and
     * U+0085 / U+00A0 (whitespace to Python's str.split, not to the kernel) */
    const char *odd = "49 27 254:0 /d\\011t\\012n\\134b\xff\xe2\x82\xc2\x85\xc2\xa0\xc3\xa9 "
                      "/srv/d\xc3\xa9\\040x\xff rw - ext4 /dev/vda rw";
    CHECK(sks_mountinfo_line(odd, strlen(odd), m));
    CHECK(strcmp(m->point, "/srv/d\xc3\xa9 x\xff") == 0);
    CHECK(strcmp(m->key.root, "/d\tt\nn\\b\xff\xe2\x82\xc2\x85\xc2\xa0\xc3\xa9") == 0);
    free(keys);
    skj_buf_free(&b);
    sks_mkeys_json(&b, &m->key, 1);
    /* byte for byte what json.dumps([[49, "254:0", os.fsdecode(root)]]) writes */
    CHECK(!b.bad && strcmp(b.p, "[[49, \"254:0\", \"/d\\tt\\nn\\\\b\\udcff\\udce2\\udc82\\u0085\\u00a0\\u00e9\"]]") == 0);
    CHECK(sks_mkeys_parse(b.p, &keys) == 1 && strcmp(keys[0].root, m->key.root) == 0);
    CHECK(sks_mount_ours(m, keys, 1));
    keys[0].id = 50;
    CHECK(!sks_mount_ours(m, keys, 1));
    snprintf(m->fstype, sizeof m->fstype, "%s", SKS_FUSE_TYPE);
    CHECK(sks_mount_ours(m, keys, 1) && sks_mount_ours(m, NULL, 0));
    free(keys);
    skj_buf_free(&b);
    /* not mount lines, and records that are not [int, str, str] */
    CHECK(!sks_mountinfo_line("1 2 3", 5, m));
    CHECK(!sks_mountinfo_line("x 27 0:1 / /a rw shared:1 - ext4 /dev/x rw", 40, m));
    const char *bad_dev = "5 27 0:1x / /a rw shared:1 - ext4 /dev/x rw"; /* the device is major:minor */
    CHECK(!sks_mountinfo_line(bad_dev, strlen(bad_dev), m));
    const char *good = "5 27 0:1 / /a rw shared:1 - ext4 /dev/x rw";
    CHECK(sks_mountinfo_line(good, strlen(good), m) && strcmp(m->point, "/a") == 0 && strcmp(m->key.root, "/") == 0);
    CHECK(sks_mkeys_parse("[[1, \"0:1\", \"/a\"], [\"x\"], 3, [2, \"0:2\", \"/b\"]]", &keys) == 2);
    CHECK(keys[1].id == 2 && strcmp(keys[1].root, "/b") == 0);
    free(keys);
    CHECK(sks_mkeys_parse(NULL, &keys) == 0 && sks_mkeys_parse("null", &keys) == 0);
    free(keys);
    free(m);
    /* the mount point's name: the parent resolved, the last component not */
    char out[4096];
    CHECK(sks_mount_point("/", out, sizeof out) && strcmp(out, "/") == 0);
    CHECK(sks_mount_point("/no-such-dir-sk//x/../y/./", out, sizeof out) && strcmp(out, "/no-such-dir-sk/y") == 0);
    CHECK(sks_mount_point("/proc/self", out, sizeof out) && strcmp(out, "/proc/self") == 0);
    char tmpl[] = "/tmp/sk-mp-XXXXXX";
    CHECK(mkdtemp(tmpl));
    char link[64], target[80];
    snprintf(link, sizeof link, "%s/l", tmpl);
    CHECK(symlink(tmpl, link) == 0);
    snprintf(target, sizeof target, "%s/l/d", tmpl);
    char want[80];
    snprintf(want, sizeof want, "%s/d", tmpl);
    CHECK(sks_mount_point(target, out, sizeof out) && strcmp(out, want) == 0);
    unlink(link);
    rmdir(tmpl);
}

static bool taken_2(void *ctx, const char *name)
{
    (void)ctx;
    return strcmp(name, "20231114T221320Z") == 0 || strcmp(name, "20231114T221320Z-2") == 0;
}

/* the split-brain record in secondary.json (splitbrain.h's format, read by safekit.rfs.splitbrain) */
static void splitbrain_record(void)
{
    char out[256];
    CHECK(sks_sb_base("/var/safekit/modules/pg/rfs", out, sizeof out) &&
          strcmp(out, "/var/safekit/modules/pg/splitbrain") == 0);
    CHECK(sks_sb_base("/var/rfs//", out, sizeof out) && strcmp(out, "/var/splitbrain") == 0);
    CHECK(sks_sb_base("/rfs", out, sizeof out) && strcmp(out, "/splitbrain") == 0);
    CHECK(sks_sb_base("rfs", out, sizeof out) && strcmp(out, "splitbrain") == 0);
    CHECK(sks_sb_name(1700000000, NULL, NULL, out, sizeof out) && strcmp(out, "20231114T221320Z") == 0);
    CHECK(sks_sb_name(1700000000, taken_2, NULL, out, sizeof out) && strcmp(out, "20231114T221320Z-3") == 0);
    char *r = sks_sb_plan("{\"peer\": \"n1\", \"generation\": 4, \"split_at\": 1700000000.5, \"x\": [1]}", "/s/d", "p");
    CHECK(r && strcmp(r, "{\"phase\": \"saving\", \"dir\": \"/s/d\", \"peer\": \"n1\", \"generation\": 4, "
                         "\"peer_generation\": null, \"split_at\": 1700000000.5}") == 0);
    char *saved = sks_sb_with_phase(r, "saved");
    CHECK(saved && strcmp(saved, "{\"phase\": \"saved\", \"dir\": \"/s/d\", \"peer\": \"n1\", \"generation\": 4, "
                             "\"peer_generation\": null, \"split_at\": 1700000000.5}") == 0);
    CHECK(sks_sb_str(saved, "phase", out, sizeof out) && strcmp(out, "saved") == 0);
    CHECK(sks_sb_str(saved, "dir", out, sizeof out) && strcmp(out, "/s/d") == 0);
    CHECK(!sks_sb_str(saved, "generation", out, sizeof out) && !sks_sb_str(NULL, "phase", out, sizeof out));
    free(r);
    free(saved);
    r = sks_sb_plan("{\"peer\": \"\"}", "/d", "fallback"); /* str(diverged.get("peer") or spec.peer) */
    CHECK(r && strstr(r, "\"peer\": \"fallback\"") && strstr(r, "\"generation\": null"));
    free(r);
    CHECK(sks_sb_plan("[1]", "/d", "p") == NULL && sks_sb_with_phase("nope", "saved") == NULL);
}

const sk_test sk_tests_secondary[] = {
    {"mountinfo", mountinfo},
    {"splitbrain_record", splitbrain_record},
    {"json_reading", json_reading},
    {"event_lines", event_lines},
    {"key_file", key_file},
    {"state_round_trip", state_round_trip},
    {"manifest", manifest},
    {"manifest_walk_order", manifest_walk_order},
    SK_TESTS_END,
};
