/* Usage stamps past the automatic-flush threshold reach the database while
 * the caller makes no call (the store's flusher thread writes them); close
 * joins the flusher and writes what is left. That the flush no longer runs
 * on the caller's hit path is a matter of time, shown by kcache_bench_hits
 * (BENCHMARKS.md), not asserted here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <time.h>

#include "kc_testutil.h"
#include "kcache/errors.h"
#include "kcache/store.h"

typedef kct_store_fx_t fixture_t;

static int setup(void **state)
{
    return kct_store_fx_setup(state, "test_usage_flush");
}

static int teardown(void **state)
{
    return kct_store_fx_teardown(state);
}

static uint64_t usage_records(kc_store_t *st)
{
    kc_store_stats_t s;
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    return s.records[KC_REC_USAGE];
}

static kc_key_t key_of(uint32_t i)
{
    kc_key_t k;
    memset(&k, 0, sizeof(k));
    memcpy(k.b, &i, sizeof(i));
    k.b[15] = 0x5a;
    return k;
}

static void
test_stamps_past_the_threshold_reach_the_database_without_a_flush_call(void **state)
{
    fixture_t *f = *state;
    const uint32_t n = 4096 + 100; /* past the automatic flush */

    for (uint32_t i = 0; i < n; i++) {
        kc_key_t k = key_of(i);
        assert_int_equal(kc_store_touch(f->st, KC_REC_BLOB, &k), KC_OK);
    }
    /* The caller is idle: the stamps arrive anyway (bounded wait; no time
     * is asserted, only that the flusher did the work). */
    uint64_t seen = 0;
    for (int tries = 0; tries < 2000 && seen < 4096; tries++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        seen = usage_records(f->st);
    }
    assert_true(seen >= 4096);
    assert_true(seen <= n);
}

static void test_close_writes_every_pending_stamp(void **state)
{
    fixture_t *f = *state;
    const uint32_t n = 3 * 4096 + 7;

    for (uint32_t i = 0; i < n; i++) {
        kc_key_t k = key_of(i);
        assert_int_equal(kc_store_touch(f->st, KC_REC_BUILD, &k), KC_OK);
    }
    kc_store_close(f->st);
    assert_int_equal(kc_store_open(f->root, NULL, &f->st), KC_OK);
    assert_int_equal(usage_records(f->st), n);
}

static void test_close_writes_a_stamp_below_the_threshold(void **state)
{
    fixture_t *f = *state;
    kc_key_t k = key_of(1);
    assert_int_equal(kc_store_touch(f->st, KC_REC_BLOB, &k), KC_OK);
    kc_store_close(f->st);
    assert_int_equal(kc_store_open(f->root, NULL, &f->st), KC_OK);
    assert_int_equal(usage_records(f->st), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_stamps_past_the_threshold_reach_the_database_without_a_flush_call, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_close_writes_every_pending_stamp, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_close_writes_a_stamp_below_the_threshold,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
