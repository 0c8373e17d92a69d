/* Persistent counters: the miss reasons, evictions and time saved have
 * names, and kc_store_counters_zero resets what is stored and buffered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sys/stat.h>
#include <unistd.h>

#include "kc_testutil.h"
#include "kcache/errors.h"
#include "kcache/store.h"

typedef kct_store_fx_t fixture_t;

static int setup(void **state)
{
    return kct_store_fx_setup(state, "test_counters");
}

static int teardown(void **state)
{
    return kct_store_fx_teardown(state);
}

static uint64_t counter(kc_store_t *st, kc_counter_t c)
{
    kc_store_stats_t s;
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    return s.counters[c];
}

static void test_every_counter_has_a_distinct_name(void **state)
{
    (void)state;
    for (int a = 0; a < KC_COUNTER_COUNT_; a++) {
        assert_non_null(kc_counter_name(a));
        for (int b = 0; b < a; b++)
            assert_string_not_equal(kc_counter_name(a), kc_counter_name(b));
    }
    assert_null(kc_counter_name(KC_COUNTER_COUNT_));
    assert_null(kc_counter_name(-1));
    /* The names are the meta record names: they may never change. */
    assert_string_equal(kc_counter_name(KC_COUNTER_HITS), "hits");
    assert_string_equal(kc_counter_name(KC_COUNTER_TUNES), "tunes");
    assert_string_equal(kc_counter_name(KC_COUNTER_MISS_NO_TUNING), "miss_no_tuning");
    assert_string_equal(kc_counter_name(KC_COUNTER_MISS_BUILD_UNUSABLE),
                        "miss_build_unusable");
    assert_string_equal(kc_counter_name(KC_COUNTER_COMPILE_US_SAVED), "compile_us_saved");
    assert_string_equal(kc_counter_name(KC_COUNTER_TUNE_US_SAVED), "tune_us_saved");
}

static void test_new_counters_persist_across_handles(void **state)
{
    fixture_t *f = *state;

    kc_store_count(f->st, KC_COUNTER_MISS_NO_TUNING, 3);
    kc_store_count(f->st, KC_COUNTER_COMPILE_US_SAVED, 1500000);
    kc_store_count(f->st, KC_COUNTER_TUNE_US_SAVED, 2500000);
    kc_store_close(f->st);
    f->st = NULL;
    assert_int_equal(kc_store_open(f->root, NULL, &f->st), KC_OK);
    assert_int_equal(counter(f->st, KC_COUNTER_MISS_NO_TUNING), 3);
    assert_int_equal(counter(f->st, KC_COUNTER_COMPILE_US_SAVED), 1500000);
    assert_int_equal(counter(f->st, KC_COUNTER_TUNE_US_SAVED), 2500000);
    assert_int_equal(counter(f->st, KC_COUNTER_MISS_BUILD_UNUSABLE), 0);
}

static void test_zeroing_resets_stored_and_buffered_counters(void **state)
{
    fixture_t *f = *state;

    kc_store_count(f->st, KC_COUNTER_HITS, 5);
    kc_store_count(f->st, KC_COUNTER_TUNE_US_SAVED, 77);
    assert_int_equal(kc_store_flush(f->st), KC_OK);
    kc_store_count(f->st, KC_COUNTER_HITS, 2); /* still buffered */
    assert_int_equal(counter(f->st, KC_COUNTER_HITS), 7);

    assert_int_equal(kc_store_counters_zero(f->st), KC_OK);
    for (int c = 0; c < KC_COUNTER_COUNT_; c++)
        assert_int_equal(counter(f->st, (kc_counter_t)c), 0);

    /* Counting starts again from zero, and that survives a reopen. */
    kc_store_count(f->st, KC_COUNTER_HITS, 1);
    kc_store_close(f->st);
    f->st = NULL;
    assert_int_equal(kc_store_open(f->root, NULL, &f->st), KC_OK);
    assert_int_equal(counter(f->st, KC_COUNTER_HITS), 1);
    assert_int_equal(counter(f->st, KC_COUNTER_TUNE_US_SAVED), 0);
}

static void test_zeroing_a_read_only_store_is_refused(void **state)
{
    fixture_t *f = *state;
    kc_store_opts_t ro = {.size = sizeof(kc_store_opts_t), .flags = KC_STORE_RDONLY};
    kc_store_t *st = NULL;

    kc_store_count(f->st, KC_COUNTER_HITS, 4);
    assert_int_equal(kc_store_flush(f->st), KC_OK);
    kc_store_close(f->st);
    f->st = NULL;
    assert_int_equal(kc_store_open(f->root, &ro, &st), KC_OK);
    assert_int_equal(kc_store_counters_zero(st), KC_EREADONLY);
    assert_int_equal(counter(st, KC_COUNTER_HITS), 4);
    kc_store_close(st);
    assert_int_equal(kc_store_counters_zero(NULL), KC_EINVAL);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_counter_has_a_distinct_name),
        T(test_new_counters_persist_across_handles),
        T(test_zeroing_resets_stored_and_buffered_counters),
        T(test_zeroing_a_read_only_store_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
