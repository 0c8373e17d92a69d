/* The launcher over a remote tier that misbehaves, against real
 * redis-servers on loopback, simulation device, real NVRTC cubins: a
 * server killed in the middle of a run and restarted, a server answering
 * slower than the timeout (DEBUG SLEEP), values replaced by garbage or by
 * a value of the wrong type. Every launch succeeds, the local store holds
 * nothing damaged, and the store's counters say what happened. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "kc_redis.h"
#include "kc_simkernels.h"
#include "kcache/launch.h"
#include "kcache/remote.h"
#include "kcache/store.h"

static const int64_t blocks[] = {64, 128, 256, 512};
static const kc_param_spec_t params[] = {{"BLOCK", blocks, 4}};

static char g_root[512];

static int group_setup(void **state)
{
    (void)state;
    unsetenv("KCACHE_TRUST");
    unsetenv("KCACHE_REMOTE_SIGN_KEY");
    unsetenv("KCACHE_REMOTE_PREFIX");
    /* Generous on a loaded machine; the slow-server test sets its own. */
    setenv("KCACHE_REMOTE_TIMEOUT_MS", "10000", 1);
    return kct_tmpdir("test_launch_remote_faults", g_root, sizeof(g_root));
}

static int group_teardown(void **state)
{
    (void)state;
    kct_rmtree(g_root, 1);
    unsetenv("KCACHE_REMOTE");
    return 0;
}

static const char *machine(const char *name)
{
    static char dir[8][600];
    static int next;
    char *d = dir[next++ % 8];
    snprintf(d, sizeof(dir[0]), "%s/%s", g_root, name);
    return d;
}

/* One machine's launcher, kept across several launches. */
typedef struct box {
    kc_sim_t *sim;
    kc_launcher_t *l;
    kc_kernel_t *k;
} box_t;

static void box_open(box_t *b, const char *dir)
{
    kc_kernel_spec_t spec = kcs_inc_spec("faults.inc", params);
    memset(b, 0, sizeof(*b));
    assert_int_equal(kc_sim_create(NULL, &b->sim), KC_OK);
    assert_int_equal(kc_sim_register(b->sim, "inc", kcs_sim_inc, kcs_cost_256, NULL),
                     KC_OK);
    kc_launcher_opts_t o = {.size = sizeof(kc_launcher_opts_t),
                            .device = KC_DEVICE_SIM,
                            .sim = b->sim,
                            .store_dir = dir};
    o.budget_ms = 0.01;
    o.min_reps = 3;
    o.max_reps = 5;
    assert_int_equal(kc_launcher_create(&o, &b->l), KC_OK);
    assert_int_equal(kc_kernel_get(b->l, &spec, &b->k), KC_OK);
}

/* Launch inc on n zeros: it must succeed and make every element 1. */
static void box_launch(box_t *b, int n)
{
    float *x = calloc((size_t)n, sizeof(float));
    int64_t dims[1] = {n};
    kc_arg_t a[2] = {{.ptr = (uint64_t)(uintptr_t)x, .rank = 1, .dims = dims},
                     {.value.i = n}};
    assert_non_null(x);
    if (kc_kernel_launch(b->k, NULL, a, 2) != KC_OK)
        fail_msg("launch n=%d: %s", n, kc_launcher_errmsg(b->l));
    for (int i = 0; i < n; i++)
        assert_true(x[i] == 1.0f);
    free(x);
}

static kc_kernel_stats_t box_close(box_t *b)
{
    kc_kernel_stats_t s;
    kc_launcher_stats(b->l, &s);
    kc_launcher_destroy(b->l);
    kc_sim_destroy(b->sim);
    return s;
}

/* Every build's cubin reads back intact and every tuning's winner is
 * there; the corrupt counter is 0. Returns the store's counters. */
static int check_build(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                       const void *data, size_t len)
{
    kc_store_t *st = user;
    kc_record_t *rec = NULL, *b = NULL;
    void *cubin = NULL;
    size_t cubin_len = 0;
    (void)data;
    (void)len;
    if (kind == KC_REC_BUILD) {
        assert_int_equal(kc_store_get_build_cubin(st, key, &rec, &cubin, &cubin_len),
                         KC_OK);
        assert_true(cubin_len > 0);
    } else {
        assert_int_equal(kc_store_get(st, KC_REC_TUNING, key, &rec), KC_OK);
        assert_int_equal(kc_store_get(st, KC_REC_BUILD, &rec->u.tuning.winner_build, &b),
                         KC_OK);
    }
    kc_free(cubin);
    kc_free(b);
    kc_free(rec);
    return 0;
}

static kc_store_stats_t store_clean(const char *dir)
{
    kc_store_t *st = NULL;
    kc_store_stats_t s;
    assert_int_equal(kc_store_open(dir, NULL, &st), KC_OK);
    kc_store_iterate(st, KC_REC_BUILD, check_build, st);
    kc_store_iterate(st, KC_REC_TUNING, check_build, st);
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    assert_int_equal(s.counters[KC_COUNTER_CORRUPT], 0);
    kc_store_close(st);
    return s;
}

/* The server dies between two launches of one process, then comes back
 * on the same port (empty: no persistence). */
static void test_a_server_killed_mid_run_and_restarted(void **state)
{
    (void)state;
    kct_redis_t srv, again;
    const char *a = machine("killed");
    box_t b;

    assert_int_equal(kct_redis_start(&srv, 0), 0);
    setenv("KCACHE_REMOTE", srv.url, 1);
    box_open(&b, a);
    box_launch(&b, 1000);
    kct_redis_stop(&srv);
    box_launch(&b, 5000);
    box_launch(&b, 5000);
    assert_int_equal(kct_redis_start(&again, srv.port), 0);
    box_launch(&b, 20000);
    kc_kernel_stats_t ls = box_close(&b);
    assert_int_equal(ls.tunes, 3);
    kc_store_stats_t s = store_clean(a);
    assert_int_equal(s.records[KC_REC_TUNING], 3);
    assert_true(s.counters[KC_COUNTER_REMOTE_ERRORS] >= 1);
    assert_int_equal(s.counters[KC_COUNTER_REMOTE_REJECTED], 0);

    /* A new process on another machine: the restarted server works. */
    const char *c = machine("after_restart");
    box_open(&b, c);
    box_launch(&b, 1000);
    ls = box_close(&b);
    assert_int_equal(ls.tunes, 1); /* the old tuning went with the server */
    box_t d;
    box_open(&d, machine("after_restart2"));
    box_launch(&d, 1000);
    ls = box_close(&d);
    assert_int_equal(ls.tunes, 0);
    assert_int_equal(ls.remote_hits, 1);
    kct_redis_stop(&again);
}

/* DEBUG SLEEP: the server stops answering for longer than the I/O timeout
 * (250 ms) while a machine misses: it times out, tunes for itself. */
static void test_a_server_slower_than_the_timeout(void **state)
{
    (void)state;
    kct_redis_t srv;
    char cmd[256];
    box_t b;

    assert_int_equal(kct_redis_start(&srv, 0), 0);
    setenv("KCACHE_REMOTE", srv.url, 1);
    box_open(&b, machine("slow_src"));
    box_launch(&b, 1000);
    box_close(&b);

    const char *d = machine("slow");
    setenv("KCACHE_REMOTE_TIMEOUT_MS", "250", 1); /* the default */
    box_open(&b, d); /* registration (builds pulled) while the server answers */
    assert_int_equal(kc_kernel_wait_compiled(b.k), KC_OK);
    snprintf(cmd, sizeof(cmd), "redis-cli -p %d DEBUG SLEEP 1.5 >/dev/null 2>&1 &",
             srv.port);
    assert_int_equal(system(cmd), 0);
    /* Wait until the server is asleep: a PING of our own times out. */
    for (int i = 0; i < 100; i++) {
        redisContext *c =
            redisConnectWithTimeout("127.0.0.1", srv.port, (struct timeval){0, 100000});
        redisSetTimeout(c, (struct timeval){0, 50000});
        redisReply *rep = redisCommand(c, "PING");
        int asleep = rep == NULL;
        freeReplyObject(rep);
        redisFree(c);
        if (asleep)
            break;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    box_launch(&b, 1000);
    kc_kernel_stats_t ls = box_close(&b);
    assert_int_equal(ls.remote_hits, 0);
    assert_int_equal(ls.tunes, 1);
    kc_store_stats_t s = store_clean(d);
    assert_true(s.counters[KC_COUNTER_REMOTE_TIMEOUTS] >= 1);
    assert_true(s.counters[KC_COUNTER_REMOTE_PULLS] <= 4); /* builds, before it slept */
    setenv("KCACHE_REMOTE_TIMEOUT_MS", "10000", 1);
    nanosleep(&(struct timespec){1, 600 * 1000 * 1000}, NULL);
    kct_redis_stop(&srv);
}

/* Every value on the server replaced by garbage, one by a list (a value
 * of the wrong type): refused, counted, compiled and tuned locally. */
static void test_garbage_values(void **state)
{
    (void)state;
    kct_redis_t srv;
    box_t b;
    redisContext *c;
    redisReply *keys;
    size_t n_keys;

    assert_int_equal(kct_redis_start(&srv, 0), 0);
    setenv("KCACHE_REMOTE", srv.url, 1);
    box_open(&b, machine("garbage_src"));
    box_launch(&b, 1000);
    box_close(&b);

    c = redisConnect("127.0.0.1", srv.port);
    assert_non_null(c);
    keys = redisCommand(c, "KEYS kcache:1:*");
    assert_non_null(keys);
    n_keys = keys->elements;
    assert_true(n_keys >= 9); /* a tuning, 4 builds, 4 blobs */
    for (size_t i = 0; i < n_keys; i++) {
        const char *k = keys->element[i]->str;
        if (strstr(k, ":tuning:")) {
            freeReplyObject(redisCommand(c, "DEL %s", k));
            freeReplyObject(redisCommand(c, "RPUSH %s x", k)); /* wrong type */
        } else {
            char junk[300];
            for (size_t j = 0; j < sizeof(junk); j++)
                junk[j] = (char)(j * 31 + i);
            freeReplyObject(redisCommand(c, "SET %s %b", k, junk, sizeof(junk)));
        }
    }
    freeReplyObject(keys);
    redisFree(c);

    const char *d = machine("garbage");
    box_open(&b, d);
    box_launch(&b, 1000);
    kc_kernel_stats_t ls = box_close(&b);
    assert_int_equal(ls.remote_hits, 0);
    assert_int_equal(ls.tunes, 1);
    assert_int_equal(ls.compiles, 4);
    kc_store_stats_t s = store_clean(d);
    assert_int_equal(s.counters[KC_COUNTER_REMOTE_REJECTED], 4); /* the builds */
    assert_true(s.counters[KC_COUNTER_REMOTE_ERRORS] >= 1);      /* the list */
    assert_int_equal(s.counters[KC_COUNTER_REMOTE_PULLS], 0);
    kct_redis_stop(&srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_server_killed_mid_run_and_restarted),
        cmocka_unit_test(test_a_server_slower_than_the_timeout),
        cmocka_unit_test(test_garbage_values),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
