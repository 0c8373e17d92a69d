/* The remote tier's client against a real redis-server on loopback: URLs,
 * values that round-trip byte for byte, a server that is down (fail fast,
 * then retry), and pulls that refuse what does not check out. The launcher
 * over a remote is tested in test_launch_remote. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>

#include "kc_redis.h"
#include "kc_testutil.h"
#include "kcache/errors.h"
#include "kcache/record.h"
#include "kcache/remote.h"
#include "kcache/store.h"

static kct_redis_t g_redis;

static int group_setup(void **state)
{
    (void)state;
    return kct_redis_start(&g_redis, 0) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    kct_redis_stop(&g_redis);
    return 0;
}

static void test_urls(void **state)
{
    (void)state;
    static const char *const good[] = {"redis://cache", "redis://cache:6380",
                                       "redis://10.0.0.7:6379/", "redis://[::1]:6380/2",
                                       "redis://cache/15"};
    static const char *const bad[] = {"http://cache",
                                      "redis://",
                                      "redis://cache:0",
                                      "redis://cache:65536",
                                      "redis://cache:6x",
                                      "redis://cache/x",
                                      "redis://[::1",
                                      "redis://cache:6379/1/2",
                                      ""};
    kc_remote_t *r = NULL;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(kc_remote_open(good[i], NULL, &r), KC_OK);
        kc_remote_close(r);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(kc_remote_open(bad[i], NULL, &r), KC_EINVAL);
        assert_null(r);
        assert_true(strlen(kc_remote_errmsg(NULL)) > 0);
    }
    assert_int_equal(kc_remote_open(NULL, NULL, &r), KC_EINVAL);
}

static void test_values_round_trip_and_missing_keys_are_not_found(void **state)
{
    (void)state;
    kc_remote_t *r = NULL;
    uint8_t value[3000];
    kc_key_t key = kc_key_hash("round trip", 10), other = kc_key_hash("absent", 6);
    void *got = NULL;
    size_t len = 0;

    for (size_t i = 0; i < sizeof(value); i++)
        value[i] = (uint8_t)(i * 7); /* NUL bytes included */
    assert_int_equal(kc_remote_open(g_redis.url, NULL, &r), KC_OK);
    assert_int_equal(kc_remote_put(r, KC_REC_BLOB, &key, value, sizeof(value)), KC_OK);
    assert_int_equal(kc_remote_get(r, KC_REC_BLOB, &key, &got, &len), KC_OK);
    assert_int_equal(len, sizeof(value));
    assert_memory_equal(got, value, sizeof(value));
    kc_free(got);
    /* Kinds are separate name spaces. */
    assert_int_equal(kc_remote_get(r, KC_REC_BUILD, &key, &got, &len), KC_ENOTFOUND);
    assert_int_equal(kc_remote_get(r, KC_REC_BLOB, &other, &got, &len), KC_ENOTFOUND);
    assert_null(got);
    assert_int_equal(len, 0);
    kc_remote_close(r);
}

/* Down: KC_EREMOTE with a message, then at once without the network until
 * retry_after_ms; once it has passed and a server listens, calls work. */
static void test_a_server_that_is_down_fails_fast_then_is_retried(void **state)
{
    (void)state;
    int port = kct_free_port();
    char url[64];
    kc_remote_opts_t o = {.size = sizeof(kc_remote_opts_t), .retry_after_ms = 200};
    kc_remote_t *r = NULL;
    kc_key_t key = kc_key_hash("k", 1);
    void *got = NULL;
    size_t len;
    kct_redis_t later;

    assert_true(port > 0);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    assert_int_equal(kc_remote_open(url, &o, &r), KC_OK);
    assert_int_equal(kc_remote_get(r, KC_REC_TUNING, &key, &got, &len), KC_EREMOTE);
    assert_non_null(strstr(kc_remote_errmsg(r), "connect"));
    assert_int_equal(kc_remote_put(r, KC_REC_TUNING, &key, "x", 1), KC_EREMOTE);

    assert_int_equal(kct_redis_start(&later, port), 0);
    nanosleep(&(struct timespec){0, 300 * 1000 * 1000}, NULL);
    assert_int_equal(kc_remote_put(r, KC_REC_TUNING, &key, "x", 1), KC_OK);
    assert_int_equal(kc_remote_get(r, KC_REC_TUNING, &key, &got, &len), KC_OK);
    assert_int_equal(len, 1);
    kc_free(got);

    /* The server goes away under an open connection. */
    kct_redis_stop(&later);
    assert_int_equal(kc_remote_get(r, KC_REC_TUNING, &key, &got, &len), KC_EREMOTE);
    assert_null(got);
    kc_remote_close(r);
}

/* Push a published chain from one store, pull it into an empty one: the
 * tuning, its winning build and its cubin arrive intact, and nothing else. */
static void test_push_then_pull_moves_a_tuning_and_its_chain(void **state)
{
    (void)state;
    char ra[512], rb[512];
    kc_store_t *a = NULL, *b = NULL;
    kc_remote_t *r = NULL;
    kct_pub_t pub;
    unsigned present = 0, intact = 0;
    kc_store_stats_t s;

    assert_int_equal(kct_store_scratch("remote_a", ra, sizeof(ra), &a), 0);
    assert_int_equal(kct_store_scratch("remote_b", rb, sizeof(rb), &b), 0);
    assert_int_equal(kct_pub_make(&pub, 41, 1), KC_OK);
    assert_int_equal(kc_store_publish(a, &pub.pub), KC_OK);
    assert_int_equal(kc_remote_open(g_redis.url, NULL, &r), KC_OK);

    assert_int_equal(kc_remote_push(r, a, &pub.tuning_key), KC_OK);
    assert_int_equal(kc_remote_pull(r, b, &pub.tuning_key), KC_OK);
    assert_int_equal(kct_pub_state(b, 41, 1, &present, &intact), KC_OK);
    assert_int_equal(present, 3);
    assert_int_equal(intact, 3);
    assert_int_equal(kc_store_stats(b, &s), KC_OK);
    assert_int_equal(s.records[KC_REC_TUNING], 1);
    assert_int_equal(s.records[KC_REC_BUILD], 1);
    assert_int_equal(s.records[KC_REC_BLOB], 1);
    /* One build alone, with its cubin. */
    kc_store_t *c = NULL;
    char rc_root[512];
    kct_pub_t three;
    assert_int_equal(kct_store_scratch("remote_c", rc_root, sizeof(rc_root), &c), 0);
    assert_int_equal(kct_pub_make(&three, 42, 3), KC_OK);
    assert_int_equal(kc_store_publish(a, &three.pub), KC_OK);
    assert_int_equal(kc_remote_push(r, a, &three.tuning_key), KC_OK);
    assert_int_equal(kc_remote_pull_build(r, c, &three.build_keys[2]), KC_OK);
    assert_int_equal(kc_store_stats(c, &s), KC_OK);
    assert_int_equal(s.records[KC_REC_BUILD], 1);
    assert_int_equal(s.records[KC_REC_BLOB], 1);
    assert_int_equal(s.records[KC_REC_TUNING], 0);
    void *cubin = NULL;
    kc_record_t *brec = NULL;
    size_t cubin_len = 0;
    assert_int_equal(
        kc_store_get_build_cubin(c, &three.build_keys[2], &brec, &cubin, &cubin_len),
        KC_OK);
    assert_true(kct_cubin_intact(cubin, cubin_len));
    kc_free(cubin);
    kc_free(brec);
    kct_pub_free(&three);
    kct_store_scratch_free(rc_root, c);

    /* Pulling again changes nothing. */
    assert_int_equal(kc_remote_pull(r, b, &pub.tuning_key), KC_OK);
    assert_int_equal(kc_store_stats(b, &s), KC_OK);
    assert_int_equal(s.records[KC_REC_BLOB] + s.records[KC_REC_BUILD], 2);

    kc_remote_close(r);
    kct_pub_free(&pub);
    kct_store_scratch_free(ra, a);
    kct_store_scratch_free(rb, b);
}

/* The number after field in the test server's INFO section (0 if the
 * field is not there, -1 if the server cannot be asked), over a connection
 * of its own (which the server counts). */
static long info_number(const char *section, const char *field)
{
    redisContext *c = redisConnect("127.0.0.1", g_redis.port);
    long n = -1;
    if (!c || c->err) {
        redisFree(c);
        return -1;
    }
    redisReply *rep = redisCommand(c, "INFO %s", section);
    if (rep && rep->type == REDIS_REPLY_STRING) {
        const char *at = strstr(rep->str, field);
        n = at ? strtol(at + strlen(field), NULL, 10) : 0;
    }
    freeReplyObject(rep);
    redisFree(c);
    return n;
}

/* SET commands the test server has run so far. */
static long set_calls(void)
{
    return info_number("commandstats", "cmdstat_set:calls=");
}

/* Connections the test server has accepted so far. */
static long connections_accepted(void)
{
    return info_number("stats", "total_connections_received:");
}

/* Two tunings of one kernel (two signatures) name the same three
 * candidates: a handle pushes each build and cubin once, not once per
 * tuning; another handle pushes them again; and what was pushed pulls. */
static void test_a_handle_pushes_shared_candidates_once(void **state)
{
    (void)state;
    char ra[512], rb[512];
    kc_store_t *a = NULL, *b = NULL;
    kc_remote_t *r = NULL, *r2 = NULL;
    kct_pub_t p;
    kc_tuning_desc_t *d = NULL;
    void *pre = NULL;
    size_t pre_len = 0;

    assert_int_equal(kct_store_scratch("remote_a", ra, sizeof(ra), &a), 0);
    assert_int_equal(kct_store_scratch("remote_b", rb, sizeof(rb), &b), 0);
    assert_int_equal(kct_pub_make(&p, 61, 3), KC_OK);
    assert_int_equal(kc_store_publish(a, &p.pub), KC_OK);
    /* The second tuning: the same kernel and candidates, another signature. */
    assert_int_equal(
        kc_tuning_preimage_decode(p.tuning.preimage.data, p.tuning.preimage.size, &d),
        KC_OK);
    d->shape_sig = (kc_buf_t){"other signature", 15};
    assert_int_equal(kc_tuning_preimage_encode(d, &pre, &pre_len), KC_OK);
    kc_key_t t2 = kc_key_hash(pre, pre_len);
    kc_record_t rec = {.kind = KC_REC_TUNING};
    rec.u.tuning = p.tuning;
    rec.u.tuning.preimage = (kc_buf_t){pre, pre_len};
    assert_int_equal(kc_store_put(a, &t2, &rec), KC_OK);

    assert_int_equal(kc_remote_open(g_redis.url, NULL, &r), KC_OK);
    long s0 = set_calls();
    assert_true(s0 >= 0);
    assert_int_equal(kc_remote_push(r, a, &p.tuning_key), KC_OK);
    long s1 = set_calls();
    assert_int_equal(s1 - s0, 3 + 3 + 1); /* blobs, builds, the tuning */
    assert_int_equal(kc_remote_push(r, a, &t2), KC_OK);
    long s2 = set_calls();
    assert_int_equal(s2 - s1, 1); /* the tuning alone */
    assert_int_equal(kc_remote_push_build(r, a, &p.build_keys[1]), KC_OK);
    assert_int_equal(set_calls(), s2);

    assert_int_equal(kc_remote_open(g_redis.url, NULL, &r2), KC_OK);
    assert_int_equal(kc_remote_push(r2, a, &t2), KC_OK);
    assert_int_equal(set_calls() - s2, 3 + 3 + 1);
    assert_int_equal(kc_remote_pull(r2, b, &t2), KC_OK);
    kc_store_stats_t st;
    assert_int_equal(kc_store_stats(b, &st), KC_OK);
    assert_int_equal(st.records[KC_REC_TUNING], 1);
    assert_int_equal(st.records[KC_REC_BUILD], 1);

    kc_remote_close(r);
    kc_remote_close(r2);
    kc_free(pre);
    kc_free(d);
    kct_pub_free(&p);
    kct_store_scratch_free(ra, a);
    kct_store_scratch_free(rb, b);
}

/* A pull verifies before it publishes: garbage, a record of another kind,
 * a record stored under a key it does not derive, a chain with a link
 * missing or a cubin that does not hash to its key leave the store empty. */
static void test_pull_refuses_what_does_not_check_out(void **state)
{
    (void)state;
    char ra[512], rb[512];
    kc_store_t *a = NULL, *b = NULL;
    kc_remote_t *r = NULL;
    kct_pub_t p1, p2;
    kc_store_stats_t s;
    kc_record_t meta = {.kind = KC_REC_META, .version = KC_RECORD_VERSION};
    kc_key_t junk = kc_key_hash("junk", 4);
    void *enc = NULL, *raw = NULL;
    size_t enc_len = 0, raw_len = 0;

    assert_int_equal(kct_store_scratch("remote_a", ra, sizeof(ra), &a), 0);
    assert_int_equal(kct_store_scratch("remote_b", rb, sizeof(rb), &b), 0);
    assert_int_equal(kc_remote_open(g_redis.url, NULL, &r), KC_OK);
    assert_int_equal(kc_remote_pull(r, b, &junk), KC_ENOTFOUND);

    assert_int_equal(kc_remote_put(r, KC_REC_TUNING, &junk, "garbage", 7), KC_OK);
    assert_int_equal(kc_remote_pull(r, b, &junk), KC_ECORRUPT);
    meta.u.meta.value = (kc_buf_t){"v", 1};
    assert_int_equal(kc_record_encode(&meta, &enc, &enc_len), KC_OK);
    assert_int_equal(kc_remote_put(r, KC_REC_TUNING, &junk, enc, enc_len), KC_OK);
    assert_int_equal(kc_remote_pull(r, b, &junk), KC_ECORRUPT);
    kc_free(enc);

    /* A real tuning stored under another tuning's key. */
    assert_int_equal(kct_pub_make(&p1, 51, 1), KC_OK);
    assert_int_equal(kct_pub_make(&p2, 52, 1), KC_OK);
    assert_int_equal(kc_store_publish(a, &p1.pub), KC_OK);
    assert_int_equal(kc_store_publish(a, &p2.pub), KC_OK);
    assert_int_equal(kc_remote_push(r, a, &p1.tuning_key), KC_OK);
    assert_int_equal(kc_store_get_raw(a, KC_REC_TUNING, &p2.tuning_key, &raw, &raw_len),
                     KC_OK);
    assert_int_equal(kc_remote_put(r, KC_REC_TUNING, &p1.tuning_key, raw, raw_len),
                     KC_OK);
    assert_int_equal(kc_remote_pull(r, b, &p1.tuning_key), KC_ECORRUPT);
    kc_free(raw);

    /* The right tuning, its build missing. */
    assert_int_equal(kc_remote_push(r, a, &p1.tuning_key), KC_OK);
    assert_int_equal(kc_remote_put(r, KC_REC_BUILD, &p1.build_keys[0], "", 0), KC_OK);
    assert_int_equal(kc_remote_pull(r, b, &p1.tuning_key), KC_ECORRUPT);

    /* The right build, its blob swapped for another cubin's blob. */
    assert_int_equal(kc_remote_push(r, a, &p1.tuning_key), KC_OK);
    assert_int_equal(kc_store_get_raw(a, KC_REC_BLOB, &p2.blob_keys[0], &raw, &raw_len),
                     KC_OK);
    assert_int_equal(kc_remote_put(r, KC_REC_BLOB, &p1.blob_keys[0], raw, raw_len),
                     KC_OK);
    assert_int_equal(kc_remote_pull(r, b, &p1.tuning_key), KC_ECORRUPT);
    kc_free(raw);

    assert_int_equal(kc_store_stats(b, &s), KC_OK);
    assert_int_equal(
        s.records[KC_REC_TUNING] + s.records[KC_REC_BUILD] + s.records[KC_REC_BLOB], 0);
    /* And once the remote holds the right bytes again, it pulls. */
    assert_int_equal(kc_remote_push(r, a, &p1.tuning_key), KC_OK);
    assert_int_equal(kc_remote_pull(r, b, &p1.tuning_key), KC_OK);

    kc_remote_close(r);
    kct_pub_free(&p1);
    kct_pub_free(&p2);
    kct_store_scratch_free(ra, a);
    kct_store_scratch_free(rb, b);
}

/* Leases across machines: one holder at a time, renewed by its holder,
 * released only by it, and expiring by themselves. */
static void test_leases_single_flight_across_handles(void **state)
{
    (void)state;
    kc_remote_t *a = NULL, *b = NULL;
    kc_key_t key = kc_key_hash("lease", 5);

    assert_int_equal(kc_remote_open(g_redis.url, NULL, &a), KC_OK);
    assert_int_equal(kc_remote_open(g_redis.url, NULL, &b), KC_OK);
    assert_string_not_equal(kc_remote_owner(a), kc_remote_owner(b));
    assert_int_equal(kc_remote_lease_acquire(a, &key, 60000), KC_OK);
    assert_int_equal(kc_remote_lease_acquire(b, &key, 60000), KC_EBUSY);
    assert_int_equal(kc_remote_lease_acquire(a, &key, 60000), KC_OK); /* renewed */
    assert_int_equal(kc_remote_lease_release(b, &key), KC_ENOTFOUND); /* not b's */
    assert_int_equal(kc_remote_lease_acquire(b, &key, 60000), KC_EBUSY);
    assert_int_equal(kc_remote_lease_release(a, &key), KC_OK);
    assert_int_equal(kc_remote_lease_acquire(b, &key, 100), KC_OK);
    /* b dies holding it: it expires. */
    nanosleep(&(struct timespec){0, 300 * 1000 * 1000}, NULL);
    assert_int_equal(kc_remote_lease_acquire(a, &key, 60000), KC_OK);
    assert_int_equal(kc_remote_lease_release(a, &key), KC_OK);
    kc_remote_close(a);
    kc_remote_close(b);
}

/* A handle used in a process forked from the one that opened it: the
 * child gets connections and an owner of its own. With the parent's owner
 * the child's lease release dropped the parent's lease, and its commands
 * went over the parent's socket (the server saw no new connection); the
 * parent's handle goes on working. */
static int child_uses_parents_remote(kc_remote_t *r, const char *parent_owner,
                                     const kc_key_t *lease, const kc_key_t *vkey)
{
    void *got = NULL;
    size_t len = 0;

    if (kc_remote_get(r, KC_REC_BLOB, vkey, &got, &len) != KC_OK || len != 6 ||
        memcmp(got, "parent", 6) != 0)
        return 10;
    kc_free(got);
    if (strcmp(kc_remote_owner(r), parent_owner) == 0)
        return 11; /* the parent's identity */
    if (kc_remote_lease_acquire(r, lease, 60000) != KC_EBUSY)
        return 12; /* the parent holds it */
    if (kc_remote_lease_release(r, lease) != KC_ENOTFOUND)
        return 13; /* not the child's to drop */
    if (kc_remote_put(r, KC_REC_BLOB, vkey, "parent", 6) != KC_OK)
        return 14;
    kc_remote_close(r);
    return 0;
}

static void test_a_forked_child_gets_its_own_connections_and_owner(void **state)
{
    (void)state;
    kc_remote_t *r = NULL;
    kc_key_t lease = kc_key_hash("fork lease", 10), vkey = kc_key_hash("fork value", 10);
    char owner[128];
    int status = -1;

    assert_int_equal(kc_remote_open(g_redis.url, NULL, &r), KC_OK);
    assert_int_equal(kc_remote_put(r, KC_REC_BLOB, &vkey, "parent", 6), KC_OK);
    assert_int_equal(kc_remote_lease_acquire(r, &lease, 60000), KC_OK);
    snprintf(owner, sizeof(owner), "%s", kc_remote_owner(r));
    long accepted = connections_accepted();
    assert_true(accepted > 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_uses_parents_remote(r, owner, &lease, &vkey));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* Since the count above: the child's connection, and this count's. */
    assert_true(connections_accepted() >= accepted + 2);
    /* The parent's lease is still its own, and its connection still works. */
    assert_string_equal(kc_remote_owner(r), owner);
    assert_int_equal(kc_remote_lease_acquire(r, &lease, 60000), KC_OK); /* renewed */
    assert_int_equal(kc_remote_lease_release(r, &lease), KC_OK);
    void *got = NULL;
    size_t len = 0;
    assert_int_equal(kc_remote_get(r, KC_REC_BLOB, &vkey, &got, &len), KC_OK);
    assert_int_equal(len, 6);
    kc_free(got);
    kc_remote_close(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_values_round_trip_and_missing_keys_are_not_found),
        cmocka_unit_test(test_a_server_that_is_down_fails_fast_then_is_retried),
        cmocka_unit_test(test_push_then_pull_moves_a_tuning_and_its_chain),
        cmocka_unit_test(test_a_handle_pushes_shared_candidates_once),
        cmocka_unit_test(test_pull_refuses_what_does_not_check_out),
        cmocka_unit_test(test_leases_single_flight_across_handles),
        cmocka_unit_test(test_a_forked_child_gets_its_own_connections_and_owner),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
