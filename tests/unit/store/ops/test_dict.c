/* kc_store_train_dict: a zstd dictionary trained on real NVRTC cubins is
 * kept in the store, every recompressed blob still decodes to its bytes,
 * the blobs take less space, and training again, or dry, is safe. */
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

#include "kc_testutil.h"
#include "blob_internal.h"
#include "kcache/errors.h"
#include "kcache/store.h"
#include "nvrtc_dl.h"
#include "store_internal.h"

/* ---- real cubins, compiled once ------------------------------------------- */

static const char *const sources[] = {
    "extern \"C\" __global__ void __launch_bounds__(BLOCK)\n"
    "vec_add(const float *a, const float *b, float *c, int n)\n"
    "{\n"
    "    int i = blockIdx.x * BLOCK + threadIdx.x;\n"
    "    if (i < n)\n"
    "        c[i] = a[i] + b[i];\n"
    "}\n",
    "extern \"C\" __global__ void __launch_bounds__(BLOCK)\n"
    "block_sum(const float *x, float *out, int n)\n"
    "{\n"
    "    __shared__ float s[BLOCK];\n"
    "    int i = blockIdx.x * BLOCK + threadIdx.x;\n"
    "    s[threadIdx.x] = i < n ? x[i] : 0.0f;\n"
    "    __syncthreads();\n"
    "    for (int k = BLOCK / 2; k > 0; k >>= 1) {\n"
    "        if (threadIdx.x < k)\n"
    "            s[threadIdx.x] += s[threadIdx.x + k];\n"
    "        __syncthreads();\n"
    "    }\n"
    "    if (threadIdx.x == 0)\n"
    "        out[blockIdx.x] = s[0];\n"
    "}\n",
    "extern \"C\" __global__ void __launch_bounds__(BLOCK)\n"
    "scale_rows(float *x, const float *scale, int rows, int cols)\n"
    "{\n"
    "    for (int r = blockIdx.x; r < rows; r += gridDim.x)\n"
    "        for (int c = threadIdx.x; c < cols; c += BLOCK)\n"
    "            x[r * cols + c] *= scale[r] * (float)UNROLL;\n"
    "}\n",
};
static const char *const names[] = {"vec_add", "block_sum", "scale_rows"};

#define N_SOURCES 3
#define N_BLOCKS 8
#define N_CUBINS (N_SOURCES * N_BLOCKS)

static void *cubins[N_CUBINS];
static size_t cubin_lens[N_CUBINS];

static int compile_all(void **state)
{
    kct_nvrtc_t nv;
    char err[4096];

    (void)state;
    if (kct_nvrtc_load(&nv, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    for (int s = 0; s < N_SOURCES; s++) {
        for (int b = 0; b < N_BLOCKS; b++) {
            char block[32], unroll[32];
            const char *opts[] = {"--gpu-architecture=sm_90", block, unroll};
            snprintf(block, sizeof(block), "-DBLOCK=%d", 32 << (b % 6));
            snprintf(unroll, sizeof(unroll), "-DUNROLL=%d", 1 + b);
            if (kct_nvrtc_compile(&nv, sources[s], names[s], opts, 3,
                                  &cubins[s * N_BLOCKS + b],
                                  &cubin_lens[s * N_BLOCKS + b], err, sizeof(err)) != 0) {
                fprintf(stderr, "%s\n", err);
                kct_nvrtc_unload(&nv);
                return -1;
            }
        }
    }
    kct_nvrtc_unload(&nv);
    return 0;
}

static int free_all(void **state)
{
    (void)state;
    for (int i = 0; i < N_CUBINS; i++)
        free(cubins[i]);
    return 0;
}

/* ---- a scratch store -------------------------------------------------------- */

typedef struct fixture {
    char root[512];
    kc_store_t *st;
    kc_key_t keys[N_CUBINS];
    size_t n; /* distinct blobs */
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    if (!f || kct_store_scratch("test_dict", f->root, sizeof(f->root), &f->st) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    kct_store_scratch_free(f->root, f->st);
    free(f);
    return 0;
}

/* Store every cubin; some block sizes give identical cubins, stored once. */
static void fill(fixture_t *f)
{
    f->n = 0;
    for (int i = 0; i < N_CUBINS; i++) {
        assert_int_equal(kc_store_put_cubin(f->st, cubins[i], cubin_lens[i], &f->keys[i]),
                         KC_OK);
    }
    kc_store_stats_t s;
    assert_int_equal(kc_store_stats(f->st, &s), KC_OK);
    f->n = s.records[KC_REC_BLOB];
    assert_true(f->n >= 20);
}

static uint64_t stored_bytes(kc_store_t *st)
{
    kc_store_stats_t s;
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    return s.blob_stored_bytes;
}

static void assert_every_cubin_decodes(kc_store_t *st, const fixture_t *f)
{
    for (int i = 0; i < N_CUBINS; i++) {
        void *out = NULL;
        size_t len = 0;
        assert_int_equal(kc_store_get_cubin(st, &f->keys[i], &out, &len), KC_OK);
        assert_int_equal(len, cubin_lens[i]);
        assert_memory_equal(out, cubins[i], len);
        kc_free(out);
    }
}

/* The dictionary id blob key was stored with. */
static uint32_t blob_dict_id(kc_store_t *st, const kc_key_t *key)
{
    void *raw = NULL;
    size_t len = 0;
    kc_blob_rec_t b;

    assert_int_equal(kc_store_get_raw(st, KC_REC_BLOB, key, &raw, &len), KC_OK);
    assert_int_equal(kc__blob_view(raw, len, &b), KC_OK);
    kc_free(raw);
    return b.dict_id;
}

typedef struct meta_ctx {
    kc__env_t *env;
    const char *name;
    size_t len;
} meta_ctx_t;

static int meta_fn(MDB_txn *txn, void *arg)
{
    meta_ctx_t *c = arg;
    void *v = NULL;
    int rc = kc__meta_read_alloc(txn, c->env, c->name, &v, &c->len);
    free(v);
    return rc;
}

/* The length of meta record "dict.<id>", or 0 if there is none. */
static size_t dict_meta_len(kc_store_t *st, uint32_t id)
{
    char name[32];
    meta_ctx_t c = {st->env, name, 0};

    snprintf(name, sizeof(name), "dict.%u", (unsigned)id);
    return kc__env_read(st->env, meta_fn, &c) == 0 ? c.len : 0;
}

/* ---- the tests ---------------------------------------------------------------- */

static void test_training_shrinks_the_blobs_and_every_one_still_decodes(void **state)
{
    fixture_t *f = *state;
    kc_dict_report_t r;

    fill(f);
    uint64_t before = stored_bytes(f->st);
    assert_int_equal(kc_store_train_dict(f->st, 16 << 10, 0, &r), KC_OK);
    uint64_t after = stored_bytes(f->st);

    assert_int_equal(r.blobs, f->n);
    assert_int_equal(r.samples, f->n);
    assert_int_equal(r.stored_before, before);
    assert_int_equal(r.stored_after, after);
    assert_true(after < before);
    assert_true(r.recompressed > 0);
    assert_int_not_equal(r.dict_id, 0);
    print_message("%zu cubins, %llu raw bytes: stored %llu at the default level, %llu "
                  "with a %llu-byte dictionary (ratio %.2fx -> %.2fx)\n",
                  f->n, (unsigned long long)r.raw_bytes, (unsigned long long)before,
                  (unsigned long long)after, (unsigned long long)r.dict_bytes,
                  (double)r.raw_bytes / before, (double)r.raw_bytes / after);

    /* The dictionary is a meta record, and the rewritten blobs name it. */
    assert_int_equal(dict_meta_len(f->st, r.dict_id), r.dict_bytes);
    size_t with_dict = 0;
    for (int i = 0; i < N_CUBINS; i++)
        with_dict += blob_dict_id(f->st, &f->keys[i]) == r.dict_id;
    assert_true(with_dict > 0);

    assert_every_cubin_decodes(f->st, f);
    /* And from a fresh handle, which only has what is on disk. */
    kc_store_close(f->st);
    f->st = NULL;
    assert_int_equal(kc_store_open(f->root, NULL, &f->st), KC_OK);
    assert_every_cubin_decodes(f->st, f);
}

static void test_a_dry_run_reports_the_gain_and_writes_nothing(void **state)
{
    fixture_t *f = *state;
    kc_dict_report_t r;

    fill(f);
    uint64_t before = stored_bytes(f->st);
    assert_int_equal(kc_store_train_dict(f->st, 16 << 10, 1, &r), KC_OK);
    assert_true(r.stored_after < r.stored_before);
    assert_true(r.recompressed > 0);
    assert_int_equal(stored_bytes(f->st), before);
    assert_int_equal(dict_meta_len(f->st, r.dict_id), 0);
    for (int i = 0; i < N_CUBINS; i++)
        assert_int_equal(blob_dict_id(f->st, &f->keys[i]), 0);
}

static void test_training_again_is_safe(void **state)
{
    fixture_t *f = *state;
    kc_dict_report_t r1, r2;

    fill(f);
    assert_int_equal(kc_store_train_dict(f->st, 16 << 10, 0, &r1), KC_OK);
    uint64_t after1 = stored_bytes(f->st);
    /* The second run reads blobs made with the first dictionary, and keeps
     * any it does not improve on as they are. */
    assert_int_equal(kc_store_train_dict(f->st, 8 << 10, 0, &r2), KC_OK);
    assert_int_equal(r2.samples, f->n);
    assert_int_equal(r2.stored_before, after1);
    assert_true(stored_bytes(f->st) <= after1);
    assert_int_equal(stored_bytes(f->st), r2.stored_after);
    assert_every_cubin_decodes(f->st, f);
    /* Every dictionary a blob names is in the store. */
    for (int i = 0; i < N_CUBINS; i++) {
        uint32_t id = blob_dict_id(f->st, &f->keys[i]);
        if (id)
            assert_true(dict_meta_len(f->st, id) > 0);
    }
}

static void test_too_few_blobs_is_a_clear_error(void **state)
{
    fixture_t *f = *state;
    kc_dict_report_t r;

    for (int i = 0; i < KC_DICT_MIN_SAMPLES - 1; i++)
        assert_int_equal(
            kc_store_put_cubin(f->st, cubins[i * 2], cubin_lens[i * 2], NULL), KC_OK);
    uint64_t before = stored_bytes(f->st);
    assert_int_equal(kc_store_train_dict(f->st, 0, 0, &r), KC_EINVAL);
    assert_non_null(strstr(kc_store_errmsg(f->st), "at least 10"));
    assert_int_equal(stored_bytes(f->st), before);
    assert_int_equal(r.dict_id == 0 || dict_meta_len(f->st, r.dict_id) == 0, 1);
}

static void test_a_bad_dictionary_size_is_refused(void **state)
{
    fixture_t *f = *state;

    fill(f);
    assert_int_equal(kc_store_train_dict(f->st, 100, 0, NULL), KC_EINVAL);
    assert_int_equal(kc_store_train_dict(NULL, 0, 0, NULL), KC_EINVAL);
}

static void test_a_read_only_store_is_not_recompressed(void **state)
{
    fixture_t *f = *state;
    kc_store_opts_t ro = {.size = sizeof(kc_store_opts_t), .flags = KC_STORE_RDONLY};
    kc_store_t *st = NULL;
    kc_dict_report_t r;

    fill(f);
    kc_store_close(f->st);
    f->st = NULL;
    assert_int_equal(kc_store_open(f->root, &ro, &st), KC_OK);
    assert_int_equal(kc_store_train_dict(st, 16 << 10, 0, &r), KC_EREADONLY);
    /* A dry run only reads, so it works on a read-only store. */
    assert_int_equal(kc_store_train_dict(st, 16 << 10, 1, &r), KC_OK);
    assert_true(r.stored_after < r.stored_before);
    kc_store_close(st);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_training_shrinks_the_blobs_and_every_one_still_decodes),
        T(test_a_dry_run_reports_the_gain_and_writes_nothing),
        T(test_training_again_is_safe),
        T(test_too_few_blobs_is_a_clear_error),
        T(test_a_bad_dictionary_size_is_refused),
        T(test_a_read_only_store_is_not_recompressed),
    };
    return cmocka_run_group_tests(tests, compile_all, free_all);
}
