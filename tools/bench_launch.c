/* kcache_bench_launch: the launcher's costs against the raw driver floor,
 * measured side by side in one run on a GPU.
 *
 *   1. cold miss: N candidates compiled in parallel by kc_kernel_get vs the
 *      same N NVRTC compiles one after another; and the whole first launch
 *      (compile + tune + publish);
 *   2. warm hit in a fresh process: the first kc_kernel_launch of a process
 *      whose store holds the tuning (lookup + decompress + load + launch) vs
 *      raw cuModuleLoadData + cuModuleGetFunction + cuLaunchKernel of the
 *      same cubin, in child processes, alternating which goes first;
 *   3. steady state: host time per kc_kernel_launch vs per raw
 *      cuLaunchKernel of the same function.
 *
 * Usage: kcache_bench_launch [--children N] [--launches N] [--json]
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

#include "compiler.h"
#include "kcache/launch.h"
#include "kcache/store.h"

static const char *kSource =
    "extern \"C\" __global__ void scale(float *x, float a, int n)\n"
    "{\n"
    "    int i = blockIdx.x * BLOCK + threadIdx.x;\n"
    "    if (i < n) x[i] = x[i] * a + 1.0f;\n"
    "}\n";
static const int64_t kBlocks[] = {32, 64, 128, 256, 512, 1024};
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

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

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

static kc_kernel_spec_t scale_spec(size_t n_blocks)
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
    s.name = "bench_scale";
    s.source_kind = KC_SOURCE_CUDA;
    s.source = kSource;
    s.entry = "scale";
    s.params = &p;
    s.n_params = 1;
    s.args = args;
    s.n_args = 3;
    s.grid[0] = "cdiv(n, BLOCK)";
    s.block[0] = "BLOCK";
    return s;
}

static kc_launcher_t *make_launcher(const char *store_dir)
{
    kc_launcher_opts_t o = {0};
    o.device = KC_DEVICE_CUDA;
    o.store_dir = store_dir;
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

static void bench_cold(const char *store_dir, double *seq_ms, double *par_ms,
                       double *first_ms)
{
    /* N sequential NVRTC compiles of the same candidates. */
    char err[256];
    if (kc__nvrtc_load(err, sizeof(err)) != KC_OK) {
        fprintf(stderr, "bench: %s\n", err);
        exit(1);
    }
    kc_launcher_t *l = make_launcher(store_dir);
    double t0 = now_us();
    for (size_t i = 0; i < N_BLOCKS; i++) {
        kc_param_t p = {"BLOCK", kBlocks[i]};
        kc__compile_in_t in = {0};
        in.source = kSource;
        in.source_len = strlen(kSource);
        in.name = "bench_scale";
        in.entry = "scale";
        in.params = &p;
        in.n_params = 1;
        in.arch = kc_launcher_arch(l);
        kc__compile_out_t out = {0};
        if (kc__nvrtc_compile(&in, &out) != KC_OK) {
            fprintf(stderr, "bench: sequential compile failed: %s\n",
                    out.log ? out.log : "");
            exit(1);
        }
        kc__compile_out_free(&out);
    }
    *seq_ms = (now_us() - t0) / 1e3;

    kc_kernel_spec_t spec = scale_spec(N_BLOCKS);
    kc_kernel_t *k = NULL;
    t0 = now_us();
    if (kc_kernel_get(l, &spec, &k) != KC_OK || kc_kernel_wait_compiled(k) != KC_OK) {
        fprintf(stderr, "bench: kc_kernel_get: %s\n", kc_launcher_errmsg(l));
        exit(1);
    }
    *par_ms = (now_us() - t0) / 1e3;
    kc_launcher_destroy(l);

    /* The whole cold first launch in a new launcher on a new store:
     * compile, tune on the real input, publish, launch. */
    char dir2[4300];
    snprintf(dir2, sizeof(dir2), "%s-cold2", store_dir);
    l = make_launcher(dir2);
    scale_args_t a;
    scale_args_init(&a, 1 << 20);
    t0 = now_us();
    if (kc_kernel_get(l, &spec, &k) != KC_OK ||
        kc_kernel_launch(k, NULL, a.args, 3) != KC_OK) {
        fprintf(stderr, "bench: cold launch: %s\n", kc_launcher_errmsg(l));
        exit(1);
    }
    CU_CHECK(cu.sync());
    *first_ms = (now_us() - t0) / 1e3;
    cu.mem_free(a.x);
    kc_launcher_destroy(l);
}

/* ---- 2. warm hit in a fresh process ----------------------------------- */

/* Finds the winner's cubin in the store: the build whose BLOCK matches. */
typedef struct {
    kc_store_t *store;
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
        if (d->n_params == 1 && d->params[0].value == c->block) {
            c->blob = rec->u.build.blob;
            snprintf(c->entry, sizeof(c->entry), "%s", rec->u.build.entry);
            c->found = 1;
        }
    }
    kc_free(d);
    kc_free(rec);
    return c->found;
}

static int child_warm(const char *store_dir, int kc_first, int64_t block)
{
    if (load_driver() != 0)
        return 1;
    kc_launcher_t *l = make_launcher(store_dir);
    kc_kernel_spec_t spec = scale_spec(N_BLOCKS);
    kc_kernel_t *k = NULL;
    if (kc_kernel_get(l, &spec, &k) != KC_OK)
        return 1;
    kc_kernel_wait_compiled(k);
    find_ctx_t fc = {kc_launcher_store(l), block, {{0}}, {0}, 0};
    kc_store_iterate(fc.store, KC_REC_BUILD, find_build, &fc);
    void *cubin = NULL;
    size_t cubin_len = 0;
    if (!fc.found || kc_store_get_cubin(fc.store, &fc.blob, &cubin, &cubin_len) != KC_OK)
        return 1;
    scale_args_t a;
    scale_args_init(&a, kWarmN);
    /* Warm the driver's launch path with an unrelated module so that neither
     * side pays first-launch initialisation. */
    CUmodule m0;
    CUfunction f0;
    CU_CHECK(cu.module_load(&m0, cubin));
    CU_CHECK(cu.get_function(&f0, m0, fc.entry));
    void *params[] = {&a.x, &a.a, &a.n};
    unsigned grid = (unsigned)((a.n + block - 1) / block);
    CU_CHECK(cu.launch(f0, grid, 1, 1, (unsigned)block, 1, 1, 0, NULL, params, NULL));
    CU_CHECK(cu.sync());
    CU_CHECK(cu.module_unload(m0));

    double raw_us = 0, kc_us = 0;
    for (int pass = 0; pass < 2; pass++) {
        int do_kc = (pass == 0) == (kc_first != 0);
        double t0 = now_us();
        if (do_kc) {
            if (kc_kernel_launch(k, NULL, a.args, 3) != KC_OK)
                return 1;
            CU_CHECK(cu.sync());
            kc_us = now_us() - t0;
        } else {
            CUmodule m;
            CUfunction f;
            CU_CHECK(cu.module_load(&m, cubin));
            CU_CHECK(cu.get_function(&f, m, fc.entry));
            CU_CHECK(
                cu.launch(f, grid, 1, 1, (unsigned)block, 1, 1, 0, NULL, params, NULL));
            CU_CHECK(cu.sync());
            raw_us = now_us() - t0;
            cu.module_unload(m);
        }
    }
    /* Where the time goes: the store's part by hand (fetch, decompress,
     * verify), then a memo hit (the launch and sync alone). */
    double t0 = now_us();
    void *again = NULL;
    size_t again_len = 0;
    if (kc_store_get_cubin(fc.store, &fc.blob, &again, &again_len) != KC_OK)
        return 1;
    double store_us = now_us() - t0;
    kc_free(again);
    t0 = now_us();
    if (kc_kernel_launch(k, NULL, a.args, 3) != KC_OK)
        return 1;
    CU_CHECK(cu.sync());
    double hit_us = now_us() - t0;
    kc_kernel_stats_t st;
    kc_launcher_stats(l, &st);
    printf("%f %f %" PRIu64 " %" PRIu64 " %" PRIu64 " %f %f\n", kc_us, raw_us,
           st.compiles, st.tunes, st.store_hits, store_us, hit_us);
    kc_free(cubin);
    kc_launcher_destroy(l);
    return 0;
}

/* ---- 3. steady state --------------------------------------------------- */

static void bench_steady(const char *store_dir, int launches, double *kc_ns,
                         double *raw_ns, int64_t *block_out)
{
    kc_launcher_t *l = make_launcher(store_dir);
    kc_kernel_spec_t spec = scale_spec(N_BLOCKS);
    kc_kernel_t *k = NULL;
    scale_args_t a;
    scale_args_init(&a, kWarmN); /* small: the GPU keeps up with the host */
    if (kc_kernel_get(l, &spec, &k) != KC_OK ||
        kc_kernel_launch(k, NULL, a.args, 3) != KC_OK) {
        fprintf(stderr, "bench: steady: %s\n", kc_launcher_errmsg(l));
        exit(1);
    }
    CU_CHECK(cu.sync());
    kc_param_t cfg[4];
    size_t n_cfg = 0;
    kc_kernel_last_config(k, cfg, 4, &n_cfg);
    int64_t block = n_cfg ? cfg[0].value : 256;
    *block_out = block;

    find_ctx_t fc = {kc_launcher_store(l), block, {{0}}, {0}, 0};
    kc_store_iterate(fc.store, KC_REC_BUILD, find_build, &fc);
    void *cubin = NULL;
    size_t cubin_len = 0;
    if (!fc.found ||
        kc_store_get_cubin(fc.store, &fc.blob, &cubin, &cubin_len) != KC_OK) {
        fprintf(stderr, "bench: winner cubin not found\n");
        exit(1);
    }
    CUmodule m;
    CUfunction f;
    CU_CHECK(cu.module_load(&m, cubin));
    CU_CHECK(cu.get_function(&f, m, fc.entry));
    void *params[] = {&a.x, &a.a, &a.n};
    unsigned grid = (unsigned)((a.n + block - 1) / block);

    /* Batches of 256 launches, host time only; sync between batches so the
     * launch queue never fills and blocks the host. Alternate the two. */
    enum { BATCH = 256 };
    int rounds = launches / BATCH;
    double *tk = calloc((size_t)rounds, sizeof(double));
    double *tr = calloc((size_t)rounds, sizeof(double));
    for (int r = 0; r < rounds; r++) {
        double t0 = now_us();
        for (int i = 0; i < BATCH; i++)
            kc_kernel_launch(k, NULL, a.args, 3);
        tk[r] = (now_us() - t0) * 1e3 / BATCH;
        CU_CHECK(cu.sync());
        t0 = now_us();
        for (int i = 0; i < BATCH; i++)
            cu.launch(f, grid, 1, 1, (unsigned)block, 1, 1, 0, NULL, params, NULL);
        tr[r] = (now_us() - t0) * 1e3 / BATCH;
        CU_CHECK(cu.sync());
    }
    *kc_ns = median(tk, (size_t)rounds);
    *raw_ns = median(tr, (size_t)rounds);
    free(tk);
    free(tr);
    cu.module_unload(m);
    cu.mem_free(a.x);
    kc_free(cubin);
    kc_launcher_destroy(l);
}

int main(int argc, char **argv)
{
    int children = 21, launches = 100000, json = 0, verbose = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--child-warm") && i + 3 < argc)
            return child_warm(argv[i + 1], atoi(argv[i + 2]), atoll(argv[i + 3]));
        else if (!strcmp(argv[i], "--children") && i + 1 < argc)
            children = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--launches") && i + 1 < argc)
            launches = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "-v"))
            verbose = 1;
        else {
            fprintf(stderr, "usage: %s [--children N] [--launches N] [--json]\n",
                    argv[0]);
            return 2;
        }
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
    char store_dir[4200];
    snprintf(store_dir, sizeof(store_dir), "%s/store", tmpl);

    double seq_ms, par_ms, first_ms;
    bench_cold(store_dir, &seq_ms, &par_ms, &first_ms);

    double kc_ns, raw_ns;
    int64_t block;
    bench_steady(store_dir, launches, &kc_ns, &raw_ns, &block);

    double *wk = calloc((size_t)children, sizeof(double));
    double *wr = calloc((size_t)children, sizeof(double));
    double *ws = calloc((size_t)children, sizeof(double));
    double *wh = calloc((size_t)children, sizeof(double));
    int ok = 0;
    uint64_t compiles_total = 0, tunes_total = 0;
    for (int c = 0; c < children; c++) {
        char cmd[8192];
        snprintf(cmd, sizeof(cmd), "'%s' --child-warm '%s' %d %" PRId64, argv[0],
                 store_dir, c % 2, block);
        FILE *p = popen(cmd, "r");
        double k = 0, r = 0, so = 0, hi = 0;
        uint64_t comp = 0, tun = 0, hits = 0;
        if (p && fscanf(p, "%lf %lf %" SCNu64 " %" SCNu64 " %" SCNu64 " %lf %lf", &k, &r,
                        &comp, &tun, &hits, &so, &hi) == 7) {
            wk[ok] = k;
            wr[ok] = r;
            ws[ok] = so;
            wh[ok] = hi;
            if (verbose)
                fprintf(
                    stderr,
                    "child %d (%s first): kc %.1f us, raw %.1f us, store fetch %.1f us, "
                    "memo-hit launch %.1f us\n",
                    c, c % 2 ? "kc" : "raw", k, r, so, hi);
            ok++;
            compiles_total += comp;
            tunes_total += tun;
        }
        if (p)
            pclose(p);
    }
    if (ok == 0) {
        fprintf(stderr, "bench: every warm child failed\n");
        return 1;
    }
    double warm_kc = median(wk, (size_t)ok), warm_raw = median(wr, (size_t)ok);
    double warm_store = median(ws, (size_t)ok), warm_hit = median(wh, (size_t)ok);

    if (json) {
        printf("{\"cold\":{\"candidates\":%zu,\"sequential_compile_ms\":%.2f,"
               "\"parallel_compile_ms\":%.2f,\"speedup\":%.2f,\"first_launch_ms\":%.2f},"
               "\"warm\":{\"children\":%d,\"kc_us\":%.1f,\"raw_us\":%.1f,\"ratio\":%.3f,"
               "\"compiles\":%" PRIu64 ",\"tunes\":%" PRIu64 "},"
               "\"steady\":{\"launches\":%d,\"kc_ns\":%.1f,\"raw_ns\":%.1f,\"ratio\":%."
               "3f}}\n",
               N_BLOCKS, seq_ms, par_ms, seq_ms / par_ms, first_ms, ok, warm_kc, warm_raw,
               warm_kc / warm_raw, compiles_total, tunes_total, launches, kc_ns, raw_ns,
               kc_ns / raw_ns);
    } else {
        printf(
            "cold miss, %zu candidates: sequential NVRTC %.1f ms, parallel kc_kernel_get "
            "%.1f ms: speed-up %.2fx; whole first launch (compile+tune+publish) %.1f "
            "ms\n",
            N_BLOCKS, seq_ms, par_ms, seq_ms / par_ms, first_ms);
        printf("warm hit, fresh process (median of %d): kc first launch %.1f us, raw "
               "cuModuleLoadData+GetFunction+launch %.1f us: ratio %.3f (target <= 1.5); "
               "compiles %" PRIu64 ", tunes %" PRIu64 " in the warm children\n",
               ok, warm_kc, warm_raw, warm_kc / warm_raw, compiles_total, tunes_total);
        printf(
            "  of which: store fetch+decompress+verify of the cubin %.1f us; a memo-hit "
            "launch+sync %.1f us\n",
            warm_store, warm_hit);
        printf(
            "steady state (median of %d batches of 256): kc_kernel_launch %.0f ns, raw "
            "cuLaunchKernel %.0f ns: ratio %.3f (target <= 1.10)\n",
            launches / 256, kc_ns, raw_ns, kc_ns / raw_ns);
    }
    free(wk);
    free(wr);
    free(ws);
    free(wh);
    return 0;
}
