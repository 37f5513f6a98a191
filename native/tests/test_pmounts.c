/* The primary's mount helpers (native/primary/pmounts.c): mountinfo lines, secondary.json's
 * recorded mounts, the kernel's name of a mount point. */
#include <stdlib.h>
#include <string.h>

#include "pmounts.h"
#include "sk_test.h"

static void test_mountinfo_line(void)
{
    char line[] = "612 35 0:62 / /tmp/x\\040y/mnt rw,nosuid,nodev,relatime shared:300 - fuse.safekit "
                  "safekit-pgsql rw,user_id=0,group_id=0,default_permissions,allow_other\n";
    skp_mountinfo m;
    CHECK(skp_mountinfo_parse(line, &m));
    CHECK(m.id == 612);
    CHECK(strcmp(m.dev, "0:62") == 0);
    CHECK(strcmp(m.root, "/") == 0);
    CHECK(strcmp(m.point, "/tmp/x y/mnt") == 0);
    CHECK(strcmp(m.fstype, "fuse.safekit") == 0);
    char bind[] = "700 35 0:62 /0 /srv/data rw,relatime - fuse.safekit safekit-pgsql rw\n";
    CHECK(skp_mountinfo_parse(bind, &m));
    CHECK(strcmp(m.root, "/0") == 0 && strcmp(m.point, "/srv/data") == 0);
    char bad[] = "not a mountinfo line\n";
    CHECK(!skp_mountinfo_parse(bad, &m));
    char short_line[] = "1 2 - ext4\n";
    CHECK(!skp_mountinfo_parse(short_line, &m));
}

static void test_recorded_mounts(void)
{
    skp_mount_key k[4];
    const char *state = "{\"epoch\":\"e\",\"mounts\":[[701,\"8:1\",\"/var/lib/x\"],[702,\"0:62\",\"/1\"],"
                        "[\"bad\"],7]}";
    int n = skp_recorded_mounts(state, k, 4);
    CHECK(n == 2);
    CHECK(k[0].id == 701 && strcmp(k[0].dev, "8:1") == 0 && strcmp(k[0].root, "/var/lib/x") == 0);
    CHECK(k[1].id == 702 && strcmp(k[1].root, "/1") == 0);
    CHECK(skp_recorded_mounts("{\"mounts\":null}", k, 4) == 0);
    CHECK(skp_recorded_mounts("{\"mounts\":[]}", k, 4) == 0);
    CHECK(skp_recorded_mounts("not json", k, 4) == 0);
    CHECK(skp_recorded_mounts(state, k, 1) == 1);
    /* a root that is not ASCII, as safekit.host.mounts and the secondary record it (json.dumps of
     * os.fsdecode(bytes)): read back to the bytes mountinfo holds, compared on bytes */
    const char *utf = "{\"mounts\":[[703,\"8:1\",\"/srv/d\\u00e9 x\\udcff\"]]}";
    CHECK(skp_recorded_mounts(utf, k, 4) == 1);
    char line[] = "703 35 8:1 /srv/d\xc3\xa9\\040x\xff /srv/d\xc3\xa9\\040x\xff ro - ext4 /dev/sda1 rw\n";
    skp_mountinfo m;
    CHECK(skp_mountinfo_parse(line, &m));
    CHECK(strcmp(m.root, k[0].root) == 0 && strcmp(m.point, "/srv/d\xc3\xa9 x\xff") == 0);
}

static void test_mount_point_names_the_parent(void)
{
    char out[4096];
    CHECK(skp_mount_point("/", out, sizeof out) && strcmp(out, "/") == 0);
    CHECK(skp_mount_point("/tmp/", out, sizeof out) && strcmp(out, "/tmp") == 0);
    /* the last component is not resolved (it may be a dead FUSE mount); the parent is */
    CHECK(skp_mount_point("/proc/self/../self/nonexistent", out, sizeof out));
    CHECK(strncmp(out, "/proc/", 6) == 0 && strcmp(out + strlen(out) - 12, "/nonexistent") == 0);
    CHECK(!skp_mount_point("/a", out, 2));
}

const sk_test sk_tests_pmounts[] = {
    {"mountinfo_line", test_mountinfo_line},
    {"recorded_mounts", test_recorded_mounts},
    {"mount_point_names_the_parent", test_mount_point_names_the_parent},
    SK_TESTS_END,
};
