/* Corruption: bytes flipped in data.mdb, inside a blob's frame, a build
 * record or a tuning record, are detected on read, counted as corrupt, treated
 * as a miss and deleted; the launcher recompiles or retunes and computes the
 * right result; and nothing damaged reaches the "driver": the simulation
 * device, which checks every module it is given, rejects none. `cachectl
 * verify` reports flipped records and `verify --repair` removes them.
 *
 * Sizes: KC_CORRUPT_ITERS random single-byte flips (default 60). Long run:
 *   KC_CORRUPT_ITERS=1000 ctest --test-dir build-rel -R corruption
 *
 * (Named test_launch_* so that the build links it with the launcher.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kc_simkernels.h"
#include "kc_testutil.h"
#include "kcache/launch.h"
#include "kcache/record.h"
#include "kcache/sim.h"
#include "kcache/store.h"

static const int64_t blocks[] = {128, 256};
static const kc_param_spec_t block_param[] = {{"BLOCK", blocks, 2}};

typedef struct fx {
    char dir[512];
    char data[600];
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    if (!f || kct_tmpdir("corruption", f->dir, sizeof(f->dir)) != 0)
        return -1;
    snprintf(f->data, sizeof(f->data), "%s/data.mdb", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    kct_rmrf(f->dir);
    free(f);
    return 0;
}

typedef struct run {
    kc_kernel_stats_t ks;
    kc_sim_counters_t sim;
    uint64_t corrupt; /* the store's corrupt counter after the run */
} run_t;

/* One process's worth of work: a fresh sim and launcher on the store, one
 * kernel, one launch whose result is checked element by element. */
static void launch_once(fx_t *f, run_t *out)
{
    kc_sim_t *sim = NULL;
    kc_launcher_t *l = NULL;
    kc_kernel_t *k = NULL;
    kc_kernel_spec_t spec = kcs_inc_spec("corrupt.inc", block_param);
    kc_launcher_opts_t o = KC_LAUNCHER_OPTS_INIT;
    kc_store_stats_t s;
    enum { N = 1000 };
    float *x = aligned_alloc(64, (N * sizeof(float) + 63) / 64 * 64);
    int64_t dims[1] = {N};
    kc_arg_t args[2] = {{.ptr = (uint64_t)(uintptr_t)x, .rank = 1, .dims = dims}};

    assert_non_null(x);
    args[1].value.i = N;
    for (int i = 0; i < N; i++)
        x[i] = (float)i;
    assert_int_equal(kc_sim_create(NULL, &sim), KC_OK);
    assert_int_equal(kc_sim_register(sim, "inc", kcs_sim_inc, kcs_cost_linear, NULL),
                     KC_OK);
    o.device = KC_DEVICE_SIM;
    o.sim = sim;
    o.store_dir = f->dir;
    o.budget_ms = 0.01;
    o.min_reps = 2;
    o.max_reps = 4;
    o.no_prefetch = getenv("KC_NO_PREFETCH") != NULL;
    assert_int_equal(kc_launcher_create(&o, &l), KC_OK);
    assert_non_null(kc_launcher_store(l));
    assert_int_equal(kc_kernel_get(l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, args, 2), KC_OK);
    for (int i = 0; i < N; i++)
        if (x[i] != (float)(i + 1))
            fail_msg("x[%d] = %g, expected %d", i, x[i], i + 1);
    assert_int_equal(kc_kernel_stats(k, &out->ks), KC_OK);
    assert_int_equal(kc_store_flush(kc_launcher_store(l)), KC_OK);
    assert_int_equal(kc_store_stats(kc_launcher_store(l), &s), KC_OK);
    out->corrupt = s.counters[KC_COUNTER_CORRUPT];
    kc_launcher_destroy(l);
    kc_sim_counters(sim, &out->sim);
    kc_sim_destroy(sim);
    free(x);
    if (getenv("KC_TEST_VERBOSE"))
        print_message(
            "run: hits %llu tunes %llu compiles %llu reused %llu corrupt %llu "
            "loaded %llu rejected %llu\n",
            (unsigned long long)out->ks.store_hits, (unsigned long long)out->ks.tunes,
            (unsigned long long)out->ks.compiles,
            (unsigned long long)out->ks.builds_reused, (unsigned long long)out->corrupt,
            (unsigned long long)out->sim.modules_loaded,
            (unsigned long long)out->sim.modules_rejected);
}

typedef struct keys {
    kc_key_t tuning, build, blob;
} keys_t;

static int grab_tuning(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                       const void *data, size_t len)
{
    (void)kind;
    (void)data;
    (void)len;
    *(kc_key_t *)user = *key;
    return 1;
}

/* The stored tuning, its winning build and that build's blob. */
static keys_t stored_keys(fx_t *f)
{
    kc_store_t *st = NULL;
    kc_record_t *t = NULL, *b = NULL;
    keys_t k;

    assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);
    assert_int_equal(kc_store_iterate(st, KC_REC_TUNING, grab_tuning, &k.tuning), 1);
    assert_int_equal(kc_store_get(st, KC_REC_TUNING, &k.tuning, &t), KC_OK);
    k.build = t->u.tuning.winner_build;
    assert_int_equal(kc_store_get(st, KC_REC_BUILD, &k.build, &b), KC_OK);
    k.blob = b->u.build.blob;
    kc_free(t);
    kc_free(b);
    kc_store_close(st);
    return k;
}

/* Flip the byte at `at` (negative: from the end) of record (kind, key) in
 * every copy of it in data.mdb, with no handle open. */
static void flip_record(fx_t *f, kc_rec_kind_t kind, const kc_key_t *key, long at)
{
    kc_store_t *st = NULL;
    void *raw = NULL;
    size_t len = 0;

    assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);
    assert_int_equal(kc_store_get_raw(st, kind, key, &raw, &len), KC_OK);
    kc_store_close(st);
    size_t off = at >= 0 ? (size_t)at : len - (size_t)-at;
    assert_true(off < len);
    long hits = kct_file_find_flip(f->data, raw, len, 1, off);
    kc_free(raw);
    assert_true(hits >= 1);
}

static void assert_clean_store(fx_t *f)
{
    kc_store_t *st = NULL;
    assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);
    kc_store_close(st);
    int v = kct_cachectl_verify(f->dir, 0);
    if (v >= 0)
        assert_int_equal(v, 0);
}

static void test_flipped_blob_frame_is_a_miss_recompiled_and_never_loaded(void **state)
{
    fx_t *f = *state;
    run_t first, r;

    launch_once(f, &first);
    assert_int_equal(first.ks.compiles, 2);
    assert_int_equal(first.ks.publishes, 1);
    keys_t k = stored_keys(f);
    /* The middle of the record lies in the zstd frame. */
    kc_store_t *st = NULL;
    void *raw;
    size_t len;
    assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);
    assert_int_equal(kc_store_get_raw(st, KC_REC_BLOB, &k.blob, &raw, &len), KC_OK);
    kc_free(raw);
    kc_store_close(st);
    flip_record(f, KC_REC_BLOB, &k.blob, (long)(len / 2));

    /* The winner is unusable: a miss, retuned, with only the damaged cubin
     * compiled again. */
    launch_once(f, &r);
    assert_int_equal(r.sim.modules_rejected, 0);
    assert_true(r.sim.modules_loaded >= 1);
    assert_int_equal(r.ks.store_hits, 0);
    assert_int_equal(r.ks.tunes, 1);
    assert_int_equal(r.ks.compiles, 1);
    assert_true(r.corrupt >= first.corrupt + 1);
    assert_clean_store(f);

    /* Rebuilt and published again: the next process hits and compiles nothing. */
    launch_once(f, &r);
    assert_int_equal(r.ks.compiles, 0);
    assert_int_equal(r.sim.modules_rejected, 0);
}

static void test_flipped_build_record_is_a_miss_recompiled_and_never_loaded(void **state)
{
    fx_t *f = *state;
    run_t first, r;

    launch_once(f, &first);
    keys_t k = stored_keys(f);
    flip_record(f, KC_REC_BUILD, &k.build, 20);

    launch_once(f, &r);
    assert_int_equal(r.sim.modules_rejected, 0);
    assert_int_equal(r.ks.compiles, 1);
    /* At least once: the prefetch and the retune may both read the damaged
     * build before either deletes it, and each counts it. */
    assert_true(r.corrupt >= first.corrupt + 1);
    assert_clean_store(f);
}

static void test_flipped_tuning_record_is_a_miss_and_retuned(void **state)
{
    fx_t *f = *state;
    run_t first, r;

    launch_once(f, &first);
    keys_t k = stored_keys(f);
    flip_record(f, KC_REC_TUNING, &k.tuning, -3); /* in the checksum */

    launch_once(f, &r);
    assert_int_equal(r.sim.modules_rejected, 0);
    assert_int_equal(r.ks.store_hits, 0);
    assert_int_equal(r.ks.tunes, 1);
    /* Both builds are still good: retuning reuses them. */
    assert_int_equal(r.ks.compiles, 0);
    assert_int_equal(r.ks.builds_reused, 2);
    assert_int_equal(r.corrupt, first.corrupt + 1);
    assert_clean_store(f);
}

/* ---- random single-byte flips over many records ------------------------- */

#define PUBS 16
#define BUILDS 2

static void test_any_flipped_record_byte_is_detected_counted_and_deleted(void **state)
{
    fx_t *f = *state;
    unsigned iters = (unsigned)kct_env_u64("KC_CORRUPT_ITERS", 60);
    unsigned by_kind[KC_REC_KIND_MAX + 1] = {0};
    kc_store_t *st = NULL;
    unsigned detected = 0;

    srand((unsigned)time(NULL));
    assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);
    for (uint64_t id = 0; id < PUBS; id++) {
        kct_pub_t p;
        assert_int_equal(kct_pub_make(&p, id, BUILDS), KC_OK);
        assert_int_equal(kc_store_publish(st, &p.pub), KC_OK);
        kct_pub_free(&p);
    }
    kc_store_close(st);

    for (unsigned it = 0; it < iters; it++) {
        uint64_t id = (uint64_t)rand() % PUBS;
        unsigned j = (unsigned)rand() % BUILDS;
        kc_rec_kind_t kind = (kc_rec_kind_t)(KC_REC_BLOB + rand() % 3);
        kct_pub_t p;
        kc_store_stats_t before, after;
        void *raw = NULL, *c = NULL;
        size_t len = 0, clen = 0;
        kc_record_t *rec = NULL;
        unsigned present, intact;

        assert_int_equal(kct_pub_make(&p, id, BUILDS), KC_OK);
        const kc_key_t *key = kind == KC_REC_BLOB    ? &p.blob_keys[j]
                              : kind == KC_REC_BUILD ? &p.build_keys[j]
                                                     : &p.tuning_key;
        assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);
        assert_int_equal(kc_store_get_raw(st, kind, key, &raw, &len), KC_OK);
        assert_int_equal(kc_store_stats(st, &before), KC_OK);
        kc_store_close(st);
        assert_true(kct_file_find_flip(f->data, raw, len, 1, (size_t)rand() % len) >= 1);
        kc_free(raw);

        /* The damaged record reads as a miss, is counted and deleted; nothing
         * read back is ever a wrong cubin. */
        assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);
        if (kind == KC_REC_BLOB)
            assert_int_equal(kc_store_get_cubin(st, key, &c, &clen), KC_ENOTFOUND);
        else if (kind == KC_REC_BUILD)
            assert_int_equal(kc_store_get_build_cubin(st, key, &rec, &c, &clen),
                             KC_ENOTFOUND);
        else
            assert_int_equal(kc_store_get(st, kind, key, &rec), KC_ENOTFOUND);
        assert_null(c);
        assert_null(rec);
        assert_int_equal(kc_store_flush(st), KC_OK);
        assert_int_equal(kc_store_stats(st, &after), KC_OK);
        assert_int_equal(after.counters[KC_COUNTER_CORRUPT],
                         before.counters[KC_COUNTER_CORRUPT] + 1);
        assert_int_equal(kc_store_get_raw(st, kind, key, &raw, &len), KC_ENOTFOUND);
        detected++;
        by_kind[kind]++;

        /* Republishing repairs it. */
        assert_int_equal(kc_store_publish(st, &p.pub), KC_OK);
        assert_int_equal(kct_pub_state(st, id, BUILDS, &present, &intact), KC_OK);
        assert_int_equal(intact, 2 * BUILDS + 1);
        kc_store_close(st);
        kct_pub_free(&p);
    }
    assert_int_equal(detected, iters);
    assert_int_equal(kct_cachectl_verify(f->dir, 0) > 0, 0);
    print_message("corruption: %u random single-byte flips (%u blob, %u build, %u "
                  "tuning): %u detected, counted and deleted\n",
                  iters, by_kind[KC_REC_BLOB], by_kind[KC_REC_BUILD],
                  by_kind[KC_REC_TUNING], detected);
}

static void test_verify_reports_flipped_records_and_repair_removes_them(void **state)
{
    fx_t *f = *state;
    kc_store_t *st = NULL;
    kct_pub_t p[3];
    void *raw;
    size_t len;

    if (!kct_cachectl())
        skip();
    assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(kct_pub_make(&p[i], (uint64_t)i, 2), KC_OK);
        assert_int_equal(kc_store_publish(st, &p[i].pub), KC_OK);
    }
    kc_store_close(st);
    assert_int_equal(kct_cachectl_verify(f->dir, 0), 0);

    /* Damage publish 0's first blob, publish 1's tuning. */
    const kc_key_t *blob = &p[0].blob_keys[0], *tuning = &p[1].tuning_key;
    assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);
    assert_int_equal(kc_store_get_raw(st, KC_REC_BLOB, blob, &raw, &len), KC_OK);
    kc_store_close(st);
    assert_true(kct_file_find_flip(f->data, raw, len, 1, len / 2) >= 1);
    kc_free(raw);
    assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);
    assert_int_equal(kc_store_get_raw(st, KC_REC_TUNING, tuning, &raw, &len), KC_OK);
    kc_store_close(st);
    assert_true(kct_file_find_flip(f->data, raw, len, 1, 5) >= 1);
    kc_free(raw);

    assert_int_not_equal(kct_cachectl_verify(f->dir, 0), 0);
    assert_int_equal(kct_cachectl_verify(f->dir, 1), 0);
    assert_int_equal(kct_cachectl_verify(f->dir, 0), 0);

    /* The damaged records are gone; the build that named the damaged blob was
     * reported with it; the third publish is untouched. */
    unsigned present, intact;
    assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);
    assert_int_equal(kc_store_get_raw(st, KC_REC_BLOB, blob, &raw, &len), KC_ENOTFOUND);
    assert_int_equal(kc_store_get_raw(st, KC_REC_TUNING, tuning, &raw, &len),
                     KC_ENOTFOUND);
    assert_int_equal(kct_pub_state(st, 2, 2, &present, &intact), KC_OK);
    assert_int_equal(intact, 5);
    kc_store_close(st);
    for (int i = 0; i < 3; i++)
        kct_pub_free(&p[i]);
}

/* FAILS at the time of writing: `verify --repair` deletes a damaged blob and
 * the build that names it, but keeps the tuning whose winning build that was
 * (cmd_verify.c checks a tuning's derived key only, never its winner), so the
 * store is left with a tuning that points at nothing, which gc promises never
 * to leave. The launcher copes (a miss, retuned), but verify then calls the
 * store clean. */
static void test_verify_repair_leaves_no_tuning_without_its_winning_build(void **state)
{
    fx_t *f = *state;
    kc_store_t *st = NULL;
    kct_pub_t p;
    void *raw;
    size_t len;

    if (!kct_cachectl())
        skip();
    assert_int_equal(kct_pub_make(&p, 7, 2), KC_OK);
    assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);
    assert_int_equal(kc_store_publish(st, &p.pub), KC_OK);
    /* Damage the winner's blob. */
    assert_int_equal(kc_store_get_raw(st, KC_REC_BLOB, &p.blob_keys[0], &raw, &len),
                     KC_OK);
    kc_store_close(st);
    assert_true(kct_file_find_flip(f->data, raw, len, 1, len / 2) >= 1);
    kc_free(raw);

    kct_pub_free(&p);
    assert_int_equal(kct_cachectl_verify(f->dir, 1), 0);
    assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);
    long dangling = kct_store_consistency(st, NULL, NULL, NULL);
    kc_store_close(st);
    assert_int_equal(dangling, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_flipped_blob_frame_is_a_miss_recompiled_and_never_loaded, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_flipped_build_record_is_a_miss_recompiled_and_never_loaded, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_flipped_tuning_record_is_a_miss_and_retuned,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_any_flipped_record_byte_is_detected_counted_and_deleted, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_verify_reports_flipped_records_and_repair_removes_them, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_verify_repair_leaves_no_tuning_without_its_winning_build, setup,
            teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
