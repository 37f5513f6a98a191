/* The primary's window (native/primary/window.c) and payload mapping (pwire.c): pure decisions. */
#include <errno.h>

#include "journal.h"
#include "pwire.h"
#include "sk_ops.h"
#include "sk_test.h"
#include "sk_wire.h"
#include "window.h"

static bool in_sync(skp_window *w)
{
    skp_degrade_ok(w);
    if (skp_session_start(w, 0) != 0)
        return false;
    skp_session_synced(w);
    return w->state == SKP_IN_SYNC;
}

static void test_starts_held_until_degrade_ok(void)
{
    skp_window w;
    CHECK(skp_window_init(&w, 1 << 20, 16, false, 30) == 0);
    uint64_t t;
    CHECK(skp_submit(&w, 10, 0, &t) == SKP_JOURNAL && t == 1);
    CHECK(skp_barrier(&w, t) == SKP_WAIT); /* nothing acknowledged alone before safekitd says so */
    CHECK(!skp_may_connect(&w));
    skp_degrade_ok(&w);
    CHECK(skp_barrier(&w, t) == 0);
    CHECK(skp_may_connect(&w) && w.dirty);
    skp_window_free(&w);
}

static void test_barrier_waits_for_applied_or_durable(void)
{
    for (int none = 0; none < 2; none++) {
        skp_window w;
        CHECK(skp_window_init(&w, 1 << 20, 16, none, 30) == 0);
        uint64_t pre;
        skp_submit(&w, 1, 0, &pre); /* journaled before the session */
        skp_degrade_ok(&w);
        CHECK(skp_session_start(&w, 0) == 0 && w.first == 2);
        uint64_t a, b;
        CHECK(skp_submit(&w, 100, 0, &a) == SKP_SEND && a == 2);
        CHECK(skp_barrier(&w, a) == 0); /* resync: local only */
        skp_session_synced(&w);
        CHECK(skp_barrier(&w, pre) == 0);
        CHECK(skp_submit(&w, 100, 0, &b) == SKP_SEND && b == 3);
        CHECK(skp_barrier(&w, b) == SKP_WAIT);
        CHECK(skp_ack(&w, 3, 2, 2, 1) == 0);
        CHECK(skp_barrier(&w, b) == SKP_WAIT);
        CHECK(skp_ack(&w, 3, 3, 2, 1) == 0);
        CHECK(skp_barrier(&w, b) == (none ? SKP_WAIT : 0));
        CHECK(skp_ack(&w, 3, 3, 3, 1) == 0);
        CHECK(skp_barrier(&w, b) == 0);
        CHECK(w.ops == 0 && w.bytes == 0);
        skp_window_free(&w);
    }
}

static void test_in_sync_from_sync_end_queued(void)
{
    /* the secondary marks itself in sync when it applies SYNC_END: a write after SYNC_END must not
     * be acknowledged locally, and a loss before SYNC_END's ACK is the loss of an in-sync copy */
    for (int lose = 0; lose < 2; lose++) {
        skp_window w;
        CHECK(skp_window_init(&w, 1 << 20, 16, false, 30) == 0);
        skp_degrade_ok(&w);
        CHECK(skp_session_start(&w, 0) == 0);
        uint64_t a, b;
        CHECK(skp_submit(&w, 10, 0, &a) == SKP_SEND);
        CHECK(skp_barrier(&w, a) == 0); /* during the resync: local */
        uint64_t end = skp_sync_op(&w, 0, 0);
        CHECK(end == a + 1);
        skp_sync_end_queued(&w);
        CHECK(skp_submit(&w, 10, 0, &b) == SKP_SEND && b == end + 1);
        CHECK(skp_barrier(&w, b) == SKP_WAIT);
        if (lose) {
            CHECK(skp_lost(&w) == SKP_EV_DEGRADED);
            CHECK(skp_barrier(&w, b) == SKP_WAIT); /* held until safekitd's degrade_ok */
            skp_degrade_ok(&w);
            CHECK(skp_barrier(&w, b) == 0);
        } else {
            CHECK(skp_ack(&w, end, end, end, 1) == 0);
            skp_session_synced(&w);
            CHECK(skp_barrier(&w, b) == SKP_WAIT && !w.dirty);
            CHECK(skp_ack(&w, b, b, b, 1) == 0);
            CHECK(skp_barrier(&w, b) == 0);
        }
        skp_window_free(&w);
    }
}

static void test_window_full_blocks_submit(void)
{
    skp_window w;
    CHECK(skp_window_init(&w, 1000, 3, false, 30) == 0);
    CHECK(in_sync(&w));
    uint64_t t;
    CHECK(skp_has_room(&w, 5000)); /* empty: anything goes, alone */
    CHECK(skp_submit(&w, 600, 0, &t) == SKP_SEND);
    CHECK(!skp_has_room(&w, 600) && skp_has_room(&w, 400)); /* what a large submit waits for */
    CHECK(skp_submit(&w, 600, 0, &t) == SKP_FULL); /* bytes */
    CHECK(skp_submit(&w, 300, 0, &t) == SKP_SEND);
    CHECK(skp_submit(&w, 0, 0, &t) == SKP_SEND);
    CHECK(!skp_has_room(&w, 0));
    CHECK(skp_submit(&w, 0, 0, &t) == SKP_FULL); /* ops */
    CHECK(skp_ack(&w, 1, 1, 1, 0) == 0);         /* frees 600 bytes, one op */
    CHECK(skp_submit(&w, 600, 0, &t) == SKP_SEND && t == 4);
    /* one operation larger than the window still goes alone */
    CHECK(skp_ack(&w, 4, 4, 4, 0) == 0 && w.ops == 0);
    CHECK(skp_submit(&w, 5000, 0, &t) == SKP_SEND);
    skp_window_free(&w);
}

static void test_impossible_acks_refused(void)
{
    skp_window w;
    CHECK(skp_window_init(&w, 1 << 20, 16, false, 30) == 0);
    CHECK(in_sync(&w));
    uint64_t t;
    skp_submit(&w, 1, 0, &t);
    skp_submit(&w, 1, 0, &t);
    CHECK(skp_ack(&w, 3, 3, 3, 0) == -1); /* never sent */
    CHECK(skp_ack(&w, 1, 2, 1, 0) == -1); /* applied > received */
    CHECK(skp_ack(&w, 2, 1, 2, 0) == -1); /* durable > applied */
    CHECK(skp_ack(&w, 2, 2, 1, 0) == 0);
    CHECK(skp_ack(&w, 1, 1, 1, 0) == -1); /* backwards */
    skp_window_free(&w);
}

static void test_stall_and_loss_hold_then_degrade(void)
{
    skp_window w;
    CHECK(skp_window_init(&w, 1 << 20, 16, false, 2.0) == 0);
    CHECK(in_sync(&w));
    CHECK(!skp_stalled(&w, 100)); /* nothing in flight */
    uint64_t t;
    skp_submit(&w, 10, 100, &t);
    CHECK(!skp_stalled(&w, 101.9));
    CHECK(skp_stalled(&w, 102.1));
    CHECK(skp_lost(&w) == SKP_EV_DEGRADED && w.state == SKP_DEGRADING && w.dirty);
    CHECK(skp_barrier(&w, t) == SKP_WAIT); /* held: never acknowledged alone */
    uint64_t t2;
    CHECK(skp_submit(&w, 10, 103, &t2) == SKP_JOURNAL && t2 == t + 1);
    CHECK(!skp_may_connect(&w));
    skp_degrade_ok(&w);
    CHECK(skp_barrier(&w, t) == 0 && skp_barrier(&w, t2) == 0);
    CHECK(skp_lost(&w) == SKP_EV_NONE);
    skp_window_free(&w);
}

static void test_fence_and_close(void)
{
    skp_window w;
    CHECK(skp_window_init(&w, 1 << 20, 16, false, 30) == 0);
    CHECK(in_sync(&w));
    uint64_t a, b;
    skp_submit(&w, 1, 0, &a);
    skp_submit(&w, 1, 0, &b);
    CHECK(skp_ack(&w, 1, 1, 1, 0) == 0);
    skp_close(&w);
    CHECK(skp_barrier(&w, a) == 0);    /* acknowledged before the stop */
    CHECK(skp_barrier(&w, b) == -EIO); /* stopping without it */
    CHECK(skp_lost(&w) == SKP_EV_DEGRADED && skp_barrier(&w, a) == 0);
    skp_fence(&w);
    CHECK(skp_barrier(&w, a) == -EIO); /* fenced: nothing returns */
    skp_degrade_ok(&w);
    CHECK(skp_barrier(&w, b) == -EIO);
    skp_window_free(&w);
}

static void test_resync_loss_disconnects_and_controls_count(void)
{
    skp_window w;
    CHECK(skp_window_init(&w, 1 << 20, 1, false, 30) == 0);
    skp_degrade_ok(&w);
    CHECK(skp_control(&w, 0) == 0); /* no session: nothing to number */
    CHECK(skp_session_start(&w, 0) == 0);
    uint64_t c1 = skp_control(&w, 0), t;
    CHECK(c1 == 1);
    CHECK(skp_submit(&w, 1, 0, &t) == SKP_FULL); /* max_ops 1: the control frame counts */
    for (int i = 0; i < 3000; i++) /* the ring grows for control frames */
        CHECK(skp_control(&w, 0) == c1 + 1 + (uint64_t)i);
    CHECK(skp_ack(&w, 3001, 3001, 3001, 0) == 0 && w.ops == 0);
    CHECK(skp_lost(&w) == SKP_EV_DISCONNECTED && w.state == SKP_DEGRADED);
    CHECK(skp_may_connect(&w));
    skp_window_free(&w);
}

static void test_ops_map_to_v2_payloads(void)
{
    uint8_t buf[256];
    size_t len, size;
    sk_err e = {0, ""};
    sk_op out;
    skp_op link = {.type = 24, .path = "a/b", .path_len = 3, .path2 = "c", .path2_len = 1};
    CHECK_OK(skp_op_size(&link, &size, &e), &e);
    CHECK_OK(skp_op_encode(&link, buf, sizeof buf, &len, &e), &e);
    CHECK(len == size);
    CHECK_OK(sk_op_decode(SK_T_LINK, 0, buf, len, &out, &e), &e);
    CHECK(out.path.len == 3 && out.path2.len == 1 && out.path2.ptr[0] == 'c');
    skp_op fa = {.type = 13, .path = "f", .path_len = 1, .flags = 3, .offset = 4096, .length = 8192};
    CHECK_OK(skp_op_encode(&fa, buf, sizeof buf, &len, &e), &e);
    CHECK_OK(sk_op_decode(SK_T_FALLOCATE, 0, buf, len, &out, &e), &e);
    CHECK(out.mode == 3 && out.offset == 4096 && out.length == 8192);
    skp_op sym = {.type = 21, .path = "l", .path_len = 1, .value = "tgt", .value_len = 3, .uid = 5, .gid = 6};
    CHECK_OK(skp_op_encode(&sym, buf, sizeof buf, &len, &e), &e);
    CHECK_OK(sk_op_decode(SK_T_SYMLINK, 0, buf, len, &out, &e), &e);
    CHECK(out.target.len == 3 && out.uid == 5 && out.gid == 6);
    skp_op fs = {.type = 23, .path = "", .path_len = 0, .flags = 1};
    CHECK(skp_op_frame_flags(&fs) == (SK_F_ACK | SK_F_DATASYNC));
    fs.flags = 0;
    CHECK(skp_op_frame_flags(&fs) == SK_F_ACK);
    CHECK(skp_op_frame_flags(&link) == 0);
    skp_op sa = {.type = 14, .path = "f", .path_len = 1, .mask = 16, .mode = 0777, .mtime_ns = 42, .atime_ns = 7};
    CHECK_OK(skp_op_encode(&sa, buf, sizeof buf, &len, &e), &e);
    CHECK_OK(sk_op_decode(SK_T_SETATTR, 0, buf, len, &out, &e), &e);
    CHECK(out.mask == 16 && out.mtime_ns == 42 && out.mode == 0 && out.atime_ns == 0); /* unmasked: 0 */
    skp_op bad = {.type = 19, .path = "../x", .path_len = 4};
    CHECK(skp_op_size(&bad, &size, &e) == SK_EPATH);
    /* REMOVE_TREE is the front's too (a rename into the replicated paths, before the object) */
    skp_op rt = {.type = 31, .path = "x", .path_len = 1};
    CHECK_OK(skp_op_size(&rt, &size, &e), &e);
    CHECK_OK(skp_op_encode(&rt, buf, sizeof buf, &len, &e), &e);
    CHECK_OK(sk_op_decode(SK_T_REMOVE_TREE, 0, buf, len, &out, &e), &e);
    CHECK(out.path.len == 1 && out.path.ptr[0] == 'x');
    skp_op cx = {.type = 35, .path = "x", .path_len = 1};
    CHECK(skp_op_size(&cx, &size, &e) == SK_ETYPE); /* CLEAR_XATTRS: the resynchronisation's */
    skp_mark mk[2];
    CHECK(skp_marks_of(&rt, mk) == 1 && mk[0].kind == SKP_M_REMOVED);
}

static void test_answers_decoded(void)
{
    uint8_t buf[4096];
    size_t len;
    sk_err e = {0, ""};
    skp_answer a;
    sk_ack ack = {9, 8, 7};
    CHECK_OK(sk_ack_encode(&ack, buf, sizeof buf, &len, &e), &e);
    CHECK_OK(skp_answer_decode(SK_T_ACK, 0, buf, len, &a, &e), &e);
    CHECK(a.kind == SKP_A_ACK && a.received == 9 && a.applied == 8 && a.durable == 7);
    sk_error_msg m = {5, 28, sk_bytes_of("disk full", 9)};
    CHECK_OK(sk_error_encode(&m, buf, sizeof buf, &len, &e), &e);
    CHECK_OK(skp_answer_decode(SK_T_ERROR, 0, buf, len, &a, &e), &e);
    CHECK(a.kind == SKP_A_ERROR && a.err_errno == 28 && strcmp(a.reason, "disk full") == 0);
    sk_manifest_writer w;
    sk_manifest_writer_init(&w, buf, sizeof buf);
    sk_entry root = {.path = sk_bytes_of("", 0), .kind = 'd', .mode = 040755};
    sk_entry file = {.path = sk_bytes_of("f", 1), .kind = 'f', .mode = 0100644, .size = 3};
    CHECK_OK(sk_manifest_writer_add(&w, &root, &e), &e);
    CHECK_OK(sk_manifest_writer_add(&w, &file, &e), &e);
    CHECK_OK(sk_manifest_writer_finish(&w, &len, &e), &e);
    CHECK_OK(skp_answer_decode(SK_T_MANIFEST, SK_F_LAST, buf, len, &a, &e), &e);
    CHECK(a.kind == SKP_A_MANIFEST && a.entries == 2 && a.non_root == 1 && a.last);
    CHECK(skp_answer_decode(SK_T_ACK, 0, buf, 3, &a, &e) < 0);
    CHECK(skp_answer_decode(SK_T_WRITE, 0, buf, 3, &a, &e) == SK_ETYPE);
}

const sk_test sk_tests_window[] = {
    {"in sync from the moment SYNC_END is queued", test_in_sync_from_sync_end_queued},
    {"starts_held_until_degrade_ok", test_starts_held_until_degrade_ok},
    {"barrier_waits_for_applied_or_durable", test_barrier_waits_for_applied_or_durable},
    {"window_full_blocks_submit", test_window_full_blocks_submit},
    {"impossible_acks_refused", test_impossible_acks_refused},
    {"stall_and_loss_hold_then_degrade", test_stall_and_loss_hold_then_degrade},
    {"fence_and_close", test_fence_and_close},
    {"resync_loss_disconnects_and_controls_count", test_resync_loss_disconnects_and_controls_count},
    {"ops_map_to_v2_payloads", test_ops_map_to_v2_payloads},
    {"answers_decoded", test_answers_decoded},
    SK_TESTS_END,
};
