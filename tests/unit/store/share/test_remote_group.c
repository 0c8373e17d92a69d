/* Groups through the remote tier against a real redis-server on loopback:
 * a group pushed from one store and pulled into an empty one arrives file
 * for file; a tampered group record or a missing blob is refused with
 * nothing written; a server that is down fails fast. */
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

#define N_FILES 3

/* Group name's files: a 20 000-byte file with NUL bytes, a small text and
 * an empty one, each tagged with seed. */
typedef struct files {
    uint8_t big[20000];
    char text[64];
    kc_group_file_t f[N_FILES];
} files_t;

static void files_make(files_t *x, unsigned seed)
{
    for (size_t i = 0; i < sizeof(x->big); i++)
        x->big[i] = (uint8_t)(i * 31 + seed);
    snprintf(x->text, sizeof(x->text), "{\"child_paths\": %u}", seed);
    x->f[0] = (kc_group_file_t){"k.cubin", x->big, sizeof(x->big)};
    x->f[1] = (kc_group_file_t){"__grp__k.json", x->text, strlen(x->text)};
    x->f[2] = (kc_group_file_t){"empty", "", 0};
}

static uint64_t n_records(kc_store_t *st)
{
    kc_store_stats_t s;
    uint64_t n = 0;

    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    for (int k = 0; k <= KC_REC_KIND_MAX; k++)
        if (k == KC_REC_BLOB || k == KC_REC_GROUP)
            n += s.records[k];
    return n;
}

static void assert_same_files(kc_store_t *st, const char *name, const files_t *x)
{
    for (size_t i = 0; i < N_FILES; i++) {
        void *data = NULL;
        size_t len = 0;
        assert_int_equal(kc_store_group_read(st, name, x->f[i].name, &data, &len), KC_OK);
        assert_int_equal(len, x->f[i].size);
        assert_memory_equal(data, x->f[i].size ? x->f[i].data : "", len);
        kc_free(data);
    }
}

static void test_a_pushed_group_pulls_into_an_empty_store_file_for_file(void **state)
{
    (void)state;
    char ra[512], rb[512];
    kc_store_t *a = NULL, *b = NULL;
    kc_remote_t *r = NULL;
    files_t *x = malloc(sizeof(*x));
    kc_record_t *got = NULL;

    assert_non_null(x);
    files_make(x, 1);
    assert_int_equal(kct_store_scratch("rgroup_a", ra, sizeof(ra), &a), 0);
    assert_int_equal(kct_store_scratch("rgroup_b", rb, sizeof(rb), &b), 0);
    assert_int_equal(kc_remote_open(g_redis.url, NULL, &r), KC_OK);
    assert_int_equal(kc_store_group_put(a, "kernel-1", x->f, N_FILES, 0), KC_OK);

    assert_int_equal(kc_remote_pull_group(r, b, "kernel-1"), KC_ENOTFOUND);
    assert_int_equal(kc_remote_push_group(r, a, "kernel-1"), KC_OK);
    assert_int_equal(kc_remote_push_group(r, a, "not-in-a"), KC_ENOTFOUND);
    assert_int_equal(kc_remote_pull_group(r, b, "kernel-1"), KC_OK);
    assert_same_files(b, "kernel-1", x);
    assert_int_equal(kc_store_group_get(b, "kernel-1", &got), KC_OK);
    assert_int_equal(got->u.group.n_files, N_FILES);
    kc_free(got);
    /* Pulling again changes nothing. */
    assert_int_equal(kc_remote_pull_group(r, b, "kernel-1"), KC_OK);
    assert_same_files(b, "kernel-1", x);
    assert_int_equal(n_records(b), 1 + N_FILES);
    assert_int_equal(kc_remote_pull_group(r, b, ""), KC_EINVAL);
    assert_int_equal(kc_remote_pull_group(NULL, b, "kernel-1"), KC_EINVAL);
    assert_int_equal(kc_remote_push_group(r, NULL, "kernel-1"), KC_EINVAL);

    kc_remote_close(r);
    kct_store_scratch_free(ra, a);
    kct_store_scratch_free(rb, b);
    free(x);
}

static void
test_a_tampered_group_or_a_missing_blob_is_refused_and_nothing_written(void **state)
{
    (void)state;
    char ra[512], rb[512];
    kc_store_t *a = NULL, *b = NULL;
    kc_remote_t *r = NULL;
    files_t *x = malloc(sizeof(*x)), *y = malloc(sizeof(*y));
    kc_key_t k1, k2;
    void *raw = NULL, *raw2 = NULL;
    size_t raw_len = 0, raw2_len = 0;

    assert_non_null(x);
    assert_non_null(y);
    files_make(x, 2);
    files_make(y, 3);
    assert_int_equal(kc_group_key("kernel-2", &k1), KC_OK);
    assert_int_equal(kc_group_key("kernel-3", &k2), KC_OK);
    assert_int_equal(kct_store_scratch("rgroup_ta", ra, sizeof(ra), &a), 0);
    assert_int_equal(kct_store_scratch("rgroup_tb", rb, sizeof(rb), &b), 0);
    assert_int_equal(kc_remote_open(g_redis.url, NULL, &r), KC_OK);
    assert_int_equal(kc_store_group_put(a, "kernel-2", x->f, N_FILES, 0), KC_OK);
    assert_int_equal(kc_store_group_put(a, "kernel-3", y->f, N_FILES, 0), KC_OK);
    assert_int_equal(kc_remote_push_group(r, a, "kernel-2"), KC_OK);
    assert_int_equal(kc_remote_push_group(r, a, "kernel-3"), KC_OK);
    assert_int_equal(kc_store_get_raw(a, KC_REC_GROUP, &k1, &raw, &raw_len), KC_OK);

    /* One byte of the record flipped: its checksum fails. */
    ((uint8_t *)raw)[raw_len - 1] ^= 0x40;
    assert_int_equal(kc_remote_put(r, KC_REC_GROUP, &k1, raw, raw_len), KC_OK);
    assert_int_equal(kc_remote_pull_group(r, b, "kernel-2"), KC_ECORRUPT);
    assert_non_null(strstr(kc_remote_errmsg(r), "checks"));
    ((uint8_t *)raw)[raw_len - 1] ^= 0x40;

    /* Not a record at all. */
    assert_int_equal(kc_remote_put(r, KC_REC_GROUP, &k1, "garbage", 7), KC_OK);
    assert_int_equal(kc_remote_pull_group(r, b, "kernel-2"), KC_ECORRUPT);

    /* A sound group record stored under another group's key. */
    assert_int_equal(kc_store_get_raw(a, KC_REC_GROUP, &k2, &raw2, &raw2_len), KC_OK);
    assert_int_equal(kc_remote_put(r, KC_REC_GROUP, &k1, raw2, raw2_len), KC_OK);
    assert_int_equal(kc_remote_pull_group(r, b, "kernel-2"), KC_ECORRUPT);
    kc_free(raw2);

    /* The right group, one of its blobs swapped for another file's blob. */
    assert_int_equal(kc_remote_put(r, KC_REC_GROUP, &k1, raw, raw_len), KC_OK);
    kc_key_t big_x = kc_key_hash(x->big, sizeof(x->big));
    kc_key_t big_y = kc_key_hash(y->big, sizeof(y->big));
    assert_int_equal(kc_store_get_raw(a, KC_REC_BLOB, &big_y, &raw2, &raw2_len), KC_OK);
    assert_int_equal(kc_remote_put(r, KC_REC_BLOB, &big_x, raw2, raw2_len), KC_OK);
    assert_int_equal(kc_remote_pull_group(r, b, "kernel-2"), KC_ECORRUPT);
    kc_free(raw2);

    /* An empty value where the blob should be. */
    assert_int_equal(kc_remote_put(r, KC_REC_BLOB, &big_x, "", 0), KC_OK);
    assert_int_equal(kc_remote_pull_group(r, b, "kernel-2"), KC_ECORRUPT);

    /* A group whose blobs never reached the remote: only its record is put. */
    files_make(y, 5);
    assert_int_equal(kc_store_group_put(a, "kernel-5", y->f, N_FILES, 0), KC_OK);
    assert_int_equal(kc_group_key("kernel-5", &k2), KC_OK);
    assert_int_equal(kc_store_get_raw(a, KC_REC_GROUP, &k2, &raw2, &raw2_len), KC_OK);
    assert_int_equal(kc_remote_put(r, KC_REC_GROUP, &k2, raw2, raw2_len), KC_OK);
    assert_int_equal(kc_remote_pull_group(r, b, "kernel-5"), KC_ENOTFOUND);
    kc_free(raw2);

    assert_int_equal(n_records(b), 0);
    /* Once the remote holds the right bytes again, it pulls. */
    assert_int_equal(kc_remote_push_group(r, a, "kernel-2"), KC_OK);
    assert_int_equal(kc_remote_pull_group(r, b, "kernel-2"), KC_OK);
    assert_same_files(b, "kernel-2", x);

    kc_free(raw);
    kc_remote_close(r);
    kct_store_scratch_free(ra, a);
    kct_store_scratch_free(rb, b);
    free(x);
    free(y);
}

static void test_a_server_that_is_down_fails_fast_and_writes_nothing(void **state)
{
    (void)state;
    char ra[512];
    char url[64];
    int port = kct_free_port();
    kc_store_t *a = NULL;
    kc_remote_t *r = NULL;
    files_t *x = malloc(sizeof(*x));
    uint64_t t0;

    assert_non_null(x);
    assert_true(port > 0);
    files_make(x, 4);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    assert_int_equal(kct_store_scratch("rgroup_down", ra, sizeof(ra), &a), 0);
    assert_int_equal(kc_store_group_put(a, "kernel-4", x->f, N_FILES, 0), KC_OK);
    assert_int_equal(kc_remote_open(url, NULL, &r), KC_OK);
    t0 = kct_now_ms();
    assert_int_equal(kc_remote_push_group(r, a, "kernel-4"), KC_EREMOTE);
    assert_int_equal(kc_remote_pull_group(r, a, "kernel-9"), KC_EREMOTE);
    assert_true(strlen(kc_remote_errmsg(r)) > 0);
    /* The connect timeout (100 ms), then backing off without the network. */
    assert_true(kct_now_ms() - t0 < 2000);
    assert_int_equal(n_records(a), 1 + N_FILES);
    kc_remote_close(r);
    kct_store_scratch_free(ra, a);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_pushed_group_pulls_into_an_empty_store_file_for_file),
        cmocka_unit_test(
            test_a_tampered_group_or_a_missing_blob_is_refused_and_nothing_written),
        cmocka_unit_test(test_a_server_that_is_down_fails_fast_and_writes_nothing),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
