/* Error codes: every code in the X-macro list has its name and message, and
 * no two share a number. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kcache/errors.h"

typedef struct code {
    int num;
    const char *name;
    const char *msg;
} code_t;

static const code_t codes[] = {
#define CODE_ENTRY(name, num, msg) {num, #name, msg},
    KC_ERRNO_MAP(CODE_ENTRY)
#undef CODE_ENTRY
};
#define N_CODES (sizeof(codes) / sizeof(codes[0]))

static void test_every_code_has_its_name_and_message(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_CODES; i++) {
        const char *name = kc_err_name(codes[i].num);
        assert_non_null(name);
        assert_string_equal(name, codes[i].name);
        assert_string_equal(kc_strerror(codes[i].num), codes[i].msg);
        assert_string_not_equal(kc_strerror(codes[i].num), "unknown error");
    }
    assert_string_equal(kc_err_name(KC_OK), "KC_OK");
    assert_string_not_equal(kc_strerror(KC_OK), "unknown error");
}

static void test_every_code_is_negative_and_unique(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_CODES; i++) {
        assert_true(codes[i].num < 0);
        for (size_t j = i + 1; j < N_CODES; j++) {
            assert_int_not_equal(codes[i].num, codes[j].num);
            assert_string_not_equal(codes[i].name, codes[j].name);
        }
    }
}

static void test_unknown_codes_have_no_name_and_generic_text(void **state)
{
    (void)state;
    int lowest = 0;
    for (size_t i = 0; i < N_CODES; i++)
        if (codes[i].num < lowest)
            lowest = codes[i].num;
    const int unknown[] = {1, 42, lowest - 1, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        assert_null(kc_err_name(unknown[i]));
        assert_string_equal(kc_strerror(unknown[i]), "unknown error");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_has_its_name_and_message),
        cmocka_unit_test(test_every_code_is_negative_and_unique),
        cmocka_unit_test(test_unknown_codes_have_no_name_and_generic_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
