/* Bundles: export and import of real NVRTC-compiled cubins, idempotence,
 * every truncation and every flipped byte of a bundle, forged bundles that
 * pass the frame checksums but carry bad records, tuning conflicts, export
 * filters and dictionaries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sys/stat.h>
#include <unistd.h>
#include <zdict.h>
#include <zstd.h>

#include "kc_testutil.h"
#include "bundle_internal.h"
#include "kcache/blob.h"
#include "kcache/bundle.h"
#include "kcache/shape.h"
#include "kcache/store.h"
#include "nvrtc_dl.h"
#include "store_internal.h"
#include "wire.h"

/* ---- real cubins, compiled once ------------------------------------------------ */

static const char vec_add_src[] =
    "extern \"C\" __global__ void __launch_bounds__(BLOCK)\n"
    "vec_add(const float *a, const float *b, float *c, int n)\n"
    "{\n"
    "    int i = blockIdx.x * BLOCK + threadIdx.x;\n"
    "    if (i < n)\n"
    "        c[i] = a[i] + b[i];\n"
    "}\n";

static const char saxpy_src[] =
    "extern \"C\" __global__ void saxpy(float a, const float *x, float *y, int n)\n"
    "{\n"
    "    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n;\n"
    "         i += blockDim.x * gridDim.x)\n"
    "        y[i] = a * x[i] + y[i];\n"
    "}\n";

static const char *const user_opts[] = {"-lineinfo"};

/* A compiled kernel and its build record. */
typedef struct kbuild {
    const char *entry, *src, *arch;
    kc_param_t param; /* name NULL: none */
    void *cubin;
    size_t cubin_len;
    void *pre;
    size_t pre_len;
    kc_key_t key;
    kc_build_rec_t rec;
} kbuild_t;

enum { VEC64_SM90, VEC128_SM90, VEC128_SM80, SAXPY_SM90, N_BUILDS };

static kbuild_t builds[N_BUILDS] = {
    [VEC64_SM90] = {"vec_add", vec_add_src, "sm_90", {"BLOCK", 64}},
    [VEC128_SM90] = {"vec_add", vec_add_src, "sm_90", {"BLOCK", 128}},
    [VEC128_SM80] = {"vec_add", vec_add_src, "sm_80", {"BLOCK", 128}},
    [SAXPY_SM90] = {"saxpy", saxpy_src, "sm_90", {NULL, 0}},
};

static char toolchain[32];

static int compile_all(void **state)
{
    kct_nvrtc_t nv;
    char err[8192];

    (void)state;
    if (kct_nvrtc_load(&nv, err, sizeof(err)) != 0) {
        fprintf(stderr, "NVRTC: %s\n", err);
        return -1;
    }
    snprintf(toolchain, sizeof(toolchain), "nvrtc-%d.%d", nv.major, nv.minor);
    for (int i = 0; i < N_BUILDS; i++) {
        kbuild_t *b = &builds[i];
        char arch_opt[64], define[64];
        const char *opts[4];
        int n = 0;

        snprintf(arch_opt, sizeof(arch_opt), "--gpu-architecture=%s", b->arch);
        opts[n++] = arch_opt;
        opts[n++] = user_opts[0];
        if (b->param.name) {
            snprintf(define, sizeof(define), "-D%s=%d", b->param.name,
                     (int)b->param.value);
            opts[n++] = define;
        }
        if (kct_nvrtc_compile(&nv, b->src, b->entry, opts, n, &b->cubin, &b->cubin_len,
                              err, sizeof(err)) != 0) {
            fprintf(stderr, "compile %s: %s\n", b->entry, err);
            return -1;
        }
        kc_build_desc_t d = {
            .source_kind = KC_SOURCE_CUDA,
            .source_digest = kc_source_digest(b->src, strlen(b->src), NULL, 0),
            .entry = b->entry,
            .options = user_opts,
            .n_options = 1,
            .params = b->param.name ? &b->param : NULL,
            .n_params = b->param.name ? 1 : 0,
            .arch = b->arch,
            .toolchain = toolchain,
        };
        if (kc_build_preimage_encode(&d, &b->pre, &b->pre_len) != KC_OK)
            return -1;
        b->key = kc_key_hash(b->pre, b->pre_len);
        b->rec = (kc_build_rec_t){
            .preimage = {b->pre, b->pre_len},
            .blob = kc_key_hash(b->cubin, b->cubin_len),
            .entry = b->entry,
            .registers = 16,
            .max_threads = 1024,
            .compile_us = 120000 + (uint64_t)i,
            .created = 1700000000 + (uint64_t)i * 1000,
        };
    }
    kct_nvrtc_unload(&nv);
    return 0;
}

static int free_all(void **state)
{
    (void)state;
    for (int i = 0; i < N_BUILDS; i++) {
        free(builds[i].cubin);
        kc_free(builds[i].pre);
    }
    return 0;
}

/* A tuning of vec_add on sm_90 over its two configurations; winner is
 * VEC64_SM90 or VEC128_SM90 and its median time median_ns. The key depends
 * only on the preimage, so every such tuning shares one key. */
typedef struct ktuning {
    void *pre;
    size_t pre_len;
    kc_key_t key;
    kc_candidate_t cands[2];
    kc_tuning_rec_t rec;
} ktuning_t;

static void make_tuning(ktuning_t *t, int winner, uint64_t median_ns, uint64_t created)
{
    uint8_t sig[64];
    size_t sig_len;
    int64_t dims[1] = {1 << 20};
    kc_argdesc_t args[2] = {
        {.kind = KC_ARG_POINTER, .dtype = KC_DTYPE_F32, .rank = 1, .dims = dims},
        {.kind = KC_ARG_SCALAR, .dtype = KC_DTYPE_I32, .value.i = 1 << 20},
    };
    assert_int_equal(
        kc_shape_sig_encode(args, 2, KC_DIMS_POW2, sig, sizeof(sig), &sig_len), KC_OK);
    kc_tuning_desc_t d = {
        .source_kind = KC_SOURCE_CUDA,
        .source_digest = kc_source_digest(vec_add_src, strlen(vec_add_src), NULL, 0),
        .entry = "vec_add",
        .options = user_opts,
        .n_options = 1,
        .space_digest = kc_key_hash("BLOCK in 64 128", 15),
        .shape_sig = {sig, sig_len},
        .arch = "sm_90",
        .sm_count = 132,
        .device_name = "NVIDIA H100 80GB HBM3",
    };
    assert_int_equal(kc_tuning_preimage_encode(&d, &t->pre, &t->pre_len), KC_OK);
    t->key = kc_key_hash(t->pre, t->pre_len);
    for (int i = 0; i < 2; i++) {
        int b = i == 0 ? VEC64_SM90 : VEC128_SM90;
        t->cands[i] = (kc_candidate_t){
            .params = &builds[b].param,
            .n_params = 1,
            .build = builds[b].key,
            .status = KC_CAND_OK,
            .median_ns = b == winner ? median_ns : median_ns + 500,
            .reason = "",
        };
    }
    t->rec = (kc_tuning_rec_t){
        .preimage = {t->pre, t->pre_len},
        .winner = &builds[winner].param,
        .n_winner = 1,
        .winner_build = builds[winner].key,
        .candidates = t->cands,
        .n_candidates = 2,
        .tuning_us = 250000,
        .device_name = d.device_name,
        .arch = "sm_90",
        .sm_count = 132,
        .driver_version = 13000,
        .created = created,
    };
}

/* Publish builds[which...] (-1 ends the list) and, if t, a tuning. */
static void publish(kc_store_t *st, const ktuning_t *t, const int *which)
{
    kc_buf_t cubins[N_BUILDS];
    kc_build_rec_t recs[N_BUILDS];
    size_t n = 0;

    for (; *which >= 0; which++, n++) {
        cubins[n] = (kc_buf_t){builds[*which].cubin, builds[*which].cubin_len};
        recs[n] = builds[*which].rec;
    }
    kc_publish_t pub = {cubins, n, recs, n, t ? &t->rec : NULL, NULL, 0};
    assert_int_equal(kc_store_publish(st, &pub), KC_OK);
}

/* ---- scratch stores ---------------------------------------------------------------- */

typedef struct fixture {
    char root[512];
    char path[3][600];
    kc_store_t *st[3]; /* a source, a target, a spare */
    ktuning_t tuning;
    char *bundle; /* open_memstream output */
    size_t bundle_len;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    if (!f || kct_tmpdir("test_bundle", f->root, sizeof(f->root)) != 0)
        return -1;
    for (int i = 0; i < 3; i++) {
        snprintf(f->path[i], sizeof(f->path[i]), "%s/store%d", f->root, i);
        if (kc_store_open(f->path[i], NULL, &f->st[i]) != KC_OK)
            return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    for (int i = 0; i < 3; i++)
        kc_store_close(f->st[i]);
    kct_rmtree(f->root, 0);
    kc_free(f->tuning.pre);
    free(f->bundle);
    free(f);
    return 0;
}

/* The source store: every build, and a tuning won by VEC128_SM90. */
static void fill_source(fixture_t *f)
{
    static const int all[] = {VEC64_SM90, VEC128_SM90, VEC128_SM80, SAXPY_SM90, -1};
    make_tuning(&f->tuning, VEC128_SM90, 9000, 1700005000);
    publish(f->st[0], &f->tuning, all);
}

static void export_to_mem(fixture_t *f, kc_store_t *st, const kc_bundle_filter_t *filter,
                          kc_bundle_stats_t *s)
{
    FILE *m;

    free(f->bundle);
    f->bundle = NULL;
    m = open_memstream(&f->bundle, &f->bundle_len);
    assert_non_null(m);
    assert_int_equal(kc_bundle_export(st, filter, m, s), KC_OK);
    assert_int_equal(fclose(m), 0);
}

/* ---- dumping a store -------------------------------------------------------------- */

typedef struct dump {
    unsigned kinds; /* bit k: dump kind k */
    uint8_t *data;
    size_t len, cap;
} dump_t;

static void dump_add(dump_t *d, const void *p, size_t n)
{
    if (d->len + n + 8 > d->cap) {
        d->cap = (d->len + n + 8) * 2;
        d->data = realloc(d->data, d->cap);
        assert_non_null(d->data);
    }
    kc__store_u64le(d->data + d->len, n);
    memcpy(d->data + d->len + 8, p, n);
    d->len += n + 8;
}

static int dump_fn(MDB_txn *txn, void *arg)
{
    void **a = arg;
    dump_t *d = a[0];
    kc__env_t *env = a[1];

    for (int kind = KC_REC_KIND_MIN; kind <= KC_REC_KIND_MAX; kind++) {
        MDB_cursor *cur;
        MDB_val k, v;
        int rc;

        if (!(d->kinds & 1u << kind))
            continue;
        if ((rc = mdb_cursor_open(txn, env->dbi[kind], &cur)) != 0)
            return rc;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            uint8_t kb = (uint8_t)kind;
            dump_add(d, &kb, 1);
            dump_add(d, k.mv_data, k.mv_size);
            dump_add(d, v.mv_data, v.mv_size);
        }
        mdb_cursor_close(cur);
    }
    return 0;
}

/* Every key and value of the chosen kinds, straight from LMDB. */
static dump_t dump_store(kc_store_t *st, unsigned kinds)
{
    dump_t d = {.kinds = kinds};
    void *arg[2] = {&d, st->env};
    assert_int_equal(kc__env_read(st->env, dump_fn, arg), 0);
    return d;
}

#define ALL_KINDS 0x7eu
#define CONTENT_KINDS ((1u << KC_REC_BLOB) | (1u << KC_REC_BUILD) | (1u << KC_REC_TUNING))

static void assert_dumps_equal(const dump_t *a, const dump_t *b)
{
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->data, b->data, a->len);
}

static size_t count_kind(kc_store_t *st, int kind)
{
    kc_store_stats_t s;
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    return (size_t)s.records[kind];
}

static int has(kc_store_t *st, int kind, const kc_key_t *key)
{
    void *data = NULL;
    size_t len;
    int rc = kc_store_get_raw(st, kind, key, &data, &len);
    kc_free(data);
    return rc == KC_OK;
}

/* ---- round trip ------------------------------------------------------------------- */

static void
test_export_then_import_into_an_empty_store_gives_identical_records(void **state)
{
    fixture_t *f = *state;
    kc_bundle_stats_t ex, im;

    fill_source(f);
    export_to_mem(f, f->st[0], NULL, &ex);
    assert_int_equal(ex.blobs, N_BUILDS);
    assert_int_equal(ex.builds, N_BUILDS);
    assert_int_equal(ex.tunings, 1);
    assert_int_equal(ex.records, 2 * N_BUILDS + 1);
    assert_int_equal(ex.bytes, f->bundle_len);

    assert_int_equal(kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, NULL, &im),
                     KC_OK);
    assert_int_equal(im.added, 2 * N_BUILDS + 1);
    assert_int_equal(im.present, 0);

    dump_t a = dump_store(f->st[0], CONTENT_KINDS),
           b = dump_store(f->st[1], CONTENT_KINDS);
    assert_dumps_equal(&a, &b);
    free(a.data);
    free(b.data);

    /* And the cubins come out as they went in. */
    void *cubin = NULL;
    size_t len;
    assert_int_equal(
        kc_store_get_cubin(f->st[1], &builds[SAXPY_SM90].rec.blob, &cubin, &len), KC_OK);
    assert_int_equal(len, builds[SAXPY_SM90].cubin_len);
    assert_memory_equal(cubin, builds[SAXPY_SM90].cubin, len);
    kc_free(cubin);
}

static void test_importing_twice_changes_nothing(void **state)
{
    fixture_t *f = *state;
    kc_bundle_stats_t im;

    fill_source(f);
    export_to_mem(f, f->st[0], NULL, NULL);
    assert_int_equal(kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, NULL, NULL),
                     KC_OK);
    dump_t before = dump_store(f->st[1], ALL_KINDS);
    assert_int_equal(kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, NULL, &im),
                     KC_OK);
    dump_t after = dump_store(f->st[1], ALL_KINDS);
    assert_dumps_equal(&before, &after);
    assert_int_equal(im.added, 0);
    assert_int_equal(im.present, 2 * N_BUILDS + 1);
    free(before.data);
    free(after.data);
}

static void test_import_reads_a_bundle_from_a_stream(void **state)
{
    fixture_t *f = *state;
    kc_bundle_stats_t im;
    char path[700];
    FILE *fp;

    fill_source(f);
    snprintf(path, sizeof(path), "%s/x.kcb", f->root);
    fp = fopen(path, "w+b");
    assert_non_null(fp);
    assert_int_equal(kc_bundle_export(f->st[0], NULL, fp, NULL), KC_OK);
    rewind(fp);
    assert_int_equal(kc_bundle_import(f->st[1], fp, NULL, &im), KC_OK);
    fclose(fp);
    assert_int_equal(im.added, 2 * N_BUILDS + 1);
    assert_int_equal(count_kind(f->st[1], KC_REC_BUILD), N_BUILDS);
}

/* ---- damage ----------------------------------------------------------------------- */

/* The target for damaged bundles holds something already, so that "nothing
 * changed" compares a real store. */
static void fill_target(fixture_t *f)
{
    static const int one[] = {SAXPY_SM90, -1};
    publish(f->st[1], NULL, one);
}

static void test_every_truncation_leaves_the_store_unchanged(void **state)
{
    fixture_t *f = *state;
    kc_bundle_filter_t tuned = {.tuned_only = 1};
    kc_bundle_import_opts_t o = {.size = sizeof(kc_bundle_import_opts_t),
                                 .name = "t.kcb"};

    fill_source(f);
    fill_target(f);
    export_to_mem(f, f->st[0], &tuned, NULL);
    dump_t before = dump_store(f->st[1], ALL_KINDS);
    for (size_t n = 0; n < f->bundle_len; n++) {
        int rc = kc_bundle_import_mem(f->st[1], f->bundle, n, &o, NULL);
        const char *msg = kc_store_errmsg(f->st[1]);
        if (rc != KC_ECORRUPT || !strstr(msg, "t.kcb: ") || !strstr(msg, "truncated"))
            fail_msg("prefix of %zu bytes: %s: %s", n, kc_err_name(rc), msg);
    }
    dump_t after = dump_store(f->st[1], ALL_KINDS);
    assert_dumps_equal(&before, &after);
    free(before.data);
    free(after.data);
}

static void test_a_flipped_byte_anywhere_leaves_the_store_unchanged(void **state)
{
    fixture_t *f = *state;
    kc_bundle_filter_t tuned = {.tuned_only = 1};
    kc_bundle_import_opts_t o = {.size = sizeof(kc_bundle_import_opts_t),
                                 .name = "f.kcb"};

    fill_source(f);
    fill_target(f);
    export_to_mem(f, f->st[0], &tuned, NULL);
    dump_t before = dump_store(f->st[1], ALL_KINDS);
    for (size_t i = 0; i < f->bundle_len; i++) {
        f->bundle[i] ^= 0x20;
        int rc = kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, &o, NULL);
        const char *msg = kc_store_errmsg(f->st[1]);
        f->bundle[i] ^= 0x20;
        if (rc != KC_ECORRUPT || !strstr(msg, "f.kcb: ") || !strstr(msg, "byte"))
            fail_msg("flip at byte %zu: %s: %s", i, kc_err_name(rc), msg);
    }
    dump_t after = dump_store(f->st[1], ALL_KINDS);
    assert_dumps_equal(&before, &after);
    free(before.data);
    free(after.data);
    /* The bundle itself was sound all along. */
    assert_int_equal(kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, &o, NULL),
                     KC_OK);
}

static void test_a_damaged_frame_is_located_by_number_kind_and_offset(void **state)
{
    fixture_t *f = *state;
    kc_bundle_filter_t saxpy = {.name = "saxpy"};

    fill_source(f);
    export_to_mem(f, f->st[0], &saxpy, NULL);
    /* Frames: 1 the blob, 2 the build. Damage the build's last record byte. */
    size_t trailer = f->bundle_len - (KC__BUNDLE_FRAME_HEAD + KC__BUNDLE_TRAILER_BODY +
                                      KC__BUNDLE_CHECKSUM);
    size_t build_len = KC__BUNDLE_FRAME_HEAD + 16 + 0 + KC__BUNDLE_CHECKSUM;
    void *raw = NULL;
    size_t raw_len;
    assert_int_equal(
        kc_store_get_raw(f->st[0], KC_REC_BUILD, &builds[SAXPY_SM90].key, &raw, &raw_len),
        KC_OK);
    build_len += raw_len;
    kc_free(raw);
    f->bundle[trailer - KC__BUNDLE_CHECKSUM - 1] ^= 1;
    assert_int_equal(kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, NULL, NULL),
                     KC_ECORRUPT);
    char want[128], hex[KC_KEY_HEX_LEN + 1];
    kc_key_to_hex(&builds[SAXPY_SM90].key, hex);
    snprintf(want, sizeof(want),
             "bundle: frame 2 (build %.12s...): checksum mismatch at "
             "byte offset %zu",
             hex, trailer - build_len);
    assert_string_equal(kc_store_errmsg(f->st[1]), want);
}

/* Write a bundle of the given frames to f->bundle. */
typedef struct fr {
    int kind;
    const void *key;
    size_t key_len;
    const void *rec;
    size_t rec_len;
} fr_t;

static void forge(fixture_t *f, const fr_t *frames, size_t n)
{
    kc__bw_t w;
    FILE *m;

    free(f->bundle);
    f->bundle = NULL;
    m = open_memstream(&f->bundle, &f->bundle_len);
    assert_non_null(m);
    assert_int_equal(kc__bw_begin(&w, m, 1, "test"), KC_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(kc__bw_frame(&w, frames[i].kind, frames[i].key,
                                      frames[i].key_len, frames[i].rec,
                                      frames[i].rec_len),
                         KC_OK);
    assert_int_equal(kc__bw_finish(&w), KC_OK);
    assert_int_equal(fclose(m), 0);
}

static void test_a_bad_cubin_under_valid_checksums_is_refused(void **state)
{
    fixture_t *f = *state;
    kbuild_t *b = &builds[SAXPY_SM90];
    uint8_t *bad = malloc(b->cubin_len);
    void *rec = NULL;
    size_t rec_len;
    kc_key_t bad_key;

    /* A well-formed blob record of other bytes, framed under saxpy's key. */
    assert_non_null(bad);
    memcpy(bad, b->cubin, b->cubin_len);
    bad[b->cubin_len / 2] ^= 0xff;
    assert_int_equal(kc_blob_encode(bad, b->cubin_len, 3, &bad_key, &rec, &rec_len),
                     KC_OK);
    fr_t fr = {KC_REC_BLOB, b->rec.blob.b, 16, rec, rec_len};
    forge(f, &fr, 1);
    dump_t before = dump_store(f->st[1], ALL_KINDS);
    assert_int_equal(kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, NULL, NULL),
                     KC_ECORRUPT);
    assert_non_null(strstr(kc_store_errmsg(f->st[1]), "frame 1 (blob"));
    assert_non_null(strstr(kc_store_errmsg(f->st[1]), "hash to its key"));
    dump_t after = dump_store(f->st[1], ALL_KINDS);
    assert_dumps_equal(&before, &after);

    /* The same record under its own key is fine. */
    fr.key = bad_key.b;
    forge(f, &fr, 1);
    assert_int_equal(kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, NULL, NULL),
                     KC_OK);
    assert_true(has(f->st[1], KC_REC_BLOB, &bad_key));
    free(before.data);
    free(after.data);
    kc_free(rec);
    free(bad);
}

static void test_a_build_under_a_key_not_its_preimage_hash_is_refused(void **state)
{
    fixture_t *f = *state;
    kc_record_t r = {.kind = KC_REC_BUILD, .version = KC_RECORD_VERSION};
    void *rec = NULL;
    size_t rec_len;

    r.u.build = builds[SAXPY_SM90].rec;
    assert_int_equal(kc_record_encode(&r, &rec, &rec_len), KC_OK);
    fr_t fr = {KC_REC_BUILD, builds[VEC64_SM90].key.b, 16, rec, rec_len};
    forge(f, &fr, 1);
    assert_int_equal(kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, NULL, NULL),
                     KC_ECORRUPT);
    assert_non_null(strstr(kc_store_errmsg(f->st[1]), "not the hash"));
    assert_int_equal(count_kind(f->st[1], KC_REC_BUILD), 0);
    kc_free(rec);
}

static void test_a_build_without_its_blob_is_refused_unless_the_store_has_it(void **state)
{
    fixture_t *f = *state;
    kc_record_t r = {.kind = KC_REC_BUILD, .version = KC_RECORD_VERSION};
    void *rec = NULL;
    size_t rec_len;
    kc_key_t blob;

    r.u.build = builds[SAXPY_SM90].rec;
    assert_int_equal(kc_record_encode(&r, &rec, &rec_len), KC_OK);
    fr_t fr = {KC_REC_BUILD, builds[SAXPY_SM90].key.b, 16, rec, rec_len};
    forge(f, &fr, 1);
    assert_int_equal(kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, NULL, NULL),
                     KC_ECORRUPT);
    assert_non_null(strstr(kc_store_errmsg(f->st[1]), "neither in the bundle nor"));
    assert_int_equal(count_kind(f->st[1], KC_REC_BUILD), 0);

    assert_int_equal(kc_store_put_cubin(f->st[1], builds[SAXPY_SM90].cubin,
                                        builds[SAXPY_SM90].cubin_len, &blob),
                     KC_OK);
    assert_int_equal(kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, NULL, NULL),
                     KC_OK);
    assert_true(has(f->st[1], KC_REC_BUILD, &builds[SAXPY_SM90].key));
    kc_free(rec);
}

static void test_bytes_after_the_trailer_and_oversized_bundles_are_refused(void **state)
{
    fixture_t *f = *state;
    kc_bundle_import_opts_t small;
    kc_bundle_filter_t saxpy = {.name = "saxpy"};

    fill_source(f);
    export_to_mem(f, f->st[0], &saxpy, NULL);
    char *longer = malloc(f->bundle_len + 1);
    assert_non_null(longer);
    memcpy(longer, f->bundle, f->bundle_len);
    longer[f->bundle_len] = 0;
    assert_int_equal(
        kc_bundle_import_mem(f->st[1], longer, f->bundle_len + 1, NULL, NULL),
        KC_ECORRUPT);
    assert_non_null(strstr(kc_store_errmsg(f->st[1]), "after the trailer"));
    free(longer);

    small = (kc_bundle_import_opts_t){.size = sizeof(kc_bundle_import_opts_t),
                                      .max_bytes = f->bundle_len - 1};
    assert_int_equal(
        kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, &small, NULL),
        KC_ETOOBIG);
    small.max_bytes = f->bundle_len;
    assert_int_equal(
        kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, &small, NULL), KC_OK);
    assert_int_equal(count_kind(f->st[1], KC_REC_BUILD), 1);
}

static void test_a_newer_bundle_version_is_refused_and_a_readonly_store_too(void **state)
{
    fixture_t *f = *state;
    kc_store_opts_t ro = {.size = sizeof(kc_store_opts_t), .flags = KC_STORE_RDONLY};
    kc_store_t *st = NULL;

    fill_source(f);
    export_to_mem(f, f->st[0], NULL, NULL);
    /* Version 2, with the header checksum made right again. */
    uint32_t plen = kc__load_u32le((uint8_t *)f->bundle + 16);
    f->bundle[4] = 2;
    kc__store_u64le((uint8_t *)f->bundle + 20 + plen, XXH3_64bits(f->bundle, 20 + plen));
    assert_int_equal(kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, NULL, NULL),
                     KC_EVERSION);
    f->bundle[4] = 1;
    kc__store_u64le((uint8_t *)f->bundle + 20 + plen, XXH3_64bits(f->bundle, 20 + plen));

    assert_int_equal(kc_store_open(f->path[2], &ro, &st), KC_OK);
    assert_int_equal(kc_bundle_import_mem(st, f->bundle, f->bundle_len, NULL, NULL),
                     KC_EREADONLY);
    kc_store_close(st);
    assert_int_equal(kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, NULL, NULL),
                     KC_OK);
}

/* ---- tuning conflicts ---------------------------------------------------------------
 */

/* The target st[1] holds a tuning won by VEC64_SM90 in ours_ns; the source
 * st[0] one of the same key won by VEC128_SM90 in theirs_ns. Import the
 * source's into the target with prefer, and return the winner it keeps. */
static kc_key_t conflict(fixture_t *f, kc_bundle_prefer_t prefer, uint64_t ours_ns,
                         uint64_t theirs_ns, kc_bundle_stats_t *s)
{
    static const int vec[] = {VEC64_SM90, VEC128_SM90, -1};
    ktuning_t ours;
    kc_bundle_import_opts_t o = {.size = sizeof(kc_bundle_import_opts_t),
                                 .prefer = prefer};
    kc_record_t *t = NULL;
    kc_key_t winner;

    make_tuning(&f->tuning, VEC128_SM90, theirs_ns, 1700005000);
    publish(f->st[0], &f->tuning, vec);
    make_tuning(&ours, VEC64_SM90, ours_ns, 1700006000);
    publish(f->st[1], &ours, vec);
    assert_memory_equal(ours.key.b, f->tuning.key.b, 16);
    export_to_mem(f, f->st[0], NULL, NULL);
    assert_int_equal(kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, &o, s),
                     KC_OK);
    assert_int_equal(kc_store_get(f->st[1], KC_REC_TUNING, &ours.key, &t), KC_OK);
    winner = t->u.tuning.winner_build;
    kc_free(t);
    kc_free(ours.pre);
    return winner;
}

static void test_prefer_existing_keeps_the_stored_tuning(void **state)
{
    fixture_t *f = *state;
    kc_bundle_stats_t s;
    kc_key_t w = conflict(f, KC_PREFER_EXISTING, 9000, 5000, &s);
    assert_memory_equal(w.b, builds[VEC64_SM90].key.b, 16);
    assert_int_equal(s.kept, 1);
    assert_int_equal(s.replaced, 0);
}

static void test_prefer_incoming_replaces_the_stored_tuning(void **state)
{
    fixture_t *f = *state;
    kc_bundle_stats_t s;
    kc_key_t w = conflict(f, KC_PREFER_INCOMING, 5000, 9000, &s);
    assert_memory_equal(w.b, builds[VEC128_SM90].key.b, 16);
    assert_int_equal(s.replaced, 1);
    assert_int_equal(s.kept, 0);
}

static void test_prefer_faster_takes_the_incoming_tuning_when_it_is_faster(void **state)
{
    fixture_t *f = *state;
    kc_bundle_stats_t s;
    kc_key_t w = conflict(f, KC_PREFER_FASTER, 9000, 5000, &s);
    assert_memory_equal(w.b, builds[VEC128_SM90].key.b, 16);
    assert_int_equal(s.replaced, 1);
}

static void test_prefer_faster_keeps_the_stored_tuning_when_it_is_faster(void **state)
{
    fixture_t *f = *state;
    kc_bundle_stats_t s;
    kc_key_t w = conflict(f, KC_PREFER_FASTER, 5000, 9000, &s);
    assert_memory_equal(w.b, builds[VEC64_SM90].key.b, 16);
    assert_int_equal(s.kept, 1);
}

/* ---- filters ------------------------------------------------------------------------
 */

/* Export st[0] with filter into st[1], and say which builds arrived. */
static unsigned export_filtered(fixture_t *f, const kc_bundle_filter_t *filter,
                                kc_bundle_stats_t *s)
{
    unsigned got = 0;

    export_to_mem(f, f->st[0], filter, s);
    assert_int_equal(kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, NULL, NULL),
                     KC_OK);
    for (int i = 0; i < N_BUILDS; i++)
        if (has(f->st[1], KC_REC_BUILD, &builds[i].key)) {
            got |= 1u << i;
            /* A build never arrives without its blob. */
            assert_true(has(f->st[1], KC_REC_BLOB, &builds[i].rec.blob));
        }
    assert_int_equal(count_kind(f->st[1], KC_REC_BLOB),
                     count_kind(f->st[1], KC_REC_BUILD));
    return got;
}

static void test_arch_filter_selects_builds_and_tunings_of_that_arch(void **state)
{
    fixture_t *f = *state;
    kc_bundle_filter_t arch = {.arch = "sm_80"};
    kc_bundle_stats_t s;

    fill_source(f);
    assert_int_equal(export_filtered(f, &arch, &s), 1u << VEC128_SM80);
    assert_int_equal(s.tunings, 0);
    assert_int_equal(count_kind(f->st[1], KC_REC_TUNING), 0);
}

static void test_name_filter_selects_by_kernel_entry(void **state)
{
    fixture_t *f = *state;
    kc_bundle_filter_t name = {.name = "sax*"};
    kc_bundle_stats_t s;

    fill_source(f);
    assert_int_equal(export_filtered(f, &name, &s), 1u << SAXPY_SM90);
    assert_int_equal(s.records, 2);
}

static void test_since_filter_selects_records_created_after_it(void **state)
{
    fixture_t *f = *state;
    /* Builds were created at 1700000000 + 1000 i, the tuning at 1700005000. */
    kc_bundle_filter_t since = {.since = 1700001500};
    kc_bundle_stats_t s;

    fill_source(f);
    assert_int_equal(export_filtered(f, &since, &s),
                     1u << VEC128_SM80 | 1u << SAXPY_SM90 | 1u << VEC128_SM90);
    /* VEC128_SM90 (created 1700001000) came with the tuning it won. */
    assert_int_equal(s.tunings, 1);
}

static void test_tuned_only_exports_tunings_and_what_their_winners_need(void **state)
{
    fixture_t *f = *state;
    kc_bundle_filter_t tuned = {.tuned_only = 1};
    kc_bundle_stats_t s;

    fill_source(f);
    assert_int_equal(export_filtered(f, &tuned, &s), 1u << VEC128_SM90);
    assert_int_equal(s.records, 3);
    assert_true(has(f->st[1], KC_REC_TUNING, &f->tuning.key));
}

static void test_a_build_whose_blob_is_missing_is_left_out_of_an_export(void **state)
{
    fixture_t *f = *state;
    kc_bundle_stats_t s;

    fill_source(f);
    assert_int_equal(kc_store_del(f->st[0], KC_REC_BLOB, &builds[VEC128_SM90].rec.blob),
                     KC_OK);
    /* The build goes, and with it the tuning it won. */
    assert_int_equal(export_filtered(f, NULL, &s),
                     1u << VEC64_SM90 | 1u << VEC128_SM80 | 1u << SAXPY_SM90);
    assert_int_equal(s.damaged, 2);
    assert_int_equal(s.tunings, 0);
}

/* ---- dictionaries --------------------------------------------------------------------
 */

static void *train_dict(size_t *len, unsigned *id)
{
    enum { SAMPLES = 64 };
    size_t sizes[SAMPLES], used = 0, chunk = 0;
    uint8_t *buf, *dict = malloc(4 << 10);
    size_t total = 0;

    for (int i = 0; i < N_BUILDS; i++)
        total += builds[i].cubin_len;
    buf = malloc(total);
    assert_non_null(buf);
    assert_non_null(dict);
    for (int i = 0; i < N_BUILDS; i++) {
        memcpy(buf + used, builds[i].cubin, builds[i].cubin_len);
        used += builds[i].cubin_len;
    }
    chunk = used / SAMPLES;
    for (int i = 0; i < SAMPLES; i++)
        sizes[i] = chunk;
    *len = ZDICT_trainFromBuffer(dict, 4 << 10, buf, sizes, SAMPLES);
    assert_false(ZDICT_isError(*len));
    *id = ZSTD_getDictID_fromDict(dict, *len);
    assert_int_not_equal(*id, 0);
    free(buf);
    return dict;
}

typedef struct dict_put {
    kc__env_t *env;
    const char *name;
    const void *value;
    size_t len;
} dict_put_t;

static int dict_put_fn(MDB_txn *txn, void *arg)
{
    dict_put_t *d = arg;
    return kc__meta_write(txn, d->env, d->name, d->value, d->len, 0);
}

static void test_a_blob_travels_with_its_dictionary(void **state)
{
    fixture_t *f = *state;
    kbuild_t *b = &builds[SAXPY_SM90];
    size_t dict_len, rec_len;
    unsigned dict_id;
    void *dict = train_dict(&dict_len, &dict_id), *rec = NULL, *out = NULL;
    char name[32];
    kc_bundle_stats_t s;

    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    size_t cap = ZSTD_compressBound(b->cubin_len);
    uint8_t *frame = malloc(cap);
    assert_non_null(frame);
    size_t frame_len = ZSTD_compress_usingDict(cctx, frame, cap, b->cubin, b->cubin_len,
                                               dict, dict_len, 3);
    assert_false(ZSTD_isError(frame_len));
    ZSTD_freeCCtx(cctx);
    kc_record_t r = {.kind = KC_REC_BLOB, .version = KC_RECORD_VERSION};
    r.u.blob = (kc_blob_rec_t){KC_CODEC_ZSTD, dict_id, b->cubin_len, {frame, frame_len}};
    assert_int_equal(kc_record_encode(&r, &rec, &rec_len), KC_OK);
    assert_int_equal(kc_store_put_raw(f->st[0], KC_REC_BLOB, &b->rec.blob, rec, rec_len),
                     KC_OK);
    snprintf(name, sizeof(name), "dict.%u", dict_id);
    dict_put_t dp = {f->st[0]->env, name, dict, dict_len};
    assert_int_equal(kc__env_write(f->st[0]->env, dict_put_fn, &dp), 0);
    assert_int_equal(kc_store_put(f->st[0], &b->key,
                                  &(kc_record_t){.kind = KC_REC_BUILD,
                                                 .version = KC_RECORD_VERSION,
                                                 .u.build = b->rec}),
                     KC_OK);

    export_to_mem(f, f->st[0], NULL, &s);
    assert_int_equal(s.dicts, 1);
    assert_int_equal(s.records, 3);
    assert_int_equal(kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, NULL, NULL),
                     KC_OK);
    size_t len;
    assert_int_equal(kc_store_get_cubin(f->st[1], &b->rec.blob, &out, &len), KC_OK);
    assert_int_equal(len, b->cubin_len);
    assert_memory_equal(out, b->cubin, len);
    kc_free(out);
    /* The blob stayed compressed as it was, with the dictionary. */
    void *raw = NULL;
    assert_int_equal(kc_store_get_raw(f->st[1], KC_REC_BLOB, &b->rec.blob, &raw, &len),
                     KC_OK);
    assert_int_equal(len, rec_len);
    assert_memory_equal(raw, rec, len);
    kc_free(raw);

    /* Without the dictionary frame, a store that lacks it refuses the blob. */
    fr_t fr = {KC_REC_BLOB, b->rec.blob.b, 16, rec, rec_len};
    forge(f, &fr, 1);
    assert_int_equal(kc_bundle_import_mem(f->st[2], f->bundle, f->bundle_len, NULL, NULL),
                     KC_EUNSUPPORTED);
    assert_int_equal(count_kind(f->st[2], KC_REC_BLOB), 0);
    /* ...and a store that has it accepts it. */
    assert_int_equal(kc_store_del(f->st[1], KC_REC_BLOB, &b->rec.blob), KC_OK);
    assert_int_equal(kc_bundle_import_mem(f->st[1], f->bundle, f->bundle_len, NULL, NULL),
                     KC_OK);
    kc_free(rec);
    free(frame);
    free(dict);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_export_then_import_into_an_empty_store_gives_identical_records),
        T(test_importing_twice_changes_nothing),
        T(test_import_reads_a_bundle_from_a_stream),
        T(test_every_truncation_leaves_the_store_unchanged),
        T(test_a_flipped_byte_anywhere_leaves_the_store_unchanged),
        T(test_a_damaged_frame_is_located_by_number_kind_and_offset),
        T(test_a_bad_cubin_under_valid_checksums_is_refused),
        T(test_a_build_under_a_key_not_its_preimage_hash_is_refused),
        T(test_a_build_without_its_blob_is_refused_unless_the_store_has_it),
        T(test_bytes_after_the_trailer_and_oversized_bundles_are_refused),
        T(test_a_newer_bundle_version_is_refused_and_a_readonly_store_too),
        T(test_prefer_existing_keeps_the_stored_tuning),
        T(test_prefer_incoming_replaces_the_stored_tuning),
        T(test_prefer_faster_takes_the_incoming_tuning_when_it_is_faster),
        T(test_prefer_faster_keeps_the_stored_tuning_when_it_is_faster),
        T(test_arch_filter_selects_builds_and_tunings_of_that_arch),
        T(test_name_filter_selects_by_kernel_entry),
        T(test_since_filter_selects_records_created_after_it),
        T(test_tuned_only_exports_tunings_and_what_their_winners_need),
        T(test_a_build_whose_blob_is_missing_is_left_out_of_an_export),
        T(test_a_blob_travels_with_its_dictionary),
    };
    return cmocka_run_group_tests(tests, compile_all, free_all);
}
