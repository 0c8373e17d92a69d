/* The launcher's bound on loaded modules (resident.c): past max_modules the
 * least recently launched modules are unloaded on the pool and loaded again
 * from the store by their next launch; a launch never uses a function whose
 * module was unloaded (the sim fails such a launch and counts it in
 * dead_launches), modules whose build is not stored are never unloaded,
 * a build gone from the store gives an error, not a crash, and the
 * automatic bound grows only where unloaded modules come back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kc_simkernels.h"
#include "kc_testutil.h"
#include "kcache/launch.h"
#include "kcache/sim.h"
#include "kcache/store.h"

static const int64_t kBlock256[] = {256};
static const kc_param_spec_t kOneBlock[] = {{"BLOCK", kBlock256, 1}};

enum { N_KERNELS = 48, BOUND = 8, N_ELEMS = 1000 };
/* The automatic bound's cases: past its start, and a working set between
 * its start and twice it. */
enum { N_STREAM = 1100, N_LOOP = 600 };

static int setup(void **state)
{
    return kcs_fx_setup(state, "launch_resident", 0);
}

static int teardown(void **state)
{
    unsetenv("KCACHE_MAX_MODULES");
    return kcs_fx_teardown(state);
}

static char g_names[N_STREAM][24];

static kc_kernel_spec_t spec_of(int i)
{
    snprintf(g_names[i], sizeof(g_names[i]), "res.k%d", i);
    return kcs_vadd_spec(g_names[i], kOneBlock);
}

/* Tune vadd once through the fixture's launcher, so that its tuning and
 * build are in the store; every kernel named after it hits them. */
static void publish_vadd(kcs_fx_t *f)
{
    kc_kernel_spec_t spec = kcs_vadd_spec("res.tuned", kOneBlock);
    kc_kernel_t *k;
    kcs_vecs_t v;

    kcs_vecs_init(&v, N_ELEMS);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_check(&v);
    kcs_vecs_free(&v);
}

/* A new sim (which destroys the old launcher first) and a launcher on the
 * fixture's store with max_modules. */
static void relaunch(kcs_fx_t *f, unsigned max_modules, int prefetch)
{
    kcs_new_sim(f, NULL);
    kc_launcher_opts_t o = kcs_sim_opts(f);
    o.max_modules = max_modules;
    o.no_prefetch = !prefetch;
    assert_int_equal(kc_launcher_create(&o, &f->l), KC_OK);
}

/* Register kernels res.k0 .. res.k<n-1> (vadd under other names) into ks. */
static void register_kernels(kcs_fx_t *f, kc_kernel_t **ks, int n)
{
    for (int i = 0; i < n; i++) {
        kc_kernel_spec_t spec = spec_of(i);
        assert_int_equal(kc_kernel_get(f->l, &spec, &ks[i]), KC_OK);
    }
}

/* Launch kernel k on fresh outputs and check every one. */
static void launch_checked(kc_kernel_t *k, kcs_vecs_t *v)
{
    for (int i = 0; i < v->n; i++)
        v->out[i] = -1.0f;
    assert_int_equal(kc_kernel_launch(k, NULL, v->args, 4), KC_OK);
    kcs_vecs_check(v);
}

/* Launch ks[0..n) in order, each checked. */
static void launch_all(kc_kernel_t **ks, int n, kcs_vecs_t *v)
{
    for (int i = 0; i < n; i++)
        launch_checked(ks[i], v);
}

/* Register kernels 0 .. n-1 and launch each once as it comes, checked;
 * into ks unless NULL. */
static void register_and_launch(kcs_fx_t *f, kc_kernel_t **ks, int n, kcs_vecs_t *v)
{
    for (int i = 0; i < n; i++) {
        kc_kernel_spec_t spec = spec_of(i);
        kc_kernel_t *k;
        assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
        launch_checked(k, v);
        if (ks)
            ks[i] = k;
    }
}

static uint64_t loaded_now(const kc_sim_t *sim)
{
    kc_sim_counters_t c;
    kc_sim_counters(sim, &c);
    return c.modules_loaded - c.modules_unloaded;
}

/* The unloads run on the pool: wait (at most a minute) until at most
 * bound modules are loaded. */
static void wait_loaded_at_most(const kc_sim_t *sim, uint64_t bound)
{
    for (int i = 0; i < 60000 && loaded_now(sim) > bound; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_true(loaded_now(sim) <= bound);
}

static void
test_past_the_bound_modules_are_unloaded_and_loaded_again_by_a_launch(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_t *ks[N_KERNELS];
    kc_sim_counters_t c;
    kc_kernel_stats_t st;
    kcs_vecs_t v;

    publish_vadd(f);
    relaunch(f, BOUND, 0);
    kcs_vecs_init(&v, N_ELEMS);
    register_kernels(f, ks, N_KERNELS);
    /* Round 1 loads each module once (a store hit); rounds 2 and 3 find
     * most of them unloaded and load them again. */
    for (int round = 0; round < 3; round++) {
        launch_all(ks, N_KERNELS, &v);
        wait_loaded_at_most(f->sim, BOUND);
    }
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.dead_launches, 0);
    /* Each round starts with at most BOUND loaded (the wait), so rounds 2
     * and 3 load at least N_KERNELS - BOUND each; how many more depends on
     * how far the pool's unloads keep up with the launches. */
    assert_true(c.modules_loaded >= 3 * N_KERNELS - 2 * BOUND);
    assert_true(c.modules_unloaded >= c.modules_loaded - BOUND);
    /* The memo kept every signature: reloads are not store hits. */
    assert_int_equal(kc_launcher_stats(f->l, &st), KC_OK);
    assert_int_equal(st.store_hits, N_KERNELS);
    assert_int_equal(st.tunes, 0);
    kcs_vecs_free(&v);
}

static void test_the_clock_spares_a_kernel_launched_between_every_other(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_t *ks[N_KERNELS];
    kcs_vecs_t v;

    publish_vadd(f);
    relaunch(f, BOUND, 0);
    kcs_vecs_init(&v, N_ELEMS);
    register_kernels(f, ks, N_KERNELS);
    /* Kernel 0 is launched between every other: the hand finds it used
     * nearly every time it comes round. Unloading the oldest first would
     * reload it every BOUND kernels (5 times here). */
    launch_checked(ks[0], &v);
    for (int i = 1; i < N_KERNELS; i++) {
        launch_checked(ks[i], &v);
        launch_checked(ks[0], &v);
        wait_loaded_at_most(f->sim, BOUND);
    }
    kc_sim_counters_t c;
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.dead_launches, 0);
    fprintf(stderr, "kernel 0 loaded again %llu times\n",
            (unsigned long long)(c.modules_loaded - N_KERNELS));
    assert_true(c.modules_loaded <= N_KERNELS + 2);
    assert_true(c.modules_unloaded >= N_KERNELS - BOUND);
    kcs_vecs_free(&v);
}

enum { N_THREADS = 4, LAUNCHES_PER_THREAD = 1500, N_SHARED = 8, SMALL_BOUND = 2 };

typedef struct racer {
    kc_kernel_t **ks;
    unsigned seed;
    int failures;
    int wrong;
} racer_t;

static void *race(void *arg)
{
    racer_t *r = arg;
    kcs_vecs_t v;

    if (kcs_vecs_try_init(&v, 64) != 0) {
        r->failures = -1;
        return NULL;
    }
    for (int i = 0; i < LAUNCHES_PER_THREAD; i++) {
        kc_kernel_t *k = r->ks[rand_r(&r->seed) % N_SHARED];
        for (int j = 0; j < v.n; j++)
            v.out[j] = -1.0f;
        if (kc_kernel_launch(k, NULL, v.args, 4) != KC_OK)
            r->failures++;
        else if (kcs_vecs_first_wrong(&v) >= 0)
            r->wrong++;
    }
    kcs_vecs_free(&v);
    return NULL;
}

/* vadd that takes 100 us: a launch in flight long enough for an unload
 * that does not wait for it to land inside it (the sim counts that). */
static int slow_vadd(void *user, const kc_sim_launch_t *l)
{
    struct timespec t0, t;
    int rc = kcs_sim_vadd(user, l);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 100000);
    return rc;
}

/* Threads launch at random among more kernels than the bound while the
 * pool unloads (and the prefetch loads): every launch runs, on a loaded
 * function. Under TSan this is the pin protocol's race test. */
static void
test_threads_launching_while_modules_are_unloaded_never_launch_an_unloaded_one(
    void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_t *ks[N_SHARED];
    pthread_t th[N_THREADS];
    racer_t r[N_THREADS];
    kc_sim_counters_t c;

    publish_vadd(f);
    relaunch(f, SMALL_BOUND, 1);
    assert_int_equal(kc_sim_register(f->sim, "vadd", slow_vadd, kcs_cost_256, &f->bh),
                     KC_OK);
    register_kernels(f, ks, N_SHARED);
    for (int t = 0; t < N_THREADS; t++) {
        r[t] = (racer_t){.ks = ks, .seed = 7u + (unsigned)t};
        assert_int_equal(pthread_create(&th[t], NULL, race, &r[t]), 0);
    }
    for (int t = 0; t < N_THREADS; t++) {
        assert_int_equal(pthread_join(th[t], NULL), 0);
        assert_int_equal(r[t].failures, 0);
        assert_int_equal(r[t].wrong, 0);
    }
    /* The unload task may get a CPU only now, on a loaded machine. */
    for (int i = 0; i < 60000 && (kc_sim_counters(f->sim, &c), c.modules_unloaded == 0);
         i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    /* No wait for the bound here: with every module in use an unload pass
     * can end with none unloaded (the bound is soft), until the next load. */
    kc_sim_counters(f->sim, &c);
    fprintf(stderr, "%llu launches, %llu modules unloaded meanwhile\n",
            (unsigned long long)c.launches, (unsigned long long)c.modules_unloaded);
    assert_int_equal(c.dead_launches, 0);
    assert_true(c.modules_unloaded > 0);
    assert_int_equal(c.launches, (uint64_t)N_THREADS * LAUNCHES_PER_THREAD);
}

static void test_without_a_bound_nothing_is_unloaded(void **state)
{
    kcs_fx_t *f = *state;
    kcs_vecs_t v;

    publish_vadd(f);
    relaunch(f, KC_MODULES_UNBOUNDED, 0);
    kcs_vecs_init(&v, N_ELEMS);
    kc_kernel_t *ks[N_KERNELS];
    register_and_launch(f, ks, N_KERNELS, &v);
    launch_all(ks, N_KERNELS, &v);
    /* No unload task is ever queued without a bound: nothing was unloaded
     * and nothing loaded twice, while the launcher lives. */
    kc_sim_counters_t c;
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.modules_loaded, N_KERNELS);
    assert_int_equal(c.modules_unloaded, 0);
    /* Destroying the launcher unloads them all. */
    kc_launcher_destroy(f->l);
    f->l = NULL;
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.modules_unloaded, N_KERNELS);
    kcs_vecs_free(&v);
}

/* Launch kernels 0..n-1 once each through a launcher created with opts
 * max_modules 0 (the environment decides) and return how many modules
 * were unloaded, after waiting until at most wait_for are loaded. */
static uint64_t unloaded_with_env(kcs_fx_t *f, const char *env, int n, uint64_t wait_for)
{
    kcs_vecs_t v;

    if (env)
        setenv("KCACHE_MAX_MODULES", env, 1);
    else
        unsetenv("KCACHE_MAX_MODULES");
    relaunch(f, 0, 0);
    kcs_vecs_init(&v, N_ELEMS);
    register_and_launch(f, NULL, n, &v);
    kcs_vecs_free(&v);
    wait_loaded_at_most(f->sim, wait_for);
    kc_sim_counters_t c;
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.dead_launches, 0);
    return c.modules_unloaded;
}

static void
test_the_bound_comes_from_KCACHE_MAX_MODULES_when_the_option_is_0(void **state)
{
    kcs_fx_t *f = *state;

    publish_vadd(f);
    /* 16 kernels under a bound of 4: some are unloaded by the pool. */
    assert_true(unloaded_with_env(f, "4", 16, 4) >= 12);
    /* 0: no bound. (No unload task is ever queued under it: the count
     * cannot grow later.) */
    assert_int_equal(unloaded_with_env(f, "0", N_LOOP, N_LOOP), 0);
    /* Not a number: ignored, so the automatic bound (512 to start), not
     * "no bound" nor 0; each kernel launched once, it does not grow. */
    assert_true(unloaded_with_env(f, "lots", N_LOOP, KC_MODULES_AUTO_START) >=
                N_LOOP - KC_MODULES_AUTO_START);
}

static void test_a_module_whose_build_is_not_stored_is_never_unloaded(void **state)
{
    kcs_fx_t *f = *state;
    kcs_vecs_t v;
    kc_launcher_opts_t o;

    /* No store: every kernel compiles and tunes here, and nothing can be
     * loaded again. */
    kc_launcher_destroy(f->l);
    f->l = NULL;
    o = kcs_sim_opts(f);
    o.store_dir = NULL;
    o.no_store = 1;
    o.max_modules = 2;
    assert_int_equal(kc_launcher_create(&o, &f->l), KC_OK);
    kcs_vecs_init(&v, N_ELEMS);
    kc_kernel_t *ks[6];
    register_and_launch(f, ks, 6, &v);
    for (int i = 0; i < 6; i++)
        launch_checked(ks[i], &v);
    kc_sim_counters_t c;
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.modules_unloaded, 0);
    assert_int_equal(c.dead_launches, 0);
    kcs_vecs_free(&v);
}

static int last_build(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                      const void *data, size_t len)
{
    (void)kind;
    (void)data;
    (void)len;
    kc_key_t *keys = user;
    keys[0] = *key;
    return 0;
}

static void
test_a_build_gone_from_the_store_gives_an_error_on_reload_not_a_crash(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_t *ks[4];
    kcs_vecs_t v;
    kc_key_t build;
    kc_store_t *st = NULL;

    publish_vadd(f);
    relaunch(f, 1, 0);
    kcs_vecs_init(&v, N_ELEMS);
    register_and_launch(f, ks, 4, &v);
    wait_loaded_at_most(f->sim, 1);
    /* At most one of the four is loaded now. Their one build (the same
     * source under four names) leaves the store: the loaded one still
     * launches, the others fail to load again, with the reason. */
    st = kc_launcher_store(f->l);
    assert_non_null(st);
    assert_int_equal(kc_store_iterate(st, KC_REC_BUILD, last_build, &build), KC_OK);
    assert_int_equal(kc_store_del(st, KC_REC_BUILD, &build), KC_OK);
    int failed = 0;
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < v.n; i++)
            v.out[i] = -1.0f;
        int rc = kc_kernel_launch(ks[k], NULL, v.args, 4);
        if (rc == KC_OK) {
            kcs_vecs_check(&v);
            continue;
        }
        failed++;
        assert_int_equal(rc, KC_ENOTFOUND);
        assert_non_null(
            strstr(kc_launcher_errmsg(f->l), "loading its unloaded module again"));
    }
    assert_true(failed >= 3);
    kc_sim_counters_t c;
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.dead_launches, 0);
    kcs_vecs_free(&v);
}

static uint64_t loads(const kc_sim_t *sim)
{
    kc_sim_counters_t c;
    kc_sim_counters(sim, &c);
    return c.modules_loaded;
}

/* Wait (at most a minute) until the pool has unloaded nothing for 100 ms. */
static void wait_unloads_settled(const kc_sim_t *sim)
{
    kc_sim_counters_t c;
    uint64_t last = UINT64_MAX;
    for (int i = 0; i < 600; i++) {
        kc_sim_counters(sim, &c);
        if (c.modules_unloaded == last)
            return;
        last = c.modules_unloaded;
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    fail_msg("the pool kept unloading for a minute");
}

static void test_the_automatic_bound_stays_low_for_a_stream_of_new_kernels(void **state)
{
    kcs_fx_t *f = *state;
    kcs_vecs_t v;

    publish_vadd(f);
    unsetenv("KCACHE_MAX_MODULES");
    relaunch(f, 0, 1);
    kcs_vecs_init(&v, N_ELEMS);
    /* Each kernel launched once: nothing comes back, so the bound stays
     * where it starts. */
    register_and_launch(f, NULL, N_STREAM, &v);
    wait_loaded_at_most(f->sim, KC_MODULES_AUTO_START);
    wait_unloads_settled(f->sim);
    kc_sim_counters_t c;
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.dead_launches, 0);
    assert_true(loaded_now(f->sim) <= KC_MODULES_AUTO_START);
    assert_true(c.modules_unloaded >= N_STREAM - KC_MODULES_AUTO_START);
    kcs_vecs_free(&v);
}

/* A loop over N_LOOP kernels, more than the automatic bound's start: the
 * bound grows and the loop stops reloading; a fixed bound of the same
 * size goes on reloading every round. */
static void test_the_automatic_bound_grows_when_unloaded_modules_come_back(void **state)
{
    kcs_fx_t *f = *state;
    static kc_kernel_t *ks[N_LOOP];
    kcs_vecs_t v;

    publish_vadd(f);
    kcs_vecs_init(&v, N_ELEMS);
    for (int fixed = 0; fixed < 2; fixed++) {
        unsetenv("KCACHE_MAX_MODULES");
        relaunch(f, fixed ? KC_MODULES_AUTO_START : 0, 0);
        register_kernels(f, ks, N_LOOP);
        /* Round 1 loads all, and the pool unloads down under the bound;
         * round 2 reloads those, past an eighth of the bound. */
        launch_all(ks, N_LOOP, &v);
        wait_loaded_at_most(f->sim, KC_MODULES_AUTO_START);
        launch_all(ks, N_LOOP, &v);
        wait_unloads_settled(f->sim);
        /* Round 3 reloads what the pool unloaded before the bound grew. */
        launch_all(ks, N_LOOP, &v);
        wait_unloads_settled(f->sim);
        if (fixed)
            wait_loaded_at_most(f->sim, KC_MODULES_AUTO_START);
        uint64_t before = loads(f->sim);
        launch_all(ks, N_LOOP, &v);
        launch_all(ks, N_LOOP, &v);
        wait_unloads_settled(f->sim);
        uint64_t reloaded = loads(f->sim) - before;
        /* Round 4 starts with at most the bound loaded (the waits): under
         * a fixed bound it loads the rest again; round 5 may start before
         * the pool caught up, so only round 4's count is certain. */
        if (fixed)
            assert_true(reloaded >= N_LOOP - KC_MODULES_AUTO_START);
        else
            assert_int_equal(reloaded, 0);
        kc_sim_counters_t c;
        kc_sim_counters(f->sim, &c);
        assert_int_equal(c.dead_launches, 0);
    }
    kcs_vecs_free(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_past_the_bound_modules_are_unloaded_and_loaded_again_by_a_launch, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_the_clock_spares_a_kernel_launched_between_every_other, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_threads_launching_while_modules_are_unloaded_never_launch_an_unloaded_one,
            setup, teardown),
        cmocka_unit_test_setup_teardown(test_without_a_bound_nothing_is_unloaded, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_the_bound_comes_from_KCACHE_MAX_MODULES_when_the_option_is_0, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_module_whose_build_is_not_stored_is_never_unloaded, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_build_gone_from_the_store_gives_an_error_on_reload_not_a_crash, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_the_automatic_bound_stays_low_for_a_stream_of_new_kernels, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_the_automatic_bound_grows_when_unloaded_modules_come_back, setup,
            teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
