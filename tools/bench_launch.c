/* kcache_bench_launch: the launcher's costs against the raw driver floor,
 * measured side by side in one run on a GPU.
 *
 *   1. cold miss: N candidates compiled in parallel by kc_kernel_get vs the
 *      same N NVRTC compiles one after another, each side in a fresh
 *      process whose NVRTC was started (loaded, one trivial compile) before
 *      the clock, alternating; and the whole first launch (compile + tune
 *      + publish);
 *   2. warm hit in a fresh process: a process's first kc_kernel_launch of a
 *      kernel whose tuning is stored vs raw cuModuleLoadData +
 *      cuModuleGetFunction + cuLaunchKernel of the same cubin, in child
 *      processes, alternating which goes first. Each side has first run
 *      another kernel of the store the same way (kcache: a store hit of
 *      scale_other; driver: scale_other's cubin by hand), so both time the
 *      first load of this kernel. Five set-ups: no_prefetch (the launch looks
 *      up, decompresses and loads), the default prefetch (registration
 *      loaded the winner), and the process's very first kcache hit (no
 *      kernel hit before it) without prefetch, with and without the
 *      launcher's warm-up, and with the default options (prefetch and
 *      warm-up: what a process that registers, then launches, gets);
 *   3. steady state: host time per kc_kernel_launch vs per raw
 *      cuLaunchKernel of the same function.
 *
 * Usage: kcache_bench_launch [--children N] [--launches N] [--skip-cold] [--json] [-v]
 * (--skip-cold: leave out part 1, for quick reruns of parts 2 and 3)
 * It needs a GPU; without one it says so and exits 1. */
#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cuda.h>

#include "bench_time.h"
#include "compiler.h"
#include "fault_log.h"
#include "kcache/launch.h"
#include "kcache/store.h"

static const char *kSource =
    "extern \"C\" __global__ void scale(float *x, float a, int n)\n"
    "{\n"
    "    int i = blockIdx.x * BLOCK + threadIdx.x;\n"
    "    if (i < n) x[i] = x[i] * a + 1.0f;\n"
    "}\n";
/* A second kernel in the same store: the warm children hit it first, so
 * that the hit they time is a process's first hit of *that* kernel, not
 * the first run of kcache's code (see part 2). */
static const char *kOtherSource =
    "extern \"C\" __global__ void scale_other(float *x, float a, int n)\n"
    "{\n"
    "    int i = blockIdx.x * BLOCK + threadIdx.x;\n"
    "    if (i < n) x[i] = x[i] * a + 2.0f;\n"
    "}\n";
static const int64_t kBlocks[] = {32, 64, 128, 256, 512, 1024};

/* For the cold-miss comparison: a kernel whose compile is not dominated by
 * NVRTC's fixed cost (unrolled polynomial evaluation). */
static const char *kHeavySource =
    "#ifndef KC_BENCH_NONCE\n"
    "#define KC_BENCH_NONCE 0\n"
    "#endif\n"
    "template <int K, int J> __device__ __forceinline__ float horner(float x)\n"
    "{\n"
    "    float r = 0.0f;\n"
    "#pragma unroll\n"
    "    for (int i = 0; i < K; i++)\n"
    "        r = r * x + (float)((i * (J + 3) + KC_BENCH_NONCE) % 11) * 0.25f;\n"
    "    return r;\n"
    "}\n"
    "extern \"C\" __global__ void poly(float *x, int n)\n"
    "{\n"
    "    int i = blockIdx.x * BLOCK + threadIdx.x;\n"
    "    if (i >= n) return;\n"
    "    float v = x[i];\n"
    "    x[i] = horner<512, 0>(v) + horner<512, 1>(v * 0.5f) + horner<512, 2>(v * 0.25f) "
    "+\n"
    "           horner<512, 3>(v * 0.125f) + horner<512, 4>(v + 1.0f) +\n"
    "           horner<512, 5>(v - 1.0f) + horner<512, 6>(v * 2.0f) + horner<512, "
    "7>(-v);\n"
    "}\n";
#define N_BLOCKS (sizeof(kBlocks) / sizeof(kBlocks[0]))
/* The steady-state run tunes this size in the shared store; the warm
 * children launch the same size, so that their first launch is a hit. */
static const int kWarmN = 4096;

static struct {
    CUresult (*init)(unsigned);
    CUresult (*device_get)(CUdevice *, int);
    CUresult (*primary_retain)(CUcontext *, CUdevice);
    CUresult (*ctx_set)(CUcontext);
    CUresult (*module_load)(CUmodule *, const void *);
    CUresult (*module_unload)(CUmodule);
    CUresult (*get_function)(CUfunction *, CUmodule, const char *);
    CUresult (*launch)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                       unsigned, unsigned, CUstream, void **, void **);
    CUresult (*sync)(void);
    CUresult (*mem_alloc)(CUdeviceptr *, size_t);
    CUresult (*mem_free)(CUdeviceptr);
} cu;

#define CU_CHECK(call)                                                                   \
    do {                                                                                 \
        CUresult r_ = (call);                                                            \
        if (r_ != CUDA_SUCCESS) {                                                        \
            fprintf(stderr, "bench: %s failed: %d\n", #call, (int)r_);                   \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

static int load_driver(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW);
    if (!h)
        return -1;
#define SYM(field, name)                                                                 \
    if (!(*(void **)&cu.field = dlsym(h, name)))                                         \
        return -1;
    SYM(init, "cuInit");
    SYM(device_get, "cuDeviceGet");
    SYM(primary_retain, "cuDevicePrimaryCtxRetain");
    SYM(ctx_set, "cuCtxSetCurrent");
    SYM(module_load, "cuModuleLoadData");
    SYM(module_unload, "cuModuleUnload");
    SYM(get_function, "cuModuleGetFunction");
    SYM(launch, "cuLaunchKernel");
    SYM(sync, "cuCtxSynchronize");
    SYM(mem_alloc, "cuMemAlloc_v2");
    SYM(mem_free, "cuMemFree_v2");
#undef SYM
    CUdevice dev;
    CUcontext ctx;
    if (cu.init(0) != CUDA_SUCCESS || cu.device_get(&dev, 0) != CUDA_SUCCESS ||
        cu.primary_retain(&ctx, dev) != CUDA_SUCCESS || cu.ctx_set(ctx) != CUDA_SUCCESS)
        return -1;
    return 0;
}

/* The scale kernel (other = 0) or its twin scale_other (other = 1). */
static kc_kernel_spec_t scale_spec_of(size_t n_blocks, int other)
{
    static const kc_param_spec_t params[] = {{"BLOCK", kBlocks, N_BLOCKS}};
    static kc_param_spec_t p;
    static const kc_arg_spec_t args[] = {
        {"x", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_INOUT, 0},
        {"a", KC_ARG_SCALAR, KC_DTYPE_F32, 0, 0},
        {"n", KC_ARG_SCALAR, KC_DTYPE_I32, 0, 0},
    };
    p = params[0];
    p.n_values = n_blocks;
    kc_kernel_spec_t s = {0};
    s.name = other ? "bench_scale_other" : "bench_scale";
    s.source_kind = KC_SOURCE_CUDA;
    s.source = other ? kOtherSource : kSource;
    s.entry = other ? "scale_other" : "scale";
    s.params = &p;
    s.n_params = 1;
    s.args = args;
    s.n_args = 3;
    s.grid[0] = "cdiv(n, BLOCK)";
    s.block[0] = "BLOCK";
    return s;
}

static kc_kernel_spec_t scale_spec(size_t n_blocks)
{
    return scale_spec_of(n_blocks, 0);
}

static kc_launcher_t *make_launcher(const char *store_dir, int no_prefetch, int no_warmup)
{
    kc_launcher_opts_t o = KC_LAUNCHER_OPTS_INIT;
    o.device = KC_DEVICE_CUDA;
    o.store_dir = store_dir;
    o.no_prefetch = no_prefetch;
    o.no_warmup = no_warmup;
    kc_launcher_t *l = NULL;
    int rc = kc_launcher_create(&o, &l);
    if (rc != KC_OK) {
        fprintf(stderr, "bench: launcher: %s: %s\n", kc_strerror(rc),
                kc_launcher_create_errmsg());
        exit(1);
    }
    return l;
}

typedef struct {
    CUdeviceptr x;
    float a;
    int n;
    int64_t dims[1];
    kc_arg_t args[3];
} scale_args_t;

static void scale_args_init(scale_args_t *s, int n)
{
    memset(s, 0, sizeof(*s));
    s->n = n;
    s->a = 1.0001f;
    CU_CHECK(cu.mem_alloc(&s->x, (size_t)n * sizeof(float)));
    s->dims[0] = n;
    s->args[0].ptr = s->x;
    s->args[0].rank = 1;
    s->args[0].dims = s->dims;
    s->args[1].value.f = s->a;
    s->args[2].value.i = n;
}

/* ---- 1. cold miss ------------------------------------------------------ */

/* NVRTC keeps its own on-disk cache of compiled programs (seen with CUDA 13:
 * ~/.nv/ComputeCache), and a -D value the code does not use still hits it.
 * Every compile of a cold-miss child therefore gets a number no other
 * compile has used, and the kernel's code depends on it, so that both sides
 * compile for real. */
static const char *g_nonce[1];
static char g_nonce_opt[64];

static void set_nonce(const char *nonce)
{
    snprintf(g_nonce_opt, sizeof(g_nonce_opt), "-DKC_BENCH_NONCE=%s", nonce);
    g_nonce[0] = g_nonce_opt;
}

static kc_kernel_spec_t heavy_spec(void)
{
    static const kc_arg_spec_t args[] = {
        {"x", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_INOUT, 0},
        {"n", KC_ARG_SCALAR, KC_DTYPE_I32, 0, 0},
    };
    static const kc_param_spec_t p = {"BLOCK", kBlocks, N_BLOCKS};
    kc_kernel_spec_t s = {0};
    s.name = "bench_poly";
    s.source_kind = KC_SOURCE_CUDA;
    s.options = g_nonce;
    s.n_options = 1;
    s.source = kHeavySource;
    s.entry = "poly";
    s.params = &p;
    s.n_params = 1;
    s.args = args;
    s.n_args = 2;
    s.grid[0] = "cdiv(n, BLOCK)";
    s.block[0] = "BLOCK";
    return s;
}

/* NVRTC's one-time start in a process (loading the library and its
 * builtins) is the same for both sides: pay it before the clock starts so
 * that the comparison is of the compiles themselves. */
static int warm_nvrtc(const char *arch)
{
    static const char trivial[] =
        "extern \"C\" __global__ void k(int *x) { *x = 1 + KC_BENCH_NONCE; }";
    char err[256];
    if (kc__nvrtc_load(err, sizeof(err)) != KC_OK) {
        fprintf(stderr, "bench: %s\n", err);
        return -1;
    }
    kc__compile_in_t in = {0};
    in.source = trivial;
    in.source_len = strlen(trivial);
    in.name = "warm";
    in.entry = "k";
    in.options = g_nonce;
    in.n_options = 1;
    in.arch = arch;
    kc__compile_out_t out = {0};
    int rc = kc__nvrtc_compile(&in, &out);
    kc__compile_out_free(&out);
    return rc == KC_OK ? 0 : -1;
}

/* A fresh process: the N candidates compiled one after another. */
static int child_cold_seq(const char *arch)
{
    if (warm_nvrtc(arch) != 0)
        return 1;
    double t0 = bench_now_us();
    for (size_t i = 0; i < N_BLOCKS; i++) {
        kc_param_t p = {"BLOCK", kBlocks[i]};
        kc__compile_in_t in = {0};
        in.source = kHeavySource;
        in.source_len = strlen(kHeavySource);
        in.name = "bench_poly";
        in.entry = "poly";
        in.options = g_nonce;
        in.n_options = 1;
        in.params = &p;
        in.n_params = 1;
        in.arch = arch;
        kc__compile_out_t out = {0};
        if (kc__nvrtc_compile(&in, &out) != KC_OK) {
            fprintf(stderr, "bench: sequential compile failed: %s\n",
                    out.log ? out.log : "");
            return 1;
        }
        kc__compile_out_free(&out);
    }
    printf("%f\n", (bench_now_us() - t0) / 1e3);
    return 0;
}

/* NVRTC also starts up once in each thread that first compiles. A long-lived
 * process (a server registering kernels as it goes) pays that once; to
 * measure that case, register a throwaway kernel with one trivial config per
 * pool thread first. */
static int warm_pool_threads(kc_launcher_t *l)
{
    static int64_t values[16];
    static const kc_arg_spec_t args[] = {
        {"x", KC_ARG_POINTER, KC_DTYPE_I32, KC_ACCESS_OUT, 0}};
    for (int i = 0; i < 16; i++)
        values[i] = i + 1;
    kc_param_spec_t p = {"X", values, 16};
    kc_kernel_spec_t s = {0};
    s.name = "bench_warm_pool";
    s.source_kind = KC_SOURCE_CUDA;
    s.options = g_nonce;
    s.n_options = 1;
    s.source = "extern \"C\" __global__ void warm(int *x) { *x = X + KC_BENCH_NONCE; }";
    s.entry = "warm";
    s.params = &p;
    s.n_params = 1;
    s.args = args;
    s.n_args = 1;
    s.grid[0] = "1";
    s.block[0] = "1";
    kc_kernel_t *k = NULL;
    return kc_kernel_get(l, &s, &k) == KC_OK && kc_kernel_wait_compiled(k) == KC_OK ? 0
                                                                                    : -1;
}

/* A fresh process: kc_kernel_get compiles the N candidates on its pool. */
static int child_cold_par(const char *store_dir, int warm_pool)
{
    if (load_driver() != 0)
        return 1;
    kc_launcher_t *l = make_launcher(store_dir, 1, 0);
    if (warm_nvrtc(kc_launcher_arch(l)) != 0)
        return 1;
    if (warm_pool && warm_pool_threads(l) != 0)
        return 1;
    kc_kernel_spec_t spec = heavy_spec();
    kc_kernel_t *k = NULL;
    double t0 = bench_now_us();
    if (kc_kernel_get(l, &spec, &k) != KC_OK || kc_kernel_wait_compiled(k) != KC_OK) {
        fprintf(stderr, "bench: kc_kernel_get: %s\n", kc_launcher_errmsg(l));
        return 1;
    }
    double ms = (bench_now_us() - t0) / 1e3;
    kc_kernel_stats_t st;
    kc_kernel_stats(k, &st);
    printf("%f %" PRIu64 "\n", ms, st.compiles);
    kc_launcher_destroy(l);
    return 0;
}

/* The whole cold first launch on a new store: compile, tune on the real
 * input, publish, launch. */
static double bench_first_launch(const char *store_dir)
{
    kc_launcher_t *l = make_launcher(store_dir, 0, 0);
    kc_kernel_spec_t spec = scale_spec(N_BLOCKS);
    kc_kernel_t *k = NULL;
    scale_args_t a;
    scale_args_init(&a, 1 << 20);
    double t0 = bench_now_us();
    if (kc_kernel_get(l, &spec, &k) != KC_OK ||
        kc_kernel_launch(k, NULL, a.args, 3) != KC_OK) {
        fprintf(stderr, "bench: cold launch: %s\n", kc_launcher_errmsg(l));
        exit(1);
    }
    CU_CHECK(cu.sync());
    double ms = (bench_now_us() - t0) / 1e3;
    cu.mem_free(a.x);
    kc_launcher_destroy(l);
    return ms;
}

/* ---- 2. warm hit in a fresh process ----------------------------------- */

/* Finds the winner's cubin in the store: the build whose BLOCK matches. */
typedef struct {
    kc_store_t *store;
    const char *want_entry;
    int64_t block;
    kc_key_t blob;
    char entry[128];
    int found;
} find_ctx_t;

static int find_build(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                      const void *data, size_t len)
{
    (void)kind;
    (void)key;
    find_ctx_t *c = user;
    kc_record_t *rec = NULL;
    kc_build_desc_t *d = NULL;
    if (kc_record_decode(data, len, &rec) == KC_OK &&
        kc_build_preimage_decode(rec->u.build.preimage.data, rec->u.build.preimage.size,
                                 &d) == KC_OK) {
        if (strcmp(d->entry, c->want_entry) == 0 && d->n_params == 1 &&
            d->params[0].value == c->block) {
            c->blob = rec->u.build.blob;
            snprintf(c->entry, sizeof(c->entry), "%s", rec->u.build.entry);
            c->found = 1;
        }
    }
    kc_free(d);
    kc_free(rec);
    return c->found;
}

/* The ways a warm child is set up. In the first two, the child first hits
 * another kernel of the store (scale_other) through kcache, as the driver
 * side first loads and launches that kernel's cubin by hand: both sides
 * then time a process's first load of *this* kernel, with their code run
 * once before. The last three time the process's first kcache hit of all,
 * against a driver that has loaded a module before: that adds kcache's
 * own first-use costs (first transaction, first decompress, code and data
 * touched for the first time), without prefetch with and without the
 * launcher's warm-up, and with the default options (the registration's
 * prefetch, finished before the clock as kc_kernel_wait_compiled waits
 * for it, has loaded the winner: the launch finds it loaded). */
enum {
    WARM_SYNC,
    WARM_PREFETCH,
    WARM_FIRST,
    WARM_FIRST_COLD,
    WARM_FIRST_DEFAULT,
    WARM_MODES
};
static const char *const kWarmNames[WARM_MODES] = {
    "warm_no_prefetch", "warm_prefetch", "warm_first_hit_no_prefetch",
    "warm_first_hit_no_prefetch_no_warmup", "warm_first_hit_defaults"};

/* Cubins written by the parent (write_winner), read here with plain file
 * I/O: nothing of kcache's read path runs in a child before it means to. */
static void *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    void *buf = NULL;
    long n;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n)) &&
        fread(buf, 1, (size_t)n, f) == (size_t)n) {
        *len = (size_t)n;
    } else {
        free(buf);
        buf = NULL;
    }
    if (f)
        fclose(f);
    return buf;
}

/* Load, launch and unload a cubin by hand, synchronously. */
static void raw_run(const void *cubin, const char *entry, int64_t block, scale_args_t *a)
{
    CUmodule m;
    CUfunction f;
    void *params[] = {&a->x, &a->a, &a->n};
    unsigned grid = (unsigned)((a->n + block - 1) / block);
    CU_CHECK(cu.module_load(&m, cubin));
    CU_CHECK(cu.get_function(&f, m, entry));
    CU_CHECK(cu.launch(f, grid, 1, 1, (unsigned)block, 1, 1, 0, NULL, params, NULL));
    CU_CHECK(cu.sync());
    CU_CHECK(cu.module_unload(m));
}

static int child_warm(const char *store_dir, const char *cubin_path, int64_t block,
                      const char *other_path, int64_t other_block, int kc_first, int mode)
{
    if (load_driver() != 0)
        return 1;
    size_t cubin_len = 0, other_len = 0;
    void *cubin = read_file(cubin_path, &cubin_len);
    void *other = read_file(other_path, &other_len);
    if (!cubin || !other)
        return 1;
    kc_launcher_t *l =
        make_launcher(store_dir, mode != WARM_PREFETCH && mode != WARM_FIRST_DEFAULT,
                      mode == WARM_FIRST_COLD);
    kc_kernel_spec_t spec = scale_spec_of(N_BLOCKS, 0);
    kc_kernel_spec_t other_spec = scale_spec_of(N_BLOCKS, 1);
    kc_kernel_t *k = NULL, *ko = NULL;
    double t0 = bench_now_us();
    if (kc_kernel_get(l, &spec, &k) != KC_OK ||
        kc_kernel_get(l, &other_spec, &ko) != KC_OK ||
        kc_kernel_wait_compiled(k) != KC_OK || kc_kernel_wait_compiled(ko) != KC_OK)
        return 1;
    double register_us = bench_now_us() - t0;
    scale_args_t a;
    scale_args_init(&a, kWarmN);
    /* The driver side's first module of the process, so that the timed raw
     * load is not the process's first. */
    raw_run(other, "scale_other", other_block, &a);
    if (mode == WARM_SYNC || mode == WARM_PREFETCH) {
        if (kc_kernel_launch(ko, NULL, a.args, 3) != KC_OK)
            return 1;
        CU_CHECK(cu.sync());
    }

    double raw_us = 0, kc_us = 0;
    for (int pass = 0; pass < 2; pass++) {
        int do_kc = (pass == 0) == (kc_first != 0);
        t0 = bench_now_us();
        if (do_kc) {
            /* KC_BENCH_FAULTS=1: the page faults of the timed kcache
             * launch, on stderr (tools/fault_log.c). */
            const char *fe = getenv("KC_BENCH_FAULTS");
            kc_fault_log_t *flog = fe && !strcmp(fe, "1") ? kc_fault_log_start() : NULL;
            t0 = bench_now_us();
            if (kc_kernel_launch(k, NULL, a.args, 3) != KC_OK)
                return 1;
            CU_CHECK(cu.sync());
            kc_us = bench_now_us() - t0;
            kc_fault_log_print(flog, kWarmNames[mode], stderr);
        } else {
            raw_run(cubin, "scale", block, &a);
            raw_us = bench_now_us() - t0; /* the unload is in; it is cheap */
        }
    }
    /* Where the time goes: the store's part by hand (fetch, decompress,
     * verify), then a memo hit (the launch and sync alone). */
    kc_key_t blob = kc_key_hash(cubin, cubin_len);
    t0 = bench_now_us();
    void *again = NULL;
    size_t again_len = 0;
    if (kc_store_get_cubin(kc_launcher_store(l), &blob, &again, &again_len) != KC_OK)
        return 1;
    double store_us = bench_now_us() - t0;
    kc_free(again);
    t0 = bench_now_us();
    if (kc_kernel_launch(k, NULL, a.args, 3) != KC_OK)
        return 1;
    CU_CHECK(cu.sync());
    double hit_us = bench_now_us() - t0;
    kc_kernel_stats_t st;
    kc_kernel_stats(k, &st);
    printf("%f %f %f %f %f %" PRIu64 " %" PRIu64 " %" PRIu64 " %zu\n", kc_us, raw_us,
           store_us, hit_us, register_us, st.compiles, st.tunes, st.prefetched,
           cubin_len);
    free(cubin);
    free(other);
    cu.mem_free(a.x);
    kc_launcher_destroy(l);
    return 0;
}

/* Tune `which` kernel in the store (a launch on the warm size), write its
 * winning cubin to path and return the winner's BLOCK. */
static int64_t write_winner(kc_launcher_t *l, kc_kernel_t *k, const char *entry,
                            const char *path)
{
    kc_param_t cfg[4];
    size_t n_cfg = 0;
    kc_kernel_last_config(k, cfg, 4, &n_cfg);
    int64_t block = n_cfg ? cfg[0].value : 256;
    find_ctx_t fc = {kc_launcher_store(l), entry, block, {{0}}, {0}, 0};
    kc_store_iterate(fc.store, KC_REC_BUILD, find_build, &fc);
    void *cubin = NULL;
    size_t cubin_len = 0;
    if (!fc.found ||
        kc_store_get_cubin(fc.store, &fc.blob, &cubin, &cubin_len) != KC_OK) {
        fprintf(stderr, "bench: the winning cubin of %s is not in the store\n", entry);
        exit(1);
    }
    FILE *out = fopen(path, "wb");
    if (!out || fwrite(cubin, 1, cubin_len, out) != cubin_len || fclose(out) != 0) {
        fprintf(stderr, "bench: cannot write %s\n", path);
        exit(1);
    }
    kc_free(cubin);
    return block;
}

/* Register scale (other = 0) or scale_other, launch it once on a.args (a
 * miss: it compiles, tunes and publishes), and write its winner's cubin to
 * path for the warm children. Returns the winner's BLOCK. */
static int64_t tune_into_store(kc_launcher_t *l, int other, const char *path,
                               kc_kernel_t **k, scale_args_t *a)
{
    kc_kernel_spec_t spec = scale_spec_of(N_BLOCKS, other);
    if (kc_kernel_get(l, &spec, k) != KC_OK ||
        kc_kernel_launch(*k, NULL, a->args, 3) != KC_OK) {
        fprintf(stderr, "bench: %s: %s\n", spec.entry, kc_launcher_errmsg(l));
        exit(1);
    }
    CU_CHECK(cu.sync());
    return write_winner(l, *k, spec.entry, path);
}

/* Tune scale_other in the store and write its winner (for the children). */
static int64_t prepare_other(const char *store_dir, const char *path)
{
    kc_launcher_t *l = make_launcher(store_dir, 0, 0);
    kc_kernel_t *k = NULL;
    scale_args_t a;
    scale_args_init(&a, kWarmN);
    int64_t block = tune_into_store(l, 1, path, &k, &a);
    cu.mem_free(a.x);
    kc_launcher_destroy(l);
    return block;
}

/* ---- 3. steady state --------------------------------------------------- */

/* Also writes the winner's cubin to cubin_out, for the warm children. */
static void bench_steady(const char *store_dir, const char *cubin_out, int launches,
                         double *kc_ns, double *raw_ns, int64_t *block_out)
{
    kc_launcher_t *l = make_launcher(store_dir, 0, 0);
    kc_kernel_t *k = NULL;
    scale_args_t a;
    scale_args_init(&a, kWarmN); /* small: the GPU keeps up with the host */
    int64_t block = tune_into_store(l, 0, cubin_out, &k, &a);
    *block_out = block;
    size_t cubin_len = 0;
    void *cubin = read_file(cubin_out, &cubin_len);
    if (!cubin) {
        fprintf(stderr, "bench: cannot read %s\n", cubin_out);
        exit(1);
    }
    CUmodule m;
    CUfunction f;
    CU_CHECK(cu.module_load(&m, cubin));
    CU_CHECK(cu.get_function(&f, m, "scale"));
    void *params[] = {&a.x, &a.a, &a.n};
    unsigned grid = (unsigned)((a.n + block - 1) / block);

    /* Batches of 256 launches, host time only; sync between batches so the
     * launch queue never fills and blocks the host. Alternate the two. */
    enum { BATCH = 256 };
    int rounds = launches / BATCH;
    double *tk = calloc((size_t)rounds, sizeof(double));
    double *tr = calloc((size_t)rounds, sizeof(double));
    for (int r = 0; r < rounds; r++) {
        double t0 = bench_now_us();
        for (int i = 0; i < BATCH; i++)
            kc_kernel_launch(k, NULL, a.args, 3);
        tk[r] = (bench_now_us() - t0) * 1e3 / BATCH;
        CU_CHECK(cu.sync());
        t0 = bench_now_us();
        for (int i = 0; i < BATCH; i++)
            cu.launch(f, grid, 1, 1, (unsigned)block, 1, 1, 0, NULL, params, NULL);
        tr[r] = (bench_now_us() - t0) * 1e3 / BATCH;
        CU_CHECK(cu.sync());
    }
    *kc_ns = bench_median(tk, (size_t)rounds);
    *raw_ns = bench_median(tr, (size_t)rounds);
    free(tk);
    free(tr);
    cu.module_unload(m);
    cu.mem_free(a.x);
    free(cubin);
    kc_launcher_destroy(l);
}

/* ---- driver ----------------------------------------------------------- */

static FILE *spawn(const char *self, const char *args)
{
    char cmd[13800];
    snprintf(cmd, sizeof(cmd), "'%s' %s", self, args);
    return popen(cmd, "r");
}

typedef struct {
    double kc, raw, store, hit, reg;
    uint64_t compiles, tunes, prefetched;
    size_t cubin_bytes;
    int n;
} warm_t;

static void run_warm(const char *self, const char *store_dir, const char *cubin_path,
                     const char *other_path, int64_t other_block, int children, int mode,
                     int64_t block, int verbose, warm_t *w)
{
    double *v[5];
    for (int j = 0; j < 5; j++)
        v[j] = calloc((size_t)children, sizeof(double));
    memset(w, 0, sizeof(*w));
    for (int c = 0; c < children; c++) {
        char args[13200];
        snprintf(args, sizeof(args),
                 "--child-warm '%s' '%s' %" PRId64 " '%s' %" PRId64 " %d %d", store_dir,
                 cubin_path, block, other_path, other_block, c % 2, mode);
        FILE *p = spawn(self, args);
        double x[5];
        uint64_t comp, tun, pre;
        size_t bytes;
        if (p &&
            fscanf(p, "%lf %lf %lf %lf %lf %" SCNu64 " %" SCNu64 " %" SCNu64 " %zu",
                   &x[0], &x[1], &x[2], &x[3], &x[4], &comp, &tun, &pre, &bytes) == 9) {
            for (int j = 0; j < 5; j++)
                v[j][w->n] = x[j];
            w->n++;
            w->compiles += comp;
            w->tunes += tun;
            w->prefetched += pre;
            w->cubin_bytes = bytes;
            if (verbose)
                fprintf(stderr,
                        "warm child %d (%s, %s first): kc %.1f us, raw %.1f us, "
                        "store fetch %.1f us, memo-hit launch %.1f us, registration %.1f "
                        "us\n",
                        c, kWarmNames[mode], c % 2 ? "kc" : "raw", x[0], x[1], x[2], x[3],
                        x[4]);
        }
        if (p)
            pclose(p);
    }
    if (w->n) {
        w->kc = bench_median(v[0], (size_t)w->n);
        w->raw = bench_median(v[1], (size_t)w->n);
        w->store = bench_median(v[2], (size_t)w->n);
        w->hit = bench_median(v[3], (size_t)w->n);
        w->reg = bench_median(v[4], (size_t)w->n);
    }
    for (int j = 0; j < 5; j++)
        free(v[j]);
}

int main(int argc, char **argv)
{
    int children = 21, launches = 100000, json = 0, verbose = 0, cold_rounds = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--child-warm") && i + 7 < argc)
            return child_warm(argv[i + 1], argv[i + 2], atoll(argv[i + 3]), argv[i + 4],
                              atoll(argv[i + 5]), atoi(argv[i + 6]), atoi(argv[i + 7]));
        else if (!strcmp(argv[i], "--child-cold-seq") && i + 2 < argc) {
            set_nonce(argv[i + 2]);
            return child_cold_seq(argv[i + 1]);
        } else if (!strcmp(argv[i], "--child-cold-par") && i + 3 < argc) {
            set_nonce(argv[i + 3]);
            return child_cold_par(argv[i + 1], atoi(argv[i + 2]));
        } else if (!strcmp(argv[i], "--children") && i + 1 < argc)
            children = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--launches") && i + 1 < argc)
            launches = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--skip-cold"))
            cold_rounds = 0;
        else if (!strcmp(argv[i], "-v"))
            verbose = 1;
        else {
            fprintf(stderr,
                    "usage: %s [--children N] [--launches N] [--skip-cold] [--json] "
                    "[-v]\n",
                    argv[0]);
            return 2;
        }
    }
    if (children < 1 || launches < 256) {
        fprintf(stderr, "bench: --children must be >= 1 and --launches >= 256\n");
        return 2;
    }
    if (load_driver() != 0) {
        fprintf(stderr, "bench: no CUDA driver or device: this benchmark needs a GPU\n");
        return 1;
    }
    char tmpl[] = "/tmp/kcache-bench-XXXXXX";
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        return 1;
    }
    char store_dir[4200], dir[4300];
    snprintf(store_dir, sizeof(store_dir), "%s/store", tmpl);

    /* 1. cold: fresh processes, alternating, a fresh store for each. */
    kc_launcher_t *probe = make_launcher(store_dir, 1, 0);
    char arch[32];
    snprintf(arch, sizeof(arch), "%s", kc_launcher_arch(probe));
    kc_launcher_destroy(probe);
    /* Numbers no earlier run used (see set_nonce). */
    long nonce_base = ((long)time(NULL) % 1000000) * 100 + (long)(getpid() % 100) * 10;
    double seq[8], par[8], parw[8];
    int n_seq = 0, n_par = 0, n_parw = 0;
    for (int r = 0; r < cold_rounds; r++) {
        for (int side = 0; side < 3; side++) {
            /* The order rotates from round to round. */
            int which = (side + r) % 3; /* 0 sequential, 1 pool cold, 2 pool warm */
            char args[4400];
            FILE *p;
            if (which) {
                snprintf(dir, sizeof(dir), "%s/cold%d-%d", tmpl, r, which);
                snprintf(args, sizeof(args), "--child-cold-par '%s' %d %ld", dir,
                         which == 2, nonce_base + r * 3 + which);
            } else {
                snprintf(args, sizeof(args), "--child-cold-seq %s %ld", arch,
                         nonce_base + r * 3 + which);
            }
            p = spawn(argv[0], args);
            double ms = 0;
            uint64_t compiles = 0;
            if (p && which && fscanf(p, "%lf %" SCNu64, &ms, &compiles) == 2 &&
                compiles == N_BLOCKS) {
                if (which == 1)
                    par[n_par++] = ms;
                else
                    parw[n_parw++] = ms;
            } else if (p && !which && fscanf(p, "%lf", &ms) == 1) {
                seq[n_seq++] = ms;
            }
            if (p)
                pclose(p);
        }
    }
    if (cold_rounds && (!n_seq || !n_par || !n_parw)) {
        fprintf(stderr, "bench: the cold-miss children failed\n");
        return 1;
    }
    double seq_ms = 0, par_ms = 0, parw_ms = 0, first_ms = 0;
    if (cold_rounds) {
        parw_ms = bench_median(parw, (size_t)n_parw);
        seq_ms = bench_median(seq, (size_t)n_seq);
        par_ms = bench_median(par, (size_t)n_par);
        snprintf(dir, sizeof(dir), "%s/first", tmpl);
        first_ms = bench_first_launch(dir);
    }

    /* 3. steady state; this also tunes kWarmN in the shared store. */
    double kc_ns, raw_ns;
    int64_t block;
    char cubin_path[4300];
    snprintf(cubin_path, sizeof(cubin_path), "%s/winner.cubin", tmpl);
    bench_steady(store_dir, cubin_path, launches, &kc_ns, &raw_ns, &block);
    char other_path[4300];
    snprintf(other_path, sizeof(other_path), "%s/other.cubin", tmpl);
    int64_t other_block = prepare_other(store_dir, other_path);

    /* 2. warm hits in fresh processes, in the three set-ups. */
    warm_t w[WARM_MODES];
    for (int m = 0; m < WARM_MODES; m++) {
        run_warm(argv[0], store_dir, cubin_path, other_path, other_block, children, m,
                 block, verbose, &w[m]);
        if (!w[m].n) {
            fprintf(stderr, "bench: every warm child (%s) failed\n", kWarmNames[m]);
            return 1;
        }
    }

    if (json) {
        printf("{\"device_arch\":\"%s\",", arch);
        if (cold_rounds)
            printf("\"cold\":{\"candidates\":%zu,\"rounds\":%d,"
                   "\"sequential_compile_ms\":%.2f,\"parallel_compile_ms\":%.2f,"
                   "\"speedup\":%.2f,\"parallel_warm_pool_ms\":%.2f,"
                   "\"speedup_warm_pool\":%.2f,\"first_launch_ms\":%.2f},",
                   N_BLOCKS, cold_rounds, seq_ms, par_ms, seq_ms / par_ms, parw_ms,
                   seq_ms / parw_ms, first_ms);
        else
            printf("\"cold\":null,");
        for (int m = 0; m < WARM_MODES; m++)
            printf("\"%s\":{\"children\":%d,\"cubin_bytes\":%zu,\"kc_us\":%.1f,"
                   "\"raw_us\":%.1f,\"ratio\":%.3f,\"store_fetch_us\":%.1f,"
                   "\"memo_hit_launch_us\":%.1f,\"registration_us\":%.1f,"
                   "\"compiles\":%" PRIu64 ",\"tunes\":%" PRIu64
                   ",\"prefetched\":%" PRIu64 "},",
                   kWarmNames[m], w[m].n, w[m].cubin_bytes, w[m].kc, w[m].raw,
                   w[m].kc / w[m].raw, w[m].store, w[m].hit, w[m].reg, w[m].compiles,
                   w[m].tunes, w[m].prefetched);
        printf("\"steady\":{\"launches\":%d,\"kc_ns\":%.1f,\"raw_ns\":%.1f,\"ratio\":%."
               "3f}}\n",
               launches, kc_ns, raw_ns, kc_ns / raw_ns);
        return 0;
    }
    if (cold_rounds) {
        printf(
            "cold miss, %zu candidates, fresh processes (median of %d): %zu sequential "
            "NVRTC compiles %.1f ms; kc_kernel_get compiling them in parallel %.1f ms "
            "(speed-up %.2fx) as a process's first registration, %.1f ms (speed-up "
            "%.2fx) once the pool's threads have compiled before\n",
            N_BLOCKS, cold_rounds, N_BLOCKS, seq_ms, par_ms, seq_ms / par_ms, parw_ms,
            seq_ms / parw_ms);
        printf("cold first launch (compile + tune on the real input + publish + launch): "
               "%.1f ms\n",
               first_ms);
    }
    static const char *const titles[WARM_MODES] = {
        "no prefetch (the launch looks up, decompresses, loads)",
        "default prefetch (registration loaded the winner)",
        "the process's first kcache hit, no prefetch, launcher warm-up",
        "the process's first kcache hit, no prefetch, no warm-up",
        "the process's first kcache hit, default options (prefetch, warm-up)"};
    for (int m = 0; m < WARM_MODES; m++)
        printf("warm hit, fresh process, %s, median of %d, %zu-byte cubin: kc first "
               "launch %.1f us, raw cuModuleLoadData+GetFunction+launch+sync %.1f us: "
               "ratio %.3f%s; store fetch+decompress+verify %.1f us, memo-hit "
               "launch+sync %.1f us, registration %.1f us; compiles %" PRIu64
               ", tunes %" PRIu64 ", winners prefetched %" PRIu64 "\n",
               titles[m], w[m].n, w[m].cubin_bytes, w[m].kc, w[m].raw, w[m].kc / w[m].raw,
               m == WARM_SYNC ? " (target <= 1.5)" : "", w[m].store, w[m].hit, w[m].reg,
               w[m].compiles, w[m].tunes, w[m].prefetched);
    printf("steady state (median of %d batches of 256): kc_kernel_launch %.0f ns, raw "
           "cuLaunchKernel %.0f ns: ratio %.3f (target <= 1.10)\n",
           launches / 256, kc_ns, raw_ns, kc_ns / raw_ns);
    return 0;
}
