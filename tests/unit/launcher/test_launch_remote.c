/* The launcher over the remote tier (KCACHE_REMOTE), against a real
 * redis-server on loopback, simulation device, real NVRTC cubins: what one
 * machine tunes, another launches with no compile and no tuning, and a new
 * shape there tunes with the builds the first machine compiled; a remote
 * that lies or is down costs a local tuning, never a failed launch. Each
 * "machine" is a launcher on its own empty store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kc_redis.h"
#include "kc_simkernels.h"
#include "kcache/bundle.h"
#include "kcache/launch.h"
#include "kcache/remote.h"
#include "kcache/store.h"

static const int64_t blocks[] = {64, 128, 256, 512};
static const kc_param_spec_t params[] = {{"BLOCK", blocks, 4}};

static kct_redis_t g_redis;
static char g_root[512];

static int group_setup(void **state)
{
    (void)state;
    if (kct_tmpdir("test_launch_remote", g_root, sizeof(g_root)) != 0)
        return -1;
    /* On a loaded machine a command can miss the default 250 ms and fail
     * open; these tests are about what a working remote holds. */
    setenv("KCACHE_REMOTE_TIMEOUT_MS", "10000", 1);
    return kct_redis_start(&g_redis, 0) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    kct_redis_stop(&g_redis);
    kct_rmtree(g_root, 1);
    unsetenv("KCACHE_REMOTE");
    return 0;
}

/* A new machine: an empty store directory under the test's root. */
static const char *machine(const char *name)
{
    static char dir[8][600];
    static int next;
    char *d = dir[next++ % 8];
    snprintf(d, sizeof(dir[0]), "%s/%s", g_root, name);
    return d;
}

static kcs_inc_run_t run(const char *dir, int n, const char *remote)
{
    if (remote)
        setenv("KCACHE_REMOTE", remote, 1);
    else
        unsetenv("KCACHE_REMOTE");
    return kcs_run_inc(dir, "remote.inc", params, n);
}

static uint64_t records(const char *dir, int kind)
{
    kc_store_t *st = NULL;
    kc_store_stats_t s;
    assert_int_equal(kc_store_open(dir, NULL, &st), KC_OK);
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    kc_store_close(st);
    return s.records[kind];
}

static int first_key(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                     const void *data, size_t len)
{
    (void)kind;
    (void)data;
    (void)len;
    *(kc_key_t *)user = *key;
    return 1;
}

/* The only tuning in dir and its winner's blob key. */
static void tuning_chain(const char *dir, kc_key_t *tkey, kc_key_t *blob)
{
    kc_store_t *st = NULL;
    kc_record_t *t = NULL, *b = NULL;
    assert_int_equal(kc_store_open(dir, NULL, &st), KC_OK);
    assert_int_equal(kc_store_iterate(st, KC_REC_TUNING, first_key, tkey), 1);
    assert_int_equal(kc_store_get(st, KC_REC_TUNING, tkey, &t), KC_OK);
    assert_int_equal(kc_store_get(st, KC_REC_BUILD, &t->u.tuning.winner_build, &b),
                     KC_OK);
    *blob = b->u.build.blob;
    kc_free(b);
    kc_free(t);
    kc_store_close(st);
}

static void test_a_tuning_made_on_one_machine_is_a_hit_on_another(void **state)
{
    (void)state;
    const char *a = machine("a"), *b = machine("b");

    kcs_inc_run_t first = run(a, 1000, g_redis.url);
    assert_int_equal(first.rc, KC_OK);
    assert_true(first.all_ones);
    assert_int_equal(first.st.tunes, 1);
    assert_int_equal(first.st.remote_hits, 0);

    /* Machine b: empty store, same remote. */
    kcs_inc_run_t second = run(b, 1000, g_redis.url);
    assert_int_equal(second.rc, KC_OK);
    assert_true(second.all_ones);
    assert_int_equal(second.st.remote_hits, 1);
    assert_int_equal(second.st.store_hits, 1);
    assert_int_equal(second.st.tunes, 0);
    /* Registration pulled every candidate's build instead of compiling. */
    assert_int_equal(second.st.compiles, 0);
    assert_int_equal(second.st.builds_reused, 4);
    /* The chain is in b's store now: without the remote, a store hit. */
    assert_int_equal(records(b, KC_REC_TUNING), 1);
    kcs_inc_run_t third = run(b, 1000, NULL);
    assert_int_equal(third.rc, KC_OK);
    assert_int_equal(third.st.store_hits, 1);
    assert_int_equal(third.st.remote_hits, 0);
    assert_int_equal(third.st.tunes, 0);
}

/* A new signature on machine b tunes without compiling: the builds came
 * from the remote. */
static void test_a_new_shape_on_another_machine_tunes_with_remote_builds(void **state)
{
    (void)state;
    const char *a = machine("g"), *b = machine("h");

    assert_int_equal(run(a, 3000, g_redis.url).rc, KC_OK);
    kcs_inc_run_t got = run(b, 5000, g_redis.url);
    assert_int_equal(got.rc, KC_OK);
    assert_true(got.all_ones);
    assert_int_equal(got.st.tunes, 1);
    assert_int_equal(got.st.compiles, 0);
    assert_int_equal(got.st.builds_reused, 4);
}

/* The remote's copy of the winner's cubin is damaged: the pull is refused,
 * the new machine tunes for itself, and its store holds nothing bad. */
static void test_a_damaged_remote_chain_is_refused_and_tuned_locally(void **state)
{
    (void)state;
    const char *a = machine("c"), *d = machine("d");
    kc_key_t tkey, blob;
    kc_remote_t *r = NULL;
    kc_store_t *st = NULL;
    kc_store_stats_t s;

    assert_int_equal(run(a, 2000, g_redis.url).rc, KC_OK);
    tuning_chain(a, &tkey, &blob);
    assert_int_equal(kc_remote_open(g_redis.url, NULL, &r), KC_OK);
    assert_int_equal(kc_remote_put(r, KC_REC_BLOB, &blob, "not a blob", 10), KC_OK);
    kc_remote_close(r);

    kcs_inc_run_t got = run(d, 2000, g_redis.url);
    assert_int_equal(got.rc, KC_OK);
    assert_true(got.all_ones);
    assert_int_equal(got.st.remote_hits, 0);
    assert_int_equal(got.st.tunes, 1);
    assert_int_equal(kc_store_open(d, NULL, &st), KC_OK);
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    assert_int_equal(s.counters[KC_COUNTER_CORRUPT], 0);
    assert_int_equal(s.records[KC_REC_TUNING], 1);
    kc_store_close(st);
}

/* Nothing listens at the remote's address, or its URL is not one: the
 * launcher tunes locally and launches. */
static void test_a_remote_that_is_down_or_misnamed_fails_open(void **state)
{
    (void)state;
    char down[64];
    snprintf(down, sizeof(down), "redis://127.0.0.1:%d", kct_free_port());

    kcs_inc_run_t got = run(machine("e"), 1000, down);
    assert_int_equal(got.rc, KC_OK);
    assert_true(got.all_ones);
    assert_int_equal(got.st.tunes, 1);
    assert_int_equal(got.st.remote_hits, 0);

    got = run(machine("f"), 1000, "http://not-redis");
    assert_int_equal(got.rc, KC_OK);
    assert_true(got.all_ones);
    assert_int_equal(got.st.tunes, 1);
}

static uint64_t counter(const char *dir, int c)
{
    kc_store_t *st = NULL;
    kc_store_stats_t s;
    assert_int_equal(kc_store_open(dir, NULL, &st), KC_OK);
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    kc_store_close(st);
    return s.counters[c];
}

/* A CPU-only job (no device: it only compiles) pushes its builds; a GPU
 * machine then tunes without compiling anything, and the counters of both
 * stores say what went over the wire. */
static void test_builds_published_without_a_device_are_pushed(void **state)
{
    (void)state;
    const char *ci = machine("ci"), *gpu = machine("gpu");
    kc_kernel_spec_t spec = kcs_inc_spec("remote_ci.inc", params);
    kc_launcher_opts_t o = KC_LAUNCHER_OPTS_INIT;
    kc_launcher_t *l = NULL;
    kc_kernel_t *k = NULL;

    /* A fresh key space: the earlier tests pushed these builds already. */
    setenv("KCACHE_REMOTE_PREFIX", "ci:", 1);
    setenv("KCACHE_REMOTE", g_redis.url, 1);
    o.device = KC_DEVICE_NONE;
    o.arch = "sm_90"; /* the simulation device's */
    o.store_dir = ci;
    assert_int_equal(kc_launcher_create(&o, &l), KC_OK);
    assert_int_equal(kc_kernel_get(l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_wait_compiled(k), KC_OK);
    kc_launcher_destroy(l); /* waits for the write-behind */
    assert_int_equal(records(ci, KC_REC_BUILD), 4);
    assert_int_equal(counter(ci, KC_COUNTER_REMOTE_PUSHES), 4);
    assert_int_equal(counter(ci, KC_COUNTER_REMOTE_DROPS), 0);

    kcs_inc_run_t got = run(gpu, 1000, g_redis.url);
    assert_int_equal(got.rc, KC_OK);
    assert_true(got.all_ones);
    assert_int_equal(got.st.compiles, 0);
    assert_int_equal(got.st.builds_reused, 4);
    assert_int_equal(got.st.tunes, 1);
    assert_int_equal(counter(gpu, KC_COUNTER_REMOTE_PULLS), 4);
    assert_int_equal(counter(gpu, KC_COUNTER_REMOTE_PUSHES), 1); /* its tuning */
    unsetenv("KCACHE_REMOTE_PREFIX");
}

/* A write-behind queue of one, and more pushes than that at once: the
 * rest are dropped and counted, and every launch still succeeds. */
static void test_a_full_write_behind_queue_drops_and_counts(void **state)
{
    (void)state;
    const char *ci = machine("queue");
    kc_kernel_spec_t spec = kcs_inc_spec("remote_queue.inc", params);
    kc_launcher_opts_t o = KC_LAUNCHER_OPTS_INIT;
    kc_launcher_t *l = NULL;
    kc_kernel_t *k = NULL;

    setenv("KCACHE_REMOTE_PREFIX", "queue:", 1);
    setenv("KCACHE_REMOTE", g_redis.url, 1);
    setenv("KCACHE_REMOTE_QUEUE", "1", 1);
    o.device = KC_DEVICE_NONE;
    o.arch = "sm_90";
    o.store_dir = ci;
    o.compile_threads = 1;
    assert_int_equal(kc_launcher_create(&o, &l), KC_OK);
    assert_int_equal(kc_kernel_get(l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_wait_compiled(k), KC_OK);
    kc_launcher_destroy(l);
    unsetenv("KCACHE_REMOTE_QUEUE");
    unsetenv("KCACHE_REMOTE_PREFIX");
    /* Four builds published together, one task slot: 1 pushed, 3 dropped
     * (the pool's one thread is still finishing the compiles when they
     * are queued). */
    assert_int_equal(
        counter(ci, KC_COUNTER_REMOTE_PUSHES) + counter(ci, KC_COUNTER_REMOTE_DROPS), 4);
    assert_true(counter(ci, KC_COUNTER_REMOTE_DROPS) >= 3);
}

/* With KCACHE_TRUST, what an untrusted party wrote to Redis (valid
 * records, unsigned) is refused: the kernel is compiled and tuned locally,
 * and the store counts the refusals. What the trusted key signed is a hit
 * with no compile. */
static void test_with_a_trust_key_untrusted_records_are_refused(void **state)
{
    (void)state;
    const char *evil = machine("evil"), *node = machine("node");
    const char *ci = machine("signed"), *node2 = machine("node2");
    char base[600], key[700], pub[700];

    snprintf(base, sizeof(base), "%s/fleet", g_root);
    assert_int_equal(kc_bundle_keygen(base, NULL), KC_OK);
    snprintf(key, sizeof(key), "%s.key", base);
    snprintf(pub, sizeof(pub), "%s.pub", base);
    setenv("KCACHE_REMOTE_PREFIX", "trust:", 1);

    /* The untrusted writer: no key, so unsigned values. */
    kcs_inc_run_t w = run(evil, 1000, g_redis.url);
    assert_int_equal(w.rc, KC_OK);
    assert_int_equal(w.st.tunes, 1);

    setenv("KCACHE_TRUST", pub, 1);
    kcs_inc_run_t got = run(node, 1000, g_redis.url);
    assert_int_equal(got.rc, KC_OK);
    assert_true(got.all_ones);
    assert_int_equal(got.st.remote_hits, 0);
    assert_int_equal(got.st.tunes, 1);
    assert_int_equal(got.st.compiles, 4); /* the unsigned builds were refused too */
    assert_true(counter(node, KC_COUNTER_REMOTE_UNTRUSTED) >= 5);
    assert_int_equal(counter(node, KC_COUNTER_REMOTE_PULLS), 0);
    assert_int_equal(counter(node, KC_COUNTER_CORRUPT), 0);

    /* The trusted signer (trusting its own key, so refusing the unsigned
     * values too) tunes and overwrites them with signed ones; a new node
     * pulls. */
    setenv("KCACHE_REMOTE_SIGN_KEY", key, 1);
    kcs_inc_run_t signer = run(ci, 1000, g_redis.url);
    assert_int_equal(signer.rc, KC_OK);
    assert_int_equal(signer.st.tunes, 1);
    unsetenv("KCACHE_REMOTE_SIGN_KEY");
    got = run(node2, 1000, g_redis.url);
    assert_int_equal(got.rc, KC_OK);
    assert_true(got.all_ones);
    assert_int_equal(got.st.remote_hits, 1);
    assert_int_equal(got.st.tunes, 0);
    assert_int_equal(got.st.compiles, 0);
    assert_int_equal(counter(node2, KC_COUNTER_REMOTE_UNTRUSTED), 0);
    unsetenv("KCACHE_TRUST");
    unsetenv("KCACHE_REMOTE_PREFIX");
}

/* Two shards, one of them dead: launches succeed, the keys of the live
 * one are shared, and the dead one is counted as errors. */
static void test_a_dead_shard_fails_open(void **state)
{
    (void)state;
    char urls[400];
    snprintf(urls, sizeof(urls), "%s,redis://127.0.0.1:%d", g_redis.url, kct_free_port());
    setenv("KCACHE_REMOTE_PREFIX", "shard:", 1);
    const char *a = machine("sa"), *b = machine("sb");
    kcs_inc_run_t first = run(a, 1000, urls);
    assert_int_equal(first.rc, KC_OK);
    assert_true(first.all_ones);
    assert_int_equal(first.st.tunes, 1);
    assert_true(counter(a, KC_COUNTER_REMOTE_ERRORS) >= 1);
    kcs_inc_run_t second = run(b, 1000, urls);
    assert_int_equal(second.rc, KC_OK);
    assert_true(second.all_ones);
    /* Whatever lived on the dead shard was compiled again; the rest was
     * pulled: together, every candidate. */
    assert_int_equal(second.st.compiles + second.st.builds_reused, 4);
    unsetenv("KCACHE_REMOTE_PREFIX");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_tuning_made_on_one_machine_is_a_hit_on_another),
        cmocka_unit_test(test_a_new_shape_on_another_machine_tunes_with_remote_builds),
        cmocka_unit_test(test_a_damaged_remote_chain_is_refused_and_tuned_locally),
        cmocka_unit_test(test_a_remote_that_is_down_or_misnamed_fails_open),
        cmocka_unit_test(test_builds_published_without_a_device_are_pushed),
        cmocka_unit_test(test_a_full_write_behind_queue_drops_and_counts),
        cmocka_unit_test(test_with_a_trust_key_untrusted_records_are_refused),
        cmocka_unit_test(test_a_dead_shard_fails_open),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
