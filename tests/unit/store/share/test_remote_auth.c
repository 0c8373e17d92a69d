/* The remote tier's URLs and connections against real redis-servers on
 * loopback: passwords (AUTH, user + password), a unix socket, SELECT, the
 * key prefix and the TTL, and the messages that tell a wrong password from
 * a server that is not there from a URL that does not parse. */
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
#include "kcache/errors.h"
#include "kcache/record.h"
#include "kcache/remote.h"

static kct_redis_t g_plain, g_auth;

static int group_setup(void **state)
{
    (void)state;
    unsetenv("KCACHE_REMOTE_PREFIX");
    unsetenv("KCACHE_REMOTE_TTL");
    if (kct_redis_start_ex(&g_plain, 0, NULL, 1) != 0)
        return -1;
    return kct_redis_start_ex(&g_auth, 0, "s3cr@t", 1) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    kct_redis_stop(&g_plain);
    kct_redis_stop(&g_auth);
    return 0;
}

/* A raw command on a server, for the test to look behind the client. */
static redisReply *raw(const kct_redis_t *s, const char *fmt, ...)
{
    redisContext *c = redisConnect("127.0.0.1", s->port);
    redisReply *rep = NULL;
    va_list ap;

    assert_non_null(c);
    assert_int_equal(c->err, 0);
    if (s->password[0])
        freeReplyObject(redisCommand(c, "AUTH %s", s->password));
    va_start(ap, fmt);
    rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    assert_non_null(rep);
    return rep;
}

static void test_urls_parse_or_say_why_not(void **state)
{
    (void)state;
    static const char *const good[] = {
        "redis://cache",
        "redis://:pw@cache:6380",
        "redis://user:pw@cache/3",
        "redis://us%40er:p%3Aw%2Fx@[::1]:6380/2",
        "unix:/run/redis.sock",
        "unix:///run/redis.sock?db=2&user=u&password=p%26q",
        "redis://a:1 redis://b:2,redis://c:3",
        " redis://a:1 , unix:/x.sock ",
    };
    static const struct {
        const char *url, *why;
    } bad[] = {
        {"rediss://cache:6380", "TLS"},
        {"http://cache", "must start with"},
        {"redis://pw@cache", "credentials"},
        {"redis://:@cache", "empty password"},
        {"redis://:p%zz@cache", "password"},
        {"redis://cache:0", "bad port"},
        {"redis://cache:6x", "bad port"},
        {"redis://cache/x", "database"},
        {"unix:relative.sock", "absolute"},
        {"unix:/x.sock?db=x", "database"},
        {"unix:/x.sock?color=red", "unknown query"},
        {"redis://a:1,redis://a:1", "twice"},
        {"", "empty"},
        {" , ", "empty"},
    };
    kc_remote_t *r = NULL;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (kc_remote_open(good[i], NULL, &r) != KC_OK)
            fail_msg("%s: %s", good[i], kc_remote_errmsg(NULL));
        kc_remote_close(r);
    }
    assert_int_equal(kc_remote_open("redis://a:1 redis://b:2,redis://c:3", NULL, &r),
                     KC_OK);
    assert_int_equal(kc_remote_shards(r), 3);
    kc_remote_close(r);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(kc_remote_open(bad[i].url, NULL, &r), KC_EINVAL);
        assert_null(r);
        if (!strstr(kc_remote_errmsg(NULL), bad[i].why))
            fail_msg("\"%s\": \"%s\" lacks \"%s\"", bad[i].url, kc_remote_errmsg(NULL),
                     bad[i].why);
    }
}

/* The right password works over TCP and the unix socket; none, or a wrong
 * one, fails with a message that says AUTH, not "connection refused". */
static void test_auth_with_a_password(void **state)
{
    (void)state;
    kc_remote_t *r = NULL;
    kc_key_t key = kc_key_hash("auth", 4);
    void *got = NULL;
    size_t len = 0;
    char url[256];

    assert_int_equal(kc_remote_open(g_auth.url, NULL, &r), KC_OK);
    assert_int_equal(kc_remote_put(r, KC_REC_BLOB, &key, "abc", 3), KC_OK);
    assert_int_equal(kc_remote_get(r, KC_REC_BLOB, &key, &got, &len), KC_OK);
    assert_int_equal(len, 3);
    kc_free(got);
    kc_remote_close(r);

    assert_int_equal(kc_remote_open(g_auth.unix_url, NULL, &r), KC_OK);
    assert_int_equal(kc_remote_get(r, KC_REC_BLOB, &key, &got, &len), KC_OK);
    assert_memory_equal(got, "abc", 3);
    kc_free(got);
    kc_remote_close(r);

    snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d", g_auth.port);
    assert_int_equal(kc_remote_open(url, NULL, &r), KC_OK);
    assert_int_equal(kc_remote_get(r, KC_REC_BLOB, &key, &got, &len), KC_EREMOTE);
    assert_non_null(strstr(kc_remote_errmsg(r), "AUTH failed"));
    assert_null(strstr(kc_remote_errmsg(r), "connect"));
    kc_remote_close(r);

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", g_auth.port);
    assert_int_equal(kc_remote_open(url, NULL, &r), KC_OK);
    assert_int_equal(kc_remote_get(r, KC_REC_BLOB, &key, &got, &len), KC_EREMOTE);
    assert_non_null(strstr(kc_remote_errmsg(r), "requires AUTH"));
    kc_remote_close(r);

    /* Nothing listens: a connect failure, not an AUTH one. */
    snprintf(url, sizeof(url), "redis://:pw@127.0.0.1:%d", kct_free_port());
    assert_int_equal(kc_remote_open(url, NULL, &r), KC_OK);
    assert_int_equal(kc_remote_get(r, KC_REC_BLOB, &key, &got, &len), KC_EREMOTE);
    assert_non_null(strstr(kc_remote_errmsg(r), "connect"));
    kc_remote_close(r);
}

/* A user with its own password (Redis 6 ACL): AUTH user password. */
static void test_auth_with_a_user(void **state)
{
    (void)state;
    kc_remote_t *r = NULL;
    kc_key_t key = kc_key_hash("acl", 3);
    char url[256];
    redisReply *rep = raw(&g_plain, "ACL SETUSER fleet on >fleetpw ~* +@all");

    assert_int_equal(rep->type, REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    snprintf(url, sizeof(url), "redis://fleet:fleetpw@127.0.0.1:%d", g_plain.port);
    assert_int_equal(kc_remote_open(url, NULL, &r), KC_OK);
    assert_int_equal(kc_remote_put(r, KC_REC_BLOB, &key, "x", 1), KC_OK);
    kc_remote_close(r);
    snprintf(url, sizeof(url), "redis://fleet:nope@127.0.0.1:%d", g_plain.port);
    assert_int_equal(kc_remote_open(url, NULL, &r), KC_OK);
    assert_int_equal(kc_remote_put(r, KC_REC_BLOB, &key, "x", 1), KC_EREMOTE);
    assert_non_null(strstr(kc_remote_errmsg(r), "AUTH failed"));
    kc_remote_close(r);
}

/* /db selects the database; the prefix (option or KCACHE_REMOTE_PREFIX)
 * starts every key; the TTL (option or KCACHE_REMOTE_TTL) sets EX. */
static void test_db_prefix_and_ttl(void **state)
{
    (void)state;
    kc_remote_opts_t o = KC_REMOTE_OPTS_INIT;
    kc_remote_t *r = NULL;
    kc_key_t key = kc_key_hash("pfx", 3);
    char url[300], hex[KC_KEY_HEX_LEN + 1], k[160];
    redisReply *rep;
    void *got = NULL;
    size_t len;

    kc_key_to_hex(&key, hex);
    snprintf(url, sizeof(url), "%s/5", g_plain.url);
    o.prefix = "ci:";
    o.ttl_s = 600;
    assert_int_equal(kc_remote_open(url, &o, &r), KC_OK);
    assert_int_equal(kc_remote_put(r, KC_REC_TUNING, &key, "v", 1), KC_OK);
    kc_remote_close(r);
    snprintf(k, sizeof(k), "ci:kcache:1:tuning:%s", hex);
    rep = raw(&g_plain, "SELECT 5");
    freeReplyObject(rep);
    {
        redisContext *c = redisConnect("127.0.0.1", g_plain.port);
        freeReplyObject(redisCommand(c, "SELECT 5"));
        rep = redisCommand(c, "TTL %s", k);
        assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
        assert_true(rep->integer > 0 && rep->integer <= 600);
        freeReplyObject(rep);
        rep = redisCommand(c, "EXISTS kcache:1:tuning:%s", hex);
        assert_int_equal(rep->integer, 0);
        freeReplyObject(rep);
        redisFree(c);
    }
    rep = raw(&g_plain, "EXISTS %s", k); /* database 0 */
    assert_int_equal(rep->integer, 0);
    freeReplyObject(rep);

    /* From the environment; another prefix does not see it. */
    setenv("KCACHE_REMOTE_PREFIX", "ci:", 1);
    setenv("KCACHE_REMOTE_TTL", "1h", 1);
    assert_int_equal(kc_remote_open(url, NULL, &r), KC_OK);
    assert_int_equal(kc_remote_get(r, KC_REC_TUNING, &key, &got, &len), KC_OK);
    kc_free(got);
    assert_int_equal(kc_remote_put(r, KC_REC_BUILD, &key, "w", 1), KC_OK);
    kc_remote_close(r);
    {
        redisContext *c = redisConnect("127.0.0.1", g_plain.port);
        freeReplyObject(redisCommand(c, "SELECT 5"));
        rep = redisCommand(c, "TTL ci:kcache:1:build:%s", hex);
        assert_true(rep->integer > 600 && rep->integer <= 3600);
        freeReplyObject(rep);
        redisFree(c);
    }
    setenv("KCACHE_REMOTE_PREFIX", "prod:", 1);
    unsetenv("KCACHE_REMOTE_TTL");
    assert_int_equal(kc_remote_open(url, NULL, &r), KC_OK);
    assert_int_equal(kc_remote_get(r, KC_REC_TUNING, &key, &got, &len), KC_ENOTFOUND);
    kc_remote_close(r);

    setenv("KCACHE_REMOTE_PREFIX", "has space", 1);
    assert_int_equal(kc_remote_open(url, NULL, &r), KC_EINVAL);
    assert_non_null(strstr(kc_remote_errmsg(NULL), "prefix"));
    unsetenv("KCACHE_REMOTE_PREFIX");
    setenv("KCACHE_REMOTE_TTL", "soon", 1);
    assert_int_equal(kc_remote_open(url, NULL, &r), KC_EINVAL);
    assert_non_null(strstr(kc_remote_errmsg(NULL), "KCACHE_REMOTE_TTL"));
    unsetenv("KCACHE_REMOTE_TTL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls_parse_or_say_why_not),
        cmocka_unit_test(test_auth_with_a_password),
        cmocka_unit_test(test_auth_with_a_user),
        cmocka_unit_test(test_db_prefix_and_ttl),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
