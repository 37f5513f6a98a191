/* The time figures of the primary's status (see pstatus.h). */
#include "pstatus.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "window.h"

/* From 0.25 ms (a write applied on a LAN) to 10 s (a link about to be declared lost): about 2.5x
 * apart, the precision a percentile of the recent past needs on a chart. */
const double skp_lat_bounds[SKP_LAT_BOUNDS] = {0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                               0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0,  30.0};

void skp_latency_observe(skp_latency *h, double seconds)
{
    if (!(seconds >= 0))
        seconds = 0; /* a clock that never goes back; NaN too */
    size_t i = 0;
    while (i < SKP_LAT_BOUNDS && seconds > skp_lat_bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += seconds;
}

int skp_oldest_data(const skp_window *w, double *at)
{
    /* the ring is in ticket order: the first data frame is the oldest (control frames are few and
     * only ahead of it while the link is idle: a PING, a MANIFEST_REQ) */
    for (size_t i = 0; i < w->count; i++) {
        const skp_inflight *e = &w->ring[(w->head + i) % w->cap];
        if (e->kind != SKP_CARRIES_CONTROL) {
            *at = e->at;
            return 1;
        }
    }
    return 0;
}

int skp_lag_seconds(const skp_window *w, double now, double *out)
{
    if (w->lag_unknown)
        return 0;
    bool have = w->behind;
    double oldest = w->behind_since, in_flight;
    if (skp_oldest_data(w, &in_flight) && (!have || in_flight < oldest)) {
        oldest = in_flight;
        have = true;
    }
    *out = have && now > oldest ? now - oldest : 0;
    return 1;
}

static bool add(char *out, size_t cap, size_t *len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static bool add(char *out, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = *len < cap ? vsnprintf(out + *len, cap - *len, fmt, ap) : -1;
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *len)
        return false;
    *len += (size_t)n;
    return true;
}

bool skp_format_number(double x, char *out, size_t cap)
{
    if (!isfinite(x))
        x = 0.0;
    char sci[40];
    int prec = 1;
    for (; prec <= 17; prec++) { /* the shortest %e that reads back to x */
        snprintf(sci, sizeof sci, "%.*e", prec - 1, x);
        if (strtod(sci, NULL) == x)
            break;
    }
    /* sci is [-]D[.DDD]e(+|-)XX: split it into sign, digits and the decimal exponent */
    const char *p = sci;
    bool negative = *p == '-';
    if (negative)
        p++;
    char digits[24];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.' && nd < sizeof digits - 1)
            digits[nd++] = *p;
    digits[nd] = '\0';
    while (nd > 1 && digits[nd - 1] == '0') /* trailing zeros of the mantissa carry nothing */
        digits[--nd] = '\0';
    int exp10 = *p == 'e' ? atoi(p + 1) : 0;
    char text[64];
    size_t n = 0;
    if (negative)
        text[n++] = '-';
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            text[n++] = '0';
            text[n++] = '.';
            for (int i = -1; i > exp10; i--)
                text[n++] = '0';
            for (size_t i = 0; i < nd; i++)
                text[n++] = digits[i];
        } else {
            size_t whole = (size_t)exp10 + 1;
            for (size_t i = 0; i < whole; i++)
                text[n++] = i < nd ? digits[i] : '0';
            text[n++] = '.';
            if (nd > whole)
                for (size_t i = whole; i < nd; i++)
                    text[n++] = digits[i];
            else
                text[n++] = '0';
        }
        text[n] = '\0';
    } else {
        text[n++] = digits[0];
        if (nd > 1) {
            text[n++] = '.';
            for (size_t i = 1; i < nd; i++)
                text[n++] = digits[i];
        }
        snprintf(text + n, sizeof text - n, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    }
    if (strlen(text) >= cap)
        return false;
    memcpy(out, text, strlen(text) + 1);
    return true;
}

int skp_status_fields(const skp_window *w, double now, char *out, size_t cap)
{
    size_t start = strnlen(out, cap), len = start;
    if (start >= cap)
        return -1;
    double lag;
    char number[64];
    bool ok = skp_lag_seconds(w, now, &lag)
                  ? skp_format_number(lag, number, sizeof number) &&
                        add(out, cap, &len, ",\"lag_seconds\":%s", number)
                  : add(out, cap, &len, ",\"lag_seconds\":null");
    const skp_latency *h = &w->ack_latency;
    ok = ok && skp_format_number(h->sum, number, sizeof number) &&
         add(out, cap, &len, ",\"ack_latency_count\":%llu,\"ack_latency_sum\":%s,\"ack_latency_le\":[",
             (unsigned long long)h->count, number);
    for (size_t i = 0; ok && i < SKP_LAT_BOUNDS; i++)
        ok = add(out, cap, &len, "%s%g", i ? "," : "", skp_lat_bounds[i]);
    ok = ok && add(out, cap, &len, "],\"ack_latency_buckets\":[");
    for (size_t i = 0; ok && i <= SKP_LAT_BOUNDS; i++)
        ok = add(out, cap, &len, "%s%llu", i ? "," : "", (unsigned long long)h->counts[i]);
    ok = ok && add(out, cap, &len, "]");
    if (!ok) {
        out[start] = '\0';
        return -1;
    }
    return (int)(len - start);
}
