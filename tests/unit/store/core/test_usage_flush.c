/* Usage stamps past the automatic-flush threshold are written by the
 * store's flusher thread, not on the caller's hit path: the caller's
 * touches only buffer, and the stamps reach the database while the caller
 * does nothing; close joins the flusher and writes what is left. */
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

typedef struct fixture {
    char root[512];
    kc_store_t *st;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    if (!f ||
        kct_store_scratch("test_usage_flush", f->root, sizeof(f->root), &f->st) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    kct_store_scratch_free(f->root, f->st);
    free(f);
    return 0;
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

static void test_the_flusher_writes_stamps_off_the_callers_path(void **state)
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

static void
test_a_store_closed_without_reaching_the_threshold_starts_no_flusher(void **state)
{
    fixture_t *f = *state;
    kc_key_t k = key_of(1);
    assert_int_equal(kc_store_touch(f->st, KC_REC_BLOB, &k), KC_OK);
    kc_store_close(f->st); /* joins nothing, writes the one stamp */
    assert_int_equal(kc_store_open(f->root, NULL, &f->st), KC_OK);
    assert_int_equal(usage_records(f->st), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_the_flusher_writes_stamps_off_the_callers_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_writes_every_pending_stamp, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_store_closed_without_reaching_the_threshold_starts_no_flusher, setup,
            teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
