/* kcache_demo: four real kernels (softmax, tiled matmul, a sum reduction and
 * an elementwise axpy) through the launcher.
 *
 * On a GPU the first run compiles, tunes and publishes each kernel, checks
 * its result against a CPU reference and reports the chosen config; a
 * second run on the same store is a hit everywhere (--expect-warm checks
 * that). Without a CUDA driver it compiles every candidate for one arch and
 * publishes the builds only.
 *
 * The demo uses only the public API. For its own buffers it loads the
 * driver with dlopen, as the launcher does, so it starts on a machine
 * without one.
 */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda.h>

#include "kcache/launch.h"

/* ---- the kernels -------------------------------------------------------- */

static const char softmax_src[] =
    "extern \"C\" __global__ void softmax_rows(const float *x, float *y, int rows,\n"
    "                                          int cols)\n"
    "{\n"
    "    __shared__ float red[BLOCK];\n"
    "    int row = blockIdx.x, t = threadIdx.x;\n"
    "    if (row >= rows)\n"
    "        return;\n"
    "    const float *xr = x + (size_t)row * cols;\n"
    "    float *yr = y + (size_t)row * cols;\n"
    "    float m = __int_as_float(0xff800000);\n"
    "    for (int c = t; c < cols; c += BLOCK)\n"
    "        m = fmaxf(m, xr[c]);\n"
    "    red[t] = m;\n"
    "    __syncthreads();\n"
    "    for (int s = BLOCK / 2; s > 0; s >>= 1) {\n"
    "        if (t < s)\n"
    "            red[t] = fmaxf(red[t], red[t + s]);\n"
    "        __syncthreads();\n"
    "    }\n"
    "    m = red[0];\n"
    "    __syncthreads();\n"
    "    float sum = 0.f;\n"
    "    for (int c = t; c < cols; c += BLOCK)\n"
    "        sum += __expf(xr[c] - m);\n"
    "    red[t] = sum;\n"
    "    __syncthreads();\n"
    "    for (int s = BLOCK / 2; s > 0; s >>= 1) {\n"
    "        if (t < s)\n"
    "            red[t] += red[t + s];\n"
    "        __syncthreads();\n"
    "    }\n"
    "    float inv = 1.f / red[0];\n"
    "    for (int c = t; c < cols; c += BLOCK)\n"
    "        yr[c] = __expf(xr[c] - m) * inv;\n"
    "}\n";

static const char matmul_src[] =
    "extern \"C\" __global__ void matmul_tiled(const float *A, const float *B, float "
    "*C,\n"
    "                                          int M, int N, int K)\n"
    "{\n"
    "    __shared__ float As[TILE][TILE];\n"
    "    __shared__ float Bs[TILE][TILE];\n"
    "    int tx = threadIdx.x, ty = threadIdx.y;\n"
    "    int row = blockIdx.y * TILE + ty, col = blockIdx.x * TILE + tx;\n"
    "    float acc = 0.f;\n"
    "    for (int k0 = 0; k0 < K; k0 += TILE) {\n"
    "        As[ty][tx] = (row < M && k0 + tx < K) ? A[(size_t)row * K + k0 + tx] : "
    "0.f;\n"
    "        Bs[ty][tx] = (k0 + ty < K && col < N) ? B[(size_t)(k0 + ty) * N + col] : "
    "0.f;\n"
    "        __syncthreads();\n"
    "        for (int k = 0; k < TILE; k++)\n"
    "            acc += As[ty][k] * Bs[k][tx];\n"
    "        __syncthreads();\n"
    "    }\n"
    "    if (row < M && col < N)\n"
    "        C[(size_t)row * N + col] = acc;\n"
    "}\n";

/* out is accumulated with atomics, so it is inout: tuning restores it
 * between candidates and the caller sees one launch's sum. */
static const char reduce_src[] =
    "extern \"C\" __global__ void reduce_sum(const float *x, float *out, int n)\n"
    "{\n"
    "    __shared__ float red[BLOCK];\n"
    "    int t = threadIdx.x;\n"
    "    size_t base = (size_t)blockIdx.x * BLOCK * ITEMS + t;\n"
    "    float s = 0.f;\n"
    "    for (int i = 0; i < ITEMS; i++) {\n"
    "        size_t j = base + (size_t)i * BLOCK;\n"
    "        if (j < (size_t)n)\n"
    "            s += x[j];\n"
    "    }\n"
    "    red[t] = s;\n"
    "    __syncthreads();\n"
    "    for (int k = BLOCK / 2; k > 0; k >>= 1) {\n"
    "        if (t < k)\n"
    "            red[t] += red[t + k];\n"
    "        __syncthreads();\n"
    "    }\n"
    "    if (t == 0)\n"
    "        atomicAdd(out, red[0]);\n"
    "}\n";

static const char axpy_src[] =
    "extern \"C\" __global__ void axpy(float a, const float *x, float *y, int n)\n"
    "{\n"
    "    size_t i = ((size_t)blockIdx.x * BLOCK + threadIdx.x) * VEC;\n"
    "    for (int v = 0; v < VEC; v++)\n"
    "        if (i + v < (size_t)n)\n"
    "            y[i + v] = a * x[i + v] + y[i + v];\n"
    "}\n";

static const int64_t block_values[] = {128, 256, 512, 1024};
static const int64_t tile_values[] = {8, 16, 32};
static const int64_t items_values[] = {1, 4};
static const int64_t vec_values[] = {1, 4};

static const kc_param_spec_t softmax_params[] = {{"BLOCK", block_values, 4}};
static const kc_param_spec_t matmul_params[] = {{"TILE", tile_values, 3}};
static const kc_param_spec_t reduce_params[] = {{"BLOCK", block_values, 4},
                                                {"ITEMS", items_values, 2}};
static const kc_param_spec_t axpy_params[] = {{"BLOCK", block_values, 4},
                                              {"VEC", vec_values, 2}};

#define PTR(n, dt, acc)                                                                  \
    {                                                                                    \
        n, KC_ARG_POINTER, dt, acc, 0                                                    \
    }
#define I32(n)                                                                           \
    {                                                                                    \
        n, KC_ARG_SCALAR, KC_DTYPE_I32, 0, 0                                             \
    }

static const kc_arg_spec_t softmax_args[] = {PTR("x", KC_DTYPE_F32, KC_ACCESS_IN),
                                             PTR("y", KC_DTYPE_F32, KC_ACCESS_OUT),
                                             I32("rows"), I32("cols")};
static const kc_arg_spec_t matmul_args[] = {PTR("A", KC_DTYPE_F32, KC_ACCESS_IN),
                                            PTR("B", KC_DTYPE_F32, KC_ACCESS_IN),
                                            PTR("C", KC_DTYPE_F32, KC_ACCESS_OUT),
                                            I32("M"),
                                            I32("N"),
                                            I32("K")};
static const kc_arg_spec_t reduce_args[] = {PTR("x", KC_DTYPE_F32, KC_ACCESS_IN),
                                            PTR("out", KC_DTYPE_F32, KC_ACCESS_INOUT),
                                            I32("n")};
static const kc_arg_spec_t axpy_args[] = {{"a", KC_ARG_SCALAR, KC_DTYPE_F32, 0, 0},
                                          PTR("x", KC_DTYPE_F32, KC_ACCESS_IN),
                                          PTR("y", KC_DTYPE_F32, KC_ACCESS_INOUT),
                                          I32("n")};

static const kc_kernel_spec_t specs[] = {
    {.name = "demo.softmax",
     .source_kind = KC_SOURCE_CUDA,
     .source = softmax_src,
     .entry = "softmax_rows",
     .params = softmax_params,
     .n_params = 1,
     .args = softmax_args,
     .n_args = 4,
     .grid = {"rows"},
     .block = {"BLOCK"}},
    {.name = "demo.matmul",
     .source_kind = KC_SOURCE_CUDA,
     .source = matmul_src,
     .entry = "matmul_tiled",
     .params = matmul_params,
     .n_params = 1,
     .args = matmul_args,
     .n_args = 6,
     .grid = {"cdiv(N, TILE)", "cdiv(M, TILE)"},
     .block = {"TILE", "TILE"}},
    {.name = "demo.reduce_sum",
     .source_kind = KC_SOURCE_CUDA,
     .source = reduce_src,
     .entry = "reduce_sum",
     .params = reduce_params,
     .n_params = 2,
     .args = reduce_args,
     .n_args = 3,
     .grid = {"cdiv(n, BLOCK * ITEMS)"},
     .block = {"BLOCK"}},
    {.name = "demo.axpy",
     .source_kind = KC_SOURCE_CUDA,
     .source = axpy_src,
     .entry = "axpy",
     .params = axpy_params,
     .n_params = 2,
     .args = axpy_args,
     .n_args = 4,
     .grid = {"cdiv(n, BLOCK * VEC)"},
     .block = {"BLOCK"}},
};
#define N_KERNELS (sizeof(specs) / sizeof(specs[0]))

/* ---- the driver, for the demo's own buffers ----------------------------- */

static struct {
    void *lib;
    CUresult (*init)(unsigned);
    CUresult (*device_get)(CUdevice *, int);
    CUresult (*primary_retain)(CUcontext *, CUdevice);
    CUresult (*primary_release)(CUdevice);
    CUresult (*ctx_set_current)(CUcontext);
    CUresult (*ctx_synchronize)(void);
    CUresult (*mem_alloc)(CUdeviceptr *, size_t);
    CUresult (*mem_free)(CUdeviceptr);
    CUresult (*htod)(CUdeviceptr, const void *, size_t);
    CUresult (*dtoh)(void *, CUdeviceptr, size_t);
    CUdevice dev;
} cu;

/* Returns 0 with a current context, or -1 if there is no usable driver. */
static int cuda_open(void)
{
    cu.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!cu.lib)
        return -1;
#define SYM(field, name)                                                                 \
    if (!(*(void **)&cu.field = dlsym(cu.lib, name)))                                    \
        return -1;
    SYM(init, "cuInit");
    SYM(device_get, "cuDeviceGet");
    SYM(primary_retain, "cuDevicePrimaryCtxRetain");
    SYM(primary_release, "cuDevicePrimaryCtxRelease_v2");
    SYM(ctx_set_current, "cuCtxSetCurrent");
    SYM(ctx_synchronize, "cuCtxSynchronize");
    SYM(mem_alloc, "cuMemAlloc_v2");
    SYM(mem_free, "cuMemFree_v2");
    SYM(htod, "cuMemcpyHtoD_v2");
    SYM(dtoh, "cuMemcpyDtoH_v2");
#undef SYM
    return cu.init(0) == CUDA_SUCCESS && cu.device_get(&cu.dev, 0) == CUDA_SUCCESS ? 0
                                                                                   : -1;
}

/* The launcher, created with no context current, retains the primary
 * context of device 0; the demo's buffers live in that same context. */
static int cuda_use_primary(void)
{
    CUcontext ctx;

    if (cu.primary_retain(&ctx, cu.dev) != CUDA_SUCCESS)
        return -1;
    return cu.ctx_set_current(ctx) == CUDA_SUCCESS ? 0 : -1;
}

static uint64_t dev_upload(const float *host, size_t n)
{
    CUdeviceptr p = 0;

    if (cu.mem_alloc(&p, n * sizeof(float)) != CUDA_SUCCESS)
        return 0;
    if (host && cu.htod(p, host, n * sizeof(float)) != CUDA_SUCCESS) {
        cu.mem_free(p);
        return 0;
    }
    return (uint64_t)p;
}

/* ---- inputs and references ---------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) / (double)(1 << 24)) * 2.f - 1.f;
}

static float *random_floats(size_t n)
{
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; v && i < n; i++)
        v[i] = frand();
    return v;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* max |got - want| / max |want|: relative to the output's scale, so that
 * elements near zero (where float rounding and FMA contraction dominate)
 * do not decide the verdict. */
static double max_rel_err(const float *got, const double *want, size_t n)
{
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= worst)) /* NaN counts as the worst */
            worst = isnan(d) ? INFINITY : d;
    }
    return scale > 0 ? worst / scale : worst;
}

/* ---- one kernel run ------------------------------------------------------ */

typedef struct result {
    const char *name;
    const char *what; /* "compiled+tuned", "tuned", "hit", ... */
    char config[128];
    double first_ms;
    double hot_us;
    double err;
    double tol;
    int rc;
} result_t;

/* Sets up inputs, runs the kernel once through the launcher (this is the
 * call that may compile and tune), times hot launches and checks the
 * result. Fills r; returns 0 or a kcache error. */
static int run_kernel(kc_kernel_t *k, size_t which, result_t *r)
{
    enum { HOT = 20 };
    float *h[3] = {0}, *got = NULL;
    double *want = NULL;
    uint64_t d[3] = {0};
    size_t n_out = 0;
    kc_arg_t args[6];
    size_t n_args = 0;
    int rc = KC_ENOMEM;
    uint64_t out_ptr;

    memset(args, 0, sizeof(args));
    if (which == 0) { /* softmax */
        static int64_t dims[2] = {1024, 1000};
        int rows = (int)dims[0], cols = (int)dims[1];
        n_out = (size_t)rows * cols;
        h[0] = random_floats(n_out);
        want = malloc(n_out * sizeof(double));
        if (!h[0] || !want)
            goto fail;
        for (int i = 0; i < rows; i++) {
            const float *x = h[0] + (size_t)i * cols;
            double m = -INFINITY, s = 0;
            for (int c = 0; c < cols; c++)
                m = fmax(m, x[c]);
            for (int c = 0; c < cols; c++)
                s += exp(x[c] - m);
            for (int c = 0; c < cols; c++)
                want[(size_t)i * cols + c] = exp(x[c] - m) / s;
        }
        d[0] = dev_upload(h[0], n_out);
        d[1] = dev_upload(NULL, n_out);
        args[0] = (kc_arg_t){.ptr = d[0], .rank = 2, .dims = dims};
        args[1] = (kc_arg_t){.ptr = d[1], .rank = 2, .dims = dims};
        args[2].value.i = rows;
        args[3].value.i = cols;
        n_args = 4;
        out_ptr = d[1];
        r->tol = 1e-4;
    } else if (which == 1) { /* matmul */
        static int64_t da[2] = {512, 256}, db[2] = {256, 384}, dc[2] = {512, 384};
        int M = 512, K = 256, N = 384;
        n_out = (size_t)M * N;
        h[0] = random_floats((size_t)M * K);
        h[1] = random_floats((size_t)K * N);
        want = calloc(n_out, sizeof(double));
        if (!h[0] || !h[1] || !want)
            goto fail;
        for (int i = 0; i < M; i++)
            for (int kk = 0; kk < K; kk++) {
                double a = h[0][(size_t)i * K + kk];
                for (int j = 0; j < N; j++)
                    want[(size_t)i * N + j] += a * h[1][(size_t)kk * N + j];
            }
        d[0] = dev_upload(h[0], (size_t)M * K);
        d[1] = dev_upload(h[1], (size_t)K * N);
        d[2] = dev_upload(NULL, n_out);
        args[0] = (kc_arg_t){.ptr = d[0], .rank = 2, .dims = da};
        args[1] = (kc_arg_t){.ptr = d[1], .rank = 2, .dims = db};
        args[2] = (kc_arg_t){.ptr = d[2], .rank = 2, .dims = dc};
        args[3].value.i = M;
        args[4].value.i = N;
        args[5].value.i = K;
        n_args = 6;
        out_ptr = d[2];
        r->tol = 1e-4;
    } else if (which == 2) { /* reduce */
        static int64_t dx[1] = {1 << 22}, dout[1] = {1};
        size_t n = (size_t)dx[0];
        float zero = 0;
        h[0] = random_floats(n);
        want = calloc(1, sizeof(double));
        if (!h[0] || !want)
            goto fail;
        for (size_t i = 0; i < n; i++)
            want[0] += h[0][i];
        n_out = 1;
        d[0] = dev_upload(h[0], n);
        d[1] = dev_upload(&zero, 1);
        args[0] = (kc_arg_t){.ptr = d[0], .rank = 1, .dims = dx};
        args[1] = (kc_arg_t){.ptr = d[1], .rank = 1, .dims = dout};
        args[2].value.i = (int64_t)n;
        n_args = 3;
        out_ptr = d[1];
        /* float atomics, in any order, over 4M terms */
        r->tol = 1e-3;
    } else { /* axpy */
        static int64_t dx[1] = {1 << 22};
        size_t n = (size_t)dx[0];
        const float a = 1.5f;
        h[0] = random_floats(n);
        h[1] = random_floats(n);
        want = malloc(n * sizeof(double));
        if (!h[0] || !h[1] || !want)
            goto fail;
        for (size_t i = 0; i < n; i++)
            want[i] = (double)(a * h[0][i] + h[1][i]);
        n_out = n;
        args[0].value.f = a;
        d[0] = dev_upload(h[0], n);
        d[1] = dev_upload(h[1], n);
        args[1] = (kc_arg_t){.ptr = d[0], .rank = 1, .dims = dx};
        args[2] = (kc_arg_t){.ptr = d[1], .rank = 1, .dims = dx};
        args[3].value.i = (int64_t)n;
        n_args = 4;
        out_ptr = d[1];
        r->tol = 1e-5; /* one FMA versus a multiply and an add */
    }
    if (!d[0] || (which != 0 && !d[1])) {
        fprintf(stderr, "kcache_demo: cannot allocate device memory\n");
        rc = KC_ENOMEM;
        goto fail;
    }

    double t0 = now_ms();
    rc = kc_kernel_launch(k, NULL, args, n_args);
    if (rc == KC_OK && cu.ctx_synchronize() != CUDA_SUCCESS)
        rc = KC_ECUDA;
    r->first_ms = now_ms() - t0;
    if (rc != KC_OK)
        goto fail;

    got = malloc(n_out * sizeof(float));
    if (!got || cu.dtoh(got, out_ptr, n_out * sizeof(float)) != CUDA_SUCCESS) {
        rc = got ? KC_ECUDA : KC_ENOMEM;
        goto fail;
    }
    r->err = max_rel_err(got, want, n_out);

    /* Written buffers change from here on (axpy, the reduction accumulate),
     * but they were already checked. */
    /* Hot launches: the memo path. Timed on the host, before the
     * synchronize, this is the launcher's overhead per call. */
    t0 = now_ms();
    for (int i = 0; i < HOT && rc == KC_OK; i++)
        rc = kc_kernel_launch(k, NULL, args, n_args);
    r->hot_us = (now_ms() - t0) * 1e3 / HOT;
    if (rc == KC_OK && cu.ctx_synchronize() != CUDA_SUCCESS)
        rc = KC_ECUDA;
fail:
    for (int i = 0; i < 3; i++) {
        if (d[i])
            cu.mem_free((CUdeviceptr)d[i]);
        free(h[i]);
    }
    free(got);
    free(want);
    return rc;
}

static void describe_config(kc_kernel_t *k, char *buf, size_t cap)
{
    kc_param_t p[8];
    size_t n = 0, len = 0;

    buf[0] = '\0';
    if (kc_kernel_last_config(k, p, 8, &n) != KC_OK)
        return;
    for (size_t i = 0; i < n && i < 8 && len < cap; i++) {
        int w = snprintf(buf + len, cap - len, "%s%s=%lld", i ? " " : "", p[i].name,
                         (long long)p[i].value);
        if (w < 0)
            break;
        len += (size_t)w;
    }
}

static const char *what_happened(const kc_kernel_stats_t *s)
{
    if (s->tunes && s->compiles)
        return "compiled+tuned";
    if (s->tunes)
        return "tuned (builds reused)";
    if (s->store_hits)
        return "hit";
    return s->memo_hits ? "memo hit" : "-";
}

static void usage(FILE *f)
{
    fprintf(f, "usage: kcache_demo [--store DIR] [--arch ARCH] [--check] [--json] "
               "[--expect-warm] [--probe-device]\n"
               "  --store DIR     the store (default: KCACHE_DIR, else the XDG cache)\n"
               "  --arch ARCH     target arch without a GPU (default sm_90)\n"
               "  --check         exit 1 if a result differs from the CPU reference\n"
               "  --json          one JSON document on stdout\n"
               "  --expect-warm   exit 1 if anything had to be compiled or tuned\n"
               "  --probe-device  exit 0 if a CUDA device is usable, 77 if not\n");
}

static void log_to_stderr(void *user, kc_log_level_t level, const char *msg)
{
    (void)user;
    (void)level;
    fprintf(stderr, "%s\n", msg);
}

int main(int argc, char **argv)
{
    const char *store_dir = NULL, *arch = NULL;
    int check = 0, json = 0, expect_warm = 0, no_gpu = 0, failed = 0;
    kc_launcher_opts_t opts = KC_LAUNCHER_OPTS_INIT;
    kc_launcher_t *l = NULL;
    kc_kernel_t *kernels[N_KERNELS] = {0};
    result_t results[N_KERNELS];
    kc_kernel_stats_t total;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--store") && i + 1 < argc)
            store_dir = argv[++i];
        else if (!strcmp(argv[i], "--arch") && i + 1 < argc)
            arch = argv[++i];
        else if (!strcmp(argv[i], "--check"))
            check = 1;
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--expect-warm"))
            expect_warm = 1;
        else if (!strcmp(argv[i], "--probe-device"))
            return cuda_open() == 0 ? 0 : 77;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }

    opts.store_dir = store_dir;
    opts.log = log_to_stderr;
    opts.log_level = KC_LOG_WARN;
    opts.device = KC_DEVICE_CUDA;
    opts.arch = arch;
    rc = cuda_open() == 0 ? kc_launcher_create(&opts, &l) : KC_ENODEVICE;
    if (rc == KC_OK && cuda_use_primary() != 0) {
        fprintf(stderr, "kcache_demo: cannot use the primary CUDA context\n");
        kc_launcher_destroy(l);
        return 1;
    }
    if (rc == KC_ENODEVICE) {
        no_gpu = 1;
        opts.device = KC_DEVICE_NONE;
        opts.arch = arch ? arch : "sm_90";
        fprintf(json ? stderr : stdout,
                "no CUDA driver found: compiling and publishing builds for %s only\n",
                opts.arch);
        rc = kc_launcher_create(&opts, &l);
    }
    if (rc != KC_OK) {
        fprintf(stderr, "kcache_demo: cannot create the launcher: %s (%s)\n",
                kc_strerror(rc), kc_launcher_create_errmsg());
        return 1;
    }

    /* Registering starts every kernel's compiles at once, in parallel. */
    for (size_t i = 0; i < N_KERNELS; i++) {
        rc = kc_kernel_get(l, &specs[i], &kernels[i]);
        if (rc != KC_OK) {
            fprintf(stderr, "kcache_demo: %s: %s (%s)\n", specs[i].name, kc_strerror(rc),
                    kc_launcher_errmsg(l));
            kc_launcher_destroy(l);
            return 1;
        }
    }

    for (size_t i = 0; i < N_KERNELS; i++) {
        result_t *r = &results[i];
        kc_kernel_stats_t s;

        memset(r, 0, sizeof(*r));
        r->name = specs[i].name;
        if (no_gpu) {
            r->rc = kc_kernel_wait_compiled(kernels[i]);
        } else {
            r->rc = run_kernel(kernels[i], i, r);
            if (r->rc != KC_OK)
                fprintf(stderr, "kcache_demo: %s: %s (%s)\n", r->name, kc_strerror(r->rc),
                        kc_launcher_errmsg(l));
            else if (r->err > r->tol)
                failed = 1;
            describe_config(kernels[i], r->config, sizeof(r->config));
        }
        kc_kernel_stats(kernels[i], &s);
        r->what =
            no_gpu ? (s.compiles ? "compiled" : "builds stored") : what_happened(&s);
        if (r->rc != KC_OK)
            failed = 1;
    }
    kc_launcher_stats(l, &total);

    if (json) {
        printf("{\"device\": \"%s\", \"arch\": \"%s\", \"compiles\": %llu, "
               "\"builds_reused\": %llu, \"tunes\": %llu, \"store_hits\": %llu, "
               "\"kernels\": [",
               no_gpu ? "none" : "cuda", kc_launcher_arch(l),
               (unsigned long long)total.compiles,
               (unsigned long long)total.builds_reused, (unsigned long long)total.tunes,
               (unsigned long long)total.store_hits);
        for (size_t i = 0; i < N_KERNELS; i++) {
            const result_t *r = &results[i];
            printf("%s{\"name\": \"%s\", \"result\": \"%s\", \"status\": \"%s\", "
                   "\"config\": \"%s\"",
                   i ? ", " : "", r->name, r->what, r->rc ? kc_err_name(r->rc) : "KC_OK",
                   r->config);
            if (!no_gpu)
                printf(", \"first_ms\": %.3f, \"launch_us\": %.2f, \"max_rel_err\": %.3g",
                       r->first_ms, r->hot_us, isfinite(r->err) ? r->err : 1e300);
            printf("}");
        }
        printf("]}\n");
    } else {
        printf("%-18s %-22s %-16s %12s %11s %12s\n", "kernel", "result", "config",
               "first (ms)", "launch (us)", "max rel err");
        for (size_t i = 0; i < N_KERNELS; i++) {
            const result_t *r = &results[i];
            if (no_gpu)
                printf("%-18s %-22s %-16s %12s %11s %12s\n", r->name,
                       r->rc ? kc_strerror(r->rc) : r->what, "-", "-", "-", "-");
            else
                printf("%-18s %-22s %-16s %12.2f %11.2f %12.2e%s\n", r->name,
                       r->rc ? kc_strerror(r->rc) : r->what, r->config, r->first_ms,
                       r->hot_us, r->err, r->err > r->tol ? "  MISMATCH" : "");
        }
        printf("compiles %llu, builds reused %llu, tunings %llu, store hits %llu\n",
               (unsigned long long)total.compiles,
               (unsigned long long)total.builds_reused, (unsigned long long)total.tunes,
               (unsigned long long)total.store_hits);
    }

    kc_launcher_destroy(l);
    if (!no_gpu)
        cu.primary_release(cu.dev);
    if (expect_warm && (total.compiles || total.tunes)) {
        fprintf(stderr,
                "kcache_demo: expected a warm store, but this run compiled %llu "
                "and tuned %llu kernels\n",
                (unsigned long long)total.compiles, (unsigned long long)total.tunes);
        return 1;
    }
    if (no_gpu)
        return failed ? 1 : 0;
    return check && failed ? 1 : 0;
}
