/* Runs every unit test of native/common and native/secondary; exit status 0 only if all passed. Optional argument: a
 * substring of the test names to run. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sk_test.h"

bool sk_test_failed;

void sk_test_report(const char *file, int line, const char *what)
{
    sk_test_failed = true;
    printf("    %s:%d: %s\n", file, line, what);
}

size_t sk_test_unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = hex; p[0] && p[1] && n < cap; p += 2) {
        unsigned v;
        if (sscanf(p, "%2x", &v) != 1)
            break;
        out[n++] = (uint8_t)v;
    }
    return n;
}

bool sk_test_hex_eq(const uint8_t *p, size_t n, const char *hex)
{
    if (strlen(hex) != 2 * n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char two[3];
        snprintf(two, sizeof two, "%02x", p[i]);
        if (tolower((unsigned char)hex[2 * i]) != two[0] || tolower((unsigned char)hex[2 * i + 1]) != two[1])
            return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    const struct {
        const char *suite;
        const sk_test *tests;
    } suites[] = {
        {"wire", sk_tests_wire},
        {"ops", sk_tests_ops},
        {"hello", sk_tests_hello},
        {"vectors", sk_tests_vectors},
        {"apply", sk_tests_apply},
        {"secondary", sk_tests_secondary},
        {"window", sk_tests_window},
        {"pstatus", sk_tests_pstatus},
        {"journal", sk_tests_journal},
        {"pmounts", sk_tests_pmounts},
        {"verify", sk_tests_verify},
    };
    const char *filter = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0;
    for (size_t s = 0; s < sizeof suites / sizeof suites[0]; s++) {
        for (const sk_test *t = suites[s].tests; t->name; t++) {
            if (filter && !strstr(t->name, filter))
                continue;
            sk_test_failed = false;
            t->fn();
            if (sk_test_failed) {
                printf("FAIL %s.%s\n", suites[s].suite, t->name);
                failed++;
            } else {
                printf("ok   %s.%s\n", suites[s].suite, t->name);
                passed++;
            }
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
