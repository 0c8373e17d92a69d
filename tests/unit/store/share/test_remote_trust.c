/* Signed values on the remote tier, against a real redis-server: with a
 * signing key every value a push writes carries an Ed25519 signature; with
 * trusted keys a pull accepts only what one of them signed. Unsigned values
 * (an untrusted writer's raw SET), values signed by another key, a damaged
 * signature, and a signed value copied under another key are refused with
 * KC_ESIGNATURE, counted, and leave the local store empty. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kc_redis.h"
#include "kc_testutil.h"
#include "kcache/bundle.h"
#include "kcache/errors.h"
#include "kcache/record.h"
#include "kcache/remote.h"
#include "kcache/store.h"

static kct_redis_t g_redis;
static char g_keys[512], g_ci_key[700], g_ci_pub[700], g_evil_key[700], g_evil_pub[700];

static int group_setup(void **state)
{
    char base[560];
    (void)state;
    unsetenv("KCACHE_TRUST");
    unsetenv("KCACHE_REMOTE_SIGN_KEY");
    unsetenv("KCACHE_REMOTE_PREFIX");
    if (kct_tmpdir("remote_trust", g_keys, sizeof(g_keys)) != 0)
        return -1;
    snprintf(base, sizeof(base), "%s/ci", g_keys);
    snprintf(g_ci_key, sizeof(g_ci_key), "%s.key", base);
    snprintf(g_ci_pub, sizeof(g_ci_pub), "%s.pub", base);
    if (kc_bundle_keygen(base, NULL) != KC_OK)
        return -1;
    snprintf(base, sizeof(base), "%s/evil", g_keys);
    snprintf(g_evil_key, sizeof(g_evil_key), "%s.key", base);
    snprintf(g_evil_pub, sizeof(g_evil_pub), "%s.pub", base);
    if (kc_bundle_keygen(base, NULL) != KC_OK)
        return -1;
    return kct_redis_start(&g_redis, 0) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    kct_redis_stop(&g_redis);
    kct_rmrf(g_keys);
    return 0;
}

static kc_remote_t *open_with(const char *prefix, const char *sign, const char *trust)
{
    kc_remote_opts_t o = KC_REMOTE_OPTS_INIT;
    kc_remote_t *r = NULL;
    o.prefix = prefix;
    o.sign_key = sign;
    o.trust = trust;
    if (kc_remote_open(g_redis.url, &o, &r) != KC_OK)
        fail_msg("open: %s", kc_remote_errmsg(NULL));
    return r;
}

static uint64_t n_records(kc_store_t *st)
{
    kc_store_stats_t s;
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    return s.records[KC_REC_TUNING] + s.records[KC_REC_BUILD] + s.records[KC_REC_BLOB];
}

/* Signed by the CI key, pulled by a reader that trusts it; a reader with
 * no trust key reads the same signed values too. */
static void test_signed_chains_pull_where_trusted(void **state)
{
    (void)state;
    char ra[512], rb[512], rc_[512];
    kc_store_t *a = NULL, *b = NULL, *c = NULL;
    kct_pub_t pub;
    kc_remote_t *ci = open_with("t1:", g_ci_key, NULL);
    kc_remote_t *reader = open_with("t1:", NULL, g_ci_pub);
    kc_remote_t *plain = open_with("t1:", NULL, NULL);
    char signer[KC_BUNDLE_KEY_ID_LEN + 1];
    kc_bundle_key_t k;
    char id[KC_BUNDLE_KEY_ID_LEN + 1];
    void *data = NULL;
    size_t len = 0;
    kc_remote_stats_t s;

    assert_int_equal(kct_store_scratch("trust_a", ra, sizeof(ra), &a), 0);
    assert_int_equal(kct_store_scratch("trust_b", rb, sizeof(rb), &b), 0);
    assert_int_equal(kct_store_scratch("trust_c", rc_, sizeof(rc_), &c), 0);
    assert_int_equal(kct_pub_make(&pub, 61, 2), KC_OK);
    assert_int_equal(kc_store_publish(a, &pub.pub), KC_OK);
    assert_int_equal(kc_remote_push(ci, a, &pub.tuning_key), KC_OK);

    assert_int_equal(kc_remote_pull(reader, b, &pub.tuning_key), KC_OK);
    assert_int_equal(n_records(b), 3);
    assert_int_equal(kc_remote_pull(plain, c, &pub.tuning_key), KC_OK);
    assert_int_equal(n_records(c), 3);

    /* The signer is named. */
    assert_int_equal(kc_bundle_key_load(g_ci_pub, &k), KC_OK);
    kc_bundle_key_id(k.pk, id);
    assert_int_equal(
        kc_remote_get_record(reader, KC_REC_TUNING, &pub.tuning_key, &data, &len, signer),
        KC_OK);
    assert_string_equal(signer, id);
    kc_free(data);
    kc_remote_stats(reader, &s);
    assert_int_equal(s.untrusted, 0);
    assert_int_equal(s.pulls, 1);

    kct_pub_free(&pub);
    kc_remote_close(ci);
    kc_remote_close(reader);
    kc_remote_close(plain);
    kct_store_scratch_free(ra, a);
    kct_store_scratch_free(rb, b);
    kct_store_scratch_free(rc_, c);
}

/* What a reader that trusts the CI key refuses. */
static void test_untrusted_values_are_refused_and_counted(void **state)
{
    (void)state;
    char ra[512], rb[512];
    kc_store_t *a = NULL, *b = NULL;
    kct_pub_t p1, p2;
    kc_remote_t *evil = open_with("t2:", g_evil_key, NULL);
    kc_remote_t *raw = open_with("t2:", NULL, NULL);
    kc_remote_t *ci = open_with("t2:", g_ci_key, NULL);
    kc_remote_t *reader = open_with("t2:", NULL, g_ci_pub);
    void *v = NULL, *t_raw = NULL;
    size_t vlen = 0, t_len = 0;
    kc_remote_stats_t s;

    assert_int_equal(kct_store_scratch("trust_a", ra, sizeof(ra), &a), 0);
    assert_int_equal(kct_store_scratch("trust_b", rb, sizeof(rb), &b), 0);
    assert_int_equal(kct_pub_make(&p1, 71, 1), KC_OK);
    assert_int_equal(kct_pub_make(&p2, 72, 1), KC_OK);
    assert_int_equal(kc_store_publish(a, &p1.pub), KC_OK);
    assert_int_equal(kc_store_publish(a, &p2.pub), KC_OK);

    /* 1. Unsigned: an untrusted writer's raw SET of valid records. */
    assert_int_equal(kc_remote_push(raw, a, &p1.tuning_key), KC_OK);
    assert_int_equal(kc_remote_pull(reader, b, &p1.tuning_key), KC_ESIGNATURE);
    assert_non_null(strstr(kc_remote_errmsg(reader), "unsigned"));
    assert_int_equal(kc_remote_pull_build(reader, b, &p1.build_keys[0]), KC_ESIGNATURE);

    /* 2. Signed by a key the reader does not trust. */
    assert_int_equal(kc_remote_push(evil, a, &p1.tuning_key), KC_OK);
    assert_int_equal(kc_remote_pull(reader, b, &p1.tuning_key), KC_ESIGNATURE);
    assert_non_null(strstr(kc_remote_errmsg(reader), "not trusted"));

    /* 3. Signed by the trusted key, one byte of the signature flipped. */
    assert_int_equal(kc_remote_push(ci, a, &p1.tuning_key), KC_OK);
    assert_int_equal(kc_remote_get(raw, KC_REC_TUNING, &p1.tuning_key, &v, &vlen), KC_OK);
    ((uint8_t *)v)[vlen - 1] ^= 1;
    assert_int_equal(kc_remote_put(raw, KC_REC_TUNING, &p1.tuning_key, v, vlen), KC_OK);
    assert_int_equal(kc_remote_pull(reader, b, &p1.tuning_key), KC_ESIGNATURE);
    assert_non_null(strstr(kc_remote_errmsg(reader), "bad signature"));
    kc_free(v);

    /* 4. The record's bytes changed under a good signature. */
    assert_int_equal(kc_remote_push(ci, a, &p1.tuning_key), KC_OK);
    assert_int_equal(kc_remote_get(raw, KC_REC_TUNING, &p1.tuning_key, &v, &vlen), KC_OK);
    ((uint8_t *)v)[10] ^= 1;
    assert_int_equal(kc_remote_put(raw, KC_REC_TUNING, &p1.tuning_key, v, vlen), KC_OK);
    assert_int_equal(kc_remote_pull(reader, b, &p1.tuning_key), KC_ESIGNATURE);
    kc_free(v);

    /* 5. A value signed for p2's key, copied under p1's key. */
    assert_int_equal(kc_remote_push(ci, a, &p1.tuning_key), KC_OK);
    assert_int_equal(kc_remote_push(ci, a, &p2.tuning_key), KC_OK);
    assert_int_equal(kc_remote_get(raw, KC_REC_TUNING, &p2.tuning_key, &v, &vlen), KC_OK);
    assert_int_equal(kc_remote_put(raw, KC_REC_TUNING, &p1.tuning_key, v, vlen), KC_OK);
    assert_int_equal(kc_remote_pull(reader, b, &p1.tuning_key), KC_ESIGNATURE);
    kc_free(v);

    assert_int_equal(n_records(b), 0);
    kc_remote_stats(reader, &s);
    assert_int_equal(s.untrusted, 6);
    assert_int_equal(s.pulls, 0);

    /* And once the CI key's value is back, it pulls. */
    assert_int_equal(kc_remote_push(ci, a, &p1.tuning_key), KC_OK);
    assert_int_equal(kc_remote_pull(reader, b, &p1.tuning_key), KC_OK);
    assert_int_equal(n_records(b), 3);

    (void)t_raw;
    (void)t_len;
    kct_pub_free(&p1);
    kct_pub_free(&p2);
    kc_remote_close(evil);
    kc_remote_close(raw);
    kc_remote_close(ci);
    kc_remote_close(reader);
    kct_store_scratch_free(ra, a);
    kct_store_scratch_free(rb, b);
}

/* Key files that cannot be used fail the open, with the file named; the
 * environment names them when the options do not. */
static void test_key_files_from_options_or_environment(void **state)
{
    (void)state;
    kc_remote_opts_t o = KC_REMOTE_OPTS_INIT;
    kc_remote_t *r = NULL;
    char missing[600];

    snprintf(missing, sizeof(missing), "%s/none.pub", g_keys);
    o.trust = missing;
    assert_int_not_equal(kc_remote_open(g_redis.url, &o, &r), KC_OK);
    assert_null(r);
    assert_non_null(strstr(kc_remote_errmsg(NULL), "none.pub"));
    o.trust = g_evil_key; /* a secret key is no trust key */
    assert_int_not_equal(kc_remote_open(g_redis.url, &o, &r), KC_OK);
    assert_null(r);
    assert_non_null(strstr(kc_remote_errmsg(NULL), "is a secret key"));
    o.trust = NULL;
    o.sign_key = g_ci_pub; /* a public key cannot sign */
    assert_int_not_equal(kc_remote_open(g_redis.url, &o, &r), KC_OK);
    assert_non_null(strstr(kc_remote_errmsg(NULL), "signing key"));

    /* Two trusted keys, ':'-separated, from KCACHE_TRUST. */
    char both[1500];
    snprintf(both, sizeof(both), "%s:%s", g_evil_pub, g_ci_pub);
    setenv("KCACHE_TRUST", both, 1);
    setenv("KCACHE_REMOTE_SIGN_KEY", g_evil_key, 1);
    char ra[512];
    kc_store_t *a = NULL, *b = NULL;
    char rb[512];
    kct_pub_t p;
    assert_int_equal(kct_store_scratch("trust_a", ra, sizeof(ra), &a), 0);
    assert_int_equal(kct_store_scratch("trust_b", rb, sizeof(rb), &b), 0);
    assert_int_equal(kct_pub_make(&p, 81, 1), KC_OK);
    assert_int_equal(kc_store_publish(a, &p.pub), KC_OK);
    assert_int_equal(kc_remote_open(g_redis.url, NULL, &r), KC_OK);
    assert_int_equal(kc_remote_push(r, a, &p.tuning_key), KC_OK);
    assert_int_equal(kc_remote_pull(r, b, &p.tuning_key), KC_OK);
    kc_remote_close(r);
    unsetenv("KCACHE_TRUST");
    unsetenv("KCACHE_REMOTE_SIGN_KEY");
    kct_pub_free(&p);
    kct_store_scratch_free(ra, a);
    kct_store_scratch_free(rb, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signed_chains_pull_where_trusted),
        cmocka_unit_test(test_untrusted_values_are_refused_and_counted),
        cmocka_unit_test(test_key_files_from_options_or_environment),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
