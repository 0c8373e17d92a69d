/* kc_size_parse and kc_duration_parse: every accepted form, and the
 * rejections (empty, negative, garbage, overflow). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kcache/store.h"

#define KI 1024ULL
#define GI (KI * KI * KI)

typedef struct ok_case {
    const char *text;
    uint64_t value;
} ok_case_t;

static void expect_ok(int (*parse)(const char *, uint64_t *), const ok_case_t *c,
                      size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t v = 12345;
        print_message("%s\n", c[i].text);
        assert_int_equal(parse(c[i].text, &v), KC_OK);
        assert_int_equal(v, c[i].value);
    }
}

static void expect_bad(int (*parse)(const char *, uint64_t *), const char *const *bad,
                       size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t v = 12345;
        print_message("'%s'\n", bad[i]);
        assert_int_equal(parse(bad[i], &v), KC_EINVAL);
        assert_int_equal(v, 12345); /* untouched */
    }
}

static void test_size_bare_number_is_gib(void **state)
{
    static const ok_case_t ok[] = {
        {"0", 0},
        {"5", 5 * GI},
        {"1.5", 3 * GI / 2},
        {"0.5", GI / 2},
        {"007", 7 * GI},
        {"0.0", 0},
        {"16777215", 16777215ULL * GI},
    };
    (void)state;
    expect_ok(kc_size_parse, ok, sizeof ok / sizeof *ok);
}

static void test_size_decimal_units(void **state)
{
    static const ok_case_t ok[] = {
        {"1K", 1000ULL},          {"1k", 1000ULL},           {"1KB", 1000ULL},
        {"1kb", 1000ULL},         {"500M", 500000000ULL},    {"500MB", 500000000ULL},
        {"2G", 2000000000ULL},    {"1GB", 1000000000ULL},    {"1.5G", 1500000000ULL},
        {"2t", 2000000000000ULL}, {"3TB", 3000000000000ULL}, {"0.001K", 1ULL},
        {"0.0001K", 0ULL}, /* a fraction of a byte is dropped */
    };
    (void)state;
    expect_ok(kc_size_parse, ok, sizeof ok / sizeof *ok);
}

static void test_size_binary_units(void **state)
{
    static const ok_case_t ok[] = {
        {"1Ki", KI},          {"1KiB", KI},          {"1kib", KI},
        {"64Ki", 64 * KI},    {"1Mi", KI * KI},      {"1MiB", KI * KI},
        {"1Gi", GI},          {"1GiB", GI},          {"1.5GiB", 3 * GI / 2},
        {"2Ti", 2 * GI * KI}, {"2TIB", 2 * GI * KI}, {"0.5Ki", 512},
    };
    (void)state;
    expect_ok(kc_size_parse, ok, sizeof ok / sizeof *ok);
}

static void test_size_bytes(void **state)
{
    static const ok_case_t ok[] = {
        {"0B", 0},
        {"1B", 1},
        {"4096B", 4096},
        {"12345b", 12345},
        {"18446744073709551615B", UINT64_MAX},
    };
    (void)state;
    expect_ok(kc_size_parse, ok, sizeof ok / sizeof *ok);
}

static void test_size_rejects(void **state)
{
    static const char *const bad[] = {
        "",
        "-1",
        "-0",
        "+1",
        " 5M",
        "5M ",
        "5 M",
        "M",
        "K1",
        "1x",
        "12Q",
        "1.",
        "1.M",
        ".5",
        "1..5",
        "1e3",
        "0x10",
        "1iB",
        "1i",
        "1KiBB",
        "1BB",
        "1KK",
        "1Kb2",
        "lots",
        "1,5G",
        "1P",
        "1KIBs",
        "99999999999999999999",
        "18446744073709551616B",
        "20000000T",
        "17179869184",
        "16777216Ti",
    };
    uint64_t v;

    (void)state;
    expect_bad(kc_size_parse, bad, sizeof bad / sizeof *bad);
    assert_int_equal(kc_size_parse(NULL, &v), KC_EINVAL);
    assert_int_equal(kc_size_parse("1G", NULL), KC_EINVAL);
}

static void test_duration_forms(void **state)
{
    static const ok_case_t ok[] = {
        {"0", 0},           {"3600", 3600},      {"3600s", 3600},
        {"3600S", 3600},    {"45m", 45 * 60},    {"12h", 12 * 3600},
        {"1.5h", 5400},     {"30d", 30 * 86400}, {"30D", 30 * 86400},
        {"2w", 14 * 86400}, {"0.5d", 43200},     {"1.9s", 1},
    };
    (void)state;
    expect_ok(kc_duration_parse, ok, sizeof ok / sizeof *ok);
}

static void test_duration_rejects(void **state)
{
    static const char *const bad[] = {
        "",
        "-1",
        "-1d",
        "+1d",
        "d",
        "30x",
        "3y",
        "1.",
        ".5h",
        " 1d",
        "1d ",
        "1dd",
        "1 d",
        "1hm",
        "1M0",
        "lots",
        "1e3",
        "99999999999999999999",
        "99999999999999w",
    };
    uint64_t v;

    (void)state;
    expect_bad(kc_duration_parse, bad, sizeof bad / sizeof *bad);
    assert_int_equal(kc_duration_parse(NULL, &v), KC_EINVAL);
    assert_int_equal(kc_duration_parse("1d", NULL), KC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_bare_number_is_gib),
        cmocka_unit_test(test_size_decimal_units),
        cmocka_unit_test(test_size_binary_units),
        cmocka_unit_test(test_size_bytes),
        cmocka_unit_test(test_size_rejects),
        cmocka_unit_test(test_duration_forms),
        cmocka_unit_test(test_duration_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
