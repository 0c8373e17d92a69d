/* Prebuilt binaries under Triton's ABI on a real GPU, through the public
 * launcher: a binary with 64 KiB of dynamic shared memory (the opt-in above
 * 48 KiB) and 256 bytes of global scratch per CTA (the two pointers Triton
 * appends: a 128-byte-aligned buffer of grid x size bytes, and NULL for the
 * profile scratch of size 0), and a binary launched as clusters of 2 CTAs
 * with PDL through cuLaunchKernelEx (each CTA reads its rank in the
 * cluster). The binaries are NVRTC cubins with Triton's parameter list,
 * stored with the binmeta records an import writes. Exits 77 (skipped)
 * without a driver or a device. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "compiler.h"
#include "device.h"
#include "kc_testutil.h"
#include "kcache/launch.h"
#include "kcache/record.h"
#include "kcache/store.h"

static kc__device_t *g_dev;
static kc__devinfo_t g_info;

static const char SRC[] =
    "extern \"C\" __global__ void scr(float *out, int n, char *gs, char *ps)\n"
    "{\n"
    "    extern __shared__ float sm[];\n"
    "    int b = blockIdx.x, t = threadIdx.x;\n"
    "    sm[t * 128] = (float)(b + t);\n"
    "    __syncthreads();\n"
    "    float *mine = (float *)(gs + (size_t)b * 256);\n"
    "    if (t < 64) mine[t] = sm[t * 128];\n"
    "    __syncthreads();\n"
    "    int ok = ((size_t)gs % 128) == 0 && ps == 0;\n"
    "    if (t < 64 && b * 64 + t < n) out[b * 64 + t] = mine[t] + (ok ? 0.0f : "
    "1000.0f);\n"
    "}\n"
    "extern \"C\" __global__ void rank(int *out, int n, char *gs, char *ps)\n"
    "{\n"
    "    unsigned r;\n"
    "    asm volatile(\"mov.u32 %0, %%cluster_ctarank;\" : \"=r\"(r));\n"
    "    if (threadIdx.x == 0 && blockIdx.x < n) out[blockIdx.x] = (int)r + (gs || ps ? "
    "100 : 0);\n"
    "}\n";

static const kc_binmeta_arg_t bm_args[] = {{"out_ptr", "*fp32"}, {"n", "i32"}};
static const kc_binmeta_arg_t bm_args_i[] = {{"out_ptr", "*i32"}, {"n", "i32"}};

typedef struct fx {
    char dir[512];
    kc_store_t *st;
    kc_launcher_t *l;
    void *cubin;
    size_t cubin_len;
} fx_t;

static kc_key_t put(fx_t *f, const char *entry, unsigned warps, unsigned ctas,
                    unsigned smem, unsigned gsize, uint32_t flags,
                    const kc_binmeta_arg_t *args)
{
    kc_key_t blob, build;
    const char *opt = entry;
    kc_build_desc_t d = {.source_kind = KC_SOURCE_PREBUILT,
                         .entry = entry,
                         .options = &opt,
                         .n_options = 1,
                         .arch = g_info.arch,
                         .toolchain = "triton-3.6.0"};
    void *pre;
    size_t pre_len;
    assert_int_equal(kc_store_put_cubin(f->st, f->cubin, f->cubin_len, &blob), KC_OK);
    d.source_digest = blob;
    assert_int_equal(kc_build_preimage_encode(&d, &pre, &pre_len), KC_OK);
    build = kc_key_hash(pre, pre_len);
    kc_record_t b = {.kind = KC_REC_BUILD};
    b.u.build = (kc_build_rec_t){
        .preimage = {pre, pre_len}, .blob = blob, .entry = entry, .created = 1};
    assert_int_equal(kc_store_put(f->st, &build, &b), KC_OK);
    kc_free(pre);
    kc_record_t r = {.kind = KC_REC_BINMETA};
    r.u.binmeta = (kc_binmeta_rec_t){.build = build,
                                     .entry = entry,
                                     .arch = g_info.arch,
                                     .threads_per_block = warps * 32,
                                     .num_warps = warps,
                                     .warp_size = 32,
                                     .num_ctas = ctas,
                                     .dyn_smem = smem,
                                     .global_scratch_size = gsize,
                                     .global_scratch_align = 128,
                                     .profile_scratch_align = 1,
                                     .flags = flags,
                                     .compiler = "triton",
                                     .compiler_version = "3.6.0",
                                     .args = args,
                                     .n_args = 2};
    assert_int_equal(kc_store_put(f->st, &build, &r), KC_OK);
    return build;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    kc__compile_in_t in = {.source = SRC, .entry = "scr", .arch = g_info.arch};
    kc__compile_out_t out;
    if (!f || kct_tmpdir("prebuilt_gpu", f->dir, sizeof(f->dir)) != 0)
        return -1;
    if (kc__nvrtc_compile(&in, &out) != KC_OK) {
        fprintf(stderr, "%s\n", out.log ? out.log : "NVRTC failed");
        return -1;
    }
    f->cubin = out.cubin;
    f->cubin_len = out.cubin_len;
    out.cubin = NULL;
    kc__compile_out_free(&out);
    kc_launcher_opts_t o = KC_LAUNCHER_OPTS_INIT;
    if (kc_store_open(f->dir, NULL, &f->st) != KC_OK)
        return -1;
    o.store = f->st;
    o.no_remote = 1;
    if (kc_launcher_create(&o, &f->l) != KC_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    kc_launcher_destroy(f->l);
    kc_store_close(f->st);
    kc_free(f->cubin);
    kct_rmrf(f->dir);
    free(f);
    return 0;
}

static kc_kernel_t *get(fx_t *f, const char *name, kc_key_t build,
                        const kc_arg_spec_t *args, const char *grid)
{
    kc_prebuilt_t c = {build, NULL, 0};
    kc_kernel_spec_t s = {0};
    kc_kernel_t *k = NULL;
    s.name = name;
    s.source_kind = KC_SOURCE_PREBUILT;
    s.prebuilt = &c;
    s.n_prebuilt = 1;
    s.args = args;
    s.n_args = 2;
    s.grid[0] = grid;
    int rc = kc_kernel_get(f->l, &s, &k);
    if (rc != KC_OK)
        fprintf(stderr, "kc_kernel_get: %s\n", kc_launcher_errmsg(f->l));
    assert_int_equal(rc, KC_OK);
    return k;
}

static void test_gpu_scratch_and_big_shared_memory(void **state)
{
    fx_t *f = *state;
    const kc_arg_spec_t args[] = {{"out", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_OUT, 0},
                                  {"n", KC_ARG_SCALAR, KC_DTYPE_I32, 0, 0}};
    kc_kernel_t *k = get(f, "scr", put(f, "scr", 4, 1, 64 * 1024, 256, 0, bm_args), args,
                         "cdiv(n, 64)");
    int n = 64 * 96;
    int64_t dim = n;
    uint64_t d;
    float *h = malloc((size_t)n * 4);
    assert_int_equal(g_dev->ops->mem_alloc(g_dev, (size_t)n * 4, &d), KC_OK);
    kc_arg_t a[2] = {{.ptr = d, .rank = 1, .dims = &dim}, {.value.i = n}};
    int rc = kc_kernel_launch(k, NULL, a, 2);
    if (rc != KC_OK)
        fprintf(stderr, "launch: %s\n", kc_launcher_errmsg(f->l));
    assert_int_equal(rc, KC_OK);
    assert_int_equal(g_dev->ops->stream_sync(g_dev, NULL), KC_OK);
    assert_int_equal(g_dev->ops->copy_dtoh(g_dev, h, d, (size_t)n * 4, NULL), KC_OK);
    for (int i = 0; i < n; i++)
        assert_true(h[i] == (float)(i / 64 + i % 64));
    g_dev->ops->mem_free(g_dev, d);
    free(h);
}

static void test_gpu_clusters_through_launch_ex(void **state)
{
    fx_t *f = *state;
    if (g_info.cc_major < 9) {
        printf("SKIP: clusters need sm_90 (this is %s)\n", g_info.arch);
        return;
    }
    const kc_arg_spec_t args[] = {{"out", KC_ARG_POINTER, KC_DTYPE_I32, KC_ACCESS_OUT, 0},
                                  {"n", KC_ARG_SCALAR, KC_DTYPE_I32, 0, 0}};
    kc_kernel_t *k = get(f, "rank", put(f, "rank", 1, 2, 0, 0, KC_BINMETA_PDL, bm_args_i),
                         args, "n / 2");
    int n = 64;
    int64_t dim = n;
    uint64_t d;
    int h[64];
    assert_int_equal(g_dev->ops->mem_alloc(g_dev, sizeof(h), &d), KC_OK);
    kc_arg_t a[2] = {{.ptr = d, .rank = 1, .dims = &dim}, {.value.i = n}};
    int rc = kc_kernel_launch(k, NULL, a, 2);
    if (rc != KC_OK)
        fprintf(stderr, "launch: %s\n", kc_launcher_errmsg(f->l));
    assert_int_equal(rc, KC_OK);
    assert_int_equal(g_dev->ops->stream_sync(g_dev, NULL), KC_OK);
    assert_int_equal(g_dev->ops->copy_dtoh(g_dev, h, d, sizeof(h), NULL), KC_OK);
    for (int i = 0; i < n; i++)
        assert_int_equal(h[i], i % 2); /* 32 clusters of 2: ranks 0, 1 */
    g_dev->ops->mem_free(g_dev, d);
}

int main(void)
{
    char err[512];
    int rc = kc__device_cuda_open(0, &g_dev, err, sizeof(err));
    if (rc == KC_ENODEVICE) {
        printf("SKIP: no CUDA device (%s)\n", err);
        return 77;
    }
    if (rc != KC_OK || g_dev->ops->info(g_dev, &g_info) != KC_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gpu_scratch_and_big_shared_memory, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_gpu_clusters_through_launch_ex, setup,
                                        teardown),
    };
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    g_dev->ops->destroy(g_dev);
    return rc;
}
