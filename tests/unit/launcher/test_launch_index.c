/* The launcher at scale: the hash index (index.c) that finds kernels by
 * identity and by name and stored winners by kernel, a launcher whose
 * creation starts no thread (pool.c), and many kernels in one process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "index.h"
#include "kc_simkernels.h"
#include "kc_testutil.h"
#include "kcache/launch.h"
#include "kcache/sim.h"
#include "kcache/store.h"
#include "launcher_int.h"
#include "pool.h"

/* ---- the index ---------------------------------------------------------- */

typedef struct item {
    long key;
    long value;
} item_t;

static int same_item(const void *item, const void *key)
{
    return ((const item_t *)item)->key == *(const long *)key;
}

enum { N_ITEMS = 100000 };

static uint64_t item_hash(long i)
{
    return (uint64_t)(i < 64 ? i % 7 : i) * 0x9e3779b97f4a7c15u;
}

static void
test_index_finds_100000_items_and_replaces_the_one_of_the_same_key(void **state)
{
    (void)state;
    kc__index_t ix = KC__INDEX_INIT;
    item_t *items = calloc(N_ITEMS, sizeof(*items));
    item_t again = {77, -1};
    void *old = &again;
    assert_non_null(items);
    /* The first 64 keys share 7 hash values: items that share a hash are
     * told apart by same(). */
    for (long i = 0; i < N_ITEMS; i++) {
        items[i] = (item_t){i, i * 3};
        assert_int_equal(
            kc__index_put(&ix, item_hash(i), &items[i], same_item, &items[i].key, &old),
            KC_OK);
        assert_null(old);
    }
    assert_int_equal(ix.count, N_ITEMS);
    for (long i = 0; i < N_ITEMS; i += 997) {
        item_t *it = kc__index_get(&ix, item_hash(i), same_item, &i);
        assert_non_null(it);
        assert_int_equal(it->value, i * 3);
    }
    long absent = N_ITEMS + 5;
    assert_null(kc__index_get(&ix, item_hash(absent), same_item, &absent));
    /* The same key again replaces, and hands back the one replaced. */
    assert_int_equal(
        kc__index_put(&ix, item_hash(77), &again, same_item, &again.key, &old), KC_OK);
    assert_ptr_equal(old, &items[77]);
    assert_int_equal(ix.count, N_ITEMS);
    long k77 = 77;
    assert_ptr_equal(kc__index_get(&ix, item_hash(77), same_item, &k77), &again);
    kc__index_free(&ix);
    assert_null(kc__index_get(&ix, 0, same_item, &k77));
    free(items);
}

static void test_index_reserve_makes_room_so_that_puts_cannot_fail(void **state)
{
    (void)state;
    kc__index_t ix = KC__INDEX_INIT;
    item_t items[100];
    assert_int_equal(kc__index_reserve(&ix, 100), KC_OK);
    size_t cap = ix.cap;
    assert_true(cap >= 200);
    for (long i = 0; i < 100; i++) {
        items[i] = (item_t){i, i};
        assert_int_equal(kc__index_put(&ix, kc__index_str_hash("x") + (uint64_t)i,
                                       &items[i], same_item, &items[i].key, NULL),
                         KC_OK);
    }
    assert_int_equal(ix.cap, cap); /* no allocation on the way */
    kc__index_free(&ix);
}

/* ---- the pool starts threads when work needs them ----------------------- */

static atomic_int g_ran;

static void bump_task(void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_ran, 1);
}

static void test_pool_starts_no_thread_until_a_task_needs_one(void **state)
{
    (void)state;
    kc__pool_t *pool;
    void *args[64] = {0};
    assert_int_equal(kc__pool_create(4, &pool), KC_OK);
    assert_int_equal(kc__pool_size(pool), 4);
    assert_int_equal(kc__pool_started(pool), 0);
    atomic_store(&g_ran, 0);
    assert_int_equal(kc__pool_run_all(pool, bump_task, args, 64), KC_OK);
    assert_int_equal(atomic_load(&g_ran), 64);
    unsigned started = kc__pool_started(pool);
    assert_true(started >= 1 && started <= 4);
    for (int i = 0; i < 64; i++)
        assert_int_equal(kc__pool_submit(pool, bump_task, NULL), KC_OK);
    assert_true(kc__pool_started(pool) <= 4);
    kc__pool_destroy(pool);
    assert_int_equal(atomic_load(&g_ran), 128);
}

/* A pool of size 0 takes the CPUs its process may run on (a container's
 * cpuset, a taskset), not the machine's online CPUs: with the affinity cut
 * to one CPU, it starts one thread however many tasks there are. The size
 * is asked for by the thread that starts the first thread (here, this one). */
static void test_an_unsized_pool_takes_the_cpus_the_process_may_run_on(void **state)
{
    (void)state;
    cpu_set_t all, one;
    assert_int_equal(sched_getaffinity(0, sizeof(all), &all), 0);
    int first = 0;
    while (!CPU_ISSET(first, &all))
        first++;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);

    kc__pool_t *pool;
    void *args[32] = {0};
    assert_int_equal(kc__pool_create(0, &pool), KC_OK);
    assert_int_equal(kc__pool_started(pool), 0);
    atomic_store(&g_ran, 0);
    assert_int_equal(kc__pool_run_all(pool, bump_task, args, 32), KC_OK);
    assert_int_equal(atomic_load(&g_ran), 32);
    assert_int_equal(kc__pool_size(pool), 1);
    assert_true(kc__pool_started(pool) <= 1);
    kc__pool_destroy(pool);

    assert_int_equal(sched_setaffinity(0, sizeof(all), &all), 0);
    int n = CPU_COUNT(&all);
    assert_int_equal(kc__pool_create(0, &pool), KC_OK);
    assert_int_equal(kc__pool_size(pool), n > 16 ? 16 : n);
    kc__pool_destroy(pool);
}

/* A pool whose threads were started, in a process forked from the one that
 * made it: the threads stayed in the parent, so the child's pool starts
 * its own for what is queued there. Before, a task queued in the child
 * waited for the parent's threads for ever (a launcher used in a forked
 * child never finished compiling a kernel it registered there). */
static int child_pool_runs_a_task(kc__pool_t *pool)
{
    atomic_store(&g_ran, 0);
    if (kc__pool_submit(pool, bump_task, NULL) != KC_OK)
        return 2;
    for (int ms = 0; ms < 10000 && atomic_load(&g_ran) == 0; ms++)
        usleep(1000);
    if (atomic_load(&g_ran) != 1)
        return 3; /* no thread took it */
    if (kc__pool_started(pool) < 1)
        return 4;
    kc__pool_destroy(pool);
    return 0;
}

static void test_a_pool_in_a_forked_child_starts_its_own_threads(void **state)
{
    (void)state;
    kc__pool_t *pool;
    void *args[16] = {0};
    int status = 0;

#ifdef KCT_UNDER_TSAN
    /* ThreadSanitizer does not support starting threads in a child of a
     * process with threads, which is this test; the default and ASan
     * builds run it. */
    skip();
#endif

    assert_int_equal(kc__pool_create(2, &pool), KC_OK);
    assert_int_equal(kc__pool_run_all(pool, bump_task, args, 16), KC_OK);
    assert_true(kc__pool_started(pool) >= 1);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_pool_runs_a_task(pool));
    if (kct_wait_child(pid, 60000, &status) != 0)
        fail_msg("the forked child did not finish in a minute");
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    kc__pool_destroy(pool);
}

/* ---- a launcher and many kernels ----------------------------------------- */

static int setup(void **state)
{
    return kcs_fx_setup(state, "launch_index", 1);
}

static int teardown(void **state)
{
    return kcs_fx_teardown(state);
}

static const int64_t kBlock256[] = {256};
static const kc_param_spec_t kOneBlock[] = {{"BLOCK", kBlock256, 1}};
static const int64_t kBlocks2[] = {128, 256};
static const kc_param_spec_t kTwoBlocks[] = {{"BLOCK", kBlocks2, 2}};

static void
test_creating_a_launcher_starts_no_thread_and_registering_one_does(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_spec_t spec = kcs_vadd_spec("idx.vadd", kOneBlock);
    kc_kernel_t *k;

    /* The fixture's launcher is fresh: on a store, with the warm-up on. */
    assert_int_equal(kc__pool_started(f->l->pool), 0);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_wait_compiled(k), KC_OK);
    assert_true(kc__pool_started(f->l->pool) >= 1);
}

enum { N_KERNELS = 64 };

static void test_many_kernels_are_found_by_identity_and_by_name(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_t *ks[N_KERNELS], *k, *found;
    char names[N_KERNELS][16];
    kcs_vecs_t v;

    /* The first one compiles and publishes; the others, the same source
     * under other names, reuse its build. */
    kcs_vecs_init(&v, 1000);
    for (int i = 0; i < N_KERNELS; i++) {
        snprintf(names[i], sizeof(names[i]), "idx.k%d", i);
        kc_kernel_spec_t spec = kcs_vadd_spec(names[i], kOneBlock);
        assert_int_equal(kc_kernel_get(f->l, &spec, &ks[i]), KC_OK);
        if (i == 0)
            assert_int_equal(kc_kernel_launch(ks[0], NULL, v.args, 4), KC_OK);
    }
    kcs_vecs_free(&v);
    for (int i = 0; i < N_KERNELS; i++) {
        kc_kernel_spec_t spec = kcs_vadd_spec(names[i], kOneBlock);
        assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
        assert_ptr_equal(k, ks[i]);
        assert_int_equal(kc_kernel_find(f->l, names[i], &found), KC_OK);
        assert_ptr_equal(found, ks[i]);
    }
    assert_int_equal(kc_kernel_find(f->l, "idx.none", &found), KC_ENOTFOUND);
    assert_null(found);
    /* Another spec of a name already taken: find gives the newer one, the
     * older spec still its own kernel. */
    kc_kernel_spec_t other = kcs_vadd_spec(names[7], kTwoBlocks);
    kc_kernel_t *k7b;
    assert_int_equal(kc_kernel_get(f->l, &other, &k7b), KC_OK);
    assert_ptr_not_equal(k7b, ks[7]);
    assert_int_equal(kc_kernel_find(f->l, names[7], &found), KC_OK);
    assert_ptr_equal(found, k7b);
    kc_kernel_spec_t first = kcs_vadd_spec(names[7], kOneBlock);
    assert_int_equal(kc_kernel_get(f->l, &first, &k), KC_OK);
    assert_ptr_equal(k, ks[7]);
    kc_kernel_stats_t st;
    assert_int_equal(kc_launcher_stats(f->l, &st), KC_OK);
    assert_int_equal(st.configs, N_KERNELS + 2);
}

/* The prefetch index: one pass over the stored tunings serves every
 * registration, each kernel gets its own winners and none of another's. */
static void test_prefetch_index_gives_each_kernel_its_own_stored_winners(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_spec_t vadd = kcs_vadd_spec("idx.vadd", kTwoBlocks);
    kc_kernel_spec_t inc = kcs_inc_spec("idx.inc", kTwoBlocks);
    kc_kernel_spec_t inc1 = kcs_inc_spec("idx.inc1", kOneBlock); /* another space */
    kc_kernel_t *kv, *ki, *k1;
    kc_kernel_stats_t s;
    kc_sim_counters_t c;
    kcs_vecs_t v;
    float x[64] = {0};
    int64_t dims[1] = {64};
    kc_arg_t xargs[2] = {{.ptr = (uint64_t)(uintptr_t)x, .rank = 1, .dims = dims},
                         {.value.i = 64}};

    kcs_vecs_init(&v, 1000);
    assert_int_equal(kc_kernel_get(f->l, &vadd, &kv), KC_OK);
    assert_int_equal(kc_kernel_launch(kv, NULL, v.args, 4), KC_OK);
    assert_int_equal(kc_kernel_get(f->l, &inc, &ki), KC_OK);
    assert_int_equal(kc_kernel_launch(ki, NULL, xargs, 2), KC_OK);

    /* A new process. */
    kcs_new_sim(f, NULL);
    kcs_new_launcher(f);
    assert_int_equal(kc_kernel_get(f->l, &vadd, &kv), KC_OK);
    assert_int_equal(kc_kernel_get(f->l, &inc, &ki), KC_OK);
    assert_int_equal(kc_kernel_get(f->l, &inc1, &k1), KC_OK);
    assert_int_equal(kc_kernel_wait_compiled(kv), KC_OK);
    assert_int_equal(kc_kernel_wait_compiled(ki), KC_OK);
    assert_int_equal(kc_kernel_wait_compiled(k1), KC_OK);
    kc_kernel_stats(kv, &s);
    assert_int_equal(s.prefetched, 1);
    kc_kernel_stats(ki, &s);
    assert_int_equal(s.prefetched, 1);
    kc_kernel_stats(k1, &s);
    assert_int_equal(s.prefetched, 0);
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.modules_loaded, 2);
    /* Both launches are store hits on the modules prefetched. */
    assert_int_equal(kc_kernel_launch(kv, NULL, v.args, 4), KC_OK);
    kcs_vecs_check(&v);
    assert_int_equal(kc_kernel_launch(ki, NULL, xargs, 2), KC_OK);
    assert_true(x[0] == 2.0f && x[63] == 2.0f);
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.modules_loaded, 2);
    kc_kernel_stats(kv, &s);
    assert_int_equal(s.store_hits, 1);
    kc_kernel_stats(ki, &s);
    assert_int_equal(s.store_hits, 1);
    kcs_vecs_free(&v);
}

/* vadd's cost: BLOCK 128 wins from 4096 elements up, 256 below. */
static uint64_t cost_by_size(void *user, const kc_sim_launch_t *l)
{
    (void)user;
    long want = KCS_PARAM_I32(l->params[3]) >= 4096 ? 128 : 256;
    long d = (long)l->block[0] - want;
    return (uint64_t)(d < 0 ? -d : d) + 1000;
}

/* A kernel whose signatures won with different builds: the prefetch loads
 * each of them once (the index's entry grows by a winner, and the same
 * winner again is not added twice). */
static void test_prefetch_index_keeps_every_distinct_winner_of_a_kernel(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_spec_t vadd = kcs_vadd_spec("idx.vadd2", kTwoBlocks);
    kc_kernel_t *k;
    kc_kernel_stats_t s;
    kc_sim_counters_t c;
    kcs_vecs_t v;
    int sizes[3] = {1000, 8192, 2000}; /* winners 256, 128, 256 */

    assert_int_equal(kc_sim_register(f->sim, "vadd", kcs_sim_vadd, cost_by_size, &f->bh),
                     KC_OK);
    assert_int_equal(kc_kernel_get(f->l, &vadd, &k), KC_OK);
    for (int i = 0; i < 3; i++) {
        kcs_vecs_init(&v, sizes[i]);
        assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
        kcs_vecs_check(&v);
        kcs_vecs_free(&v);
    }
    kc_kernel_stats(k, &s);
    assert_int_equal(s.tunes, 3);

    kcs_new_sim(f, NULL);
    kcs_new_launcher(f);
    assert_int_equal(kc_kernel_get(f->l, &vadd, &k), KC_OK);
    assert_int_equal(kc_kernel_wait_compiled(k), KC_OK);
    kc_kernel_stats(k, &s);
    assert_int_equal(s.prefetched, 2);
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.modules_loaded, 2);
    for (int i = 0; i < 3; i++) {
        kcs_vecs_init(&v, sizes[i]);
        assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
        kcs_vecs_check(&v);
        kcs_vecs_free(&v);
    }
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.modules_loaded, 2); /* the three hits loaded nothing */
    kc_kernel_stats(k, &s);
    assert_int_equal(s.store_hits, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_index_finds_100000_items_and_replaces_the_one_of_the_same_key),
        cmocka_unit_test(test_index_reserve_makes_room_so_that_puts_cannot_fail),
        cmocka_unit_test(test_pool_starts_no_thread_until_a_task_needs_one),
        cmocka_unit_test(test_an_unsized_pool_takes_the_cpus_the_process_may_run_on),
        cmocka_unit_test(test_a_pool_in_a_forked_child_starts_its_own_threads),
        cmocka_unit_test_setup_teardown(
            test_creating_a_launcher_starts_no_thread_and_registering_one_does, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_many_kernels_are_found_by_identity_and_by_name, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_prefetch_index_gives_each_kernel_its_own_stored_winners, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_prefetch_index_keeps_every_distinct_winner_of_a_kernel, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
