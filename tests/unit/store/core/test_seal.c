/* Sealed stores open read-only for every process, root included (these
 * tests run as root in CI), and a sealed layer is skipped by publishes. */
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
#include "kcache/layers.h"
#include "kcache/store.h"

typedef kct_store_fx_t fixture_t;

static int setup(void **state)
{
    return kct_store_fx_setup(state, "test_seal");
}

static int teardown(void **state)
{
    return kct_store_fx_teardown(state);
}

static int publish(kc_store_t *st, uint64_t id)
{
    kct_pub_t p;
    assert_int_equal(kct_pub_make(&p, id, 2), KC_OK);
    int rc = kc_store_publish(st, &p.pub);
    kct_pub_free(&p);
    return rc;
}

static void reopen(fixture_t *f, unsigned flags)
{
    kc_store_opts_t o = KC_STORE_OPTS_INIT;
    o.flags = flags;
    kc_store_close(f->st);
    f->st = NULL;
    assert_int_equal(kc_store_open(f->root, &o, &f->st), KC_OK);
}

static void test_a_sealed_store_opens_read_only_and_serves(void **state)
{
    fixture_t *f = *state;
    unsigned present = 0;

    assert_int_equal(publish(f->st, 1), KC_OK);
    assert_int_equal(kc_store_set_sealed(f->st, 1), KC_OK);
    reopen(f, 0);
    assert_true(kc_store_is_sealed(f->st));
    assert_true(kc_store_is_readonly(f->st));
    assert_int_equal(publish(f->st, 2), KC_EREADONLY);
    assert_non_null(strstr(kc_store_errmsg(f->st), "sealed"));
    assert_int_equal(kct_pub_state(f->st, 1, 2, &present, NULL), KC_OK);
    assert_int_equal(present, 5);
}

static void test_unsealing_needs_the_ignore_flag(void **state)
{
    fixture_t *f = *state;

    assert_int_equal(kc_store_set_sealed(f->st, 1), KC_OK);
    reopen(f, 0);
    assert_int_equal(kc_store_set_sealed(f->st, 0), KC_EREADONLY);
    reopen(f, KC_STORE_IGNORE_SEAL);
    assert_false(kc_store_is_readonly(f->st));
    assert_true(kc_store_is_sealed(f->st));
    assert_int_equal(kc_store_set_sealed(f->st, 0), KC_OK);
    reopen(f, 0);
    assert_false(kc_store_is_sealed(f->st));
    assert_false(kc_store_is_readonly(f->st));
    assert_int_equal(publish(f->st, 3), KC_OK);
}

static void test_publishes_skip_a_sealed_layer(void **state)
{
    fixture_t *f = *state;
    char other[600], list[1300];
    kc_layers_t *layers = NULL;

    assert_int_equal(kc_store_set_sealed(f->st, 1), KC_OK);
    kc_store_close(f->st);
    f->st = NULL;
    snprintf(other, sizeof(other), "%s.above", f->root);
    snprintf(list, sizeof(list), "%s:%s", f->root, other);
    assert_int_equal(kc_layers_open(list, NULL, &layers), KC_OK);
    assert_int_equal(kc_layers_count(layers), 2);
    assert_true(kc_store_is_readonly(kc_layers_store(layers, 0)));
    assert_ptr_equal(kc_layers_writable(layers), kc_layers_store(layers, 1));
    kc_layers_close(layers);
    kct_rmrf(other);
    assert_int_equal(kc_store_open(f->root, NULL, &f->st), KC_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_sealed_store_opens_read_only_and_serves,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsealing_needs_the_ignore_flag, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_publishes_skip_a_sealed_layer, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
