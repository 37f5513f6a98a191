/* The primary's status time figures (native/primary/pstatus.c): lag and ack latency, fed by the
 * window (window.c) as the link feeds it, with the clock passed in. */
#include <math.h>
#include <stdlib.h>

#include "pstatus.h"
#include "sk_test.h"
#include "window.h"

static bool synced(skp_window *w, double now)
{
    skp_degrade_ok(w);
    if (skp_session_start(w, now) != 0)
        return false;
    skp_session_synced(w);
    return w->state == SKP_IN_SYNC;
}

static bool near(double a, double b)
{
    return fabs(a - b) < 1e-9;
}

static void test_latency_buckets(void)
{
    skp_latency h;
    memset(&h, 0, sizeof h);
    skp_latency_observe(&h, 0.0002);  /* first bucket (<= 0.25 ms) */
    skp_latency_observe(&h, 0.00025); /* on a bound: that bucket (Prometheus' le) */
    skp_latency_observe(&h, 0.003);   /* <= 5 ms */
    skp_latency_observe(&h, 99);      /* above every bound */
    skp_latency_observe(&h, -1);      /* never negative */
    skp_latency_observe(&h, NAN);
    CHECK(h.counts[0] == 4 && h.counts[4] == 1 && h.counts[SKP_LAT_BOUNDS] == 1 && h.count == 6);
    CHECK(near(h.sum, 0.0002 + 0.00025 + 0.003 + 99));
    for (size_t i = 1; i < SKP_LAT_BOUNDS; i++)
        CHECK(skp_lat_bounds[i] > skp_lat_bounds[i - 1]);
}

static void test_ack_latency_from_submit_to_applied(void)
{
    skp_window w;
    CHECK(skp_window_init(&w, 1 << 20, 16, false, 30) == 0);
    CHECK(synced(&w, 0));
    uint64_t a, b, c;
    CHECK(skp_submit(&w, 10, 1.000, &a) == SKP_SEND);
    c = skp_control(&w, 1.001); /* a PING: not an operation of the front */
    CHECK(c == a + 1);
    CHECK(skp_submit(&w, 10, 1.002, &b) == SKP_SEND && b == c + 1);
    CHECK(skp_ack(&w, b, a, a, 1.004) == 0); /* received all, applied the first: 4 ms */
    CHECK(w.ack_latency.count == 1 && near(w.ack_latency.sum, 0.004));
    CHECK(skp_ack(&w, b, b, a, 1.040) == 0); /* the PING and b (38 ms) */
    CHECK(w.ack_latency.count == 2 && near(w.ack_latency.sum, 0.042));
    CHECK(w.ack_latency.counts[4] == 1 && w.ack_latency.counts[7] == 1); /* <= 5 ms, <= 50 ms */
    skp_window_free(&w);
}

static void test_lag_in_sync_is_the_oldest_not_applied(void)
{
    skp_window w;
    CHECK(skp_window_init(&w, 1 << 20, 16, false, 30) == 0);
    double lag;
    CHECK(skp_lag_seconds(&w, 5, &lag) == 0); /* before anything is in sync: not known */
    CHECK(synced(&w, 0));
    CHECK(skp_lag_seconds(&w, 5, &lag) == 1 && lag == 0); /* nothing missing */
    uint64_t ping = skp_control(&w, 6.0);                  /* idle: a PING carries no data */
    CHECK(ping && skp_lag_seconds(&w, 9, &lag) == 1 && lag == 0);
    CHECK(skp_ack(&w, ping, ping, ping, 9.5) == 0 && w.ack_latency.count == 0);
    uint64_t a, b;
    CHECK(skp_submit(&w, 10, 10.0, &a) == SKP_SEND);
    CHECK(skp_submit(&w, 10, 10.5, &b) == SKP_SEND);
    CHECK(skp_lag_seconds(&w, 11.0, &lag) == 1 && near(lag, 1.0));
    CHECK(skp_ack(&w, b, a, a, 11.0) == 0);
    CHECK(skp_lag_seconds(&w, 11.25, &lag) == 1 && near(lag, 0.75));
    CHECK(skp_ack(&w, b, b, b, 11.3) == 0);
    CHECK(skp_lag_seconds(&w, 20, &lag) == 1 && lag == 0);
    skp_window_free(&w);
}

static void test_lag_while_degraded_and_resyncing(void)
{
    skp_window w;
    CHECK(skp_window_init(&w, 1 << 20, 16, false, 30) == 0);
    CHECK(synced(&w, 0));
    uint64_t a, j1, j2, s;
    CHECK(skp_submit(&w, 10, 3.0, &a) == SKP_SEND);
    CHECK(skp_lost(&w) == SKP_EV_DEGRADED); /* a lost in flight: missing since 3.0 */
    skp_degrade_ok(&w);
    CHECK(skp_submit(&w, 10, 4.0, &j1) == SKP_JOURNAL);
    CHECK(skp_submit(&w, 10, 9.0, &j2) == SKP_JOURNAL);
    double lag;
    CHECK(skp_lag_seconds(&w, 10.0, &lag) == 1 && near(lag, 7.0));
    CHECK(skp_session_start(&w, 12.0) == 0); /* a resync: still missing since 3.0 */
    CHECK(skp_submit(&w, 10, 12.5, &s) == SKP_SEND);
    CHECK(skp_ack(&w, s, s, s, 13.0) == 0);
    CHECK(skp_lag_seconds(&w, 14.0, &lag) == 1 && near(lag, 11.0));
    uint64_t r = skp_sync_op(&w, 4096, 13.5); /* a resync frame waits: still since 3.0 */
    CHECK(r && skp_lag_seconds(&w, 14.0, &lag) == 1 && near(lag, 11.0));
    CHECK(skp_ack(&w, r, r, r, 14.0) == 0 && w.ack_latency.count == 1); /* not an operation */
    skp_sync_end_queued(&w);
    skp_session_synced(&w);
    CHECK(skp_lag_seconds(&w, 15.0, &lag) == 1 && lag == 0);
    /* journaled, never lost in flight: missing since the first journaled operation */
    CHECK(skp_lost(&w) == SKP_EV_DEGRADED);
    skp_degrade_ok(&w);
    CHECK(skp_submit(&w, 10, 20.0, &j1) == SKP_JOURNAL);
    CHECK(skp_lag_seconds(&w, 21.5, &lag) == 1 && near(lag, 1.5));
    skp_window_free(&w);
}

static void test_status_fields_text(void)
{
    skp_window w;
    CHECK(skp_window_init(&w, 1 << 20, 16, false, 30) == 0);
    char out[1024] = "\"a\":1";
    CHECK(skp_status_fields(&w, 1, out, sizeof out) > 0);
    CHECK(strncmp(out, "\"a\":1,\"lag_seconds\":null,\"ack_latency_count\":0,\"ack_latency_sum\":0.0,"
                       "\"ack_latency_le\":[0.00025,0.0005,0.001,",
                  strlen("\"a\":1,\"lag_seconds\":null,\"ack_latency_count\":0,\"ack_latency_sum\":0.0,"
                         "\"ack_latency_le\":[0.00025,0.0005,0.001,")) == 0);
    CHECK(strstr(out, ",30],\"ack_latency_buckets\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]") != NULL);
    CHECK(out[strlen(out) - 1] == ']');
    CHECK(synced(&w, 0));
    uint64_t t;
    CHECK(skp_submit(&w, 10, 2.0, &t) == SKP_SEND);
    out[0] = '\0';
    CHECK(skp_status_fields(&w, 2.25, out, sizeof out) > 0);
    CHECK(strncmp(out, ",\"lag_seconds\":0.25,", 20) == 0);
    /* too small: nothing appended, the text before stays whole */
    char small[40] = "\"a\":1";
    CHECK(skp_status_fields(&w, 2.25, small, sizeof small) == -1 && strcmp(small, "\"a\":1") == 0);
    skp_window_free(&w);
}

/* Python's repr of the same doubles (json.dumps writes floats so): the channel's round trip. */
static void test_numbers_as_python_writes_them(void)
{
    static const struct {
        double x;
        const char *text;
    } cases[] = {
        {0.0, "0.0"},         {-0.0, "-0.0"},        {0.25, "0.25"},         {1.0, "1.0"},
        {100000.0, "100000.0"}, {123.456, "123.456"}, {0.0001, "0.0001"},     {1.5e-05, "1.5e-05"},
        {1e-05, "1e-05"},     {0.1, "0.1"},          {1e16, "1e+16"},        {1.2345e+17, "1.2345e+17"},
        {9999999999999998.0, "9999999999999998.0"},  {0.000123456789, "0.000123456789"},
        {1.0 / 3.0, "0.3333333333333333"},           {2.0 / 3.0 * 1e-7, "6.666666666666665e-08"},
        {NAN, "0.0"},
    };
    char out[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(skp_format_number(cases[i].x, out, sizeof out));
        CHECK(strcmp(out, cases[i].text) == 0);
    }
    char small[3];
    CHECK(!skp_format_number(0.25, small, sizeof small));
}

const sk_test sk_tests_pstatus[] = {
    {"numbers_as_python_writes_them", test_numbers_as_python_writes_them},
    {"latency_buckets", test_latency_buckets},
    {"ack_latency_from_submit_to_applied", test_ack_latency_from_submit_to_applied},
    {"lag_in_sync_is_the_oldest_not_applied", test_lag_in_sync_is_the_oldest_not_applied},
    {"lag_while_degraded_and_resyncing", test_lag_while_degraded_and_resyncing},
    {"status_fields_text", test_status_fields_text},
    {NULL, NULL},
};
