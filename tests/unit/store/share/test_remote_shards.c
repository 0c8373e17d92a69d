/* Several redis-servers on loopback as one remote tier (a list of URLs):
 * rendezvous hashing puts each key on exactly one server, spreads them over
 * all, agrees whatever the order of the list; a server killed costs exactly
 * the chains that had a key on it (the rest still pull, the lost ones fail
 * fast with KC_EREMOTE), and dropping a server from the list moves no other
 * key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "kc_redis.h"
#include "kc_testutil.h"
#include "kcache/errors.h"
#include "kcache/record.h"
#include "kcache/remote.h"
#include "kcache/store.h"

#define N_SERVERS 3
#define N_CHAINS 30

static kct_redis_t g_s[N_SERVERS];

static int group_setup(void **state)
{
    (void)state;
    unsetenv("KCACHE_REMOTE_PREFIX");
    unsetenv("KCACHE_TRUST");
    unsetenv("KCACHE_REMOTE_SIGN_KEY");
    for (int i = 0; i < N_SERVERS; i++)
        if (kct_redis_start(&g_s[i], 0) != 0)
            return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < N_SERVERS; i++)
        kct_redis_stop(&g_s[i]);
    return 0;
}

static long long raw_int(int server, const char *fmt, const char *arg)
{
    redisContext *c = redisConnect("127.0.0.1", g_s[server].port);
    redisReply *rep;
    long long v;
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    rep = redisCommand(c, fmt, arg);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    v = rep->integer;
    freeReplyObject(rep);
    redisFree(c);
    return v;
}

/* The server that holds (kind, key), found by asking each. */
static int holder(kc_rec_kind_t kind, const kc_key_t *key)
{
    char hex[KC_KEY_HEX_LEN + 1], k[128];
    int found = -1;
    kc_key_to_hex(key, hex);
    snprintf(k, sizeof(k), "kcache:1:%s:%s", kc_rec_kind_name(kind), hex);
    for (int i = 0; i < N_SERVERS; i++)
        if (raw_int(i, "EXISTS %s", k) == 1) {
            assert_int_equal(found, -1); /* on one server only */
            found = i;
        }
    return found;
}

static void test_keys_spread_and_a_dead_server_costs_only_its_share(void **state)
{
    (void)state;
    char url[1024], rev[1024], two[1024], ra[512], rb[512], rc_[512];
    kc_store_t *a = NULL, *b = NULL, *c = NULL;
    kc_remote_opts_t o = KC_REMOTE_OPTS_INIT;
    kc_remote_t *r = NULL, *r_rev = NULL, *r_two = NULL;
    static kct_pub_t pub[N_CHAINS];
    int on[N_CHAINS][3], per_server[N_SERVERS] = {0};
    long long total = 0;

    snprintf(url, sizeof(url), "%s,%s %s", g_s[0].url, g_s[1].url, g_s[2].url);
    snprintf(rev, sizeof(rev), "%s %s,%s", g_s[2].url, g_s[0].url, g_s[1].url);
    snprintf(two, sizeof(two), "%s,%s", g_s[0].url, g_s[1].url);
    o.retry_after_ms = 60000; /* a dead server stays dead for this test */
    assert_int_equal(kc_remote_open(url, &o, &r), KC_OK);
    assert_int_equal(kc_remote_shards(r), 3);
    assert_int_equal(kc_remote_open(rev, &o, &r_rev), KC_OK);
    assert_int_equal(kc_remote_open(two, &o, &r_two), KC_OK);
    assert_int_equal(kct_store_scratch("shards_a", ra, sizeof(ra), &a), 0);
    assert_int_equal(kct_store_scratch("shards_b", rb, sizeof(rb), &b), 0);
    assert_int_equal(kct_store_scratch("shards_c", rc_, sizeof(rc_), &c), 0);

    for (int i = 0; i < N_CHAINS; i++) {
        assert_int_equal(kct_pub_make(&pub[i], 100 + (uint64_t)i, 1), KC_OK);
        assert_int_equal(kc_store_publish(a, &pub[i].pub), KC_OK);
        assert_int_equal(kc_remote_push(r, a, &pub[i].tuning_key), KC_OK);
        on[i][0] = holder(KC_REC_TUNING, &pub[i].tuning_key);
        on[i][1] = holder(KC_REC_BUILD, &pub[i].build_keys[0]);
        on[i][2] = holder(KC_REC_BLOB, &pub[i].blob_keys[0]);
        for (int j = 0; j < 3; j++) {
            assert_true(on[i][j] >= 0);
            per_server[on[i][j]]++;
        }
    }
    for (int s = 0; s < N_SERVERS; s++) {
        long long n = raw_int(s, "DBSIZE", NULL);
        assert_int_equal(n, per_server[s]);
        assert_true(n >= 10); /* 90 keys over 3 servers: none is left out */
        total += n;
    }
    assert_int_equal(total, 3 * N_CHAINS);

    /* The list in another order finds every chain. */
    for (int i = 0; i < N_CHAINS; i++)
        assert_int_equal(kc_remote_pull(r_rev, b, &pub[i].tuning_key), KC_OK);

    /* Server 2 dies: a chain pulls iff none of its keys was there. */
    kct_redis_stop(&g_s[2]);
    int lost = 0, kept = 0;
    for (int i = 0; i < N_CHAINS; i++) {
        int needs_dead = on[i][0] == 2 || on[i][1] == 2 || on[i][2] == 2;
        int rc = kc_remote_pull(r, c, &pub[i].tuning_key);
        if (needs_dead) {
            assert_int_equal(rc, KC_EREMOTE);
            lost++;
        } else {
            assert_int_equal(rc, KC_OK);
            kept++;
        }
        /* Without server 2 in the list, keys of servers 0 and 1 stay
         * where they were: the same chains resolve. */
        if (!needs_dead)
            assert_int_equal(kc_remote_pull(r_two, c, &pub[i].tuning_key), KC_OK);
    }
    assert_true(kept > 0);
    assert_true(lost > 0);
    kc_remote_stats_t st;
    kc_remote_stats(r, &st);
    assert_true(st.errors >= 1);

    for (int i = 0; i < N_CHAINS; i++)
        kct_pub_free(&pub[i]);
    kc_remote_close(r);
    kc_remote_close(r_rev);
    kc_remote_close(r_two);
    kct_store_scratch_free(ra, a);
    kct_store_scratch_free(rb, b);
    kct_store_scratch_free(rc_, c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_spread_and_a_dead_server_costs_only_its_share),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
