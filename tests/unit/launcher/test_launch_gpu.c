/* The CUDA device on a real GPU: device class, NVRTC cubins and PTX through
 * the driver's JIT, launches, events, resource limits. Exits 77 (skipped)
 * on a machine without a driver or a device. */
#include <pthread.h>
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
#include "kcache/errors.h"

static kc__device_t *g_dev;
static kc__devinfo_t g_info;

static const char VADD_SRC[] =
    "extern \"C\" __global__ void vadd(const float *a, const float *b, float *c, int n)\n"
    "{\n"
    "    int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "    if (i < n)\n"
    "        c[i] = a[i] + b[i];\n"
    "}\n"
    "extern \"C\" __global__ void spin(float *p, int iters)\n"
    "{\n"
    "    float x = p[threadIdx.x];\n"
    "    for (int i = 0; i < iters; i++)\n"
    "        x = x * 1.0000001f + 1e-7f;\n"
    "    p[threadIdx.x] = x;\n"
    "}\n"
    "extern \"C\" __global__ void poke(float *p) { p[threadIdx.x] = 1.0f; }\n"
    "extern \"C\" __global__ void smem(float *p)\n"
    "{\n"
    "    extern __shared__ float s[];\n"
    "    s[threadIdx.x] = (float)threadIdx.x;\n"
    "    __syncthreads();\n"
    "    p[threadIdx.x] = s[blockDim.x - 1 - threadIdx.x];\n"
    "}\n";

static void *load_module(const void *image, size_t len)
{
    void *mod = NULL;
    int rc = g_dev->ops->module_load(g_dev, image, len, &mod);
    if (rc != KC_OK)
        fprintf(stderr, "module_load: %s\n", kc__device_errmsg(g_dev));
    assert_int_equal(rc, KC_OK);
    return mod;
}

static void *compile_and_load(void)
{
    kc__compile_in_t in = {.source = VADD_SRC, .entry = "vadd", .arch = g_info.arch};
    kc__compile_out_t out;
    int rc = kc__nvrtc_compile(&in, &out);
    if (rc != KC_OK)
        fprintf(stderr, "%s\n", out.log ? out.log : "");
    assert_int_equal(rc, KC_OK);
    void *mod = load_module(out.cubin, out.cubin_len);
    kc__compile_out_free(&out);
    return mod;
}

/* Runs vadd from mod on n elements and checks every result. */
static void run_vadd(void *mod, int n)
{
    void *fn;
    assert_int_equal(g_dev->ops->get_function(g_dev, mod, "vadd", &fn), KC_OK);
    size_t bytes = (size_t)n * sizeof(float);
    float *ha = malloc(bytes), *hb = malloc(bytes), *hc = malloc(bytes);
    for (int i = 0; i < n; i++) {
        ha[i] = (float)i;
        hb[i] = 0.5f * (float)i;
        hc[i] = -1;
    }
    uint64_t a, b, c;
    assert_int_equal(g_dev->ops->mem_alloc(g_dev, bytes, &a), KC_OK);
    assert_int_equal(g_dev->ops->mem_alloc(g_dev, bytes, &b), KC_OK);
    assert_int_equal(g_dev->ops->mem_alloc(g_dev, bytes, &c), KC_OK);
    assert_int_equal(g_dev->ops->copy_htod(g_dev, a, ha, bytes, NULL), KC_OK);
    assert_int_equal(g_dev->ops->copy_htod(g_dev, b, hb, bytes, NULL), KC_OK);
    void *params[] = {&a, &b, &c, &n};
    const unsigned grid[3] = {(unsigned)(n + 255) / 256, 1, 1}, block[3] = {256, 1, 1};
    assert_int_equal(g_dev->ops->launch(g_dev, fn, grid, block, 0, NULL, params), KC_OK);
    assert_int_equal(g_dev->ops->stream_sync(g_dev, NULL), KC_OK);
    assert_int_equal(g_dev->ops->copy_dtoh(g_dev, hc, c, bytes, NULL), KC_OK);
    for (int i = 0; i < n; i++)
        assert_true(hc[i] == 1.5f * (float)i);
    g_dev->ops->mem_free(g_dev, a);
    g_dev->ops->mem_free(g_dev, b);
    g_dev->ops->mem_free(g_dev, c);
    free(ha);
    free(hb);
    free(hc);
}

static void test_gpu_reports_its_device_class(void **state)
{
    (void)state;
    printf("# %s, %s, %u SMs, driver %u, L2 %llu KiB, opt-in smem %u\n", g_info.name,
           g_info.arch, g_info.sm_count, g_info.driver_version,
           (unsigned long long)(g_info.l2_bytes >> 10), g_info.max_shared_optin);
    assert_int_equal(strncmp(g_info.arch, "sm_", 3), 0);
    char expect[16];
    snprintf(expect, sizeof(expect), "sm_%d%d", g_info.cc_major, g_info.cc_minor);
    assert_string_equal(g_info.arch, expect);
    if (strstr(g_info.name, "H100") || strstr(g_info.name, "H200"))
        assert_string_equal(g_info.arch, "sm_90");
    assert_true(g_info.sm_count > 0);
    assert_true(g_info.driver_version > 0);
    assert_true(g_info.max_threads_per_block >= 1024);
    assert_true(g_info.max_shared_optin > 48 * 1024);
    assert_true(g_info.l2_bytes > 0);
    size_t free_bytes = 0;
    assert_int_equal(g_dev->ops->mem_free_bytes(g_dev, &free_bytes), KC_OK);
    assert_true(free_bytes > 0);
}

static void test_gpu_runs_an_nvrtc_cubin(void **state)
{
    (void)state;
    void *mod = compile_and_load();
    run_vadd(mod, 100000);
    void *fn;
    kc__funcattrs_t attrs;
    assert_int_equal(g_dev->ops->get_function(g_dev, mod, "vadd", &fn), KC_OK);
    assert_int_equal(g_dev->ops->func_attrs(g_dev, fn, &attrs), KC_OK);
    assert_true(attrs.registers > 0);
    assert_true(attrs.max_threads > 0);
    assert_int_equal(g_dev->ops->get_function(g_dev, mod, "no_such_kernel", &fn),
                     KC_ENOTFOUND);
    g_dev->ops->module_unload(g_dev, mod);
}

static void test_gpu_runs_ptx_through_the_jit_linker(void **state)
{
    (void)state;
    kc__compile_in_t in = {.source = VADD_SRC, .entry = "vadd", .arch = g_info.arch};
    kc__compile_out_t out;
    assert_int_equal(kc__nvrtc_compile_ptx(&in, &out), KC_OK);
    void *cubin = NULL;
    size_t len = 0;
    char log[1024];
    int rc = g_dev->ops->ptx_to_cubin(g_dev, out.cubin, out.cubin_len, g_info.arch,
                                      &cubin, &len, log, sizeof(log));
    if (rc != KC_OK)
        fprintf(stderr, "ptx_to_cubin: %s\n", kc__device_errmsg(g_dev));
    assert_int_equal(rc, KC_OK);
    assert_true(len > 4);
    assert_memory_equal(cubin,
                        "\x7f"
                        "ELF",
                        4);
    void *mod = load_module(cubin, len);
    run_vadd(mod, 4097);
    g_dev->ops->module_unload(g_dev, mod);
    free(cubin);

    /* Broken PTX is a compile error, with the JIT's log. */
    static const char bad[] = ".version 8.0\n.target sm_90\n.address_size 64\nnot ptx\n";
    rc = g_dev->ops->ptx_to_cubin(g_dev, bad, sizeof(bad) - 1, g_info.arch, &cubin, &len,
                                  log, sizeof(log));
    assert_int_equal(rc, KC_ECOMPILE);
    assert_null(cubin);
    printf("# bad PTX: %s\n", kc__device_errmsg(g_dev));
    kc__compile_out_free(&out);
}

/* nvJitLink's cubin for the device's arch (made with no driver involved)
 * loads and computes on the real GPU like the driver JIT's. */
static void test_gpu_runs_a_cubin_linked_by_nvjitlink(void **state)
{
    (void)state;
    kc__compile_in_t in = {.source = VADD_SRC, .entry = "vadd", .arch = g_info.arch};
    kc__compile_out_t out;
    char log[2048];
    void *cubin = NULL;
    size_t len = 0;
    assert_int_equal(kc__nvjitlink_load(log, sizeof(log)), KC_OK);
    assert_int_equal(kc__nvrtc_compile_ptx(&in, &out), KC_OK);
    int rc = kc__nvjitlink_ptx_to_cubin(out.cubin, out.cubin_len, g_info.arch, &cubin,
                                        &len, log, sizeof(log));
    if (rc != KC_OK)
        fprintf(stderr, "nvJitLink: %s\n", log);
    assert_int_equal(rc, KC_OK);
    void *mod = load_module(cubin, len);
    run_vadd(mod, 4097);
    g_dev->ops->module_unload(g_dev, mod);
    free(cubin);
    kc__compile_out_free(&out);
}

static void test_gpu_events_time_a_kernel(void **state)
{
    (void)state;
    kc__compile_in_t in = {.source = VADD_SRC, .entry = "spin", .arch = g_info.arch};
    kc__compile_out_t out;
    assert_int_equal(kc__nvrtc_compile(&in, &out), KC_OK);
    void *mod = load_module(out.cubin, out.cubin_len), *fn;
    assert_int_equal(g_dev->ops->get_function(g_dev, mod, "spin", &fn), KC_OK);
    uint64_t p;
    assert_int_equal(g_dev->ops->mem_alloc(g_dev, 256 * sizeof(float), &p), KC_OK);
    int iters = 1 << 20;
    void *params[] = {&p, &iters};
    const unsigned grid[3] = {1, 1, 1}, block[3] = {256, 1, 1};
    void *start, *end;
    assert_int_equal(g_dev->ops->event_create(g_dev, &start), KC_OK);
    assert_int_equal(g_dev->ops->event_create(g_dev, &end), KC_OK);
    assert_int_equal(g_dev->ops->flush_l2(g_dev, NULL), KC_OK);
    assert_int_equal(g_dev->ops->event_record(g_dev, start, NULL), KC_OK);
    assert_int_equal(g_dev->ops->launch(g_dev, fn, grid, block, 0, NULL, params), KC_OK);
    assert_int_equal(g_dev->ops->event_record(g_dev, end, NULL), KC_OK);
    float ms = 0;
    assert_int_equal(g_dev->ops->event_elapsed_ms(g_dev, start, end, &ms), KC_OK);
    printf("# spin: %.3f ms\n", ms);
    assert_true(ms > 0.01f);
    g_dev->ops->event_destroy(g_dev, start);
    g_dev->ops->event_destroy(g_dev, end);
    g_dev->ops->mem_free(g_dev, p);
    g_dev->ops->module_unload(g_dev, mod);
    kc__compile_out_free(&out);
}

static void test_gpu_too_large_block_or_shared_memory_is_toobig(void **state)
{
    (void)state;
    kc__compile_in_t in = {.source = VADD_SRC, .entry = "smem", .arch = g_info.arch};
    kc__compile_out_t out;
    assert_int_equal(kc__nvrtc_compile(&in, &out), KC_OK);
    void *mod = load_module(out.cubin, out.cubin_len), *fn;
    assert_int_equal(g_dev->ops->get_function(g_dev, mod, "smem", &fn), KC_OK);
    uint64_t p;
    assert_int_equal(g_dev->ops->mem_alloc(g_dev, 1024 * sizeof(float), &p), KC_OK);
    void *params[] = {&p};
    const unsigned grid[3] = {1, 1, 1};
    const unsigned big[3] = {2048, 1, 1}, ok[3] = {1024, 1, 1};

    assert_int_equal(g_dev->ops->launch(g_dev, fn, grid, big, 4096, NULL, params),
                     KC_ETOOBIG);
    printf("# block 2048: %s\n", kc__device_errmsg(g_dev));
    /* 100 KiB needs the opt-in; without it the launch is refused. */
    unsigned smem = 100 * 1024;
    assert_int_equal(g_dev->ops->launch(g_dev, fn, grid, ok, smem, NULL, params),
                     KC_ETOOBIG);
    assert_int_equal(g_dev->ops->set_dyn_smem(g_dev, fn, smem), KC_OK);
    assert_int_equal(g_dev->ops->launch(g_dev, fn, grid, ok, smem, NULL, params), KC_OK);
    float h[1024];
    assert_int_equal(g_dev->ops->copy_dtoh(g_dev, h, p, sizeof(h), NULL), KC_OK);
    assert_true(h[0] == 1023.0f && h[1023] == 0.0f);
    assert_int_equal(g_dev->ops->set_dyn_smem(g_dev, fn, g_info.max_shared_optin + 1),
                     KC_ETOOBIG);
    /* The context is still usable after refused launches. */
    assert_int_equal(g_dev->ops->stream_sync(g_dev, NULL), KC_OK);
    g_dev->ops->mem_free(g_dev, p);
    g_dev->ops->module_unload(g_dev, mod);
    kc__compile_out_free(&out);
}

static void test_gpu_refuses_an_image_that_is_not_a_cubin(void **state)
{
    (void)state;
    static const char junk[256] = "\x7f"
                                  "ELF this is not a cubin";
    void *mod = (void *)1;
    int rc = g_dev->ops->module_load(g_dev, junk, sizeof(junk), &mod);
    printf("# junk image: %s\n", kc__device_errmsg(g_dev));
    assert_int_equal(rc, KC_EARCH);
    assert_null(mod);
}

static void test_gpu_copies_device_to_device(void **state)
{
    (void)state;
    enum { N = 1 << 16 };
    uint64_t a, b;
    assert_int_equal(g_dev->ops->mem_alloc(g_dev, N, &a), KC_OK);
    assert_int_equal(g_dev->ops->mem_alloc(g_dev, N, &b), KC_OK);
    uint8_t *h = malloc(N), *back = malloc(N);
    for (int i = 0; i < N; i++)
        h[i] = (uint8_t)(i * 7);
    assert_int_equal(g_dev->ops->copy_htod(g_dev, a, h, N, NULL), KC_OK);
    assert_int_equal(g_dev->ops->copy_dtod(g_dev, b, a, N, NULL), KC_OK);
    assert_int_equal(g_dev->ops->copy_dtoh(g_dev, back, b, N, NULL), KC_OK);
    assert_memory_equal(back, h, N);
    g_dev->ops->mem_free(g_dev, a);
    g_dev->ops->mem_free(g_dev, b);
    free(h);
    free(back);
}

typedef struct thread_run {
    void *mod;
    int rc;
} thread_run_t;

static void *vadd_on_a_thread(void *arg)
{
    thread_run_t *t = arg;
    /* A fresh thread has no current context: the device must make its own
     * current, as the tuner's workers rely on. */
    uint64_t p = 0;
    t->rc = g_dev->ops->mem_alloc(g_dev, 4096, &p);
    if (t->rc == KC_OK)
        g_dev->ops->mem_free(g_dev, p);
    return NULL;
}

static void test_gpu_device_works_from_a_thread_without_a_context(void **state)
{
    (void)state;
    void *mod = compile_and_load();
    thread_run_t t = {mod, -1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, vadd_on_a_thread, &t), 0);
    pthread_join(th, NULL);
    assert_int_equal(t.rc, KC_OK);
    g_dev->ops->module_unload(g_dev, mod);
}

/* Last: an illegal address ruins the context for the rest of the process. */
static void test_gpu_illegal_address_is_sticky(void **state)
{
    (void)state;
    kc__compile_in_t in = {.source = VADD_SRC, .entry = "poke", .arch = g_info.arch};
    kc__compile_out_t out;
    assert_int_equal(kc__nvrtc_compile(&in, &out), KC_OK);
    void *mod = load_module(out.cubin, out.cubin_len), *fn;
    assert_int_equal(g_dev->ops->get_function(g_dev, mod, "poke", &fn), KC_OK);
    uint64_t wild = 0x10;
    void *params[] = {&wild};
    const unsigned one[3] = {1, 1, 1};
    int rc = g_dev->ops->launch(g_dev, fn, one, one, 0, NULL, params);
    if (rc == KC_OK)
        rc = g_dev->ops->stream_sync(g_dev, NULL);
    printf("# wild write: %s\n", kc__device_errmsg(g_dev));
    assert_int_equal(rc, KC_ESTICKY);
    uint64_t p;
    assert_int_equal(g_dev->ops->mem_alloc(g_dev, 64, &p), KC_ESTICKY);
    kc__compile_out_free(&out);
}

int main(void)
{
    char err[512];
    int rc = kc__device_cuda_open(0, &g_dev, err, sizeof(err));
    if (rc == KC_ENODEVICE) {
        printf("SKIP: no CUDA device (%s)\n", err);
        return 77;
    }
    if (rc != KC_OK) {
        fprintf(stderr, "kc__device_cuda_open: %s: %s\n", kc_err_name(rc), err);
        return 1;
    }
    if (g_dev->ops->info(g_dev, &g_info) != KC_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpu_reports_its_device_class),
        cmocka_unit_test(test_gpu_runs_an_nvrtc_cubin),
        cmocka_unit_test(test_gpu_runs_ptx_through_the_jit_linker),
        cmocka_unit_test(test_gpu_runs_a_cubin_linked_by_nvjitlink),
        cmocka_unit_test(test_gpu_events_time_a_kernel),
        cmocka_unit_test(test_gpu_too_large_block_or_shared_memory_is_toobig),
        cmocka_unit_test(test_gpu_refuses_an_image_that_is_not_a_cubin),
        cmocka_unit_test(test_gpu_copies_device_to_device),
        cmocka_unit_test(test_gpu_device_works_from_a_thread_without_a_context),
        cmocka_unit_test(test_gpu_illegal_address_is_sticky),
    };
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    g_dev->ops->destroy(g_dev);
    return rc;
}
