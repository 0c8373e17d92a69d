/* The launcher's persistent counters on the simulation device, with real
 * NVRTC-compiled cubins and a real store: a miss is counted by its reason
 * (no tuning stored, or a tuning whose build is unusable), and a store hit
 * adds the compile and tuning time it saved. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kc_simkernels.h"
#include "kcache/launch.h"
#include "kcache/record.h"
#include "kcache/sim.h"
#include "kcache/store.h"

/* ---- specs --------------------------------------------------------------- */

static const int64_t blocks5[] = {64, 128, 256, 512, 1024};
static const kc_param_spec_t block_param5[] = {{"BLOCK", blocks5, 5}};

static kc_kernel_spec_t vadd_spec(void)
{
    return kcs_vadd_spec("test.vadd", block_param5);
}

/* ---- fixture ------------------------------------------------------------- */

static int setup(void **state)
{
    return kcs_fx_setup(state, "launch_counters", 0);
}

static int teardown(void **state)
{
    return kcs_fx_teardown(state);
}

/* ---- helpers ------------------------------------------------------------- */

/* The single tuning record in the store (the caller frees it). */
static int grab_tuning(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                       const void *data, size_t len)
{
    (void)kind;
    (void)key;
    kc_record_t **out = user;
    if (*out)
        return 2; /* more than one */
    return kc_record_decode(data, len, out) == KC_OK ? 0 : 3;
}

static kc_record_t *the_tuning(kcs_fx_t *f)
{
    kc_record_t *rec = NULL;
    assert_int_equal(
        kc_store_iterate(kc_launcher_store(f->l), KC_REC_TUNING, grab_tuning, &rec), 0);
    assert_non_null(rec);
    return rec;
}

/* The store's counters as the launcher's store handle sees them (persisted
 * plus buffered). */
static uint64_t counter(kcs_fx_t *f, kc_counter_t c)
{
    kc_store_stats_t s;
    assert_int_equal(kc_store_stats(kc_launcher_store(f->l), &s), KC_OK);
    return s.counters[c];
}

/* Launch vadd once on a fresh launcher and sim, as a new process would. */
static void launch_in_new_process(kcs_fx_t *f, int fresh)
{
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_t *k;
    kcs_vecs_t v;

    if (fresh) {
        kcs_new_sim(f, NULL);
        kcs_new_launcher(f);
    }
    kcs_vecs_init(&v, 1000);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_check(&v);
    assert_int_equal(kc_kernel_wait_compiled(k), KC_OK);
    kcs_vecs_free(&v);
}

/* ---- tests --------------------------------------------------------------- */

static void test_a_miss_without_a_stored_tuning_is_counted_as_no_tuning(void **state)
{
    kcs_fx_t *f = *state;

    launch_in_new_process(f, 0);
    assert_int_equal(counter(f, KC_COUNTER_MISSES), 1);
    assert_int_equal(counter(f, KC_COUNTER_MISS_NO_TUNING), 1);
    assert_int_equal(counter(f, KC_COUNTER_MISS_BUILD_UNUSABLE), 0);
    assert_int_equal(counter(f, KC_COUNTER_HITS), 0);
    assert_int_equal(counter(f, KC_COUNTER_COMPILE_US_SAVED), 0);
    assert_int_equal(counter(f, KC_COUNTER_TUNE_US_SAVED), 0);
}

static void test_a_store_hit_adds_the_compile_and_tuning_time_it_saved(void **state)
{
    kcs_fx_t *f = *state;
    kc_record_t *build = NULL;

    launch_in_new_process(f, 0);
    kc_record_t *t = the_tuning(f);
    assert_int_equal(kc_store_get(kc_launcher_store(f->l), KC_REC_BUILD,
                                  &t->u.tuning.winner_build, &build),
                     KC_OK);
    assert_true(t->u.tuning.tuning_us > 0);
    assert_true(build->u.build.compile_us > 0);

    launch_in_new_process(f, 1);
    assert_int_equal(counter(f, KC_COUNTER_HITS), 1);
    assert_int_equal(counter(f, KC_COUNTER_MISSES), 1);
    assert_int_equal(counter(f, KC_COUNTER_TUNE_US_SAVED), t->u.tuning.tuning_us);
    assert_int_equal(counter(f, KC_COUNTER_COMPILE_US_SAVED), build->u.build.compile_us);

    /* A third process saves as much again. */
    launch_in_new_process(f, 1);
    assert_int_equal(counter(f, KC_COUNTER_HITS), 2);
    assert_int_equal(counter(f, KC_COUNTER_TUNE_US_SAVED), 2 * t->u.tuning.tuning_us);
    kc_free(build);
    kc_free(t);
}

static void test_a_tuning_whose_build_is_gone_is_counted_as_build_unusable(void **state)
{
    kcs_fx_t *f = *state;

    launch_in_new_process(f, 0);
    kc_record_t *t = the_tuning(f);
    assert_int_equal(
        kc_store_del(kc_launcher_store(f->l), KC_REC_BUILD, &t->u.tuning.winner_build),
        KC_OK);
    kc_free(t);

    launch_in_new_process(f, 1);
    assert_int_equal(counter(f, KC_COUNTER_MISSES), 2);
    assert_int_equal(counter(f, KC_COUNTER_MISS_NO_TUNING), 1);
    assert_int_equal(counter(f, KC_COUNTER_MISS_BUILD_UNUSABLE), 1);
    assert_int_equal(counter(f, KC_COUNTER_HITS), 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_a_miss_without_a_stored_tuning_is_counted_as_no_tuning),
        T(test_a_store_hit_adds_the_compile_and_tuning_time_it_saved),
        T(test_a_tuning_whose_build_is_gone_is_counted_as_build_unusable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
