/* gc and compaction: least recently used eviction under a size limit and by
 * age, the references gc must never break (tuning -> winning build -> blob),
 * the sweep of unreferenced blobs, dry runs, the automatic limit after a
 * publish, and compaction of data.mdb, refused while another process has
 * the store open. Usage times are set by writing usage records directly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <lmdb.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kc_testutil.h"
#include "kcache/errors.h"
#include "kcache/key.h"
#include "kcache/record.h"
#include "kcache/shape.h"
#include "kcache/store.h"

/* "now" for the tests, set when they start: stamps are written before it,
 * so that the store's own stamps (a publish's, at the real time) are
 * always newer. */
static uint64_t T0;

/* ---- scratch directories ------------------------------------------------- */

typedef struct fixture {
    char root[512];
    char dir[600];
    kc_store_t *st;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    if (!f || kct_tmpdir("test_gc", f->root, sizeof(f->root)) != 0)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s/store", f->root);
    unsetenv("KCACHE_MAX_SIZE");
    if (kc_store_open(f->dir, NULL, &f->st) != KC_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    kc_store_close(f->st);
    kct_rmtree(f->root, 0);
    unsetenv("KCACHE_MAX_SIZE");
    free(f);
    return 0;
}

/* ---- records ------------------------------------------------------------- */

static const char src[] =
    "extern \"C\" __global__ void k(float *y, int n)\n"
    "{ int i = blockIdx.x * BLOCK + threadIdx.x; if (i < n) y[i] *= 2.0f; }\n";

/* size bytes that zstd cannot shrink, different for every seed. */
static uint8_t *noise(size_t size, uint64_t seed)
{
    uint8_t *p = malloc(size);
    uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;

    assert_non_null(p);
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
    return p;
}

/* One kernel variant: a cubin, the build that produced it, and optionally
 * a tuning whose winner is that build. */
typedef struct kern {
    kc_key_t blob, build, tuning;
    void *build_pre, *tuning_pre;
    uint8_t sig[128];
    kc_param_t params[1];
    kc_build_rec_t b;
    kc_tuning_rec_t t;
} kern_t;

static void kern_free(kern_t *k)
{
    kc_free(k->build_pre);
    kc_free(k->tuning_pre);
}

/* Build for BLOCK=block of the cubin with key blob. */
static void make_build(kern_t *k, int64_t block, const kc_key_t *blob)
{
    k->params[0] = (kc_param_t){"BLOCK", block};
    kc_build_desc_t d = {
        .source_kind = KC_SOURCE_CUDA,
        .source_digest = kc_source_digest(src, sizeof(src) - 1, NULL, 0),
        .entry = "k",
        .params = k->params,
        .n_params = 1,
        .arch = "sm_90",
        .toolchain = "nvrtc-13.0",
    };
    size_t len;

    assert_int_equal(kc_build_preimage_encode(&d, &k->build_pre, &len), KC_OK);
    k->build = kc_key_hash(k->build_pre, len);
    k->blob = *blob;
    k->b = (kc_build_rec_t){
        .preimage = {k->build_pre, len},
        .blob = *blob,
        .entry = "k",
        .registers = 16,
        .max_threads = 1024,
        .compile_us = 1000,
        .created = T0 - 100000,
    };
}

/* Tuning for inputs of n elements whose winner is the kernel's build. */
static void make_tuning(kern_t *k, int64_t n)
{
    int64_t dims[1] = {n};
    kc_argdesc_t args[2] = {
        {.kind = KC_ARG_POINTER,
         .dtype = KC_DTYPE_F32,
         .rank = 1,
         .dims = dims,
         .addr = 0x7f0000000000},
        {.kind = KC_ARG_SCALAR, .dtype = KC_DTYPE_I32, .value.i = n},
    };
    size_t sig_len, len;

    assert_int_equal(
        kc_shape_sig_encode(args, 2, KC_DIMS_EXACT, k->sig, sizeof(k->sig), &sig_len),
        KC_OK);
    kc_tuning_desc_t d = {
        .source_kind = KC_SOURCE_CUDA,
        .source_digest = kc_source_digest(src, sizeof(src) - 1, NULL, 0),
        .entry = "k",
        .space_digest = kc_key_hash("BLOCK", 5),
        .shape_sig = {k->sig, sig_len},
        .arch = "sm_90",
        .sm_count = 132,
        .device_name = "NVIDIA H100",
    };
    assert_int_equal(kc_tuning_preimage_encode(&d, &k->tuning_pre, &len), KC_OK);
    k->tuning = kc_key_hash(k->tuning_pre, len);
    k->t = (kc_tuning_rec_t){
        .preimage = {k->tuning_pre, len},
        .winner = k->params,
        .n_winner = 1,
        .winner_build = k->build,
        .tuning_us = 5000,
        .device_name = "NVIDIA H100",
        .arch = "sm_90",
        .sm_count = 132,
        .driver_version = 13000,
        .created = T0 - 100000,
    };
}

/* Publish kernel i: a cubin of size bytes (seed cubin_seed), its build,
 * and a tuning if tuned. */
static void publish_kern(kc_store_t *st, kern_t *k, int i, uint64_t cubin_seed,
                         size_t size, int tuned)
{
    uint8_t *cubin = noise(size, cubin_seed);
    kc_buf_t buf = {cubin, size};
    kc_key_t blob = kc_key_hash(cubin, size);

    memset(k, 0, sizeof(*k));
    make_build(k, 32 * (i + 1), &blob);
    if (tuned)
        make_tuning(k, 1000 + i);
    kc_publish_t pub = {&buf, 1, &k->b, 1, tuned ? &k->t : NULL, NULL, 0};
    assert_int_equal(kc_store_publish(st, &pub), KC_OK);
    free(cubin);
}

/* Set a record's last use by writing its usage record. */
static void stamp(kc_store_t *st, const kc_key_t *key, uint64_t last_use)
{
    kc_record_t rec = {.kind = KC_REC_USAGE, .version = KC_RECORD_VERSION};

    rec.u.usage.last_use = last_use;
    rec.u.usage.uses = 1;
    assert_int_equal(kc_store_put(st, key, &rec), KC_OK);
}

static void stamp_kern(kc_store_t *st, const kern_t *k, uint64_t t_build,
                       uint64_t t_tuning)
{
    stamp(st, &k->blob, t_build);
    stamp(st, &k->build, t_build);
    if (k->t.preimage.data)
        stamp(st, &k->tuning, t_tuning);
}

static int has(kc_store_t *st, kc_rec_kind_t kind, const kc_key_t *key)
{
    kc_record_t *rec = NULL;
    int rc = kc_store_get(st, kind, key, &rec);

    kc_free(rec);
    assert_true(rc == KC_OK || rc == KC_ENOTFOUND);
    return rc == KC_OK;
}

static uint64_t stored_len(kc_store_t *st, kc_rec_kind_t kind, const kc_key_t *key)
{
    void *data = NULL;
    size_t len = 0;

    assert_int_equal(kc_store_get_raw(st, kind, key, &data, &len), KC_OK);
    kc_free(data);
    return len;
}

static uint64_t kern_bytes(kc_store_t *st, const kern_t *k, int with_blob)
{
    uint64_t n = stored_len(st, KC_REC_BUILD, &k->build);
    if (with_blob)
        n += stored_len(st, KC_REC_BLOB, &k->blob);
    if (k->t.preimage.data)
        n += stored_len(st, KC_REC_TUNING, &k->tuning);
    return n;
}

/* Every build's blob and every tuning's winning build is stored: returns
 * the number of references checked. */
typedef struct refs_ctx {
    kc_rec_kind_t kind[256];
    kc_key_t key[256];
    int n;
} refs_ctx_t;

static int collect_ref(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                       const void *data, size_t len)
{
    refs_ctx_t *c = user;
    kc_record_t *rec = NULL;

    (void)key;
    assert_true(c->n < 256);
    assert_int_equal(kc_record_decode(data, len, &rec), KC_OK);
    c->kind[c->n] = kind == KC_REC_BUILD ? KC_REC_BLOB : KC_REC_BUILD;
    c->key[c->n++] =
        kind == KC_REC_BUILD ? rec->u.build.blob : rec->u.tuning.winner_build;
    kc_free(rec);
    return 0;
}

static int assert_references_intact(kc_store_t *st)
{
    refs_ctx_t *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    assert_int_equal(kc_store_iterate(st, KC_REC_BUILD, collect_ref, c), KC_OK);
    assert_int_equal(kc_store_iterate(st, KC_REC_TUNING, collect_ref, c), KC_OK);
    for (int i = 0; i < c->n; i++) {
        void *data = NULL;
        size_t len;
        assert_int_equal(kc_store_get_raw(st, c->kind[i], &c->key[i], &data, &len),
                         KC_OK);
        kc_free(data);
    }
    int n = c->n;
    free(c);
    return n;
}

static uint64_t count(kc_store_t *st, kc_rec_kind_t kind)
{
    kc_store_stats_t s;

    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    return s.records[kind];
}

static uint64_t store_size(kc_store_t *st)
{
    kc_gc_opts_t o = {.size = sizeof(kc_gc_opts_t), .dry_run = 1, .now = T0};
    kc_gc_report_t r;

    assert_int_equal(kc_store_gc(st, &o, &r), KC_OK);
    return r.size_before;
}

/* ---- tests --------------------------------------------------------------- */

/* Four tuned kernels, last used (oldest first) 1, 3, 0, 2. */
static const uint64_t lru_ago[4] = {2000, 4000, 1000, 3000};

static void publish_four(kc_store_t *st, kern_t k[4])
{
    for (int i = 0; i < 4; i++) {
        publish_kern(st, &k[i], i, 100 + (uint64_t)i, 4096, 1);
        stamp_kern(st, &k[i], T0 - lru_ago[i], T0 - lru_ago[i]);
    }
}

static void test_gc_evicts_least_recently_used_first_until_under_the_limit(void **state)
{
    fixture_t *f = *state;
    kern_t k[4];
    kc_gc_report_t r;

    publish_four(f->st, k);
    uint64_t size = store_size(f->st);
    /* Room for everything but kernel 1 (the oldest), less one byte: kernel
     * 1 goes whole, then the next oldest unit, kernel 3's tuning, which is
     * enough; kernel 3's build is kept. */
    uint64_t k1 = kern_bytes(f->st, &k[1], 1);
    uint64_t t3 = stored_len(f->st, KC_REC_TUNING, &k[3].tuning);
    kc_gc_opts_t o = {
        .size = sizeof(kc_gc_opts_t), .max_bytes = size - k1 - 1, .now = T0, .list = 1};

    assert_int_equal(kc_store_gc(f->st, &o, &r), KC_OK);
    assert_false(has(f->st, KC_REC_TUNING, &k[1].tuning));
    assert_false(has(f->st, KC_REC_BUILD, &k[1].build));
    assert_false(has(f->st, KC_REC_BLOB, &k[1].blob));
    assert_false(has(f->st, KC_REC_TUNING, &k[3].tuning));
    assert_true(has(f->st, KC_REC_BUILD, &k[3].build));
    assert_true(has(f->st, KC_REC_BLOB, &k[3].blob));
    for (int i = 0; i < 4; i += 2) {
        assert_true(has(f->st, KC_REC_TUNING, &k[i].tuning));
        assert_true(has(f->st, KC_REC_BUILD, &k[i].build));
        assert_true(has(f->st, KC_REC_BLOB, &k[i].blob));
    }
    assert_int_equal(r.evicted[KC_REC_TUNING], 2);
    assert_int_equal(r.evicted[KC_REC_BUILD], 1);
    assert_int_equal(r.evicted[KC_REC_BLOB], 1);
    assert_int_equal(r.size_before, size);
    assert_int_equal(r.size_after, size - k1 - t3);
    assert_int_equal(store_size(f->st), r.size_after);
    assert_true(r.size_after <= o.max_bytes);
    assert_int_equal(r.bytes_freed, r.size_before - r.size_after);
    assert_int_equal(r.n_items, 4);
    /* Tunings leave before the build they name; a blob after its build. */
    assert_int_equal(r.items[0].kind, KC_REC_TUNING);
    assert_memory_equal(r.items[0].key.b, k[1].tuning.b, 16);
    assert_int_equal(r.items[1].kind, KC_REC_BUILD);
    assert_int_equal(r.items[2].kind, KC_REC_BLOB);
    assert_memory_equal(r.items[3].key.b, k[3].tuning.b, 16);
    assert_int_equal(r.items[3].last_use, T0 - lru_ago[3]);
    kc_free(r.items);
    /* Their usage stamps went with them. */
    kc_record_t *u = NULL;
    assert_int_equal(kc_store_get(f->st, KC_REC_USAGE, &k[1].build, &u), KC_ENOTFOUND);
    assert_int_equal(kc_store_get(f->st, KC_REC_USAGE, &k[3].tuning, &u), KC_ENOTFOUND);
    assert_int_equal(assert_references_intact(f->st), 3 + 2);
    for (int i = 0; i < 4; i++)
        kern_free(&k[i]);
}

static void test_gc_never_breaks_a_tuning_or_a_build_reference(void **state)
{
    fixture_t *f = *state;
    kern_t a, b, c;
    kc_gc_report_t r;

    /* a: old build, recently used tuning. b and c share one cubin; c's
     * tuning is the oldest record, c's build the next. */
    publish_kern(f->st, &a, 0, 1, 4096, 1);
    publish_kern(f->st, &b, 1, 2, 4096, 0);
    publish_kern(f->st, &c, 2, 2, 4096, 1);
    assert_memory_equal(b.blob.b, c.blob.b, 16);
    stamp_kern(f->st, &a, T0 - 5000, T0 - 10);
    stamp_kern(f->st, &b, T0 - 500, 0);
    stamp_kern(f->st, &c, T0 - 3000, T0 - 4000);
    uint64_t size = store_size(f->st);

    /* Enough to force out c's tuning and build, whose blob b still uses;
     * a's build is the oldest build but a recent tuning needs it. */
    kc_gc_opts_t o = {.size = sizeof(kc_gc_opts_t),
                      .max_bytes = size - kern_bytes(f->st, &c, 0),
                      .now = T0};
    assert_int_equal(kc_store_gc(f->st, &o, &r), KC_OK);
    assert_false(has(f->st, KC_REC_TUNING, &c.tuning));
    assert_false(has(f->st, KC_REC_BUILD, &c.build));
    assert_true(has(f->st, KC_REC_BLOB, &c.blob));
    assert_true(has(f->st, KC_REC_BUILD, &b.build));
    assert_true(has(f->st, KC_REC_BUILD, &a.build));
    assert_true(has(f->st, KC_REC_TUNING, &a.tuning));
    assert_int_equal(r.evicted[KC_REC_BLOB], 0);
    /* The plan knew the blob was shared: nothing planned had to be kept. */
    assert_int_equal(r.skipped, 0);
    assert_int_equal(assert_references_intact(f->st), 3);

    /* A limit below everything: the tuning goes with (before) its build,
     * and every blob once its last build is gone. */
    o.max_bytes = 1;
    assert_int_equal(kc_store_gc(f->st, &o, &r), KC_OK);
    assert_int_equal(count(f->st, KC_REC_TUNING), 0);
    assert_int_equal(count(f->st, KC_REC_BUILD), 0);
    assert_int_equal(count(f->st, KC_REC_BLOB), 0);
    assert_int_equal(r.size_after, 0);
    kern_free(&a);
    kern_free(&b);
    kern_free(&c);
}

static void test_gc_sweeps_blobs_that_no_build_references(void **state)
{
    fixture_t *f = *state;
    kern_t k;
    kc_key_t unstamped, old, recent;
    uint8_t *c1 = noise(2048, 7), *c2 = noise(2048, 8), *c3 = noise(2048, 9);
    kc_gc_report_t r;
    kc_store_stats_t s;

    publish_kern(f->st, &k, 0, 1, 4096, 1);
    stamp_kern(f->st, &k, T0 - 100000, T0 - 100000);
    assert_int_equal(kc_store_put_cubin(f->st, c1, 2048, &unstamped), KC_OK);
    assert_int_equal(kc_store_put_cubin(f->st, c2, 2048, &old), KC_OK);
    assert_int_equal(kc_store_put_cubin(f->st, c3, 2048, &recent), KC_OK);
    stamp(f->st, &old, T0 - 3600);
    stamp(f->st, &recent, T0 - 60);

    kc_gc_opts_t o = {.size = sizeof(kc_gc_opts_t), .now = T0};
    assert_int_equal(kc_store_gc(f->st, &o, &r), KC_OK);
    assert_false(has(f->st, KC_REC_BLOB, &unstamped));
    assert_false(has(f->st, KC_REC_BLOB, &old));
    /* Maybe about to be referenced by a build another process commits. */
    assert_true(has(f->st, KC_REC_BLOB, &recent));
    /* Referenced, and old: no limit was given, so it stays. */
    assert_true(has(f->st, KC_REC_BLOB, &k.blob));
    assert_true(has(f->st, KC_REC_BUILD, &k.build));
    assert_int_equal(r.evicted[KC_REC_BLOB], 2);
    assert_int_equal(r.evicted[KC_REC_BUILD] + r.evicted[KC_REC_TUNING], 0);
    assert_int_equal(kc_store_stats(f->st, &s), KC_OK);
    assert_int_equal(s.counters[KC_COUNTER_EVICTIONS], 2);
    free(c1);
    free(c2);
    free(c3);
    kern_free(&k);
}

static void test_gc_older_than_evicts_what_was_last_used_before_the_cutoff(void **state)
{
    fixture_t *f = *state;
    kern_t k[4];
    kc_gc_report_t r;
    kc_store_stats_t s;

    publish_four(f->st, k);
    /* Cutoff T0 - 2500: kernels 1 (T0 - 4000) and 3 (T0 - 3000) are older. */
    kc_gc_opts_t o = {.size = sizeof(kc_gc_opts_t), .older_than = 2500, .now = T0};
    assert_int_equal(kc_store_gc(f->st, &o, &r), KC_OK);
    for (int i = 0; i < 4; i++) {
        int keep = i == 0 || i == 2;
        assert_int_equal(has(f->st, KC_REC_TUNING, &k[i].tuning), keep);
        assert_int_equal(has(f->st, KC_REC_BUILD, &k[i].build), keep);
        assert_int_equal(has(f->st, KC_REC_BLOB, &k[i].blob), keep);
    }
    assert_int_equal(
        r.evicted[KC_REC_TUNING] + r.evicted[KC_REC_BUILD] + r.evicted[KC_REC_BLOB], 6);
    assert_int_equal(kc_store_stats(f->st, &s), KC_OK);
    assert_int_equal(s.counters[KC_COUNTER_EVICTIONS], 6);
    /* Only the evicted records' stamps went: 2 kernels x 3 remain. */
    assert_int_equal(s.records[KC_REC_USAGE], 6);
    for (int i = 0; i < 4; i++)
        kern_free(&k[i]);
}

/* A publish stamps a tuning but not the winning build published with it:
 * gc evicts that build with its tuning, by the newer use of the two, so an
 * unstamped winner whose created time is long past is not taken for old.
 * A build that no tuning of its publish names is stamped itself. */
static void test_a_winning_build_goes_by_its_tunings_publish_stamp(void **state)
{
    fixture_t *f = *state;
    kern_t won, alone;
    kc_gc_report_t r;
    kc_record_t *rec = NULL;

    publish_kern(f->st, &won, 0, 71, 3000, 1);
    publish_kern(f->st, &alone, 1, 72, 3000, 0);
    assert_int_equal(kc_store_get(f->st, KC_REC_USAGE, &won.build, &rec), KC_ENOTFOUND);
    assert_int_equal(kc_store_get(f->st, KC_REC_USAGE, &won.tuning, &rec), KC_OK);
    kc_free(rec);
    assert_int_equal(kc_store_get(f->st, KC_REC_USAGE, &alone.build, &rec), KC_OK);
    kc_free(rec);

    /* Both builds were created 100,000 s before T0; the publish was now. */
    kc_gc_opts_t o = {
        .size = sizeof(kc_gc_opts_t), .older_than = 2500, .now = (uint64_t)time(NULL)};
    assert_int_equal(kc_store_gc(f->st, &o, &r), KC_OK);
    assert_true(has(f->st, KC_REC_TUNING, &won.tuning));
    assert_true(has(f->st, KC_REC_BUILD, &won.build));
    assert_true(has(f->st, KC_REC_BLOB, &won.blob));
    assert_true(has(f->st, KC_REC_BUILD, &alone.build));
    assert_int_equal(r.evicted[KC_REC_TUNING] + r.evicted[KC_REC_BUILD], 0);
    kern_free(&won);
    kern_free(&alone);
}

static void put_lease(kc_store_t *st, const kc_key_t *key, uint64_t start_ms,
                      uint64_t ttl)
{
    kc_record_t rec = {.kind = KC_REC_LEASE, .version = KC_RECORD_VERSION};
    rec.u.lease = (kc_lease_rec_t){"host", "boot", 1, start_ms, ttl};
    assert_int_equal(kc_store_put(st, key, &rec), KC_OK);
}

static void test_gc_sweeps_stamps_without_records_and_expired_leases(void **state)
{
    fixture_t *f = *state;
    kern_t k[4];
    kc_gc_report_t r;
    kc_store_stats_t s;
    kc_key_t gone = kc_key_hash("gone", 4), old = kc_key_hash("old", 3),
             live = kc_key_hash("live", 4);
    uint64_t now_ms = (uint64_t)time(NULL) * 1000;

    publish_four(f->st, k);
    stamp(f->st, &gone, T0);                  /* a stamp whose record is gone */
    put_lease(f->st, &old, 1000, 1000);       /* expired long ago */
    put_lease(f->st, &live, now_ms, 3600000); /* good for an hour */
    assert_int_equal(kc_store_stats(f->st, &s), KC_OK);
    uint64_t stamps = s.records[KC_REC_USAGE];

    /* A dry run leaves them. */
    kc_gc_opts_t dry = {.size = sizeof(kc_gc_opts_t), .dry_run = 1, .now = T0};
    assert_int_equal(kc_store_gc(f->st, &dry, &r), KC_OK);
    assert_true(has(f->st, KC_REC_USAGE, &gone));
    assert_true(has(f->st, KC_REC_LEASE, &old));

    kc_gc_opts_t o = {.size = sizeof(kc_gc_opts_t), .now = T0};
    assert_int_equal(kc_store_gc(f->st, &o, &r), KC_OK);
    assert_int_equal(r.usage_swept, 1);
    assert_int_equal(r.leases_swept, 1);
    assert_false(has(f->st, KC_REC_USAGE, &gone));
    assert_false(has(f->st, KC_REC_LEASE, &old));
    assert_true(has(f->st, KC_REC_LEASE, &live));
    /* Every other stamp stays: all their records are there. */
    assert_int_equal(kc_store_stats(f->st, &s), KC_OK);
    assert_int_equal(s.records[KC_REC_USAGE], stamps - 1);
    for (int i = 0; i < 4; i++) {
        assert_true(has(f->st, KC_REC_TUNING, &k[i].tuning));
        kern_free(&k[i]);
    }
}

typedef struct snap {
    uint64_t digest;
    int n;
} snap_t;

static int snap_fn(void *user, kc_rec_kind_t kind, const kc_key_t *key, const void *data,
                   size_t len)
{
    snap_t *s = user;
    kc_key_t h = kc_key_hash(data, len);

    s->digest = s->digest * 31 + (uint64_t)kind;
    for (int i = 0; i < 16; i++)
        s->digest = s->digest * 131 + key->b[i] + h.b[i];
    s->n++;
    return 0;
}

static snap_t snapshot(kc_store_t *st)
{
    snap_t s = {0, 0};
    assert_int_equal(kc_store_iterate(st, 0, snap_fn, &s), KC_OK);
    return s;
}

static void test_gc_dry_run_changes_nothing_and_lists_what_a_real_run_evicts(void **state)
{
    fixture_t *f = *state;
    kern_t k[4];
    kc_gc_report_t dry, real;

    publish_four(f->st, k);
    snap_t before = snapshot(f->st);
    kc_gc_opts_t o = {.size = sizeof(kc_gc_opts_t),
                      .max_bytes = store_size(f->st) / 2,
                      .now = T0,
                      .list = 1};

    o.dry_run = 1;
    assert_int_equal(kc_store_gc(f->st, &o, &dry), KC_OK);
    snap_t after = snapshot(f->st);
    assert_int_equal(before.n, after.n);
    assert_true(before.digest == after.digest);
    assert_true(dry.n_items > 0);
    assert_true(dry.size_after <= o.max_bytes);

    o.dry_run = 0;
    assert_int_equal(kc_store_gc(f->st, &o, &real), KC_OK);
    assert_int_equal(real.n_items, dry.n_items);
    for (size_t i = 0; i < dry.n_items; i++) {
        assert_int_equal(real.items[i].kind, dry.items[i].kind);
        assert_memory_equal(real.items[i].key.b, dry.items[i].key.b, 16);
    }
    assert_int_equal(real.size_after, dry.size_after);
    kc_free(dry.items);
    kc_free(real.items);
    for (int i = 0; i < 4; i++)
        kern_free(&k[i]);
}

static void test_publish_over_the_size_limit_runs_gc_down_to_90_percent(void **state)
{
    fixture_t *f = *state;
    kern_t k[4], fresh, extra;
    kc_store_t *limited = NULL;
    char limit_text[32];

    publish_four(f->st, k);
    uint64_t limit = store_size(f->st) + 1024;
    kc_store_close(f->st);
    f->st = NULL;

    /* Through the environment: under the limit, nothing is evicted. */
    snprintf(limit_text, sizeof(limit_text), "%lluB", (unsigned long long)limit);
    setenv("KCACHE_MAX_SIZE", limit_text, 1);
    assert_int_equal(kc_store_open(f->dir, NULL, &limited), KC_OK);
    publish_kern(limited, &extra, 9, 900, 64, 0);
    stamp_kern(limited, &extra, T0 - 100, 0);
    assert_true(has(limited, KC_REC_BUILD, &k[1].build));
    uint64_t small = store_size(limited);
    assert_true(small <= limit);

    /* Over it: the oldest go, the publish's own records stay. */
    publish_kern(limited, &fresh, 5, 500, 4096, 1);
    uint64_t size = store_size(limited);
    assert_true(size <= limit / 10 * 9);
    assert_true(has(limited, KC_REC_TUNING, &fresh.tuning));
    assert_true(has(limited, KC_REC_BUILD, &fresh.build));
    assert_true(has(limited, KC_REC_BLOB, &fresh.blob));
    assert_false(has(limited, KC_REC_BUILD, &k[1].build));
    assert_false(has(limited, KC_REC_BLOB, &k[1].blob));
    assert_true(has(limited, KC_REC_BUILD, &k[2].build)); /* the newest */
    assert_int_equal(assert_references_intact(limited),
                     count(limited, KC_REC_BUILD) + count(limited, KC_REC_TUNING));
    stamp_kern(limited, &fresh, T0 - 50, T0 - 50);
    kc_store_close(limited);

    /* Through opts, which wins over the environment. */
    setenv("KCACHE_MAX_SIZE", "1T", 1);
    kc_store_opts_t so = {.size = sizeof(kc_store_opts_t), .max_size = size};
    kern_t more;
    assert_int_equal(kc_store_open(f->dir, &so, &f->st), KC_OK);
    publish_kern(f->st, &more, 6, 600, 8192, 1);
    assert_true(store_size(f->st) <= size / 10 * 9);
    assert_true(has(f->st, KC_REC_BUILD, &more.build));
    assert_false(has(f->st, KC_REC_BUILD, &k[0].build));

    /* A limit that does not parse fails the open, naming the variable and
     * the accepted forms, rather than leaving the store unlimited; with a
     * limit in opts the environment is not read. */
    kc_store_t *bad = NULL;
    setenv("KCACHE_MAX_SIZE", "lots", 1);
    assert_int_equal(kc_store_open(f->dir, NULL, &bad), KC_EINVAL);
    assert_null(bad);
    assert_non_null(strstr(kc_store_open_errmsg(), "KCACHE_MAX_SIZE='lots': not a size"));
    assert_non_null(strstr(kc_store_open_errmsg(), "512M"));
    kc_store_opts_t ro = {.size = sizeof(kc_store_opts_t), .flags = KC_STORE_RDONLY};
    assert_int_equal(kc_store_open(f->dir, &ro, &bad), KC_EINVAL);
    assert_int_equal(kc_store_open(f->dir, &so, &bad), KC_OK);
    kc_store_close(bad);
    setenv("KCACHE_MAX_SIZE", "", 1);
    assert_int_equal(kc_store_open(f->dir, NULL, &bad), KC_OK);
    kc_store_close(bad);
    unsetenv("KCACHE_MAX_SIZE");
    for (int i = 0; i < 4; i++)
        kern_free(&k[i]);
    kern_free(&fresh);
    kern_free(&extra);
    kern_free(&more);
}

static uint64_t file_size(const char *dir)
{
    char path[700];
    struct stat sb;

    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    assert_int_equal(stat(path, &sb), 0);
    return (uint64_t)sb.st_size;
}

static void test_compact_shrinks_the_file_and_the_store_still_reads(void **state)
{
    fixture_t *f = *state;
    enum { N = 40, SIZE = 64 * 1024 };
    kern_t k[N];
    kc_store_t *second = NULL;
    kc_gc_report_t r;
    uint64_t before, after;
    void *cubin = NULL;
    size_t len;

    for (int i = 0; i < N; i++) {
        publish_kern(f->st, &k[i], i, 1000 + (uint64_t)i, SIZE, 1);
        stamp_kern(f->st, &k[i], T0 - 10000 + (uint64_t)i, T0 - 10000 + (uint64_t)i);
    }
    /* A second handle of this process shares the environment. */
    assert_int_equal(kc_store_open(f->dir, NULL, &second), KC_OK);
    kc_gc_opts_t o = {.size = sizeof(kc_gc_opts_t), .max_bytes = 3 * SIZE, .now = T0};
    assert_int_equal(kc_store_gc(f->st, &o, &r), KC_OK);
    assert_true(r.evicted[KC_REC_BUILD] >= N - 3);
    uint64_t file = file_size(f->dir);
    assert_true(file >= (uint64_t)N * SIZE);

    assert_int_equal(kc_store_compact(f->st, &before, &after), KC_OK);
    assert_int_equal(before, file);
    assert_int_equal(after, file_size(f->dir));
    assert_true(after < file / 4);

    /* Both handles read the newest kernel through the new file. */
    uint8_t *want = noise(SIZE, 1000 + N - 1);
    assert_int_equal(kc_store_get_cubin(f->st, &k[N - 1].blob, &cubin, &len), KC_OK);
    assert_int_equal(len, SIZE);
    assert_memory_equal(cubin, want, SIZE);
    kc_free(cubin);
    assert_int_equal(kc_store_get_cubin(second, &k[N - 1].blob, &cubin, &len), KC_OK);
    assert_memory_equal(cubin, want, SIZE);
    kc_free(cubin);
    free(want);
    assert_true(has(second, KC_REC_TUNING, &k[N - 1].tuning));
    assert_int_equal(assert_references_intact(second),
                     (int)(count(second, KC_REC_BUILD) + count(second, KC_REC_TUNING)));
    /* And it takes writes again. */
    kern_t again;
    publish_kern(second, &again, 77, 77, 1024, 1);
    assert_true(has(f->st, KC_REC_BUILD, &again.build));
    kc_store_close(second);
    /* A fresh open finds the compacted store whole. */
    kc_store_close(f->st);
    assert_int_equal(kc_store_open(f->dir, NULL, &f->st), KC_OK);
    assert_true(has(f->st, KC_REC_TUNING, &again.tuning));
    for (int i = 0; i < N; i++)
        kern_free(&k[i]);
    kern_free(&again);
}

/* A child that has the store open (through kcache, or through LMDB with a
 * read transaction) until the parent writes to its pipe. */
static pid_t spawn_user(const char *dir, int raw_txn, int *release_fd)
{
    int ready[2], release[2];
    pid_t pid;
    char c = 0;

    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(release), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        kc_store_t *st = NULL;
        MDB_env *env = NULL;
        MDB_txn *txn = NULL;
        int ok;

        close(ready[0]);
        close(release[1]);
        if (raw_txn)
            ok = mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 8) == 0 &&
                 mdb_env_open(env, dir, MDB_RDONLY, 0664) == 0 &&
                 mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0;
        else
            ok = kc_store_open(dir, NULL, &st) == KC_OK;
        c = ok ? 'y' : 'n';
        if (write(ready[1], &c, 1) != 1)
            _exit(2);
        if (read(release[0], &c, 1) < 0)
            _exit(2);
        _exit(0);
    }
    close(ready[1]);
    close(release[0]);
    assert_int_equal(read(ready[0], &c, 1), 1);
    assert_int_equal(c, 'y');
    close(ready[0]);
    *release_fd = release[1];
    return pid;
}

static void test_compact_refuses_while_another_process_has_the_store_open(void **state)
{
    fixture_t *f = *state;
    kern_t k;
    int status, fd;

    publish_kern(f->st, &k, 0, 1, 4096, 1);
    for (int raw = 0; raw <= 1; raw++) {
        uint64_t file = file_size(f->dir);
        pid_t pid = spawn_user(f->dir, raw, &fd);

        assert_int_equal(kc_store_compact(f->st, NULL, NULL), KC_EBUSY);
        assert_non_null(strstr(kc_store_errmsg(f->st), "another process"));
        assert_int_equal(file_size(f->dir), file);
        /* Still usable after the refusal. */
        assert_true(has(f->st, KC_REC_BUILD, &k.build));
        close(fd);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(kc_store_compact(f->st, NULL, NULL), KC_OK);
    assert_true(has(f->st, KC_REC_TUNING, &k.tuning));
    kern_free(&k);
}

static void test_sizes_and_durations_parse(void **state)
{
    uint64_t v;

    (void)state;
    assert_int_equal(kc_size_parse("500M", &v), KC_OK);
    assert_int_equal(v, 500000000ULL); /* K, M, G, T are decimal */
    assert_int_equal(kc_size_parse("2G", &v), KC_OK);
    assert_int_equal(v, 2000000000ULL);
    assert_int_equal(kc_size_parse("1024K", &v), KC_OK);
    assert_int_equal(v, 1024000ULL);
    assert_int_equal(kc_size_parse("1.5GiB", &v), KC_OK);
    assert_int_equal(v, 3ULL << 29);
    assert_int_equal(kc_size_parse("12345", &v), KC_OK);
    assert_int_equal(v, 12345ULL << 30); /* a bare number is GiB */
    assert_int_equal(kc_size_parse("2t", &v), KC_OK);
    assert_int_equal(v, 2000000000000ULL);
    const char *bad_sizes[] = {
        "", "M", "-1", "1x", "1.M", "99999999999999999999", "20000000T", " 5M"};
    for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(*bad_sizes); i++)
        assert_int_equal(kc_size_parse(bad_sizes[i], &v), KC_EINVAL);

    assert_int_equal(kc_duration_parse("30d", &v), KC_OK);
    assert_int_equal(v, 30 * 86400);
    assert_int_equal(kc_duration_parse("12h", &v), KC_OK);
    assert_int_equal(v, 12 * 3600);
    assert_int_equal(kc_duration_parse("45m", &v), KC_OK);
    assert_int_equal(v, 45 * 60);
    assert_int_equal(kc_duration_parse("3600s", &v), KC_OK);
    assert_int_equal(v, 3600);
    assert_int_equal(kc_duration_parse("2w", &v), KC_OK);
    assert_int_equal(v, 14 * 86400);
    assert_int_equal(kc_duration_parse("30x", &v), KC_EINVAL);
    assert_int_equal(kc_duration_parse("d", &v), KC_EINVAL);
}

typedef struct progress_log {
    uint64_t scan_calls, scan_done, scan_total;
    uint64_t delete_calls, delete_done, delete_total;
    int bad_phase;
} progress_log_t;

static void log_progress(void *user, const char *phase, uint64_t done, uint64_t total)
{
    progress_log_t *l = user;
    if (strcmp(phase, "scan") == 0) {
        l->scan_calls++;
        l->scan_done = done;
        l->scan_total = total;
    } else if (strcmp(phase, "delete") == 0) {
        l->delete_calls++;
        l->delete_done = done;
        l->delete_total = total;
    } else {
        l->bad_phase = 1;
    }
}

static void test_gc_reports_its_progress(void **state)
{
    char root[512];
    kc_store_t *st = NULL;
    kct_pub_t p[3];
    kc_gc_opts_t o = KC_GC_OPTS_INIT;
    kc_gc_report_t r;
    progress_log_t l = {0};

    (void)state;
    assert_int_equal(kct_store_scratch("test_gc_progress", root, sizeof root, &st), 0);
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(kct_pub_make(&p[i], 70 + i, 2), KC_OK);
        assert_int_equal(kc_store_publish(st, &p[i].pub), KC_OK);
    }
    /* Everything goes: 6 blobs, 6 builds and 3 tunings read, then evicted. */
    o.max_bytes = 1;
    o.progress = log_progress;
    o.progress_user = &l;
    assert_int_equal(kc_store_gc(st, &o, &r), KC_OK);
    assert_false(l.bad_phase);
    assert_int_equal(l.scan_calls, 1); /* under 4,096 records: the final call */
    assert_int_equal(l.scan_done, 15);
    assert_int_equal(l.scan_total, 15);
    assert_true(l.delete_calls >= 1);
    assert_int_equal(l.delete_done, l.delete_total);
    assert_int_equal(l.delete_total, 15); /* every planned eviction, blobs too */
    for (unsigned i = 0; i < 3; i++)
        kct_pub_free(&p[i]);
    kct_store_scratch_free(root, st);
}

/* Every gc run sweeps expired leases: a lease that stays shows that no gc
 * ran. */
static int gc_ran_since(kc_store_t *st, const kc_key_t *lease)
{
    return !has(st, KC_REC_LEASE, lease);
}

/* The size limit is checked after every publish against the records'
 * bytes, which the store keeps exact in constant time; LMDB's pages (here
 * about twice the records) do not start a gc, which would scan the whole
 * store at every publish. */
static void test_a_publish_under_the_limit_runs_no_gc_whatever_the_pages(void **state)
{
    fixture_t *f = *state;
    kern_t k[4], small, big;
    kc_store_t *limited = NULL;
    kc_key_t expired = kc_key_hash("expired", 7);

    publish_four(f->st, k); /* 4 KiB cubins: two pages each */
    uint64_t records = store_size(f->st);
    kc_store_stats_t s;
    assert_int_equal(kc_store_stats(f->st, &s), KC_OK);
    assert_true(s.used_bytes > records + 16384);
    kc_store_close(f->st);
    f->st = NULL;

    kc_store_opts_t so = {.size = sizeof(kc_store_opts_t), .max_size = records + 8192};
    assert_int_equal(kc_store_open(f->dir, &so, &limited), KC_OK);
    put_lease(limited, &expired, 1000, 1000);
    publish_kern(limited, &small, 7, 700, 64, 0);
    assert_false(gc_ran_since(limited, &expired));
    for (int i = 0; i < 4; i++)
        assert_true(has(limited, KC_REC_BUILD, &k[i].build));

    /* Over it by the records: gc runs, the oldest go. */
    publish_kern(limited, &big, 8, 800, 12000, 0);
    assert_true(gc_ran_since(limited, &expired));
    assert_false(has(limited, KC_REC_BUILD, &k[1].build));
    assert_true(store_size(limited) <= so.max_size / 10 * 9);
    kc_store_close(limited);
    for (int i = 0; i < 4; i++)
        kern_free(&k[i]);
    kern_free(&small);
    kern_free(&big);
}

/* A gc after a publish that cannot get the store under its limit (what is
 * left is the publish's own, which it spares) is not run again by the next
 * publishes until the store has grown by a sixteenth of the limit (or ten
 * seconds have passed): each run scans the whole store. */
static void test_a_gc_that_could_not_help_is_not_rerun_at_every_publish(void **state)
{
    fixture_t *f = *state;
    kern_t huge, a, b;
    kc_store_t *limited = NULL;
    kc_key_t expired = kc_key_hash("expired", 7);
    time_t start = time(NULL);

    kc_store_close(f->st);
    f->st = NULL;
    kc_store_opts_t so = {.size = sizeof(kc_store_opts_t), .max_size = 64 * 1024};
    assert_int_equal(kc_store_open(f->dir, &so, &limited), KC_OK);
    /* Over the limit by itself, and spared: the gc it starts cannot help. */
    publish_kern(limited, &huge, 0, 900, 96 * 1024, 0);
    assert_true(has(limited, KC_REC_BUILD, &huge.build));
    put_lease(limited, &expired, 1000, 1000);
    /* Grown by less than 4 KiB: no gc. */
    publish_kern(limited, &a, 1, 901, 1024, 0);
    int ran_small = gc_ran_since(limited, &expired);
    /* Grown by more: gc runs again. */
    publish_kern(limited, &b, 2, 902, 6000, 0);
    int ran_big = gc_ran_since(limited, &expired);
    if (time(NULL) - start < 9) /* else the ten seconds may have passed */
        assert_false(ran_small);
    assert_true(ran_big);
    kc_store_close(limited);
    kern_free(&huge);
    kern_free(&a);
    kern_free(&b);
}

/* gc deletes in batches, a transaction each, and walks the tunings once to
 * know which builds they name, keeping that walk while no other writer
 * commits between its batches. A tuning published between two batches
 * names builds the plan chose: they and their blobs must stay. */
#define MANY 1100 /* builds: more than two batches of 512 */
#define NAMED 100

typedef struct between {
    kc_store_t *st;
    kern_t *k;
    int published; /* tunings published, after the first batch */
} between_t;

static void publish_between(void *user, const char *phase, uint64_t done, uint64_t total)
{
    between_t *b = user;

    (void)done;
    (void)total;
    if (strcmp(phase, "delete") != 0 || b->published)
        return;
    for (int i = MANY - 1; i >= 0 && b->published < NAMED; i--) {
        if (!has(b->st, KC_REC_BUILD, &b->k[i].build))
            continue;
        make_tuning(&b->k[i], 1000 + i);
        kc_publish_t pub = {NULL, 0, NULL, 0, &b->k[i].t, NULL, 0};
        assert_int_equal(kc_store_publish(b->st, &pub), KC_OK);
        b->published++;
    }
}

static void test_gc_keeps_builds_a_tuning_named_between_its_batches(void **state)
{
    fixture_t *f = *state;
    kern_t *k = calloc(MANY, sizeof(*k));
    kc_publish_t pubs[100];
    kc_buf_t bufs[100];
    uint8_t *cubins[100];
    kc_gc_report_t r;

    assert_non_null(k);
    for (int i = 0; i < MANY; i += 100) {
        for (int j = 0; j < 100; j++) {
            cubins[j] = noise(64, 5000 + (uint64_t)(i + j));
            bufs[j] = (kc_buf_t){cubins[j], 64};
            kc_key_t blob = kc_key_hash(cubins[j], 64);
            make_build(&k[i + j], 32 * (i + j + 1), &blob);
            pubs[j] = (kc_publish_t){&bufs[j], 1, &k[i + j].b, 1, NULL, NULL, 0};
        }
        assert_int_equal(kc_store_publish_many(f->st, pubs, 100), KC_OK);
        for (int j = 0; j < 100; j++)
            free(cubins[j]);
    }
    /* Everything is old by this clock: the plan evicts every build and blob. */
    between_t b = {f->st, k, 0};
    kc_gc_opts_t o = KC_GC_OPTS_INIT;
    o.now = T0 + 100000;
    o.older_than = 1000;
    o.progress = publish_between;
    o.progress_user = &b;
    assert_int_equal(kc_store_gc(f->st, &o, &r), KC_OK);
    assert_int_equal(b.published, NAMED);
    for (int i = 0; i < MANY; i++) {
        int named = k[i].t.preimage.data != NULL;
        assert_int_equal(has(f->st, KC_REC_BUILD, &k[i].build), named);
        assert_int_equal(has(f->st, KC_REC_BLOB, &k[i].blob), named);
    }
    assert_int_equal(count(f->st, KC_REC_TUNING), NAMED);
    assert_int_equal(assert_references_intact(f->st), 2 * NAMED);
    assert_int_equal(r.skipped, 2 * NAMED);
    for (int i = 0; i < MANY; i++)
        kern_free(&k[i]);
    free(k);
}

int main(void)
{
    T0 = (uint64_t)time(NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_gc_evicts_least_recently_used_first_until_under_the_limit, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_gc_never_breaks_a_tuning_or_a_build_reference, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_winning_build_goes_by_its_tunings_publish_stamp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc_sweeps_blobs_that_no_build_references,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_gc_older_than_evicts_what_was_last_used_before_the_cutoff, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_gc_dry_run_changes_nothing_and_lists_what_a_real_run_evicts, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_publish_over_the_size_limit_runs_gc_down_to_90_percent, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_compact_shrinks_the_file_and_the_store_still_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_compact_refuses_while_another_process_has_the_store_open, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_gc_sweeps_stamps_without_records_and_expired_leases, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_gc_keeps_builds_a_tuning_named_between_its_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_publish_under_the_limit_runs_no_gc_whatever_the_pages, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_gc_that_could_not_help_is_not_rerun_at_every_publish, setup, teardown),
        cmocka_unit_test(test_sizes_and_durations_parse),
        cmocka_unit_test(test_gc_reports_its_progress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
