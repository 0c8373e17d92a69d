/* kc_store_prefetch_hot: the records advised are those of the newest usage
 * stamps, up to the byte budget; a tuning brings its winning build, a build
 * its blob; every stamped
 * record when there is no budget. (Whether the kernel then reads the pages
 * is its business: the test checks what was asked for.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "kc_testutil.h"
#include "kcache/errors.h"
#include "kcache/record.h"
#include "kcache/store.h"

static void test_prefetch_follows_the_newest_stamps_within_the_budget(void **state)
{
    kc_store_t *st = ((kct_store_fx_t *)*state)->st;
    kct_pub_t p[3];
    kc_store_stats_t s;
    kc_record_t use = {.kind = KC_REC_USAGE, .version = KC_RECORD_VERSION};
    uint64_t bytes = 99, records = 99;
    void *raw = NULL;
    size_t raw_len = 0;

    /* Nothing stamped: nothing advised. */
    assert_int_equal(kc_store_prefetch_hot(st, 0, &bytes, &records), KC_OK);
    assert_int_equal(bytes, 0);
    assert_int_equal(records, 0);

    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(kct_pub_make(&p[i], 40 + i, 2), KC_OK);
        assert_int_equal(kc_store_publish(st, &p[i].pub), KC_OK);
    }
    /* Item 1's tuning is the newest use of all. */
    use.u.usage.last_use = (uint64_t)time(NULL) + 1000;
    use.u.usage.uses = 1;
    assert_int_equal(kc_store_put(st, &p[1].tuning_key, &use), KC_OK);
    /* It brings its winning build and that build's blob. */
    uint64_t want = 0;
    const kc_key_t *chain[3] = {&p[1].tuning_key, &p[1].build_keys[0],
                                &p[1].blob_keys[0]};
    const kc_rec_kind_t chain_kind[3] = {KC_REC_TUNING, KC_REC_BUILD, KC_REC_BLOB};
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(kc_store_get_raw(st, chain_kind[i], chain[i], &raw, &raw_len),
                         KC_OK);
        kc_free(raw);
        want += raw_len;
    }
    assert_int_equal(kc_store_prefetch_hot(st, 1, &bytes, &records), KC_OK);
    assert_int_equal(records, 3);
    assert_int_equal(bytes, want);

    /* No budget: every stamped record (6 blobs, 3 builds, 3 tunings), each
     * tuning's winning build (the 3 others: a publish does not stamp them),
     * and each build's blob once more. */
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    assert_int_equal(kc_store_prefetch_hot(st, 0, &bytes, &records), KC_OK);
    assert_int_equal(records, 6 + 6 + 3 + 6);
    assert_int_equal(bytes, s.record_bytes + s.blob_stored_bytes);

    assert_int_equal(kc_store_prefetch_hot(NULL, 0, NULL, NULL), KC_EINVAL);
    for (unsigned i = 0; i < 3; i++)
        kct_pub_free(&p[i]);
}

static int setup(void **state)
{
    return kct_store_fx_setup(state, "test_prefetch");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_prefetch_follows_the_newest_stamps_within_the_budget, setup,
            kct_store_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
