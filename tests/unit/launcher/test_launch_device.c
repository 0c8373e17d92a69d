/* The device layer and its helpers: the CPU simulation device (ELF checks
 * on real NVRTC cubins, symbol lookup, launches, the cost model, memory),
 * the NVRTC compiler, the CUDA device without a driver, and the pool. */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "compiler.h"
#include "device.h"
#include "kcache/errors.h"
#include "kcache/sim.h"
#include "pool.h"

static const char VADD_SRC[] =
    "extern \"C\" __global__ void vadd(const float *a, const float *b, float *c, int n)\n"
    "{\n"
    "    int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "    if (i < n)\n"
    "        c[i] = a[i] + b[i];\n"
    "}\n";

/* One real cubin for every simulation test: compiling is the slow part. */
static kc__compile_out_t g_vadd;

static int compile_vadd(void **state)
{
    (void)state;
    kc__compile_in_t in = {
        .source = VADD_SRC, .entry = "vadd", .arch = "sm_90", .name = "vadd.cu"};
    int rc = kc__nvrtc_compile(&in, &g_vadd);
    if (rc != KC_OK)
        fprintf(stderr, "vadd failed to compile: %s\n", g_vadd.log ? g_vadd.log : "");
    return rc == KC_OK ? 0 : -1;
}

static int free_vadd(void **state)
{
    (void)state;
    kc__compile_out_free(&g_vadd);
    return 0;
}

/* ---- a simulation fixture ------------------------------------------------ */

typedef struct fixture {
    kc_sim_t *sim;
    kc__device_t *dev;
} fixture_t;

static fixture_t open_sim(const kc_sim_opts_t *opts)
{
    fixture_t f;
    assert_int_equal(kc_sim_create(opts, &f.sim), KC_OK);
    assert_int_equal(kc__device_sim_open(f.sim, &f.dev), KC_OK);
    return f;
}

static void close_sim(fixture_t *f)
{
    f->dev->ops->destroy(f->dev);
    kc_sim_destroy(f->sim);
}

typedef struct vadd_calls {
    int calls;
    kc_sim_launch_t last;
    int result; /* what the "kernel" reports */
} vadd_calls_t;

/* The CPU twin of VADD_SRC, with the same parameters. */
static int vadd_cpu(void *user, const kc_sim_launch_t *l)
{
    vadd_calls_t *calls = user;
    calls->calls++;
    calls->last = *l;
    if (calls->result)
        return calls->result;
    /* Device pointers are host addresses held in 64-bit arguments. */
    uint64_t pa, pb, pc;
    int n;
    memcpy(&pa, l->params[0], sizeof(pa));
    memcpy(&pb, l->params[1], sizeof(pb));
    memcpy(&pc, l->params[2], sizeof(pc));
    memcpy(&n, l->params[3], sizeof(n));
    const float *a = (const float *)(uintptr_t)pa;
    const float *b = (const float *)(uintptr_t)pb;
    float *c = (float *)(uintptr_t)pc;
    unsigned total = l->grid[0] * l->block[0];
    for (unsigned i = 0; i < total && (int)i < n; i++)
        c[i] = a[i] + b[i];
    return 0;
}

/* A cost model the tests can predict: 1 µs per block plus 0.5 µs per
 * 1024 bytes of shared memory. */
static uint64_t vadd_cost(void *user, const kc_sim_launch_t *l)
{
    (void)user;
    return 1000ull * l->grid[0] * l->grid[1] * l->grid[2] + 500ull * (l->shared / 1024);
}

static void *load_vadd(fixture_t *f, vadd_calls_t *calls)
{
    void *mod = NULL, *fn = NULL;
    assert_int_equal(kc_sim_register(f->sim, "vadd", vadd_cpu, vadd_cost, calls), KC_OK);
    assert_int_equal(
        f->dev->ops->module_load(f->dev, g_vadd.cubin, g_vadd.cubin_len, &mod), KC_OK);
    assert_int_equal(f->dev->ops->get_function(f->dev, mod, "vadd", &fn), KC_OK);
    assert_non_null(fn);
    return mod;
}

/* ---- simulation: loading ---------------------------------------------------- */

static void
test_sim_loads_a_real_cubin_and_finds_its_entry_in_the_symbol_table(void **state)
{
    (void)state;
    fixture_t f = open_sim(NULL);
    vadd_calls_t calls = {0};
    void *mod = load_vadd(&f, &calls);
    kc_sim_counters_t c;
    kc_sim_counters(f.sim, &c);
    assert_int_equal(c.modules_loaded, 1);
    assert_int_equal(c.modules_rejected, 0);
    f.dev->ops->module_unload(f.dev, mod);
    close_sim(&f);
}

static void expect_rejected(fixture_t *f, const void *image, size_t len,
                            uint64_t rejected_before)
{
    void *mod = (void *)1;
    assert_int_equal(f->dev->ops->module_load(f->dev, image, len, &mod), KC_ECORRUPT);
    assert_null(mod);
    assert_true(strlen(kc__device_errmsg(f->dev)) > 0);
    kc_sim_counters_t c;
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.modules_rejected, rejected_before + 1);
    assert_int_equal(c.modules_loaded, 0);
}

static void test_sim_refuses_a_flipped_elf_magic_and_counts_it(void **state)
{
    (void)state;
    fixture_t f = open_sim(NULL);
    uint8_t *bad = malloc(g_vadd.cubin_len);
    memcpy(bad, g_vadd.cubin, g_vadd.cubin_len);
    bad[1] ^= 0x20; /* 'E' -> 'e' */
    expect_rejected(&f, bad, g_vadd.cubin_len, 0);
    free(bad);
    close_sim(&f);
}

static void test_sim_refuses_an_elf_for_another_machine(void **state)
{
    (void)state;
    fixture_t f = open_sim(NULL);
    uint8_t *bad = malloc(g_vadd.cubin_len);
    memcpy(bad, g_vadd.cubin, g_vadd.cubin_len);
    assert_int_equal(bad[18] | bad[19] << 8, 190); /* the real one is EM_CUDA */
    bad[18] = 62;                                  /* EM_X86_64 */
    bad[19] = 0;
    expect_rejected(&f, bad, g_vadd.cubin_len, 0);
    assert_non_null(strstr(kc__device_errmsg(f.dev), "EM_CUDA"));
    free(bad);
    close_sim(&f);
}

static void test_sim_refuses_truncated_images(void **state)
{
    (void)state;
    fixture_t f = open_sim(NULL);
    const size_t lens[] = {0, 16, 63, 64, g_vadd.cubin_len / 2, g_vadd.cubin_len - 1};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        /* A copy of exactly that length, so reading past it is caught by
         * sanitizers as well as by the check. */
        void *cut = malloc(lens[i] ? lens[i] : 1);
        memcpy(cut, g_vadd.cubin, lens[i]);
        expect_rejected(&f, cut, lens[i], i);
        free(cut);
    }
    close_sim(&f);
}

static void test_sim_refuses_a_section_that_points_past_the_end(void **state)
{
    (void)state;
    fixture_t f = open_sim(NULL);
    uint8_t *bad = malloc(g_vadd.cubin_len);
    memcpy(bad, g_vadd.cubin, g_vadd.cubin_len);
    uint64_t shoff = 0;
    for (int i = 7; i >= 0; i--)
        shoff = shoff << 8 | bad[0x28 + i];
    /* Section 1's sh_size (offset 32 in its header) becomes huge. */
    uint8_t *sh1 = bad + shoff + 64;
    memset(sh1 + 32, 0xff, 8);
    expect_rejected(&f, bad, g_vadd.cubin_len, 0);
    free(bad);
    close_sim(&f);
}

static void
test_sim_entry_absent_from_the_cubin_or_unregistered_is_not_found(void **state)
{
    (void)state;
    fixture_t f = open_sim(NULL);
    vadd_calls_t calls = {0};
    void *mod = load_vadd(&f, &calls), *fn = (void *)1;

    /* Registered, but the cubin has no such symbol. */
    assert_int_equal(kc_sim_register(f.sim, "vsub", vadd_cpu, NULL, &calls), KC_OK);
    assert_int_equal(f.dev->ops->get_function(f.dev, mod, "vsub", &fn), KC_ENOTFOUND);
    assert_null(fn);
    assert_non_null(strstr(kc__device_errmsg(f.dev), "vsub"));
    /* A prefix of a real symbol is not that symbol. */
    assert_int_equal(f.dev->ops->get_function(f.dev, mod, "vad", &fn), KC_ENOTFOUND);
    f.dev->ops->module_unload(f.dev, mod);

    /* In the cubin, but no C function registered for it. */
    fixture_t g = open_sim(NULL);
    assert_int_equal(g.dev->ops->module_load(g.dev, g_vadd.cubin, g_vadd.cubin_len, &mod),
                     KC_OK);
    assert_int_equal(g.dev->ops->get_function(g.dev, mod, "vadd", &fn), KC_ENOTFOUND);
    assert_non_null(strstr(kc__device_errmsg(g.dev), "registered"));
    g.dev->ops->module_unload(g.dev, mod);
    close_sim(&g);
    close_sim(&f);
}

/* ---- simulation: launching -------------------------------------------------- */

static void
test_sim_launch_runs_the_registered_function_with_geometry_and_params(void **state)
{
    (void)state;
    fixture_t f = open_sim(NULL);
    vadd_calls_t calls = {0};
    void *mod = load_vadd(&f, &calls), *fn;
    assert_int_equal(f.dev->ops->get_function(f.dev, mod, "vadd", &fn), KC_OK);

    enum { N = 1000 };
    uint64_t a, b, c;
    assert_int_equal(f.dev->ops->mem_alloc(f.dev, N * sizeof(float), &a), KC_OK);
    assert_int_equal(f.dev->ops->mem_alloc(f.dev, N * sizeof(float), &b), KC_OK);
    assert_int_equal(f.dev->ops->mem_alloc(f.dev, N * sizeof(float), &c), KC_OK);
    float ha[N], hb[N], hc[N];
    for (int i = 0; i < N; i++) {
        ha[i] = (float)i;
        hb[i] = 2.0f * (float)i;
    }
    assert_int_equal(f.dev->ops->copy_htod(f.dev, a, ha, sizeof(ha), NULL), KC_OK);
    assert_int_equal(f.dev->ops->copy_htod(f.dev, b, hb, sizeof(hb), NULL), KC_OK);
    int n = N;
    void *params[] = {&a, &b, &c, &n};
    const unsigned grid[3] = {8, 1, 1}, block[3] = {128, 1, 1};
    assert_int_equal(f.dev->ops->launch(f.dev, fn, grid, block, 256, NULL, params),
                     KC_OK);

    assert_int_equal(calls.calls, 1);
    assert_int_equal(calls.last.grid[0], 8);
    assert_int_equal(calls.last.block[0], 128);
    assert_int_equal(calls.last.block[2], 1);
    assert_int_equal(calls.last.shared, 256);
    assert_ptr_equal(calls.last.params, params);
    assert_int_equal(f.dev->ops->copy_dtoh(f.dev, hc, c, sizeof(hc), NULL), KC_OK);
    for (int i = 0; i < N; i++)
        assert_true(hc[i] == 3.0f * (float)i);
    kc_sim_counters_t cnt;
    kc_sim_counters(f.sim, &cnt);
    assert_int_equal(cnt.launches, 1);

    f.dev->ops->mem_free(f.dev, a);
    f.dev->ops->mem_free(f.dev, b);
    f.dev->ops->mem_free(f.dev, c);
    f.dev->ops->module_unload(f.dev, mod);
    close_sim(&f);
}

static float timed(fixture_t *f, void *fn, unsigned grid_x, unsigned shared)
{
    void *start, *end;
    uint64_t p = 0;
    int n = 0;
    void *params[] = {&p, &p, &p, &n};
    const unsigned grid[3] = {grid_x, 1, 1}, block[3] = {64, 1, 1};
    assert_int_equal(f->dev->ops->event_create(f->dev, &start), KC_OK);
    assert_int_equal(f->dev->ops->event_create(f->dev, &end), KC_OK);
    assert_int_equal(f->dev->ops->event_record(f->dev, start, NULL), KC_OK);
    assert_int_equal(f->dev->ops->flush_l2(f->dev, NULL), KC_OK);
    assert_int_equal(f->dev->ops->launch(f->dev, fn, grid, block, shared, NULL, params),
                     KC_OK);
    assert_int_equal(f->dev->ops->event_record(f->dev, end, NULL), KC_OK);
    float ms = -1;
    assert_int_equal(f->dev->ops->event_elapsed_ms(f->dev, start, end, &ms), KC_OK);
    f->dev->ops->event_destroy(f->dev, start);
    f->dev->ops->event_destroy(f->dev, end);
    return ms;
}

static void test_sim_events_measure_exactly_the_cost_model(void **state)
{
    (void)state;
    fixture_t f = open_sim(NULL);
    vadd_calls_t calls = {0};
    void *mod = load_vadd(&f, &calls), *fn;
    assert_int_equal(f.dev->ops->get_function(f.dev, mod, "vadd", &fn), KC_OK);
    /* 1500 blocks: 1.5 ms; 250 blocks + 8 KiB shared: 0.254 ms. The flush
     * between the events costs nothing. */
    assert_true(timed(&f, fn, 1500, 0) == 1.5f);
    assert_float_equal(timed(&f, fn, 250, 8192), 0.254, 1e-7);
    /* Deterministic: the same launch always costs the same. */
    assert_true(timed(&f, fn, 777, 0) == timed(&f, fn, 777, 0));
    f.dev->ops->module_unload(f.dev, mod);
    close_sim(&f);
}

static void test_sim_block_or_shared_memory_too_large_is_toobig(void **state)
{
    (void)state;
    kc_sim_opts_t opts = {
        .size = sizeof(kc_sim_opts_t), .max_threads = 512, .max_shared = 100 * 1024};
    fixture_t f = open_sim(&opts);
    vadd_calls_t calls = {0};
    void *mod = load_vadd(&f, &calls), *fn;
    assert_int_equal(f.dev->ops->get_function(f.dev, mod, "vadd", &fn), KC_OK);
    uint64_t p = 0;
    int n = 0;
    void *params[] = {&p, &p, &p, &n};
    const unsigned grid[3] = {1, 1, 1};
    const unsigned big[3] = {32, 17, 1}, ok[3] = {32, 16, 1};

    assert_int_equal(f.dev->ops->launch(f.dev, fn, grid, big, 0, NULL, params),
                     KC_ETOOBIG);
    assert_int_equal(f.dev->ops->launch(f.dev, fn, grid, ok, 0, NULL, params), KC_OK);
    /* As on a GPU, above 48 KiB needs the opt-in, and the opt-in is capped. */
    assert_int_equal(f.dev->ops->launch(f.dev, fn, grid, ok, 64 * 1024, NULL, params),
                     KC_ETOOBIG);
    assert_int_equal(f.dev->ops->set_dyn_smem(f.dev, fn, 101 * 1024), KC_ETOOBIG);
    assert_int_equal(f.dev->ops->set_dyn_smem(f.dev, fn, 64 * 1024), KC_OK);
    assert_int_equal(f.dev->ops->launch(f.dev, fn, grid, ok, 64 * 1024, NULL, params),
                     KC_OK);
    assert_int_equal(f.dev->ops->launch(f.dev, fn, grid, ok, 65 * 1024, NULL, params),
                     KC_ETOOBIG);
    assert_int_equal(calls.calls, 2); /* refused launches never ran */
    f.dev->ops->module_unload(f.dev, mod);
    close_sim(&f);
}

static void test_sim_failed_launch_keeps_the_context_and_sticky_one_loses_it(void **state)
{
    (void)state;
    fixture_t f = open_sim(NULL);
    vadd_calls_t calls = {0};
    void *mod = load_vadd(&f, &calls), *fn;
    assert_int_equal(f.dev->ops->get_function(f.dev, mod, "vadd", &fn), KC_OK);
    uint64_t p = 0;
    int n = 0;
    void *params[] = {&p, &p, &p, &n};
    const unsigned one[3] = {1, 1, 1};

    calls.result = 1;
    assert_int_equal(f.dev->ops->launch(f.dev, fn, one, one, 0, NULL, params),
                     KC_ELAUNCH);
    calls.result = 0;
    assert_int_equal(f.dev->ops->launch(f.dev, fn, one, one, 0, NULL, params), KC_OK);
    calls.result = KC_ESTICKY;
    assert_int_equal(f.dev->ops->launch(f.dev, fn, one, one, 0, NULL, params),
                     KC_ESTICKY);
    calls.result = 0;
    assert_int_equal(f.dev->ops->launch(f.dev, fn, one, one, 0, NULL, params),
                     KC_ESTICKY);
    assert_int_equal(f.dev->ops->stream_sync(f.dev, NULL), KC_ESTICKY);
    assert_int_equal(calls.calls, 3);
    f.dev->ops->module_unload(f.dev, mod);
    close_sim(&f);
}

static void test_sim_memory_limit_is_enforced_and_accounted(void **state)
{
    (void)state;
    kc_sim_opts_t opts = {.size = sizeof(kc_sim_opts_t), .mem_limit = 1 << 20};
    fixture_t f = open_sim(&opts);
    uint64_t a, b, c;
    size_t free_bytes;
    assert_int_equal(f.dev->ops->mem_alloc(f.dev, 600 << 10, &a), KC_OK);
    assert_int_equal(a % 256, 0);
    assert_int_equal(f.dev->ops->mem_free_bytes(f.dev, &free_bytes), KC_OK);
    assert_int_equal(free_bytes, (1 << 20) - (600 << 10));
    assert_int_equal(f.dev->ops->mem_alloc(f.dev, 500 << 10, &b), KC_ENOMEM);
    assert_int_equal(b, 0);
    assert_int_equal(f.dev->ops->mem_alloc(f.dev, 424 << 10, &b), KC_OK);
    assert_int_equal(f.dev->ops->mem_alloc(f.dev, 1, &c), KC_ENOMEM);

    kc_sim_counters_t cnt;
    kc_sim_counters(f.sim, &cnt);
    assert_int_equal(cnt.bytes_allocated, 1 << 20);
    f.dev->ops->mem_free(f.dev, a);
    kc_sim_counters(f.sim, &cnt);
    assert_int_equal(cnt.bytes_allocated, 424 << 10);
    assert_int_equal(cnt.peak_bytes, 1 << 20);
    assert_int_equal(f.dev->ops->mem_alloc(f.dev, 500 << 10, &c), KC_OK);
    /* Copies between "device" buffers are plain copies. */
    memset((void *)(uintptr_t)b, 0x5a, 100);
    assert_int_equal(f.dev->ops->copy_dtod(f.dev, c, b, 100, NULL), KC_OK);
    assert_memory_equal((void *)(uintptr_t)c, (void *)(uintptr_t)b, 100);
    f.dev->ops->mem_free(f.dev, b);
    f.dev->ops->mem_free(f.dev, c);
    kc_sim_counters(f.sim, &cnt);
    assert_int_equal(cnt.bytes_allocated, 0);
    close_sim(&f);
}

static void test_sim_reports_its_device_class(void **state)
{
    (void)state;
    kc_sim_opts_t opts = {.size = sizeof(kc_sim_opts_t),
                          .arch = "sm_80",
                          .sm_count = 108,
                          .name = "sim A100"};
    fixture_t f = open_sim(&opts);
    kc__devinfo_t info;
    assert_int_equal(f.dev->ops->info(f.dev, &info), KC_OK);
    assert_string_equal(info.arch, "sm_80");
    assert_string_equal(info.name, "sim A100");
    assert_int_equal(info.cc_major, 8);
    assert_int_equal(info.cc_minor, 0);
    assert_int_equal(info.sm_count, 108);
    assert_null(f.dev->ops->ptx_to_cubin);
    close_sim(&f);

    kc_sim_t *sim = (kc_sim_t *)1;
    kc_sim_opts_t bad = {.size = sizeof(kc_sim_opts_t), .arch = "volta"};
    assert_int_equal(kc_sim_create(&bad, &sim), KC_EINVAL);
    assert_null(sim);
}

/* ---- NVRTC -------------------------------------------------------------- */

static void test_nvrtc_compiles_cuda_c_to_a_cubin(void **state)
{
    (void)state;
    static const uint8_t elf[4] = {0x7f, 'E', 'L', 'F'};
    assert_true(g_vadd.cubin_len > 64);
    assert_memory_equal(g_vadd.cubin, elf, 4);
    assert_true(g_vadd.compile_us > 0);
    assert_string_equal(g_vadd.lowered_entry, "vadd");
    int major = 0, minor = -1;
    assert_int_equal(sscanf(kc__nvrtc_toolchain_id(), "nvrtc-%d.%d", &major, &minor), 2);
    assert_true(major >= 11 && minor >= 0);
    char err[256];
    assert_int_equal(kc__nvrtc_load(err, sizeof(err)), KC_OK);
}

static const char BLOCK_SRC[] =
    "#if BLOCK != 128\n"
    "#error BLOCK must be 128 here\n"
    "#endif\n"
    "extern \"C\" __global__ void k(int *p) { p[0] = BLOCK; }\n";

static void test_nvrtc_passes_config_values_as_defines(void **state)
{
    (void)state;
    kc_param_t p = {.name = "BLOCK", .value = 128};
    kc__compile_in_t in = {
        .source = BLOCK_SRC, .entry = "k", .arch = "sm_90", .params = &p, .n_params = 1};
    kc__compile_out_t out;
    assert_int_equal(kc__nvrtc_compile(&in, &out), KC_OK);
    assert_non_null(out.cubin);
    kc__compile_out_free(&out);

    p.value = 64;
    assert_int_equal(kc__nvrtc_compile(&in, &out), KC_ECOMPILE);
    assert_null(out.cubin);
    assert_non_null(out.log);
    assert_non_null(strstr(out.log, "BLOCK must be 128 here"));
    kc__compile_out_free(&out);
}

static void test_nvrtc_syntax_error_is_a_compile_error_with_the_log(void **state)
{
    (void)state;
    const char *opts[] = {"-std=c++17"};
    kc__compile_in_t in = {.source = "__global__ void k( { }",
                           .entry = "k",
                           .arch = "sm_90",
                           .options = opts,
                           .n_options = 1};
    kc__compile_out_t out;
    assert_int_equal(kc__nvrtc_compile(&in, &out), KC_ECOMPILE);
    assert_non_null(out.log);
    assert_non_null(strstr(out.log, "error"));
    kc__compile_out_free(&out);
}

static const char CPP_SRC[] =
    "#include \"scale.h\"\n"
    "namespace ops {\n"
    "template <int F> __global__ void scale(float *p) { p[threadIdx.x] *= F * ONE; }\n"
    "__global__ void twice(float *p) { p[threadIdx.x] *= 2; }\n"
    "}\n";

static void test_nvrtc_lowers_template_and_namespace_entries(void **state)
{
    (void)state;
    kc_header_t hdr = {.name = "scale.h", .content = "#define ONE 1\n"};
    const char *entries[] = {"ops::scale<4>", "ops::twice"};
    for (int i = 0; i < 2; i++) {
        kc__compile_in_t in = {.source = CPP_SRC,
                               .entry = entries[i],
                               .arch = "sm_90",
                               .headers = &hdr,
                               .n_headers = 1};
        kc__compile_out_t out;
        int rc = kc__nvrtc_compile(&in, &out);
        if (rc != KC_OK)
            fprintf(stderr, "%s\n", out.log ? out.log : "");
        assert_int_equal(rc, KC_OK);
        assert_non_null(out.lowered_entry);
        assert_int_equal(strncmp(out.lowered_entry, "_Z", 2), 0);
        assert_non_null(strstr(out.lowered_entry, i == 0 ? "scale" : "twice"));

        /* The lowered name is the symbol in the cubin. */
        fixture_t f = open_sim(NULL);
        vadd_calls_t calls = {0};
        void *mod, *fn;
        assert_int_equal(
            kc_sim_register(f.sim, out.lowered_entry, vadd_cpu, NULL, &calls), KC_OK);
        assert_int_equal(f.dev->ops->module_load(f.dev, out.cubin, out.cubin_len, &mod),
                         KC_OK);
        assert_int_equal(f.dev->ops->get_function(f.dev, mod, out.lowered_entry, &fn),
                         KC_OK);
        f.dev->ops->module_unload(f.dev, mod);
        close_sim(&f);
        kc__compile_out_free(&out);
    }
}

static void test_nvrtc_emits_ptx_for_the_virtual_arch(void **state)
{
    (void)state;
    kc__compile_in_t in = {.source = VADD_SRC, .entry = "vadd", .arch = "sm_90"};
    kc__compile_out_t out;
    assert_int_equal(kc__nvrtc_compile_ptx(&in, &out), KC_OK);
    assert_int_equal(strlen(out.cubin), out.cubin_len);
    assert_non_null(strstr(out.cubin, ".target sm_90"));
    assert_non_null(strstr(out.cubin, ".entry vadd"));
    kc__compile_out_free(&out);
}

/* nvJitLink turns the PTX NVRTC emits into a real cubin with no driver and
 * no GPU, for any real arch: an ELF for the GPU (EM_CUDA) whose symbol
 * table has the entry (the sim loads it and finds the function). Bad PTX
 * is a compile error with the linker's log; a virtual arch is refused. */
static void test_nvjitlink_turns_ptx_into_a_cubin_without_a_driver(void **state)
{
    (void)state;
    char log[2048];
    assert_int_equal(kc__nvjitlink_load(log, sizeof(log)), KC_OK);
    assert_int_equal(strncmp(kc__nvjitlink_toolchain_id(), "nvjitlink-", 10), 0);
    const char *archs[] = {"sm_80", "sm_90"};
    for (int a = 0; a < 2; a++) {
        kc__compile_in_t in = {.source = VADD_SRC, .entry = "vadd", .arch = archs[a]};
        kc__compile_out_t ptx;
        void *cubin = NULL, *mod, *fn;
        size_t len = 0;
        assert_int_equal(kc__nvrtc_compile_ptx(&in, &ptx), KC_OK);
        assert_int_equal(kc__nvjitlink_ptx_to_cubin(ptx.cubin, ptx.cubin_len, archs[a],
                                                    &cubin, &len, log, sizeof(log)),
                         KC_OK);
        assert_true(len > 64);
        assert_memory_equal(cubin, "\177ELF", 4);
        assert_int_equal(((const uint8_t *)cubin)[18], 190); /* e_machine EM_CUDA */

        kc_sim_opts_t so = {.size = sizeof(kc_sim_opts_t), .arch = archs[a]};
        fixture_t f = open_sim(&so);
        vadd_calls_t calls = {0};
        assert_int_equal(kc_sim_register(f.sim, "vadd", vadd_cpu, NULL, &calls), KC_OK);
        assert_int_equal(f.dev->ops->module_load(f.dev, cubin, len, &mod), KC_OK);
        assert_int_equal(f.dev->ops->get_function(f.dev, mod, "vadd", &fn), KC_OK);
        f.dev->ops->module_unload(f.dev, mod);
        close_sim(&f);
        free(cubin);
        kc__compile_out_free(&ptx);
    }

    static const char bad[] = ".version 8.0\n.target sm_90\n.address_size 64\nnot ptx\n";
    void *cubin = (void *)1;
    size_t len = 1;
    assert_int_equal(kc__nvjitlink_ptx_to_cubin(bad, sizeof(bad) - 1, "sm_90", &cubin,
                                                &len, log, sizeof(log)),
                     KC_ECOMPILE);
    assert_null(cubin);
    assert_int_equal(len, 0);
    assert_true(strlen(log) > 0);
    assert_int_equal(kc__nvjitlink_ptx_to_cubin(bad, sizeof(bad) - 1, "compute_90",
                                                &cubin, &len, log, sizeof(log)),
                     KC_EINVAL);
}

/* ---- the CUDA device without a driver ----------------------------------- */

static void test_cuda_device_without_a_driver_is_enodevice(void **state)
{
    (void)state;
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib) {
        dlclose(lib);
        skip(); /* a driver is installed: test_launch_gpu covers this machine */
    }
    kc__device_t *dev = (kc__device_t *)1;
    char err[256] = "";
    assert_int_equal(kc__device_cuda_open(0, &dev, err, sizeof(err)), KC_ENODEVICE);
    assert_null(dev);
    assert_non_null(strstr(err, "libcuda"));
    /* Asking again gives the same answer, not a crash or a retry. */
    err[0] = '\0';
    assert_int_equal(kc__device_cuda_open(1, &dev, err, sizeof(err)), KC_ENODEVICE);
    assert_non_null(strstr(err, "libcuda"));
}

/* ---- the pool ----------------------------------------------------------- */

enum { N_TASKS = 1000 };
static atomic_int g_runs[N_TASKS];

static void count_run(void *arg)
{
    atomic_fetch_add(&g_runs[(intptr_t)arg], 1);
}

static void test_pool_runs_each_of_1000_tasks_exactly_once_and_run_all_waits(void **state)
{
    (void)state;
    kc__pool_t *pool;
    assert_int_equal(kc__pool_create(4, &pool), KC_OK);
    assert_int_equal(kc__pool_size(pool), 4);
    void **args = malloc(N_TASKS * sizeof(*args));
    for (intptr_t i = 0; i < N_TASKS; i++) {
        atomic_store(&g_runs[i], 0);
        args[i] = (void *)i;
    }
    assert_int_equal(kc__pool_run_all(pool, count_run, args, N_TASKS), KC_OK);
    /* No sleep, no join: run_all returned, so every task has finished. */
    for (int i = 0; i < N_TASKS; i++)
        assert_int_equal(atomic_load(&g_runs[i]), 1);

    /* Tasks submitted without waiting still run exactly once by destroy. */
    for (intptr_t i = 0; i < N_TASKS; i++)
        assert_int_equal(kc__pool_submit(pool, count_run, args[i]), KC_OK);
    kc__pool_destroy(pool);
    for (int i = 0; i < N_TASKS; i++)
        assert_int_equal(atomic_load(&g_runs[i]), 2);

    /* Without a pool, run_all runs inline. */
    assert_int_equal(kc__pool_run_all(NULL, count_run, args, N_TASKS), KC_OK);
    assert_int_equal(atomic_load(&g_runs[N_TASKS - 1]), 3);
    free(args);
}

typedef struct nested {
    kc__pool_t *pool;
    void **args;
} nested_t;

static void run_inner(void *arg)
{
    nested_t *n = arg;
    kc__pool_run_all(n->pool, count_run, n->args, 10);
}

static void test_pool_run_all_inside_a_task_does_not_deadlock(void **state)
{
    (void)state;
    kc__pool_t *pool;
    assert_int_equal(kc__pool_create(2, &pool), KC_OK);
    void *inner_args[10];
    for (intptr_t i = 0; i < 10; i++) {
        atomic_store(&g_runs[i], 0);
        inner_args[i] = (void *)i;
    }
    nested_t n = {pool, inner_args};
    /* More outer tasks than workers: every worker blocks in a nested run_all. */
    void *outer[4] = {&n, &n, &n, &n};
    assert_int_equal(kc__pool_run_all(pool, run_inner, outer, 4), KC_OK);
    for (int i = 0; i < 10; i++)
        assert_int_equal(atomic_load(&g_runs[i]), 4);
    kc__pool_destroy(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_sim_loads_a_real_cubin_and_finds_its_entry_in_the_symbol_table),
        cmocka_unit_test(test_sim_refuses_a_flipped_elf_magic_and_counts_it),
        cmocka_unit_test(test_sim_refuses_an_elf_for_another_machine),
        cmocka_unit_test(test_sim_refuses_truncated_images),
        cmocka_unit_test(test_sim_refuses_a_section_that_points_past_the_end),
        cmocka_unit_test(
            test_sim_entry_absent_from_the_cubin_or_unregistered_is_not_found),
        cmocka_unit_test(
            test_sim_launch_runs_the_registered_function_with_geometry_and_params),
        cmocka_unit_test(test_sim_events_measure_exactly_the_cost_model),
        cmocka_unit_test(test_sim_block_or_shared_memory_too_large_is_toobig),
        cmocka_unit_test(
            test_sim_failed_launch_keeps_the_context_and_sticky_one_loses_it),
        cmocka_unit_test(test_sim_memory_limit_is_enforced_and_accounted),
        cmocka_unit_test(test_sim_reports_its_device_class),
        cmocka_unit_test(test_nvrtc_compiles_cuda_c_to_a_cubin),
        cmocka_unit_test(test_nvrtc_passes_config_values_as_defines),
        cmocka_unit_test(test_nvrtc_syntax_error_is_a_compile_error_with_the_log),
        cmocka_unit_test(test_nvrtc_lowers_template_and_namespace_entries),
        cmocka_unit_test(test_nvrtc_emits_ptx_for_the_virtual_arch),
        cmocka_unit_test(test_nvjitlink_turns_ptx_into_a_cubin_without_a_driver),
        cmocka_unit_test(test_cuda_device_without_a_driver_is_enodevice),
        cmocka_unit_test(
            test_pool_runs_each_of_1000_tasks_exactly_once_and_run_all_waits),
        cmocka_unit_test(test_pool_run_all_inside_a_task_does_not_deadlock),
    };
    return cmocka_run_group_tests(tests, compile_vadd, free_vadd);
}
