/* kc_store_publish_many: a batch commits in one transaction, all or
 * nothing; its result equals one kc_store_publish per item; the size limit
 * applies after it; an item may name what an earlier one published.
 * Concurrent publishes through one handle share transactions (group
 * commit) and still each get their own result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "kc_testutil.h"
#include "kcache/errors.h"
#include "kcache/record.h"
#include "kcache/store.h"

#define N_ITEMS 6

static void make_items(kct_pub_t *p, kc_publish_t *pubs, uint64_t first_id, unsigned n)
{
    for (unsigned i = 0; i < N_ITEMS; i++) {
        assert_int_equal(kct_pub_make(&p[i], first_id + i, n), KC_OK);
        pubs[i] = p[i].pub;
    }
}

static void free_items(kct_pub_t *p)
{
    for (unsigned i = 0; i < N_ITEMS; i++)
        kct_pub_free(&p[i]);
}

static void test_a_batch_with_a_bad_item_publishes_nothing(void **state)
{
    kc_store_t *st = ((kct_store_fx_t *)*state)->st;
    kct_pub_t p[N_ITEMS];
    kc_publish_t pubs[N_ITEMS];
    kc_tuning_rec_t bad_tuning;
    kc_store_stats_t s;
    unsigned present;

    make_items(p, pubs, 100, 3);
    /* Item 4's tuning names a winning build that is nowhere. */
    bad_tuning = *p[4].pub.tuning;
    bad_tuning.winner_build = kc_key_hash("no such build", 13);
    pubs[4].tuning = &bad_tuning;
    pubs[4].builds = NULL;
    pubs[4].n_builds = 0;
    assert_int_equal(kc_store_publish_many(st, pubs, N_ITEMS), KC_EINVAL);
    assert_non_null(strstr(kc_store_errmsg(st), "item 4"));
    for (unsigned i = 0; i < N_ITEMS; i++) {
        assert_int_equal(kct_pub_state(st, 100 + i, 3, &present, NULL), KC_OK);
        assert_int_equal(present, 0);
    }
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    assert_int_equal(s.records[KC_REC_BLOB], 0);
    assert_int_equal(s.record_bytes, 0);

    /* A NULL array with a count in one item is caught before anything. */
    pubs[4] = p[4].pub;
    pubs[2].cubins = NULL;
    assert_int_equal(kc_store_publish_many(st, pubs, N_ITEMS), KC_EINVAL);
    assert_int_equal(kct_pub_state(st, 100, 3, &present, NULL), KC_OK);
    assert_int_equal(present, 0);

    /* Arguments. */
    assert_int_equal(kc_store_publish_many(NULL, pubs, 1), KC_EINVAL);
    assert_int_equal(kc_store_publish_many(st, NULL, 1), KC_EINVAL);
    assert_int_equal(kc_store_publish_many(st, NULL, 0), KC_OK);
    free_items(p);
}

/* Every record of kind in st, as (key, bytes) in key order, hashed. */
typedef struct digest {
    uint64_t n;
    kc_key_t h;
} digest_t;

static int digest_one(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                      const void *data, size_t len)
{
    digest_t *d = user;
    uint8_t buf[16 + 16 + 8];

    (void)kind;
    memcpy(buf, d->h.b, 16);
    memcpy(buf + 16, key->b, 16);
    kc_key_t vh = kc_key_hash(data, len);
    memcpy(buf + 32, vh.b, 8);
    d->h = kc_key_hash(buf, sizeof buf);
    d->n++;
    return 0;
}

static digest_t digest(kc_store_t *st, int kind)
{
    digest_t d = {0};
    assert_int_equal(kc_store_iterate(st, kind, digest_one, &d), KC_OK);
    return d;
}

/* One item of many cubins and builds (an import of a whole Triton cache
 * is one), whose builds' blobs are looked up among the item's cubins in a
 * sorted copy past 16: a build whose blob is neither there nor stored
 * fails the item and nothing is written (a lookup that found it anyway
 * would let it through); with it fixed, everything is stored. */
#define PARTS 6

static void test_an_item_of_many_builds_refuses_one_whose_blob_is_nowhere(void **state)
{
    kc_store_t *st = ((kct_store_fx_t *)*state)->st;
    kct_pub_t p[PARTS];
    kc_buf_t cubins[PARTS * KCT_PUB_MAX];
    kc_build_rec_t builds[PARTS * KCT_PUB_MAX];
    size_t n = 0;
    unsigned present, intact;
    kc_store_stats_t s;

    for (unsigned i = 0; i < PARTS; i++) {
        assert_int_equal(kct_pub_make(&p[i], 300 + i, KCT_PUB_MAX), KC_OK);
        for (unsigned j = 0; j < KCT_PUB_MAX; j++, n++) {
            cubins[n] = p[i].cubins[j];
            builds[n] = p[i].builds[j];
        }
    }
    /* Builds in the reverse order of their cubins. */
    for (size_t i = 0; i < n / 2; i++) {
        kc_build_rec_t t = builds[i];
        builds[i] = builds[n - 1 - i];
        builds[n - 1 - i] = t;
    }
    kc_publish_t one = {cubins, n, builds, n, NULL, NULL, 0};

    kc_key_t blob17 = builds[17].blob;
    builds[17].blob = kc_key_hash("no such blob", 12);
    assert_int_not_equal(kc_store_publish(st, &one), KC_OK);
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    assert_int_equal(s.records[KC_REC_BLOB] + s.records[KC_REC_BUILD], 0);

    builds[17].blob = blob17;
    assert_int_equal(kc_store_publish(st, &one), KC_OK);
    for (unsigned i = 0; i < PARTS; i++) {
        assert_int_equal(kct_pub_state(st, 300 + i, KCT_PUB_MAX, &present, &intact),
                         KC_OK);
        assert_int_equal(present, 2 * KCT_PUB_MAX); /* no tuning: blobs and builds */
        assert_int_equal(intact, 2 * KCT_PUB_MAX);
        kct_pub_free(&p[i]);
    }
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    assert_int_equal(s.records[KC_REC_BLOB], n);
    assert_int_equal(s.records[KC_REC_BUILD], n);
}

static void test_a_batch_equals_one_publish_per_item(void **state)
{
    kc_store_t *a = ((kct_store_fx_t *)*state)->st;
    kc_store_t *b = NULL;
    char root[512];
    kct_pub_t p[N_ITEMS];
    kc_publish_t pubs[N_ITEMS];
    kc_store_stats_t sa, sb;
    unsigned present, intact;

    assert_int_equal(kct_store_scratch("test_publish_many_b", root, sizeof root, &b), 0);
    make_items(p, pubs, 200, 4);
    /* Item 1 carries item 0's first cubin too: stored once in either store. */
    p[1].cubins[4] = p[0].cubins[0];
    pubs[1].n_cubins = 5;
    assert_int_equal(kc_store_publish_many(a, pubs, N_ITEMS), KC_OK);
    for (unsigned i = 0; i < N_ITEMS; i++)
        assert_int_equal(kc_store_publish(b, &pubs[i]), KC_OK);
    for (unsigned i = 0; i < N_ITEMS; i++) {
        assert_int_equal(kct_pub_state(a, 200 + i, 4, &present, &intact), KC_OK);
        assert_int_equal(present, 2 * 4 + 1);
        assert_int_equal(intact, 2 * 4 + 1);
    }
    for (int kind = KC_REC_BLOB; kind <= KC_REC_TUNING; kind++) {
        digest_t da = digest(a, kind), db = digest(b, kind);
        assert_int_equal(da.n, db.n);
        assert_memory_equal(da.h.b, db.h.b, 16);
    }
    assert_int_equal(kc_store_flush(a), KC_OK);
    assert_int_equal(kc_store_flush(b), KC_OK);
    assert_int_equal(kc_store_stats(a, &sa), KC_OK);
    assert_int_equal(kc_store_stats(b, &sb), KC_OK);
    assert_memory_equal(sa.records, sb.records, sizeof sa.records);
    assert_int_equal(sa.blob_raw_bytes, sb.blob_raw_bytes);
    assert_int_equal(sa.blob_stored_bytes, sb.blob_stored_bytes);
    assert_int_equal(sa.record_bytes, sb.record_bytes);
    assert_int_equal(sa.counters[KC_COUNTER_PUBLISHES], N_ITEMS);
    assert_int_equal(sa.counters[KC_COUNTER_BYTES_STORED],
                     sb.counters[KC_COUNTER_BYTES_STORED]);
    free_items(p);
    kct_store_scratch_free(root, b);
}

static void test_an_item_may_name_what_an_earlier_item_published(void **state)
{
    kc_store_t *st = ((kct_store_fx_t *)*state)->st;
    kct_pub_t p;
    kc_publish_t pubs[2];
    unsigned present;

    assert_int_equal(kct_pub_make(&p, 300, 2), KC_OK);
    /* Item 0: the cubins and builds; item 1: the tuning alone. */
    pubs[0] = p.pub;
    pubs[0].tuning = NULL;
    pubs[1] = (kc_publish_t){.tuning = p.pub.tuning};
    assert_int_equal(kc_store_publish_many(st, pubs, 2), KC_OK);
    assert_int_equal(kct_pub_state(st, 300, 2, &present, NULL), KC_OK);
    assert_int_equal(present, 2 * 2 + 1);
    kct_pub_free(&p);
}

static void stamp_old(kc_store_t *st, const kct_pub_t *p, uint64_t when)
{
    kc_record_t rec = {.kind = KC_REC_USAGE, .version = KC_RECORD_VERSION};

    rec.u.usage.last_use = when;
    rec.u.usage.uses = 1;
    for (unsigned j = 0; j < p->n; j++) {
        assert_int_equal(kc_store_put(st, &p->blob_keys[j], &rec), KC_OK);
        assert_int_equal(kc_store_put(st, &p->build_keys[j], &rec), KC_OK);
    }
    assert_int_equal(kc_store_put(st, &p->tuning_key, &rec), KC_OK);
}

static void test_the_size_limit_applies_after_a_batch(void **state)
{
    char root[512], dir[600];
    kc_store_t *st = NULL;
    kct_pub_t a[N_ITEMS], b[N_ITEMS];
    kc_publish_t pa[N_ITEMS], pb[N_ITEMS];
    kc_store_stats_t s;
    kc_store_opts_t o = KC_STORE_OPTS_INIT;
    uint64_t limit, now = (uint64_t)time(NULL);
    unsigned present, a_left = 0;

    (void)state;
    assert_int_equal(kct_tmpdir("test_publish_many_lim", root, sizeof root), 0);
    snprintf(dir, sizeof dir, "%s/store", root);
    make_items(a, pa, 400, 4);
    make_items(b, pb, 500, 4);
    /* Batch a, used long ago, in a store without a limit. */
    assert_int_equal(kc_store_open(dir, &o, &st), KC_OK);
    assert_int_equal(kc_store_publish_many(st, pa, N_ITEMS), KC_OK);
    for (unsigned i = 0; i < N_ITEMS; i++)
        stamp_old(st, &a[i], now - 100000);
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    limit = s.record_bytes * 3 / 2;
    kc_store_close(st);

    /* Batch b, as large, takes it over the limit: a's records go, b's stay. */
    o.max_size = limit;
    assert_int_equal(kc_store_open(dir, &o, &st), KC_OK);
    assert_int_equal(kc_store_publish_many(st, pb, N_ITEMS), KC_OK);
    assert_int_equal(kc_store_flush(st), KC_OK);
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    /* gc's size: blob, build, tuning and group bytes (no binmeta here). */
    assert_true(s.record_bytes <= limit / 10 * 9);
    assert_true(s.counters[KC_COUNTER_EVICTIONS] > 0);
    for (unsigned i = 0; i < N_ITEMS; i++) {
        assert_int_equal(kct_pub_state(st, 500 + i, 4, &present, NULL), KC_OK);
        assert_int_equal(present, 2 * 4 + 1);
        assert_int_equal(kct_pub_state(st, 400 + i, 4, &present, NULL), KC_OK);
        a_left += present;
    }
    assert_true(a_left < N_ITEMS * (2 * 4 + 1));
    free_items(a);
    free_items(b);
    kct_store_scratch_free(root, st);
}

#define N_THREADS 4
#define PER_THREAD 40

typedef struct pub_thread {
    kc_store_t *st;
    unsigned idx;
    int failures;  /* good publishes that failed */
    int bad_ok;    /* bad publishes that did not fail as they should */
    int bad_quiet; /* bad publishes that failed without their message */
} pub_thread_t;

static void *publisher(void *arg)
{
    pub_thread_t *t = arg;

    for (unsigned i = 0; i < PER_THREAD; i++) {
        kct_pub_t p;
        uint64_t id = 1000 + t->idx * 100 + i;
        if (kct_pub_make(&p, id, 2) != KC_OK) {
            t->failures++;
            continue;
        }
        if (t->idx == 0 && i % 4 == 0) {
            /* A bad publish among the good ones: no cubins for its builds. */
            p.pub.cubins = NULL;
            p.pub.n_cubins = 0;
            if (kc_store_publish(t->st, &p.pub) != KC_EINVAL)
                t->bad_ok++;
            else if (!strstr(kc_store_errmsg(t->st), "neither published nor stored"))
                t->bad_quiet++;
        } else if (kc_store_publish(t->st, &p.pub) != KC_OK) {
            t->failures++;
        }
        kct_pub_free(&p);
    }
    return NULL;
}

static void test_concurrent_publishes_each_get_their_own_result(void **state)
{
    kc_store_t *st = ((kct_store_fx_t *)*state)->st;
    pthread_t th[N_THREADS];
    pub_thread_t t[N_THREADS];
    kc_store_stats_t s;
    unsigned present, n_bad = 0;

    for (unsigned i = 0; i < N_THREADS; i++) {
        t[i] = (pub_thread_t){st, i, 0, 0, 0};
        assert_int_equal(pthread_create(&th[i], NULL, publisher, &t[i]), 0);
    }
    for (unsigned i = 0; i < N_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(t[i].failures, 0);
        assert_int_equal(t[i].bad_ok, 0);
        assert_int_equal(t[i].bad_quiet, 0);
    }
    for (unsigned i = 0; i < N_THREADS; i++)
        for (unsigned j = 0; j < PER_THREAD; j++) {
            int bad = i == 0 && j % 4 == 0;
            assert_int_equal(kct_pub_state(st, 1000 + i * 100 + j, 2, &present, NULL),
                             KC_OK);
            assert_int_equal(present, bad ? 0 : 2 * 2 + 1);
            n_bad += bad;
        }
    assert_int_equal(kc_store_flush(st), KC_OK);
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    assert_int_equal(s.counters[KC_COUNTER_PUBLISHES], N_THREADS * PER_THREAD - n_bad);
    assert_int_equal(s.records[KC_REC_TUNING], N_THREADS * PER_THREAD - n_bad);
}

static int setup(void **state)
{
    return kct_store_fx_setup(state, "test_publish_many");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_batch_with_a_bad_item_publishes_nothing,
                                        setup, kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(test_a_batch_equals_one_publish_per_item, setup,
                                        kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_an_item_of_many_builds_refuses_one_whose_blob_is_nowhere, setup,
            kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_an_item_may_name_what_an_earlier_item_published, setup,
            kct_store_fx_teardown),
        cmocka_unit_test(test_the_size_limit_applies_after_a_batch),
        cmocka_unit_test_setup_teardown(
            test_concurrent_publishes_each_get_their_own_result, setup,
            kct_store_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
