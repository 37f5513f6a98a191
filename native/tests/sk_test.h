/* A plain C test runner: tests are functions listed in per-file tables; a CHECK that fails reports
 * file:line and ends that test. test_main.c runs every table and prints "N passed, M failed". */
#ifndef SK_TEST_H
#define SK_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sk_err.h"

typedef struct sk_test {
    const char *name;
    void (*fn)(void);
} sk_test;

extern bool sk_test_failed;
void sk_test_report(const char *file, int line, const char *what);

#define CHECK(cond)                                          \
    do {                                                     \
        if (!(cond)) {                                       \
            sk_test_report(__FILE__, __LINE__, #cond);       \
            return;                                          \
        }                                                    \
    } while (0)

/* expr must return `code`; on mismatch the reason of `e` is shown. */
#define CHECK_RC(expr, code, e)                                                                     \
    do {                                                                                            \
        int rc_ = (expr);                                                                           \
        if (rc_ != (code)) {                                                                        \
            char msg_[512];                                                                         \
            snprintf(msg_, sizeof msg_, "%s returned %s, expected %s (%s)", #expr, sk_code_name(rc_), \
                     sk_code_name(code), (e)->reason);                                              \
            sk_test_report(__FILE__, __LINE__, msg_);                                               \
            return;                                                                                 \
        }                                                                                           \
    } while (0)

#define CHECK_OK(expr, e) CHECK_RC(expr, SK_OK, e)

#define CHECK_REASON(e, needle) CHECK(strstr((e)->reason, (needle)) != NULL)

/* Hex helpers for the vectors. */
size_t sk_test_unhex(const char *hex, uint8_t *out, size_t cap);
bool sk_test_hex_eq(const uint8_t *p, size_t n, const char *hex);

#define SK_TESTS_END {NULL, NULL}

extern const sk_test sk_tests_wire[];
extern const sk_test sk_tests_ops[];
extern const sk_test sk_tests_hello[];
extern const sk_test sk_tests_vectors[];
extern const sk_test sk_tests_apply[];
extern const sk_test sk_tests_secondary[];
extern const sk_test sk_tests_window[];
extern const sk_test sk_tests_pstatus[];
extern const sk_test sk_tests_verify[];
extern const sk_test sk_tests_journal[];
extern const sk_test sk_tests_pmounts[];

#endif
