/* The record totals kept in the meta database (core/totals.c): after every
 * kind of write (publish, publish_many, put_raw, delete, del_many, group
 * put, gc, compact, bundle import) kc_store_stats, which reads them, equals
 * kc_store_stats_scan, which scans; a store without them (made before
 * revision 1.3) gets them from its first kc_store_stats; cachectl verify
 * reports stale ones and --repair rewrites them. A write transaction adds
 * its changes up and writes them once before its commit: many records in
 * one transaction (a publish_many, puts, overwrites and deletes mixed, the
 * totals read inside it) stay exact, and an aborted one leaves nothing; a
 * blob whose header was damaged on disk drops them when it is deleted,
 * one whose compressed bytes were does not need to. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kc_testutil.h"
#include "kcache/bundle.h"
#include "kcache/errors.h"
#include "kcache/record.h"
#include "kcache/store.h"
#include "store_internal.h"

/* kc_store_stats equals a scan, from the kept totals. */
static void assert_totals_exact(kc_store_t *st)
{
    kc_store_stats_t kept, scan;

    assert_int_equal(kc_store_stats(st, &kept), KC_OK);
    assert_int_equal(kc_store_stats_scan(st, &scan), KC_OK);
    assert_int_equal(kept.totals_scanned, 0);
    assert_int_equal(scan.totals_scanned, 1);
    assert_int_equal(kept.blob_raw_bytes, scan.blob_raw_bytes);
    assert_int_equal(kept.blob_stored_bytes, scan.blob_stored_bytes);
    assert_int_equal(kept.record_bytes, scan.record_bytes);
    /* (Record counts are LMDB's own, read the same way by both: nothing to
     * compare.) */
}

static void publish_id(kc_store_t *st, uint64_t id, unsigned n, kct_pub_t *p)
{
    assert_int_equal(kct_pub_make(p, id, n), KC_OK);
    assert_int_equal(kc_store_publish(st, &p->pub), KC_OK);
}

static void test_totals_stay_exact_through_every_write(void **state)
{
    kc_store_t *st = ((kct_store_fx_t *)*state)->st;
    kc_store_t *other = NULL;
    char root[512];
    kct_pub_t p[4], q[3];
    kc_publish_t many[3];
    kc_store_stats_t s;
    void *raw = NULL;
    size_t raw_len = 0;

    assert_totals_exact(st); /* empty */
    for (unsigned i = 0; i < 4; i++)
        publish_id(st, 10 + i, 3, &p[i]);
    assert_totals_exact(st);
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    assert_true(s.blob_stored_bytes > 0 && s.record_bytes > s.blob_stored_bytes);

    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(kct_pub_make(&q[i], 20 + i, 2), KC_OK);
        many[i] = q[i].pub;
    }
    assert_int_equal(kc_store_publish_many(st, many, 3), KC_OK);
    /* Published again: nothing changes, nothing is counted twice. */
    assert_int_equal(kc_store_publish_many(st, many, 3), KC_OK);
    assert_totals_exact(st);

    /* A raw put over a record that is there, and of a record that is not. */
    assert_int_equal(
        kc_store_get_raw(st, KC_REC_BUILD, &p[0].build_keys[0], &raw, &raw_len), KC_OK);
    assert_int_equal(
        kc_store_put_raw(st, KC_REC_BUILD, &p[0].build_keys[0], raw, raw_len), KC_OK);
    kc_free(raw);
    assert_totals_exact(st);

    /* Deletes, one by one and many at once. */
    assert_int_equal(kc_store_del(st, KC_REC_TUNING, &p[1].tuning_key), KC_OK);
    assert_int_equal(kc_store_del(st, KC_REC_BUILD, &p[1].build_keys[0]), KC_OK);
    assert_int_equal(kc_store_del(st, KC_REC_BLOB, &p[1].blob_keys[0]), KC_OK);
    assert_totals_exact(st);
    kc_rec_kind_t kinds[] = {KC_REC_TUNING, KC_REC_BUILD, KC_REC_BLOB};
    kc_key_t keys[] = {p[2].tuning_key, p[2].build_keys[1], p[2].blob_keys[1]};
    assert_int_equal(kc_store_del_many(st, kinds, keys, 3, NULL), KC_OK);
    assert_totals_exact(st);

    /* Groups, replaced and merged. */
    kc_group_file_t files[] = {{"a.cubin", "aaaaaaaaaaaa", 12}, {"b.json", "{}", 2}};
    assert_int_equal(kc_store_group_put(st, "grp", files, 2, 0), KC_OK);
    kc_group_file_t more[] = {{"c.ptx", "cccccccccccccccccccc", 20}};
    assert_int_equal(kc_store_group_put(st, "grp", more, 1, 1), KC_OK);
    assert_totals_exact(st);

    /* A bundle of it all into another store. */
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(kc_bundle_export(st, NULL, f, NULL), KC_OK);
    rewind(f);
    assert_int_equal(kct_store_scratch("test_totals_other", root, sizeof root, &other),
                     0);
    assert_int_equal(kc_bundle_import(other, f, NULL, NULL), KC_OK);
    fclose(f);
    assert_totals_exact(other);
    kct_store_scratch_free(root, other);

    /* gc to half the size, then compaction. */
    kc_gc_opts_t o = KC_GC_OPTS_INIT;
    kc_gc_report_t r;
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    o.max_bytes = s.record_bytes / 2;
    assert_int_equal(kc_store_gc(st, &o, &r), KC_OK);
    assert_true(r.bytes_freed > 0);
    assert_totals_exact(st);
    assert_int_equal(kc_store_compact(st, NULL, NULL), KC_OK);
    assert_totals_exact(st);

    for (unsigned i = 0; i < 4; i++)
        kct_pub_free(&p[i]);
    for (unsigned i = 0; i < 3; i++)
        kct_pub_free(&q[i]);
}

#define MANY 48

/* Copies of some records of a store, to put back raw. */
typedef struct raw_rec {
    kc_rec_kind_t kind;
    kc_key_t key;
    void *data;
    size_t len;
} raw_rec_t;

typedef struct mixed_ctx {
    kc__env_t *env;
    raw_rec_t *recs;
    size_t n;
    int fail;   /* return KC_EINVAL at the end: the transaction aborts */
    int inside; /* the totals read inside equalled a scan inside */
} mixed_ctx_t;

/* In one transaction: delete every record of c, put them back, overwrite
 * each with itself, delete every other one again, then compare the totals
 * read inside the transaction with a scan inside it. */
static int mixed_fn(MDB_txn *txn, void *arg)
{
    mixed_ctx_t *c = arg;
    uint64_t kept[KC__TOTALS_SLOTS], scan[KC__TOTALS_SLOTS];
    int rc;

    for (size_t i = 0; i < c->n; i++) {
        MDB_val k = {16, c->recs[i].key.b};
        if ((rc = kc__rec_del(txn, c->env, c->recs[i].kind, &k)) != 0)
            return rc;
    }
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < c->n; i++) {
            MDB_val k = {16, c->recs[i].key.b}, v = {c->recs[i].len, c->recs[i].data};
            if ((rc = kc__rec_put(txn, c->env, c->recs[i].kind, &k, &v, 0)) != 0)
                return rc;
        }
    for (size_t i = 0; i < c->n; i += 2) {
        MDB_val k = {16, c->recs[i].key.b};
        if ((rc = kc__rec_del(txn, c->env, c->recs[i].kind, &k)) != 0)
            return rc;
    }
    if ((rc = kc__totals_read(txn, c->env, kept)) != 0 ||
        (rc = kc__totals_scan(txn, c->env, scan)) != 0)
        return rc;
    c->inside = memcmp(kept, scan, sizeof(kept)) == 0;
    return c->fail ? KC_EINVAL : 0;
}

static void test_many_records_in_one_transaction_stay_exact(void **state)
{
    kc_store_t *st = ((kct_store_fx_t *)*state)->st;
    kct_pub_t p[MANY];
    kc_publish_t pubs[2 * MANY];
    raw_rec_t recs[3 * MANY];
    mixed_ctx_t c = {st->env, recs, 0, 0, 0};
    kc_store_stats_t s;

    /* One publish_many of many items, each twice in the batch (the second
     * overwrites the first's builds and tuning in the same transaction). */
    for (unsigned i = 0; i < MANY; i++) {
        assert_int_equal(kct_pub_make(&p[i], 100 + i, 1 + i % 4), KC_OK);
        pubs[i] = pubs[MANY + i] = p[i].pub;
    }
    assert_int_equal(kc_store_publish_many(st, pubs, 2 * MANY), KC_OK);
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    assert_int_equal(s.records[KC_REC_TUNING], MANY);
    assert_totals_exact(st);

    /* Deletes, puts, overwrites and deletes again of the same records, all
     * in one transaction, the totals read inside it. */
    for (unsigned i = 0; i < MANY; i++) {
        recs[c.n] = (raw_rec_t){KC_REC_BLOB, p[i].blob_keys[0], NULL, 0};
        recs[c.n + 1] = (raw_rec_t){KC_REC_BUILD, p[i].build_keys[0], NULL, 0};
        recs[c.n + 2] = (raw_rec_t){KC_REC_TUNING, p[i].tuning_key, NULL, 0};
        for (unsigned j = 0; j < 3; j++, c.n++)
            assert_int_equal(kc_store_get_raw(st, recs[c.n].kind, &recs[c.n].key,
                                              &recs[c.n].data, &recs[c.n].len),
                             KC_OK);
    }
    assert_int_equal(kc__env_write(st->env, mixed_fn, &c), 0);
    assert_true(c.inside);
    assert_totals_exact(st);
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    assert_int_equal(s.records[KC_REC_TUNING], MANY / 2);

    for (size_t i = 0; i < c.n; i++)
        kc_free(recs[i].data);
    for (unsigned i = 0; i < MANY; i++)
        kct_pub_free(&p[i]);
}

static void test_an_aborted_transaction_leaves_the_totals_as_they_were(void **state)
{
    kc_store_t *st = ((kct_store_fx_t *)*state)->st;
    kct_pub_t p[MANY], bad;
    kc_publish_t pubs[MANY + 1];
    raw_rec_t recs[MANY];
    mixed_ctx_t c = {st->env, recs, 0, 1, 0};
    kc_store_stats_t before, after;

    for (unsigned i = 0; i < MANY; i++) {
        assert_int_equal(kct_pub_make(&p[i], 200 + i, 2), KC_OK);
        pubs[i] = p[i].pub;
    }
    assert_int_equal(kc_store_publish_many(st, pubs, MANY / 2), KC_OK);
    assert_int_equal(kc_store_stats(st, &before), KC_OK);

    /* A publish_many whose last item names a build nobody stored fails
     * after its other items were put: nothing of it stays. */
    assert_int_equal(kct_pub_make(&bad, 300, 1), KC_OK);
    bad.pub.n_builds = 0; /* the tuning's winner is neither here nor stored */
    for (unsigned i = MANY / 2; i < MANY; i++)
        pubs[i - MANY / 2] = p[i].pub;
    pubs[MANY / 2] = bad.pub;
    assert_int_equal(kc_store_publish_many(st, pubs, MANY / 2 + 1), KC_EINVAL);
    assert_int_equal(kc_store_stats(st, &after), KC_OK);
    assert_int_equal(after.record_bytes, before.record_bytes);
    assert_int_equal(after.blob_raw_bytes, before.blob_raw_bytes);
    assert_int_equal(after.records[KC_REC_TUNING], MANY / 2);
    /* (No assert_totals_exact until the end: its scan, in a write
     * transaction, rewrites the totals, and would hide changes that an
     * aborted transaction left to the next one.) */

    /* A transaction of deletes and puts that its callback fails: the same;
     * and the next transaction does not inherit its changes. */
    for (unsigned i = 0; i < MANY / 2; i++, c.n++) {
        recs[c.n] = (raw_rec_t){KC_REC_BLOB, p[i].blob_keys[1], NULL, 0};
        assert_int_equal(kc_store_get_raw(st, KC_REC_BLOB, &recs[c.n].key,
                                          &recs[c.n].data, &recs[c.n].len),
                         KC_OK);
    }
    assert_int_equal(kc__env_write(st->env, mixed_fn, &c), KC_EINVAL);
    assert_true(c.inside);
    assert_int_equal(kc_store_stats(st, &after), KC_OK);
    assert_int_equal(after.record_bytes, before.record_bytes);
    assert_int_equal(after.blob_raw_bytes, before.blob_raw_bytes);
    assert_int_equal(kc_store_publish_many(st, pubs, MANY / 2), KC_OK);
    assert_totals_exact(st);

    for (size_t i = 0; i < c.n; i++)
        kc_free(recs[i].data);
    for (unsigned i = 0; i < MANY; i++)
        kct_pub_free(&p[i]);
    kct_pub_free(&bad);
}

static int drop_totals_fn(MDB_txn *txn, void *arg)
{
    kc__env_t *env = arg;
    MDB_val k = {6, (void *)"totals"};
    return mdb_del(txn, env->dbi[KC_REC_META], &k, NULL);
}

static void test_a_store_without_totals_gets_them_from_its_first_stats(void **state)
{
    kc_store_t *st = ((kct_store_fx_t *)*state)->st;
    kct_pub_t p, p2;
    kc_store_stats_t s;

    publish_id(st, 30, 4, &p);
    /* As a kcache before revision 1.3 left it. */
    assert_int_equal(kc__env_write(st->env, drop_totals_fn, st->env), 0);
    /* Writes meanwhile do not invent totals. */
    publish_id(st, 31, 2, &p2);
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    assert_int_equal(s.totals_scanned, 1);
    assert_true(s.blob_stored_bytes > 0);
    /* Now kept, and kept exact. */
    assert_totals_exact(st);
    assert_int_equal(kc_store_del(st, KC_REC_BLOB, &p.blob_keys[0]), KC_OK);
    assert_totals_exact(st);
    kct_pub_free(&p);
    kct_pub_free(&p2);
}

static int skew_totals_fn(MDB_txn *txn, void *arg)
{
    kc__env_t *env = arg;
    uint64_t t[KC__TOTALS_SLOTS];
    int rc = kc__totals_read(txn, env, t);

    if (rc != 0)
        return rc;
    t[KC_REC_BUILD] += 7;
    return kc__totals_write(txn, env, t);
}

static void test_verify_reports_stale_totals_and_repair_rewrites_them(void **state)
{
    kc_store_t *st = ((kct_store_fx_t *)*state)->st;
    kc_store_stats_t kept, scan;
    kct_pub_t p;
    char dir[1024];

    publish_id(st, 60, 3, &p);
    snprintf(dir, sizeof dir, "%s", kc_store_path(st));
    assert_int_equal(kct_cachectl_verify(dir, 0), 0);
    /* As a writer that does not keep them (an older kcache) would leave them. */
    assert_int_equal(kc__env_write(st->env, skew_totals_fn, st->env), 0);
    assert_int_equal(kc_store_stats(st, &kept), KC_OK);
    assert_int_equal(kc_store_stats_scan(st, &scan), KC_OK);
    assert_int_equal(kept.record_bytes, scan.record_bytes + 7);
    /* (The scan on this writable handle rewrote them: skew them again.) */
    assert_int_equal(kc__env_write(st->env, skew_totals_fn, st->env), 0);
    assert_int_equal(kct_cachectl_verify(dir, 0), 1);
    assert_int_equal(kct_cachectl_verify(dir, 1), 0);
    assert_totals_exact(st);
    assert_int_equal(kct_cachectl_verify(dir, 0), 0);
    kct_pub_free(&p);
}

/* Incompressible bytes, so that the blob record is about size bytes. */
static uint8_t *noise(size_t size, uint64_t seed)
{
    uint8_t *b = malloc(size);
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; b && i < size; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        b[i] = (uint8_t)x;
    }
    return b;
}

/* A blob damaged on disk since its put, deleted: the totals stay exact.
 * A damaged header that would skew them (a raw size, a payload length
 * that no longer matches the bytes held) is caught and drops them, for the
 * next stats to rebuild by a scan; a flipped byte inside its zstd data
 * (which does not change what it counted for) leaves the kept totals in
 * place. Whole (3000 bytes) and split (6000: two overflow pages
 * and a tail) blobs. */
static void test_deleting_a_damaged_blob_keeps_the_totals_exact(void **state)
{
    kct_store_fx_t *f = *state;
    static const size_t sizes[] = {3000, 6000};
    /* Offsets in the record: payload_len (header), raw_size (payload), a
     * byte of the compressed data (past the frame's and block's headers). */
    static const size_t at[] = {8, 12 + 5, 50};
    /* Whether the totals are dropped: a payload length that shrank below
     * the bytes held changes nothing counted (stored bytes are LMDB's), so
     * either way there; a raw size always; compressed bytes never. */
    static const int drops[] = {-1, 1, 0};
    char data[600];

    snprintf(data, sizeof(data), "%s/data.mdb", f->root);
    for (size_t s = 0; s < 2; s++) {
        for (size_t a = 0; a < 3; a++) {
            uint8_t *cubin = noise(sizes[s], 100 + s * 3 + a);
            kc_key_t key;
            void *raw = NULL;
            size_t len = 0;

            assert_non_null(cubin);
            assert_int_equal(kc_store_put_cubin(f->st, cubin, sizes[s], &key), KC_OK);
            assert_int_equal(kc_store_get_raw(f->st, KC_REC_BLOB, &key, &raw, &len),
                             KC_OK);
            assert_totals_exact(f->st);
            kc_store_close(f->st);
            f->st = NULL;
            /* The record's first 64 bytes are unique in the file (noise). */
            assert_int_equal(kct_file_find_flip(data, raw, 64, 1, at[a]), 1);
            assert_int_equal(kc_store_open(f->root, NULL, &f->st), KC_OK);
            assert_int_equal(kc_store_del(f->st, KC_REC_BLOB, &key), KC_OK);
            kc_store_stats_t st;
            assert_int_equal(kc_store_stats(f->st, &st), KC_OK);
            if (drops[a] >= 0)
                assert_int_equal(st.totals_scanned, drops[a]);
            assert_totals_exact(f->st);
            kc_free(raw);
            free(cubin);
        }
    }
}

static int setup(void **state)
{
    return kct_store_fx_setup(state, "test_totals");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_many_records_in_one_transaction_stay_exact,
                                        setup, kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_an_aborted_transaction_leaves_the_totals_as_they_were, setup,
            kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(test_totals_stay_exact_through_every_write, setup,
                                        kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_deleting_a_damaged_blob_keeps_the_totals_exact, setup,
            kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_store_without_totals_gets_them_from_its_first_stats, setup,
            kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_verify_reports_stale_totals_and_repair_rewrites_them, setup,
            kct_store_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
