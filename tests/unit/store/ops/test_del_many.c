/* kc_store_del_many: several records go in one write transaction, each as
 * kc_store_del would delete it, absent ones are skipped, and a bad argument
 * deletes nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kc_testutil.h"
#include "kcache/errors.h"
#include "kcache/record.h"
#include "kcache/store.h"

static int has(kc_store_t *st, kc_rec_kind_t kind, const kc_key_t *key)
{
    kc_record_t *r = NULL;
    int rc = kc_store_get(st, kind, key, &r);
    kc_free(r);
    return rc == KC_OK;
}

static void test_del_many_deletes_every_record_given_and_skips_absent_ones(void **state)
{
    (void)state;
    char root[512];
    kc_store_t *st = NULL;
    kct_pub_t a;
    size_t removed = 99;

    assert_int_equal(kct_store_scratch("test_del_many", root, sizeof root, &st), 0);
    assert_int_equal(kct_pub_make(&a, 1, 3), KC_OK);
    assert_int_equal(kc_store_publish(st, &a.pub), KC_OK);

    kc_rec_kind_t kinds[] = {KC_REC_TUNING, KC_REC_BUILD, KC_REC_BLOB, KC_REC_BUILD};
    kc_key_t keys[] = {a.tuning_key, a.build_keys[0], a.blob_keys[0], a.build_keys[0]};
    assert_int_equal(kc_store_del_many(st, kinds, keys, 4, &removed), KC_OK);
    /* The second delete of build 0 finds it gone and is skipped. */
    assert_int_equal(removed, 3);
    assert_false(has(st, KC_REC_TUNING, &a.tuning_key));
    assert_false(has(st, KC_REC_BUILD, &a.build_keys[0]));
    assert_false(has(st, KC_REC_BLOB, &a.blob_keys[0]));
    assert_true(has(st, KC_REC_BUILD, &a.build_keys[1]));
    assert_true(has(st, KC_REC_BLOB, &a.blob_keys[1]));

    /* Nothing left to delete is not an error. */
    assert_int_equal(kc_store_del_many(st, kinds, keys, 4, &removed), KC_OK);
    assert_int_equal(removed, 0);
    assert_int_equal(kc_store_del_many(st, NULL, NULL, 0, &removed), KC_OK);
    assert_int_equal(removed, 0);

    kct_pub_free(&a);
    kct_store_scratch_free(root, st);
}

static void test_del_many_with_a_bad_kind_deletes_nothing(void **state)
{
    (void)state;
    char root[512];
    kc_store_t *st = NULL;
    kct_pub_t a;

    assert_int_equal(kct_store_scratch("test_del_many", root, sizeof root, &st), 0);
    assert_int_equal(kct_pub_make(&a, 2, 2), KC_OK);
    assert_int_equal(kc_store_publish(st, &a.pub), KC_OK);

    kc_rec_kind_t kinds[] = {KC_REC_BUILD, KC_REC_META};
    kc_key_t keys[] = {a.build_keys[0], a.build_keys[1]};
    assert_int_equal(kc_store_del_many(st, kinds, keys, 2, NULL), KC_EINVAL);
    assert_true(has(st, KC_REC_BUILD, &a.build_keys[0]));
    assert_int_equal(kc_store_del_many(NULL, kinds, keys, 1, NULL), KC_EINVAL);
    assert_int_equal(kc_store_del_many(st, NULL, keys, 1, NULL), KC_EINVAL);
    assert_true(has(st, KC_REC_BUILD, &a.build_keys[0]));

    kct_pub_free(&a);
    kct_store_scratch_free(root, st);
}

static void test_del_many_on_a_read_only_store_is_refused(void **state)
{
    (void)state;
    char root[512];
    kc_store_t *st = NULL, *ro = NULL;
    kct_pub_t a;
    kc_store_opts_t so = KC_STORE_OPTS_INIT;

    assert_int_equal(kct_store_scratch("test_del_many", root, sizeof root, &st), 0);
    assert_int_equal(kct_pub_make(&a, 3, 1), KC_OK);
    assert_int_equal(kc_store_publish(st, &a.pub), KC_OK);
    so.flags = KC_STORE_RDONLY;
    assert_int_equal(kc_store_open(kc_store_path(st), &so, &ro), KC_OK);

    kc_rec_kind_t kind = KC_REC_BUILD;
    assert_int_equal(kc_store_del_many(ro, &kind, &a.build_keys[0], 1, NULL),
                     KC_EREADONLY);
    assert_true(has(st, KC_REC_BUILD, &a.build_keys[0]));

    kc_store_close(ro);
    kct_pub_free(&a);
    kct_store_scratch_free(root, st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_del_many_deletes_every_record_given_and_skips_absent_ones),
        cmocka_unit_test(test_del_many_with_a_bad_kind_deletes_nothing),
        cmocka_unit_test(test_del_many_on_a_read_only_store_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
