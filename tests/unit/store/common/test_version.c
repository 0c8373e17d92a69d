/* The version macros and functions (kcache/version.h): the library reports
 * the version it was built as, the number and the string agree, and the
 * number is encoded as zstd encodes its own. The header matching
 * project(VERSION) is checked when the build is configured. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kcache/version.h"

static void test_library_reports_the_headers_version(void **state)
{
    (void)state;
    assert_int_equal(kc_version_number(), KC_VERSION_NUMBER);
    assert_non_null(kc_version());
    assert_string_equal(kc_version(), KC_VERSION_STRING);
    /* Static: the same pointer every time. */
    assert_ptr_equal(kc_version(), kc_version());
}

static void test_number_is_major_minor_patch(void **state)
{
    (void)state;
    assert_int_equal(KC_VERSION_NUMBER, KC_VERSION_MAJOR * 10000 +
                                            KC_VERSION_MINOR * 100 + KC_VERSION_PATCH);
    assert_true(KC_VERSION_MINOR < 100 && KC_VERSION_PATCH < 100);
    assert_int_equal(kc_version_number() / 10000, KC_VERSION_MAJOR);
    assert_int_equal(kc_version_number() / 100 % 100, KC_VERSION_MINOR);
    assert_int_equal(kc_version_number() % 100, KC_VERSION_PATCH);
}

static void test_string_spells_the_number(void **state)
{
    (void)state;
    unsigned major = 99, minor = 99, patch = 99;
    char tail = 0;
    assert_int_equal(sscanf(kc_version(), "%u.%u.%u%c", &major, &minor, &patch, &tail),
                     3);
    assert_int_equal(major * 10000 + minor * 100 + patch, kc_version_number());
    char expect[32];
    snprintf(expect, sizeof expect, "%d.%d.%d", KC_VERSION_MAJOR, KC_VERSION_MINOR,
             KC_VERSION_PATCH);
    assert_string_equal(kc_version(), expect);
}

/* Usable in the preprocessor, as a program that needs a newer call tests it. */
#if KC_VERSION_NUMBER < 100
#error "KC_VERSION_NUMBER must be usable in #if"
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_library_reports_the_headers_version),
        cmocka_unit_test(test_number_is_major_minor_patch),
        cmocka_unit_test(test_string_spells_the_number),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
