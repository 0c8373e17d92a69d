/* Split blobs (core/blob_value.c, docs/FORMAT.md revision 1.4): blob
 * records of lengths swept across page boundaries, each stored whole or as
 * a head filling whole overflow pages plus a tail in "blobtail", exactly
 * as the rule says; every reader gives back the same bytes (get_cubin,
 * get_raw, get_build_cubin, iterate, bundle export and import, recover of
 * a copy, dict training); deletes take the tail; the totals stay exact;
 * the structure check passes; a head whose tail is gone is a reported
 * damaged record, never a crash or a short read; the store's format goes
 * from 1 to 2 with its first split blob only. */
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
#include "kcache/blob.h"
#include "kcache/bundle.h"
#include "kcache/errors.h"
#include "kcache/record.h"
#include "kcache/remote.h"
#include "kcache/store.h"
#include "lmdb_check.h"
#include "store_internal.h"

/* LMDB's numbers for 4 KiB pages (the tests derive them from the page
 * size the store reports, and check these). */
#define PAGE_HDR 16
#define KEY_LEN 16

typedef struct lim {
    size_t psize;
    size_t tail_max; /* the largest tail that stays in a leaf */
} lim_t;

static lim_t limits(kc_store_t *st)
{
    MDB_stat ms;
    lim_t l;

    assert_int_equal(mdb_env_stat(st->env->mdb, &ms), 0);
    l.psize = ms.ms_psize;
    size_t nodemax = (((l.psize - PAGE_HDR) / 2) & ~(size_t)1) - 2;
    l.tail_max = nodemax - 8 - KEY_LEN;
    return l;
}

/* The head length the rule gives a record of len bytes (0: whole). */
static size_t expected_head(const lim_t *l, size_t len)
{
    if (len <= l->tail_max)
        return 0;
    size_t k = (len + PAGE_HDR) / l->psize;
    size_t head = k * l->psize - PAGE_HDR;
    if (k == 0 || head >= len || len - head > l->tail_max)
        return 0;
    return head;
}

/* Incompressible bytes: zstd stores them in raw blocks, so the record's
 * length follows the cubin's one for one. */
static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
}

typedef struct blob {
    uint8_t *cubin;
    size_t cubin_len;
    kc_key_t key;
    size_t rec_len;
} blob_t;

/* A cubin whose blob record is exactly rec_len bytes. */
static void blob_make(blob_t *b, size_t rec_len, uint64_t seed)
{
    size_t n = rec_len > 64 ? rec_len - 50 : 16;

    for (int tries = 0; tries < 32; tries++) {
        void *rec = NULL;
        size_t len = 0;
        b->cubin = realloc(b->cubin, n);
        assert_non_null(b->cubin);
        fill_random(b->cubin, n, seed);
        assert_int_equal(
            kc_blob_encode(b->cubin, n, KC_BLOB_DEFAULT_LEVEL, &b->key, &rec, &len),
            KC_OK);
        kc_free(rec);
        b->cubin_len = n;
        b->rec_len = len;
        if (len == rec_len)
            return;
        n = n + rec_len - len;
    }
    fail_msg("no cubin gives a %zu-byte blob record", rec_len);
}

/* ---- peeking at the databases ---------------------------------------------- */

typedef struct peek {
    kc_key_t key;
    size_t head; /* the "blob" value's length */
    size_t tail; /* the "blobtail" value's length, 0 if none */
    uint64_t tails;
} peek_t;

typedef struct peek_ctx {
    kc__env_t *env;
    peek_t *p;
} peek_ctx_t;

static int peek_txn(MDB_txn *txn, void *arg)
{
    peek_ctx_t *c = arg;
    MDB_val k = kc__key_val(&c->p->key), v;
    MDB_stat ms;
    int rc;

    c->p->head = c->p->tail = 0;
    rc = mdb_get(txn, c->env->dbi[KC_REC_BLOB], &k, &v);
    if (rc == 0)
        c->p->head = v.mv_size;
    else if (rc != MDB_NOTFOUND)
        return rc;
    k = kc__key_val(&c->p->key);
    rc = mdb_get(txn, c->env->blobtail, &k, &v);
    if (rc == 0)
        c->p->tail = v.mv_size;
    else if (rc != MDB_NOTFOUND)
        return rc;
    if ((rc = kc__blob_tails_stat(txn, c->env, &ms)) != 0)
        return rc;
    c->p->tails = ms.ms_entries;
    return 0;
}

static peek_t peek(kc_store_t *st, const kc_key_t *key)
{
    peek_t p = {.key = *key};
    peek_ctx_t c = {st->env, &p};
    assert_int_equal(kc__env_read(st->env, peek_txn, &c), 0);
    return p;
}

static int tail_del_txn(MDB_txn *txn, void *arg)
{
    peek_ctx_t *c = arg;
    MDB_val k = kc__key_val(&c->p->key);
    return mdb_del(txn, c->env->blobtail, &k, NULL);
}

static int head_del_txn(MDB_txn *txn, void *arg)
{
    peek_ctx_t *c = arg;
    MDB_val k = kc__key_val(&c->p->key);
    return mdb_del(txn, c->env->dbi[KC_REC_BLOB], &k, NULL);
}

static void tail_delete_by_hand(kc_store_t *st, const kc_key_t *key)
{
    peek_t p = {.key = *key};
    peek_ctx_t c = {st->env, &p};
    assert_int_equal(kc__env_write(st->env, tail_del_txn, &c), 0);
}

static uint32_t format_of(kc_store_t *st)
{
    kc_store_stats_t s;
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    return s.format_version;
}

static void assert_totals_exact(kc_store_t *st)
{
    kc_store_stats_t kept, scan;
    assert_int_equal(kc_store_stats(st, &kept), KC_OK);
    assert_int_equal(kc_store_stats_scan(st, &scan), KC_OK);
    assert_int_equal(kept.totals_scanned, 0);
    assert_int_equal(kept.blob_raw_bytes, scan.blob_raw_bytes);
    assert_int_equal(kept.blob_stored_bytes, scan.blob_stored_bytes);
    assert_int_equal(kept.record_bytes, scan.record_bytes);
}

/* ---- the sweep ---------------------------------------------------------------- */

#define MAX_SIZES 64

typedef struct sweep {
    blob_t b[MAX_SIZES];
    size_t n, n_split;
    kct_pub_t pub[MAX_SIZES]; /* a build of each blob */
} sweep_t;

/* Record lengths across the page boundaries of l: inline, one page, a
 * page and a tail (at, below and past the tail limit), exact fits. */
static size_t sweep_sizes(const lim_t *l, size_t *out)
{
    size_t n = 0, p = l->psize, t = l->tail_max;
    size_t fixed[] = {2000,
                      t,
                      t + 1,
                      3000,
                      p - PAGE_HDR,
                      p - PAGE_HDR + 1,
                      p,
                      5000,
                      p - PAGE_HDR + t - 1,
                      p - PAGE_HDR + t,
                      p - PAGE_HDR + t + 1,
                      7600,
                      2 * p - PAGE_HDR,
                      2 * p - PAGE_HDR + 1,
                      2 * p - PAGE_HDR + t,
                      2 * p - PAGE_HDR + t + 1,
                      12000,
                      3 * p + 100,
                      16000,
                      20000};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(*fixed); i++)
        out[n++] = fixed[i];
    return n;
}

static void sweep_publish(kc_store_t *st, sweep_t *s)
{
    lim_t l = limits(st);
    size_t sizes[MAX_SIZES];

    memset(s, 0, sizeof(*s));
    s->n = sweep_sizes(&l, sizes);
    for (size_t i = 0; i < s->n; i++) {
        blob_t *b = &s->b[i];
        kct_pub_t *p = &s->pub[i];
        blob_make(b, sizes[i], 1000 + i);
        /* A real publish: the cubin and a build naming it. */
        assert_int_equal(kct_pub_make(p, 7000 + i, 1), KC_OK);
        p->cubins[0] = (kc_buf_t){b->cubin, b->cubin_len};
        p->builds[0].blob = b->key;
        p->pub.n_cubins = 1;
        assert_int_equal(kc_store_publish(st, &p->pub), KC_OK);

        peek_t pk = peek(st, &b->key);
        size_t head = expected_head(&l, b->rec_len);
        if (head) {
            s->n_split++;
            assert_int_equal(pk.head, head);
            assert_int_equal(pk.tail, b->rec_len - head);
            assert_true(pk.tail <= l.tail_max);
        } else {
            assert_int_equal(pk.head, b->rec_len);
            assert_int_equal(pk.tail, 0);
        }
    }
    assert_int_equal(peek(st, &s->b[0].key).tails, s->n_split);
}

static void sweep_free(sweep_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->b[i].cubin);
        kct_pub_free(&s->pub[i]);
    }
}

/* Every reader gives back blob b of s whole from st. */
static void assert_reads(kc_store_t *st, const blob_t *b, const kct_pub_t *p)
{
    void *cubin = NULL, *raw = NULL;
    size_t len = 0, raw_len = 0;
    kc_record_t *build = NULL, *rec = NULL;

    assert_int_equal(kc_store_get_cubin(st, &b->key, &cubin, &len), KC_OK);
    assert_int_equal(len, b->cubin_len);
    assert_memory_equal(cubin, b->cubin, len);
    kc_free(cubin);

    assert_int_equal(kc_store_get_raw(st, KC_REC_BLOB, &b->key, &raw, &raw_len), KC_OK);
    assert_int_equal(raw_len, b->rec_len);
    assert_int_equal(kc_record_check(raw, raw_len, NULL, NULL), KC_OK);
    kc_free(raw);

    assert_int_equal(kc_store_get(st, KC_REC_BLOB, &b->key, &rec), KC_OK);
    kc_free(rec);

    if (p) {
        assert_int_equal(
            kc_store_get_build_cubin(st, &p->build_keys[0], &build, &cubin, &len), KC_OK);
        assert_int_equal(len, b->cubin_len);
        assert_memory_equal(cubin, b->cubin, len);
        kc_free(build);
        kc_free(cubin);
    }
}

static void test_sizes_across_page_boundaries_split_as_the_rule_says(void **state)
{
    kc_store_t *st = ((kct_store_fx_t *)*state)->st;
    lim_t l = limits(st);
    sweep_t s;

    if (l.psize == 4096) /* LMDB's numbers for the usual page */
        assert_int_equal(l.tail_max, 2014);
    sweep_publish(st, &s);
    assert_true(s.n_split >= 5);
    assert_true(s.n_split < s.n);
    for (size_t i = 0; i < s.n; i++)
        assert_reads(st, &s.b[i], &s.pub[i]);
    assert_totals_exact(st);
    assert_int_equal(kct_cachectl_verify(((kct_store_fx_t *)*state)->root, 0), 0);
    sweep_free(&s);
}

typedef struct it_ctx {
    const sweep_t *s;
    size_t seen;
} it_ctx_t;

static int iter_blob(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                     const void *data, size_t len)
{
    it_ctx_t *c = user;
    assert_int_equal(kind, KC_REC_BLOB);
    for (size_t i = 0; i < c->s->n; i++) {
        if (memcmp(c->s->b[i].key.b, key->b, 16) != 0)
            continue;
        assert_int_equal(len, c->s->b[i].rec_len);
        assert_int_equal(kc_record_check(data, len, NULL, NULL), KC_OK);
        c->seen++;
    }
    return 0;
}

static void test_iterate_gives_split_blobs_whole(void **state)
{
    kc_store_t *st = ((kct_store_fx_t *)*state)->st;
    sweep_t s;
    it_ctx_t c = {&s, 0};

    sweep_publish(st, &s);
    assert_int_equal(kc_store_iterate(st, KC_REC_BLOB, iter_blob, &c), KC_OK);
    assert_int_equal(c.seen, s.n);
    sweep_free(&s);
}

static void test_delete_takes_the_tail(void **state)
{
    kc_store_t *st = ((kct_store_fx_t *)*state)->st;
    sweep_t s;

    sweep_publish(st, &s);
    assert_true(peek(st, &s.b[0].key).tails > 0);
    /* Builds first (a blob a build names stays referenced otherwise). */
    for (size_t i = 0; i < s.n; i++) {
        assert_int_equal(kc_store_del(st, KC_REC_TUNING, &s.pub[i].tuning_key), KC_OK);
        assert_int_equal(kc_store_del(st, KC_REC_BUILD, &s.pub[i].build_keys[0]), KC_OK);
        assert_int_equal(kc_store_del(st, KC_REC_BLOB, &s.b[i].key), KC_OK);
        assert_totals_exact(st);
    }
    peek_t pk = peek(st, &s.b[0].key);
    assert_int_equal(pk.tails, 0);
    assert_int_equal(pk.head, 0);
    kc_store_stats_t st_s;
    assert_int_equal(kc_store_stats(st, &st_s), KC_OK);
    assert_int_equal(st_s.blob_stored_bytes, 0);
    assert_int_equal(st_s.blob_raw_bytes, 0);
    sweep_free(&s);
}

static void test_compact_keeps_split_blobs(void **state)
{
    kc_store_t *st = ((kct_store_fx_t *)*state)->st;
    sweep_t s;
    uint64_t before = 0, after = 0;

    sweep_publish(st, &s);
    assert_int_equal(kc_store_compact(st, &before, &after), KC_OK);
    for (size_t i = 0; i < s.n; i++)
        assert_reads(st, &s.b[i], &s.pub[i]);
    assert_int_equal(peek(st, &s.b[0].key).tails, s.n_split);
    assert_int_equal(format_of(st), 2);
    assert_totals_exact(st);
    sweep_free(&s);
}

static void test_gc_evicts_split_blobs_whole(void **state)
{
    kct_store_fx_t *f = *state;
    sweep_t s;
    kc_gc_report_t r;

    sweep_publish(f->st, &s);
    /* Nothing is kept: every unit evicted, every blob swept. */
    kc_gc_opts_t o = {
        .size = sizeof(kc_gc_opts_t), .max_bytes = 1, .now = UINT64_MAX / 2};
    assert_int_equal(kc_store_gc(f->st, &o, &r), KC_OK);
    peek_t pk = peek(f->st, &s.b[0].key);
    assert_int_equal(pk.tails, 0);
    assert_totals_exact(f->st);
    sweep_free(&s);
}

static void test_a_head_without_its_tail_is_a_reported_damaged_record(void **state)
{
    kct_store_fx_t *f = *state;
    kc_store_t *st = f->st;
    lim_t l = limits(st);
    blob_t b = {0};
    kc_key_t key;
    char hex[KC_KEY_HEX_LEN + 1];
    void *cubin = NULL, *raw = NULL;
    size_t len = 0;

    blob_make(&b, 2 * l.psize - PAGE_HDR + 100, 77);
    assert_int_equal(kc_store_put_cubin(st, b.cubin, b.cubin_len, &key), KC_OK);
    assert_memory_equal(key.b, b.key.b, 16);
    assert_int_equal(peek(st, &key).tail, 100);
    tail_delete_by_hand(st, &key);
    kc_key_to_hex(&key, hex);

    /* The raw read: KC_ECORRUPT, no short record. */
    assert_int_equal(kc_store_get_raw(st, KC_REC_BLOB, &key, &raw, &len), KC_ECORRUPT);
    assert_null(raw);
    assert_non_null(strstr(kc_store_errmsg(st), hex));
    /* A verifying read: a damaged record, named, counted, deleted. */
    assert_int_equal(kc_store_get_cubin(st, &key, &cubin, &len), KC_ENOTFOUND);
    assert_null(cubin);
    assert_non_null(strstr(kc_store_errmsg(st), hex));
    assert_non_null(strstr(kc_store_errmsg(st), "tail"));
    assert_int_equal(peek(st, &key).head, 0);
    /* Deleting a blob of unknown length dropped the totals (core/totals.c):
     * the next stats rebuilds them, and they are exact again. */
    kc_store_stats_t rebuilt;
    assert_int_equal(kc_store_stats(st, &rebuilt), KC_OK);
    assert_totals_exact(st);

    /* Again, found by cachectl verify, which reports and does not crash. */
    assert_int_equal(kc_store_put_cubin(st, b.cubin, b.cubin_len, &key), KC_OK);
    tail_delete_by_hand(st, &key);
    assert_int_not_equal(kct_cachectl_verify(f->root, 0), 0);
    free(b.cubin);
}

static void test_format_goes_to_2_with_the_first_split_blob(void **state)
{
    kc_store_t *st = ((kct_store_fx_t *)*state)->st;
    lim_t l = limits(st);
    blob_t b = {0};
    kc_key_t key;

    assert_int_equal(KC_STORE_FORMAT_VERSION, 2);
    assert_int_equal(format_of(st), 1); /* a new store */
    blob_make(&b, 3000, 1);             /* one whole overflow page: no split */
    assert_int_equal(kc_store_put_cubin(st, b.cubin, b.cubin_len, &key), KC_OK);
    blob_make(&b, l.psize - PAGE_HDR, 2); /* fits its page exactly */
    assert_int_equal(kc_store_put_cubin(st, b.cubin, b.cubin_len, &key), KC_OK);
    assert_int_equal(format_of(st), 1);
    blob_make(&b, l.psize + 500, 3);
    assert_int_equal(kc_store_put_cubin(st, b.cubin, b.cubin_len, &key), KC_OK);
    assert_int_not_equal(peek(st, &key).tail, 0);
    assert_int_equal(format_of(st), 2);
    /* Reopened: this kcache reads format 2. */
    kct_store_fx_t *f = *state;
    kc_store_close(f->st);
    assert_int_equal(kc_store_open(f->root, NULL, &f->st), KC_OK);
    st = f->st;
    assert_int_equal(format_of(st), 2);
    assert_reads(st, &b, NULL);
    free(b.cubin);
}

static int blobtail_drop_txn(MDB_txn *txn, void *arg)
{
    kc__env_t *env = arg;
    return mdb_drop(txn, env->blobtail, 1);
}

/* A store made before revision 1.4 has no "blobtail" database: read-only,
 * it is read as before; the first writable open adds the database, and its
 * format stays 1 until a split blob is written. */
static void test_a_store_older_than_blobtail_is_read_then_upgraded(void **state)
{
    kct_store_fx_t *f = *state;
    lim_t l = limits(f->st);
    blob_t whole = {0}, split = {0};
    kc_key_t key;
    kc_store_opts_t ro = {.size = sizeof(kc_store_opts_t), .flags = KC_STORE_RDONLY};

    blob_make(&whole, 3000, 11);
    assert_int_equal(kc_store_put_cubin(f->st, whole.cubin, whole.cubin_len, &key),
                     KC_OK);
    assert_int_equal(kc__env_write(f->st->env, blobtail_drop_txn, f->st->env), 0);
    kc_store_close(f->st);

    assert_int_equal(kc_store_open(f->root, &ro, &f->st), KC_OK);
    assert_int_equal(f->st->env->has_blobtail, 0);
    assert_int_equal(format_of(f->st), 1);
    assert_reads(f->st, &whole, NULL);
    kc_store_close(f->st);

    assert_int_equal(kc_store_open(f->root, NULL, &f->st), KC_OK);
    assert_int_equal(f->st->env->has_blobtail, 1);
    assert_int_equal(format_of(f->st), 1);
    blob_make(&split, l.psize + 1000, 12);
    assert_int_equal(kc_store_put_cubin(f->st, split.cubin, split.cubin_len, &key),
                     KC_OK);
    assert_int_equal(peek(f->st, &key).tail, split.rec_len - (l.psize - PAGE_HDR));
    assert_int_equal(format_of(f->st), 2);
    assert_reads(f->st, &whole, NULL);
    assert_reads(f->st, &split, NULL);
    assert_totals_exact(f->st);
    free(whole.cubin);
    free(split.cubin);
}

static void test_bundle_round_trip_carries_split_blobs(void **state)
{
    kc_store_t *st = ((kct_store_fx_t *)*state)->st, *other = NULL;
    char root[512];
    sweep_t s;
    char *buf = NULL;
    size_t buf_len = 0;
    kc_bundle_stats_t es, is;
    kc_bundle_import_opts_t o = KC_BUNDLE_IMPORT_OPTS_INIT;

    sweep_publish(st, &s);
    FILE *out = open_memstream(&buf, &buf_len);
    assert_non_null(out);
    assert_int_equal(kc_bundle_export(st, NULL, out, &es), KC_OK);
    fclose(out);
    assert_int_equal(es.blobs, s.n);
    assert_int_equal(es.damaged, 0);
    assert_int_equal(kct_store_scratch("blob_split_import", root, sizeof(root), &other),
                     0);
    assert_int_equal(kc_bundle_import_mem(other, buf, buf_len, &o, &is), KC_OK);
    for (size_t i = 0; i < s.n; i++)
        assert_reads(other, &s.b[i], &s.pub[i]);
    assert_int_equal(peek(other, &s.b[0].key).tails, s.n_split);
    assert_totals_exact(other);
    assert_int_equal(format_of(other), 2);
    kct_store_scratch_free(root, other);
    free(buf);
    sweep_free(&s);
}

static void test_remote_push_and_pull_carry_split_blobs(void **state)
{
    kc_store_t *st = ((kct_store_fx_t *)*state)->st, *other = NULL;
    char root[512];
    kct_redis_t redis;
    kc_remote_t *r = NULL;
    sweep_t s;

    memset(&redis, 0, sizeof(redis));
    if (kct_redis_start(&redis, 0) != 0) {
        kct_redis_stop(&redis);
        skip(); /* no redis-server here */
    }
    sweep_publish(st, &s);
    assert_int_equal(kct_store_scratch("blob_split_pull", root, sizeof(root), &other), 0);
    assert_int_equal(kc_remote_open(redis.url, NULL, &r), KC_OK);
    for (size_t i = 0; i < s.n; i++) {
        assert_int_equal(kc_remote_push(r, st, &s.pub[i].tuning_key), KC_OK);
        assert_int_equal(kc_remote_pull(r, other, &s.pub[i].tuning_key), KC_OK);
    }
    for (size_t i = 0; i < s.n; i++)
        assert_reads(other, &s.b[i], &s.pub[i]);
    assert_int_equal(peek(other, &s.b[0].key).tails, s.n_split);
    kc_remote_close(r);
    kct_store_scratch_free(root, other);
    kct_redis_stop(&redis);
    sweep_free(&s);
}

static void test_recover_of_a_copy_pairs_heads_with_tails(void **state)
{
    kct_store_fx_t *f = *state;
    sweep_t s;
    char src[600], dst[600];
    kc_recover_stats_t r;
    kc_store_t *got = NULL;
    lim_t l = limits(f->st);
    blob_t lost = {0};
    kc_key_t key;

    sweep_publish(f->st, &s);
    /* One more split blob, whose tail is then lost. */
    blob_make(&lost, l.psize + 300, 99);
    assert_int_equal(kc_store_put_cubin(f->st, lost.cubin, lost.cubin_len, &key), KC_OK);
    tail_delete_by_hand(f->st, &key);
    assert_int_equal(kc_store_flush(f->st), KC_OK);
    /* A compacted copy: no free page keeps an old copy of the tail. */
    snprintf(src, sizeof(src), "%s/copy", f->root);
    assert_int_equal(kc_store_snapshot(f->st, src, NULL), KC_OK);

    snprintf(dst, sizeof(dst), "%s/recovered", f->root);
    assert_int_equal(kc_store_recover(src, dst, &r), KC_OK);
    assert_int_equal(kc_store_open(dst, NULL, &got), KC_OK);
    for (size_t i = 0; i < s.n; i++)
        assert_reads(got, &s.b[i], &s.pub[i]);
    /* The head without its tail: found, not saved, never written short. */
    assert_true(r.damaged[KC_REC_BLOB] >= 1);
    assert_true(r.saved[KC_REC_BLOB] >= s.n);
    assert_int_equal(peek(got, &lost.key).head, 0);
    assert_int_equal(peek(got, &s.b[0].key).tails, s.n_split);
    assert_totals_exact(got);
    kc_store_close(got);
    free(lost.cubin);
    sweep_free(&s);
}

static void test_the_structure_check_passes_a_store_with_blobtail(void **state)
{
    kct_store_fx_t *f = *state;
    sweep_t s;
    char path[600];
    kc__mdb_check_t res;

    sweep_publish(f->st, &s);
    assert_int_equal(kc_store_flush(f->st), KC_OK);
    snprintf(path, sizeof(path), "%s/data.mdb", f->root);
    assert_int_equal(kc__mdb_check_file(path, &res), KC_OK);
    sweep_free(&s);
}

static void test_dict_training_reads_split_blobs(void **state)
{
    kc_store_t *st = ((kct_store_fx_t *)*state)->st;
    sweep_t s;
    kc_dict_report_t r;

    uint64_t raw = 0, stored = 0;

    sweep_publish(st, &s);
    for (size_t i = 0; i < s.n; i++) {
        raw += s.b[i].cubin_len;
        stored += s.b[i].rec_len;
    }
    /* Every blob listed at its whole length and sampled whole (a head
     * would not decode). Random bytes may train no dictionary: the
     * report is filled either way. */
    int rc = kc_store_train_dict(st, 0, 1, &r);
    assert_true(rc == KC_OK || rc == KC_EZSTD);
    assert_int_equal(r.blobs, s.n);
    assert_int_equal(r.samples, s.n);
    assert_int_equal(r.stored_before, stored);
    assert_int_equal(r.raw_bytes, raw);
    sweep_free(&s);
}

static void test_gc_sweeps_a_tail_whose_head_is_gone(void **state)
{
    kct_store_fx_t *f = *state;
    kc_store_t *st = f->st;
    lim_t l = limits(st);
    blob_t b = {0};
    kc_key_t key;
    kc_gc_report_t r;

    blob_make(&b, l.psize + 700, 5);
    assert_int_equal(kc_store_put_cubin(st, b.cubin, b.cubin_len, &key), KC_OK);
    assert_int_equal(peek(st, &key).tails, 1);
    kc_gc_opts_t o = {.size = sizeof(kc_gc_opts_t), .now = 1};
    assert_int_equal(kc_store_gc(st, &o, &r), KC_OK);
    assert_int_equal(peek(st, &key).tails, 1); /* a live blob's tail stays */
    /* What a format-1 kcache's delete of a "damaged" head leaves. */
    {
        peek_t p = {.key = key};
        peek_ctx_t c = {st->env, &p};
        assert_int_equal(kc__env_write(st->env, head_del_txn, &c), 0);
    }
    assert_int_equal(peek(st, &key).tails, 1);
    assert_int_equal(kc_store_gc(st, &o, &r), KC_OK);
    assert_int_equal(peek(st, &key).tails, 0);
    free(b.cubin);
}

/* gc measures blobs by the tails' database walked beside them (a blob's
 * head is not read): its size is the record bytes the totals keep, split
 * blobs whole, with a tail whose head is gone passed by. */
static void test_gc_sizes_split_blobs_as_the_totals_do(void **state)
{
    kct_store_fx_t *f = *state;
    kc_store_t *st = f->st;
    lim_t l = limits(st);
    sweep_t s;
    blob_t b = {0};
    kc_key_t key;
    kc_gc_report_t r;
    kc_store_stats_t stats;

    sweep_publish(st, &s);
    /* A leftover tail among the others: a split blob whose head is gone. */
    blob_make(&b, l.psize + 700, 77);
    assert_int_equal(kc_store_put_cubin(st, b.cubin, b.cubin_len, &key), KC_OK);
    {
        peek_t p = {.key = key};
        peek_ctx_t c = {st->env, &p};
        assert_int_equal(kc__env_write(st->env, head_del_txn, &c), 0);
    }
    assert_int_equal(peek(st, &key).tails, s.n_split + 1); /* the leftover's kept */
    assert_int_equal(kc_store_stats_scan(st, &stats), KC_OK);
    assert_int_equal(stats.records[KC_REC_BINMETA], 0);
    assert_true(s.n_split > 0);
    kc_gc_opts_t o = {
        .size = sizeof(kc_gc_opts_t), .dry_run = 1, .max_bytes = 1, .now = 1};
    assert_int_equal(kc_store_gc(st, &o, &r), KC_OK);
    assert_int_equal(r.size_before, stats.record_bytes);
    free(b.cubin);
    sweep_free(&s);
}

static int setup(void **state)
{
    return kct_store_fx_setup(state, "blob_split");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_sizes_across_page_boundaries_split_as_the_rule_says, setup,
            kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(test_iterate_gives_split_blobs_whole, setup,
                                        kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(test_gc_sizes_split_blobs_as_the_totals_do, setup,
                                        kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(test_delete_takes_the_tail, setup,
                                        kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(test_compact_keeps_split_blobs, setup,
                                        kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(test_gc_evicts_split_blobs_whole, setup,
                                        kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_head_without_its_tail_is_a_reported_damaged_record, setup,
            kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(test_format_goes_to_2_with_the_first_split_blob,
                                        setup, kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_store_older_than_blobtail_is_read_then_upgraded, setup,
            kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(test_bundle_round_trip_carries_split_blobs, setup,
                                        kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(test_remote_push_and_pull_carry_split_blobs,
                                        setup, kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(test_recover_of_a_copy_pairs_heads_with_tails,
                                        setup, kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_the_structure_check_passes_a_store_with_blobtail, setup,
            kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(test_dict_training_reads_split_blobs, setup,
                                        kct_store_fx_teardown),
        cmocka_unit_test_setup_teardown(test_gc_sweeps_a_tail_whose_head_is_gone, setup,
                                        kct_store_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
