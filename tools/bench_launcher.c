/* kcache_bench_launcher: the launcher's per-call latency at fleet scale, on
 * the simulation device (CPU, no GPU needed) or on a CUDA device.
 *
 *   create    kc_launcher_create + kc_launcher_destroy on a store: the first
 *             of the process and the median of the next ones, and how many
 *             threads a launcher has once created (read from /proc).
 *   distinct  N distinct kernels (one source with a distinct constant each,
 *             and on CUDA a distinct entry name each unless --one-name,
 *             compiled by NVRTC, one config each) published to a store by a
 *             child process (--populate, once per store directory), then,
 *             in this process and a fresh launcher, each registered and
 *             launched once: every launch a store hit. Per kernel: the
 *             registration, the first launch, and both; p50, p99, p99.9 and
 *             max, and the median over the first 1000 kernels against the
 *             last 1000. The first kernel's hit is the process's first hit.
 *   hot       one kernel launched N times after its first launch (memo
 *             hits): p50, p99, p99.9 and max per launch, host time.
 *   compile   (--compile-only runs only this; no device needed) for 1..C
 *             candidates of a compile-heavy kernel: the C NVRTC compiles one
 *             after another (each one's time alone), the same compiles on C
 *             threads at once (each one's time under contention, and the
 *             wall time), and kc_kernel_get compiling them on the launcher's
 *             pool (KC_DEVICE_NONE, a fresh store each, so that its leases
 *             and the publish are in it); then the same compiles in C
 *             forked processes, which share the machine but no address
 *             space: where threads slow each other and processes do not,
 *             the cause is in the process. Every compile has a number no
 *             other compile used (NVRTC keeps an on-disk cache). With
 *             --rounds R, each N is measured R times back to back and the
 *             medians printed (a speed-up is the median of the rounds' own
 *             speed-ups): one NVRTC compile's time varies by a third
 *             between runs on a shared host. --compile-threads T gives the
 *             pool T threads (default: one per CPU), so that a small machine
 *             runs it as wide as a big one.
 *
 * Usage: kcache_bench_launcher [--device sim|cuda] [-s DIR] [--distinct N]
 *        [--hot N] [--max-cands C] [--rounds R] [--compile-threads T] [--no-prefetch]
 *        [--one-name] [--skip PART]... [--compile-only]
 * DIR holds the populated stores (default: a new directory under /tmp); a
 * store is reused by later runs with the same DIR, N and device.
 * --skip takes create, distinct, hot or compile. */
#include <dlfcn.h>
#include <inttypes.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_time.h"
#include "compiler.h"
#include "fault_log.h"
#include "device.h"
#include "kernel_int.h"
#include "launcher_int.h"
#include "memo.h"
#include "kcache/layers.h"
#include "kcache/record.h"
#include "kcache/launch.h"
#include "kcache/sim.h"
#include "kcache/store.h"

/* ---- small helpers ----------------------------------------------------- */

/* Minor page faults of this process so far: the breakdown's first-use
 * costs are mostly pages touched for the first time. */
static long minor_faults(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_minflt : 0;
}

/* Percentile p (0..100) of v[n], sorting a copy. */
static int threads_now(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    if (f)
        fclose(f);
    return n;
}

static int dir_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* ---- the device: the simulation or CUDA through dlopen ------------------ */

static int g_cuda;
/* --faults: list the page faults of the process's first call. */
static int g_faults;
/* --compile-threads: the pool's threads in the compile part (0: as many as
 * the CPUs, the launcher's default), to run it as wide as a bigger host. */
static unsigned g_compile_threads;
static kc_sim_t *g_sim;
static int g_populating; /* tune briefly: one config each */
/* --one-name: every kernel's entry is "add", as before the eleventh pass;
 * by default kernel c's is "add<c>", as Inductor names each kernel of a
 * model apart. The simulation runs one C function, so there it is always
 * "add". */
static int g_one_name;

static struct {
    int (*init)(unsigned);
    int (*device_get)(int *, int);
    int (*primary_retain)(void **, int);
    int (*ctx_set)(void *);
    int (*mem_alloc)(uint64_t *, size_t);
    int (*memset_d32)(uint64_t, unsigned, size_t);
    int (*dtoh)(void *, uint64_t, size_t);
    int (*sync)(void);
} cu;

static int cuda_init(void)
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
    SYM(mem_alloc, "cuMemAlloc_v2");
    SYM(memset_d32, "cuMemsetD32_v2");
    SYM(dtoh, "cuMemcpyDtoH_v2");
    SYM(sync, "cuCtxSynchronize");
#undef SYM
    int dev;
    void *ctx;
    if (cu.init(0) || cu.device_get(&dev, 0) || cu.primary_retain(&ctx, dev) ||
        cu.ctx_set(ctx))
        return -1;
    return 0;
}

/* The simulation's function for every kernel here: x[i] += 1 for i < n. */
static int sim_add(void *user, const kc_sim_launch_t *l)
{
    (void)user;
    float *x = (float *)(uintptr_t) * (const uint64_t *)l->params[0];
    int n = *(const int32_t *)l->params[1];
    for (int i = 0; i < n; i++)
        x[i] += 1.0f;
    return 0;
}

static uint64_t sim_cost(void *user, const kc_sim_launch_t *l)
{
    (void)user;
    return 1000 + l->block[0];
}

static int device_open(void)
{
    if (g_cuda)
        return cuda_init();
    if (kc_sim_create(NULL, &g_sim) != KC_OK ||
        kc_sim_register(g_sim, "add", sim_add, sim_cost, NULL) != KC_OK)
        return -1;
    return 0;
}

/* A buffer of n floats, zeroed: device memory on CUDA, host memory (the
 * simulation's device memory) else. */
static uint64_t buf_alloc(int n)
{
    if (g_cuda) {
        uint64_t p = 0;
        if (cu.mem_alloc(&p, (size_t)n * 4) || cu.memset_d32(p, 0, (size_t)n))
            return 0;
        return p;
    }
    return (uint64_t)(uintptr_t)calloc((size_t)n, 4);
}

static float buf_read0(uint64_t p)
{
    float v = -1;
    if (g_cuda) {
        if (cu.sync() || cu.dtoh(&v, p, 4))
            return -1;
        return v;
    }
    return *(float *)(uintptr_t)p;
}

static void dev_sync(void)
{
    if (g_cuda)
        cu.sync();
}

static kc_launcher_t *make_launcher_opts(const char *store_dir, int no_prefetch,
                                         kc_device_kind_t kind, unsigned compile_threads)
{
    kc_launcher_opts_t o = KC_LAUNCHER_OPTS_INIT;
    o.compile_threads = compile_threads;
    o.device = kind;
    o.sim = g_sim;
    o.store_dir = store_dir;
    o.no_store = store_dir == NULL;
    o.no_prefetch = no_prefetch;
    if (kind == KC_DEVICE_NONE)
        o.arch = "sm_90";
    if (!g_cuda || g_populating) {
        o.budget_ms = g_cuda ? 1.0 : 0.01; /* the sim's clock is virtual */
        o.min_reps = 3;
        o.max_reps = 5;
    }
    kc_launcher_t *l = NULL;
    int rc = kc_launcher_create(&o, &l);
    if (rc != KC_OK) {
        fprintf(stderr, "bench: launcher: %s: %s\n", kc_strerror(rc),
                kc_launcher_create_errmsg());
        exit(1);
    }
    return l;
}

static kc_launcher_t *make_launcher(const char *store_dir, int no_prefetch,
                                    kc_device_kind_t kind)
{
    return make_launcher_opts(store_dir, no_prefetch, kind, 0);
}

static kc_launcher_t *make_launcher_threads(const char *store_dir, kc_device_kind_t kind,
                                            unsigned compile_threads)
{
    return make_launcher_opts(store_dir, 1, kind, compile_threads);
}

/* ---- the kernels: add(x, n), x[i] += C, one per constant C -------------- */

static const int64_t kBlock[] = {128};
static const kc_arg_spec_t kAddArgs[] = {
    {"x", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_INOUT, 0},
    {"n", KC_ARG_SCALAR, KC_DTYPE_I32, 0, 0},
};

typedef struct add_kernel {
    char name[32];
    char entry[32];
    char source[256];
    kc_param_spec_t param;
    kc_kernel_spec_t spec;
} add_kernel_t;

static void add_kernel_init(add_kernel_t *a, long c)
{
    snprintf(a->name, sizeof(a->name), "add%ld", c);
    if (!g_cuda || g_one_name)
        snprintf(a->entry, sizeof(a->entry), "add");
    else
        snprintf(a->entry, sizeof(a->entry), "add%ld", c);
    snprintf(a->source, sizeof(a->source),
             "extern \"C\" __global__ void %s(float *x, int n)\n"
             "{\n"
             "    int i = blockIdx.x * BLOCK + threadIdx.x;\n"
             "    if (i < n) x[i] += %ld.0f;\n"
             "}\n",
             a->entry, c);
    a->param = (kc_param_spec_t){"BLOCK", kBlock, 1};
    memset(&a->spec, 0, sizeof(a->spec));
    a->spec.name = a->name;
    a->spec.source_kind = KC_SOURCE_CUDA;
    a->spec.source = a->source;
    a->spec.entry = a->entry;
    a->spec.params = &a->param;
    a->spec.n_params = 1;
    a->spec.args = kAddArgs;
    a->spec.n_args = 2;
    a->spec.grid[0] = "cdiv(n, BLOCK)";
    a->spec.block[0] = "BLOCK";
}

/* What kernel c adds: c on CUDA, 1 on the simulation (one C function). */
static float added_by(long c)
{
    return g_cuda ? (float)c : 1.0f;
}

typedef struct xarg {
    uint64_t x;
    int64_t dims[1];
    kc_arg_t args[2];
} xarg_t;

static void xarg_init(xarg_t *a, int n)
{
    memset(a, 0, sizeof(*a));
    a->x = buf_alloc(n);
    if (!a->x) {
        fprintf(stderr, "bench: out of device memory\n");
        exit(1);
    }
    a->dims[0] = n;
    a->args[0].ptr = a->x;
    a->args[0].rank = 1;
    a->args[0].dims = a->dims;
    a->args[1].value.i = n;
}

/* ---- populate: publish N distinct kernels (a child process) ------------- */

/* The store of n distinct kernels under root: one per device and naming. */
static void distinct_dir(char *dir, size_t cap, const char *root, long n)
{
    snprintf(dir, cap, "%s/distinct-%s-%ld%s", root, g_cuda ? "cuda" : "sim", n,
             g_cuda && !g_one_name ? "-names" : "");
}

#define BATCH 64

/* Kernels [from, to) published by this process. */
static int populate_range(const char *dir, long from, long to)
{
    g_populating = 1;
    if (device_open() != 0) {
        fprintf(stderr, "bench: no device\n");
        return 1;
    }
    kc_launcher_t *l = make_launcher(dir, 1, g_cuda ? KC_DEVICE_CUDA : KC_DEVICE_SIM);
    add_kernel_t *ks = calloc(BATCH, sizeof(*ks));
    xarg_t a;
    xarg_init(&a, 1);
    double t0 = bench_now_us();
    for (long base = from; base < to; base += BATCH) {
        kc_kernel_t *k[BATCH];
        long m = to - base < BATCH ? to - base : BATCH;
        /* Registered together, so that the pool compiles them side by side. */
        for (long i = 0; i < m; i++) {
            add_kernel_init(&ks[i], base + i);
            if (kc_kernel_get(l, &ks[i].spec, &k[i]) != KC_OK) {
                fprintf(stderr, "bench: populate: %s\n", kc_launcher_errmsg(l));
                return 1;
            }
        }
        for (long i = 0; i < m; i++)
            if (kc_kernel_launch(k[i], NULL, a.args, 2) != KC_OK) {
                fprintf(stderr, "bench: populate: launch: %s\n", kc_launcher_errmsg(l));
                return 1;
            }
        /* A launcher keeps its kernels: a new one per batch bounds memory. */
        kc_launcher_destroy(l);
        l = make_launcher(dir, 1, g_cuda ? KC_DEVICE_CUDA : KC_DEVICE_SIM);
        if (((base - from) / BATCH) % 32 == 31)
            fprintf(stderr, "bench: populated %ld of kernels %ld-%ld (%.0f s)\n",
                    base + m - from, from, to - 1, (bench_now_us() - t0) / 1e6);
    }
    kc_launcher_destroy(l);
    free(ks);
    return 0;
}

/* Publish kernels 0..n-1 from KC_BENCH_POPULATE_PROCS processes at once
 * (default a quarter of the CPUs, 1 to 8; they share the store as any
 * processes do), forked before any of them opens a device, then mark the
 * store populated. */
static int populate(const char *dir, long n)
{
    const char *env = getenv("KC_BENCH_POPULATE_PROCS");
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    long procs = env && *env ? atol(env) : cpus / 4;
    procs = procs < 1 ? 1 : procs > 8 ? 8 : procs > n ? n : procs;
    double t0 = bench_now_us();
    int failed = 0;
    if (procs == 1) {
        failed = populate_range(dir, 0, n) != 0;
    } else {
        pid_t pids[8];
        for (long p = 0; p < procs; p++) {
            pids[p] = fork();
            if (pids[p] == 0)
                _exit(populate_range(dir, n * p / procs, n * (p + 1) / procs));
            failed |= pids[p] < 0;
        }
        for (long p = 0; p < procs; p++) {
            int st = 0;
            if (pids[p] > 0 &&
                (waitpid(pids[p], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0))
                failed = 1;
        }
    }
    if (failed) {
        fprintf(stderr, "bench: populate failed\n");
        return 1;
    }
    char mark[4200];
    snprintf(mark, sizeof(mark), "%s/.populated", dir);
    FILE *f = fopen(mark, "w");
    if (!f)
        return 1;
    fclose(f);
    fprintf(stderr, "bench: populated %ld kernels from %ld processes in %.1f s\n", n,
            procs, (bench_now_us() - t0) / 1e6);
    return 0;
}

/* ---- the first hit's steps by hand (a child process) --------------------- */

/* A store hit's steps as the launcher takes them (miss.c), each timed, in a
 * fresh process whose device is ready: open the store, look the tuning up,
 * fetch the winner's build and cubin (lookup, decompress, hash check), load
 * the module and find the function, the usage stamps and counters, the
 * memo insert; for kernel 0 (the process's first hit) then kernel 1. */
static int breakdown(const char *dir, int log_faults)
{
    kc__device_t *dev = NULL;
    char why[256] = "";
    if (device_open() != 0 || (g_cuda ? kc__device_cuda_open(0, &dev, why, sizeof(why))
                                      : kc__device_sim_open(g_sim, &dev)) != KC_OK) {
        fprintf(stderr, "bench: breakdown: no device %s\n", why);
        return 1;
    }
    kc_key_t keys[2];
    for (int i = 0; i < 2; i++) {
        char path[4200], hex[64] = "";
        snprintf(path, sizeof(path), "%s/.key%d", dir, i);
        FILE *kf = fopen(path, "r");
        if (!kf || fscanf(kf, "%63s", hex) != 1 ||
            kc_key_from_hex(hex, &keys[i]) != KC_OK) {
            fprintf(stderr, "bench: breakdown: no key in %s\n", path);
            return 1;
        }
        fclose(kf);
    }
    kc_layers_t *layers = NULL;
    kc_fault_log_t *flog = log_faults ? kc_fault_log_start() : NULL;
    long f_open = minor_faults();
    double t0 = bench_now_us();
    if (kc_layers_open(dir, NULL, &layers) != KC_OK)
        return 1;
    double open_us = bench_now_us() - t0;
    f_open = minor_faults() - f_open;
    kc_fault_log_print(flog, "the store open", stdout);
    kc_store_t *st = kc_layers_writable(layers);
    kc__memo_t memo;
    kc__memo_init(&memo);
    double v[2][5];
    long faults[2][5];
    for (int j = 0; j < 2; j++) {
        kc_record_t *rec = NULL, *brec = NULL;
        void *cubin = NULL, *module = NULL, *fn = NULL;
        size_t len = 0;
        double t[6];
        long f[6];
        flog = log_faults && j == 0 ? kc_fault_log_start() : NULL;
        f[0] = minor_faults();
        t[0] = bench_now_us();
        if (kc_layers_get(layers, KC_REC_TUNING, &keys[j], &rec, NULL) != KC_OK)
            return 1;
        t[1] = bench_now_us();
        f[1] = minor_faults();
        if (kc_layers_get_build_cubin(layers, &rec->u.tuning.winner_build, &brec, &cubin,
                                      &len, NULL) != KC_OK)
            return 1;
        t[2] = bench_now_us();
        f[2] = minor_faults();
        if (dev->ops->module_load(dev, cubin, len, &module) != KC_OK ||
            dev->ops->get_function(dev, module, brec->u.build.entry, &fn) != KC_OK)
            return 1;
        t[3] = bench_now_us();
        f[3] = minor_faults();
        kc_store_touch(st, KC_REC_BUILD, &rec->u.tuning.winner_build);
        kc_store_count(st, KC_COUNTER_TUNE_US_SAVED, rec->u.tuning.tuning_us);
        kc_store_count(st, KC_COUNTER_COMPILE_US_SAVED, brec->u.build.compile_us);
        kc_store_count(st, KC_COUNTER_HITS, 1);
        kc_store_touch(st, KC_REC_TUNING, &keys[j]);
        t[4] = bench_now_us();
        f[4] = minor_faults();
        const kc__memo_entry_t *e;
        int64_t cfg[1] = {kBlock[0]};
        uint8_t sig[8] = {(uint8_t)j};
        kc__memo_insert(&memo, sig, sizeof(sig), kc__memo_hash(sig, sizeof(sig)), NULL,
                        fn, 0, cfg, 1, NULL, &e);
        t[5] = bench_now_us();
        f[5] = minor_faults();
        kc_fault_log_print(flog, "the first kernel's hit", stdout);
        for (int i = 0; i < 5; i++) {
            v[j][i] = t[i + 1] - t[i];
            faults[j][i] = f[i + 1] - f[i];
        }
        kc_free(cubin);
        kc_free(brec);
        kc_free(rec);
    }
    static const char *const names[5] = {
        "tuning lookup", "build+cubin fetch (decompress, hash)",
        "module load + get function", "usage stamps + counters", "memo insert"};
    printf("  first-hit breakdown, the launcher's steps by hand in a fresh process "
           "(device ready): store open %.1f us (%ld page faults)\n",
           open_us, f_open);
    double s0 = 0, s1 = 0;
    for (int i = 0; i < 5; i++) {
        printf("    %-38s first kernel %8.1f us (%3ld faults), second kernel %8.1f us "
               "(%3ld)\n",
               names[i], v[0][i], faults[0][i], v[1][i], faults[1][i]);
        s0 += v[0][i];
        s1 += v[1][i];
    }
    printf("    %-38s first kernel %8.1f us, second kernel %8.1f us: ratio %.2f\n", "sum",
           s0, s1, s0 / s1);
    kc__memo_destroy(&memo);
    kc_layers_close(layers);
    dev->ops->destroy(dev);
    return 0;
}

/* ---- part: launcher creation -------------------------------------------- */

static void part_create(const char *root, int no_prefetch)
{
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/create-store", root);
    kc_device_kind_t kind = g_cuda ? KC_DEVICE_CUDA : KC_DEVICE_SIM;
    int before = threads_now();
    double t0 = bench_now_us();
    kc_launcher_t *l = make_launcher(dir, no_prefetch, kind);
    double first = bench_now_us() - t0;
    int after = threads_now();
    kc_launcher_destroy(l);
    enum { ROUNDS = 21 };
    double v[ROUNDS], w[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        t0 = bench_now_us();
        l = make_launcher(dir, no_prefetch, kind);
        v[r] = bench_now_us() - t0;
        t0 = bench_now_us();
        kc_launcher_destroy(l);
        w[r] = bench_now_us() - t0;
    }
    printf("launcher create (%s, store %s): first of the process %.1f us, median of the "
           "next %d %.1f us (destroy %.1f us); threads before create %d, after %d "
           "(the store opens at the first kernel, not here)\n",
           g_cuda ? "cuda" : "sim", dir, first, ROUNDS, bench_pct(v, ROUNDS, 50),
           bench_pct(w, ROUNDS, 50), before, after);
}

/* ---- part: store hits of N distinct kernels ------------------------------ */

/* The store of n distinct kernels under root into dir, populated by a
 * child process (self --populate) unless it was already. */
static int ensure_populated(const char *self, const char *root, long n, char *dir,
                            size_t cap)
{
    char mark[4300];
    distinct_dir(dir, cap, root, n);
    snprintf(mark, sizeof(mark), "%s/.populated", dir);
    if (dir_exists(mark))
        return 0;
    char cmd[9000];
    snprintf(cmd, sizeof(cmd), "'%s' --device %s%s --populate '%s' %ld", self,
             g_cuda ? "cuda" : "sim", g_one_name ? " --one-name" : "", dir, n);
    fprintf(stderr, "bench: populating %s with %ld kernels (once per directory)\n", dir,
            n);
    if (system(cmd) != 0 || !dir_exists(mark)) {
        fprintf(stderr, "bench: populate failed\n");
        return 1;
    }
    return 0;
}

static int part_distinct(const char *self, const char *root, long n, int no_prefetch)
{
    char dir[4200];
    if (ensure_populated(self, root, n, dir, sizeof(dir)) != 0)
        return 1;
    double *reg = calloc((size_t)n, sizeof(double));
    double *lau = calloc((size_t)n, sizeof(double));
    double *both = calloc((size_t)n, sizeof(double));
    add_kernel_t *ks = calloc((size_t)n, sizeof(*ks));
    if (!reg || !lau || !both || !ks)
        return 1;
    xarg_t a;
    xarg_init(&a, 1);
    kc_fault_log_t *flog = g_faults ? kc_fault_log_start() : NULL;
    double t0 = bench_now_us();
    kc_launcher_t *l =
        make_launcher(dir, no_prefetch, g_cuda ? KC_DEVICE_CUDA : KC_DEVICE_SIM);
    double create_us = bench_now_us() - t0;
    kc_fault_log_print(flog, "the launcher create", stdout);
    long wrong = 0;
    float expect = 0;
    double all0 = bench_now_us();
    kc_kernel_t *first2[2] = {NULL, NULL};
    for (long i = 0; i < n; i++) {
        kc_kernel_t *k = NULL;
        add_kernel_init(&ks[i], i);
        flog = g_faults && i == 0 ? kc_fault_log_start() : NULL;
        t0 = bench_now_us();
        if (kc_kernel_get(l, &ks[i].spec, &k) != KC_OK) {
            fprintf(stderr, "bench: kernel %ld: %s\n", i, kc_launcher_errmsg(l));
            return 1;
        }
        double t1 = bench_now_us();
        if (kc_kernel_launch(k, NULL, a.args, 2) != KC_OK) {
            fprintf(stderr, "bench: kernel %ld: launch: %s\n", i, kc_launcher_errmsg(l));
            return 1;
        }
        double t2 = bench_now_us();
        kc_fault_log_print(flog, "the first kernel's registration and launch", stdout);
        if (i < 2)
            first2[i] = k;
        reg[i] = t1 - t0;
        lau[i] = t2 - t1;
        both[i] = t2 - t0;
        expect += added_by(i);
        /* The result, checked every 1024 kernels, outside the clock. */
        if (i % 1024 == 0 || i == n - 1) {
            float got = buf_read0(a.x);
            wrong += got != expect;
        }
    }
    dev_sync();
    double all_s = (bench_now_us() - all0) / 1e6;
    kc_kernel_stats_t st;
    kc_launcher_stats(l, &st);
    const char *bound = getenv("KCACHE_MAX_MODULES");
    printf("store hits of %ld distinct kernels (%s, %s, %s, fresh process and launcher, "
           "store %s, KCACHE_MAX_MODULES %s): %.2f s in all; launcher create %.1f us\n",
           n, g_cuda ? "cuda" : "sim", no_prefetch ? "no prefetch" : "default prefetch",
           g_cuda && !g_one_name ? "an entry name each" : "one entry name", dir,
           bound && *bound ? bound : "unset (automatic)", all_s, create_us);
    printf("  the process's first hit: registration %.1f us + first launch %.1f us = "
           "%.1f us; a steady hit (median): %.1f us: ratio %.2f\n",
           reg[0], lau[0], both[0], bench_pct(both, (size_t)n, 50),
           both[0] / bench_pct(both, (size_t)n, 50));
    /* The store is opened at the first registration, not at creation: the
     * sum is what compares across that change. */
    printf("  first call (launcher create + first registration + first launch): "
           "%.1f us\n",
           create_us + both[0]);
    bench_print_dist("registration (kernel_get)", reg, (size_t)n);
    bench_print_dist("first launch (store hit)", lau, (size_t)n);
    bench_print_dist("both", both, (size_t)n);
    /* Which kernels were slowest: a pattern (every 4096th...) names a cause. */
    printf("  slowest:");
    for (int r = 0; r < 6 && r < n; r++) {
        long worst = 0;
        for (long i = 1; i < n; i++)
            if (both[i] > both[worst])
                worst = i;
        printf(" #%ld %.0f us (reg %.0f)", worst, both[worst], reg[worst]);
        both[worst] = -both[worst];
    }
    for (long i = 0; i < n; i++)
        both[i] = both[i] < 0 ? -both[i] : both[i];
    printf("\n");
    size_t w = n >= 2000 ? 1000 : (size_t)n / 2;
    if (w) {
        double f = bench_pct(both, w, 50), la = bench_pct(both + n - w, w, 50);
        double fl = bench_pct(lau, w, 50), ll = bench_pct(lau + n - w, w, 50);
        printf("  median over the first %zu kernels %.2f us, over the last %zu %.2f us: "
               "ratio %.2f (target <= 1.5); first launch alone %.2f vs %.2f us: %.2f\n",
               w, f, w, la, la / f, fl, ll, ll / fl);
    }
    /* The median of each sixteenth of the run: a trend, or noise. */
    if (n >= 16 * 16) {
        printf("  median per sixteenth of the kernels (registration + first launch):");
        for (int q = 0; q < 16; q++) {
            size_t lo = (size_t)n * (size_t)q / 16, hi = (size_t)n * (size_t)(q + 1) / 16;
            printf(" %.1f", bench_pct(both + lo, hi - lo, 50));
        }
        printf(" us\n");
    }
    printf("  stats: store hits %" PRIu64 ", compiles %" PRIu64 ", tunes %" PRIu64
           ", memo misses %" PRIu64 ", winners prefetched by the end of the loop %" PRIu64
           "; results checked %ld, wrong %ld\n",
           st.store_hits, st.compiles, st.tunes, st.launches - st.memo_hits,
           st.prefetched, (n + 1023) / 1024 + 1, wrong);
    /* The tuning keys of kernels 0 and 1, for the first-hit breakdown. */
    for (int i = 0; i < 2 && first2[i]; i++) {
        kc_key_t key;
        char hex[KC_KEY_HEX_LEN + 1], path[4400];
        snprintf(path, sizeof(path), "%s/.key%d", dir, i);
        FILE *kf = fopen(path, "w");
        if (kc__kernel_tuning_key(first2[i], a.args, 2, &key) != KC_OK || !kf)
            return 1;
        kc_key_to_hex(&key, hex);
        fprintf(kf, "%s\n", hex);
        fclose(kf);
    }
    t0 = bench_now_us();
    kc_launcher_destroy(l);
    printf("  launcher destroy with %ld kernels: %.1f ms\n", n,
           (bench_now_us() - t0) / 1e3);
    fflush(stdout);
    char cmd[9000];
    snprintf(cmd, sizeof(cmd), "'%s' --device %s --breakdown '%s'", self,
             g_cuda ? "cuda" : "sim", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench: the first-hit breakdown failed\n");
    free(reg);
    free(lau);
    free(both);
    free(ks);
    if (st.store_hits != (uint64_t)n || st.compiles || st.tunes || wrong) {
        fprintf(stderr,
                "bench: expected %ld store hits, no compile, no tuning, and right "
                "results\n",
                n);
        return 1;
    }
    return 0;
}

/* ---- part: one kernel, many launches ------------------------------------- */

static int part_hot(const char *root, long n)
{
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/hot-%s", root, g_cuda ? "cuda" : "sim");
    kc_launcher_t *l = make_launcher(dir, 0, g_cuda ? KC_DEVICE_CUDA : KC_DEVICE_SIM);
    add_kernel_t ak;
    add_kernel_init(&ak, 1);
    kc_kernel_t *k = NULL;
    xarg_t a;
    xarg_init(&a, 1);
    if (kc_kernel_get(l, &ak.spec, &k) != KC_OK ||
        kc_kernel_launch(k, NULL, a.args, 2) != KC_OK) {
        fprintf(stderr, "bench: hot: %s\n", kc_launcher_errmsg(l));
        return 1;
    }
    double *v = calloc((size_t)n, sizeof(double));
    if (!v)
        return 1;
    double t_all = bench_now_us();
    for (long i = 0; i < n; i++) {
        double t0 = bench_now_us();
        kc_kernel_launch(k, NULL, a.args, 2);
        v[i] = bench_now_us() - t0;
        /* The GPU's queue must not fill and block the host: sync, unclocked. */
        if (g_cuda && i % 256 == 255)
            dev_sync();
    }
    dev_sync();
    double total = bench_now_us() - t_all;
    float got = buf_read0(a.x);
    printf("memo hits, one kernel, %ld launches (%s), host time per launch "
           "(clock reads included; the run %.2f s): result %s\n",
           n, g_cuda ? "cuda" : "sim", total / 1e6,
           got == (float)(n + 1) * added_by(1) ? "right" : "WRONG");
    bench_print_dist("kc_kernel_launch", v, (size_t)n);
    free(v);
    kc_launcher_destroy(l);
    return 0;
}

/* ---- part: parallel compile --------------------------------------------- */

/* Compile-heavy: unrolled polynomial evaluation (the kind kcache_bench_launch compiles,
 * with 4 terms instead of 8), its code depending on KC_BENCH_NONCE so NVRTC's own cache
 * never hits. */
static const char *kHeavySource =
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
    "    x[i] = horner<512, 0>(v) + horner<512, 1>(v * 0.5f) + horner<512, 2>(v * "
    "0.25f) + horner<512, 3>(v * 0.125f);\n"
    "}\n";
static const int64_t kHeavyBlocks[] = {32,  64,  128, 256, 512, 1024, 96,  192,
                                       384, 768, 160, 320, 640, 224,  448, 896};
#define MAX_CANDS (sizeof(kHeavyBlocks) / sizeof(kHeavyBlocks[0]))

static long g_nonce;

typedef struct compile_job {
    char opt[64];
    const char *opts[1];
    int64_t block;
    double us;
    int ok;
} compile_job_t;

static void *compile_job(void *arg)
{
    compile_job_t *j = arg;
    kc_param_t p = {"BLOCK", j->block};
    kc__compile_in_t in = {0};
    in.source = kHeavySource;
    in.source_len = strlen(kHeavySource);
    in.name = "bench_poly";
    in.entry = "poly";
    in.options = j->opts;
    in.n_options = 1;
    in.params = &p;
    in.n_params = 1;
    in.arch = "sm_90";
    kc__compile_out_t out = {0};
    double t0 = bench_now_us();
    j->ok = kc__nvrtc_compile(&in, &out) == KC_OK;
    j->us = bench_now_us() - t0;
    if (!j->ok)
        fprintf(stderr, "bench: compile failed: %s\n", out.log ? out.log : "");
    kc__compile_out_free(&out);
    return NULL;
}

static void job_init(compile_job_t *j, size_t i)
{
    snprintf(j->opt, sizeof(j->opt), "-DKC_BENCH_NONCE=%ld", g_nonce++);
    j->opts[0] = j->opt;
    j->block = kHeavyBlocks[i];
}

/* The same n compiles in n processes forked from this one (NVRTC already
 * loaded and started), released together once all are forked: no address
 * space shared, so what threads of one process contend for (the memory
 * map's lock, TLB shoot-downs on every unmap, malloc's arenas) is out of
 * it, and what the machine's cores share (SMT siblings, clocks under load,
 * memory bandwidth) is not. Each child's compile time comes back in shared
 * memory. Returns the wall time from the release to the last exit (us), or
 * -1. The caller has no other thread: the children may use malloc. */
static double compile_in_processes(compile_job_t *jobs, size_t n)
{
    compile_job_t *shared = mmap(NULL, n * sizeof(*jobs), PROT_READ | PROT_WRITE,
                                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int go[2];
    pid_t pids[MAX_CANDS];
    size_t started = 0;
    double wall = -1;

    if (shared == MAP_FAILED)
        return -1;
    memcpy(shared, jobs, n * sizeof(*jobs));
    if (pipe(go) != 0) {
        munmap(shared, n * sizeof(*jobs));
        return -1;
    }
    fflush(NULL);
    for (; started < n; started++) {
        pid_t pid = fork();
        if (pid < 0)
            break;
        if (pid == 0) {
            char c;
            close(go[1]);
            if (read(go[0], &c, 1) != 1)
                _exit(1);
            shared[started].opts[0] = shared[started].opt;
            compile_job(&shared[started]);
            _exit(shared[started].ok ? 0 : 1);
        }
        pids[started] = pid;
    }
    close(go[0]);
    double t0 = bench_now_us();
    for (size_t i = 0; i < started; i++)
        if (write(go[1], "g", 1) != 1)
            break;
    close(go[1]);
    int ok = started == n;
    for (size_t i = 0; i < started; i++) {
        int status = 0;
        ok &= waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0;
    }
    if (ok) {
        wall = bench_now_us() - t0;
        for (size_t i = 0; i < n; i++)
            jobs[i].us = shared[i].us;
    }
    munmap(shared, n * sizeof(*jobs));
    return wall;
}

/* One round of the compile part at n candidates: walls in us (seq, the
 * threads, the processes, the pool), the mean time of one compile alone,
 * on threads and in processes, and what the pool's tasks timed. */
typedef struct compile_round {
    double seq, par, proc, pool;
    double alone_mean, cont_mean, proc_mean;
    double pool_in_mean, pool_over;
    uint64_t compiles;
} compile_round_t;

static int compile_round(const char *root, size_t n, compile_round_t *r)
{
    compile_job_t jobs[MAX_CANDS];
    pthread_t th[MAX_CANDS];
    /* One after another: each compile alone. */
    double alone = 0, t0 = bench_now_us();
    for (size_t i = 0; i < n; i++) {
        job_init(&jobs[i], i);
        compile_job(&jobs[i]);
        alone += jobs[i].us;
    }
    r->seq = bench_now_us() - t0;
    r->alone_mean = alone / (double)n;
    /* All at once on n threads. */
    for (size_t i = 0; i < n; i++)
        job_init(&jobs[i], i);
    t0 = bench_now_us();
    for (size_t i = 0; i < n; i++)
        pthread_create(&th[i], NULL, compile_job, &jobs[i]);
    double cont = 0;
    for (size_t i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        cont += jobs[i].us;
    }
    r->par = bench_now_us() - t0;
    r->cont_mean = cont / (double)n;
    /* All at once in n processes. */
    for (size_t i = 0; i < n; i++)
        job_init(&jobs[i], i);
    r->proc = compile_in_processes(jobs, n);
    r->proc_mean = 0;
    for (size_t i = 0; i < n; i++)
        r->proc_mean += jobs[i].us / (double)n;
    /* kc_kernel_get on the launcher's pool, a fresh store. */
    char dir[4200], opt[64];
    snprintf(dir, sizeof(dir), "%s/compile-%zu-%ld", root, n, g_nonce);
    snprintf(opt, sizeof(opt), "-DKC_BENCH_NONCE=%ld", g_nonce++);
    const char *opts[1] = {opt};
    kc_param_spec_t ps = {"BLOCK", kHeavyBlocks, n};
    kc_kernel_spec_t s = {0};
    s.name = "bench_poly";
    s.source_kind = KC_SOURCE_CUDA;
    s.source = kHeavySource;
    s.options = opts;
    s.n_options = 1;
    s.entry = "poly";
    s.params = &ps;
    s.n_params = 1;
    s.args = kAddArgs;
    s.n_args = 2;
    s.grid[0] = "cdiv(n, BLOCK)";
    s.block[0] = "BLOCK";
    kc_launcher_t *l = make_launcher_threads(dir, KC_DEVICE_NONE, g_compile_threads);
    kc_kernel_t *k = NULL;
    t0 = bench_now_us();
    if (kc_kernel_get(l, &s, &k) != KC_OK || kc_kernel_wait_compiled(k) != KC_OK) {
        fprintf(stderr, "bench: pool compile: %s\n", kc_launcher_errmsg(l));
        kc_launcher_destroy(l);
        return 1;
    }
    r->pool = bench_now_us() - t0;
    kc_kernel_stats_t st;
    kc_kernel_stats(k, &st);
    r->compiles = st.compiles;
    /* NVRTC's time inside kcache's compile tasks (what each task timed
     * around nvrtcCompileProgram and its cubin read). */
    double in_sum = 0, in_max = 0;
    for (size_t i = 0; i < k->n_cands; i++) {
        double us = (double)k->cands[i].compile_us;
        in_sum += us;
        in_max = us > in_max ? us : in_max;
    }
    r->pool_in_mean = in_sum / (double)k->n_cands;
    r->pool_over = r->pool - in_max;
    kc_launcher_destroy(l);
    return 0;
}

/* The median over rounds of one field of compile_round_t. */
#define MAX_ROUNDS 64
static double round_median(const compile_round_t *rs, size_t rounds, size_t offset)
{
    double v[MAX_ROUNDS];
    for (size_t i = 0; i < rounds; i++)
        memcpy(&v[i], (const char *)&rs[i] + offset, sizeof(double));
    return bench_median(v, rounds);
}
#define ROUND_MEDIAN(rs, rounds, field)                                                  \
    round_median(rs, rounds, offsetof(compile_round_t, field))

static int part_compile(const char *root, size_t max_cands, size_t rounds)
{
    char err[256];
    if (kc__nvrtc_load(err, sizeof(err)) != KC_OK) {
        fprintf(stderr, "bench: NVRTC: %s\n", err);
        return 1;
    }
    g_nonce = ((long)time(NULL) % 100000) * 1000 + (long)(getpid() % 1000) * 100000000L;
    /* NVRTC's start in the process and in this thread, before any clock. */
    compile_job_t warm;
    job_init(&warm, 0);
    compile_job(&warm);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    printf("parallel compile (NVRTC %s, %ld online CPUs; times in ms; medians of %zu "
           "round%s, each N's rounds back to back):\n",
           kc__nvrtc_toolchain_id(), cpus, rounds, rounds == 1 ? "" : "s");
    printf("  %2s %10s %10s %9s | %12s %12s %9s | %10s %9s | %s\n", "N", "seq wall",
           "par wall", "speed-up", "alone (mean)", "contended", "slowdown", "pool wall",
           "speed-up", "target 0.7 x min(N, CPUs)");
    compile_round_t med[MAX_CANDS];
    double proc_speedup[MAX_CANDS], proc_slowdown[MAX_CANDS];
    int failed = 0;
    for (size_t n = 1; n <= max_cands; n++) {
        compile_round_t rs[MAX_ROUNDS], ratio[MAX_ROUNDS], *m = &med[n - 1];
        size_t ok = 0;
        for (size_t i = 0; i < rounds; i++) {
            if (compile_round(root, n, &rs[ok]) != 0)
                return 1;
            ok +=
                rs[ok].proc >= 0; /* a round whose processes failed counts for nothing */
        }
        if (ok == 0) {
            m->proc = -1;
            failed = 1;
            continue;
        }
        /* Each ratio is the median of the rounds' own ratios: a round's
         * sequence and its parallel runs ran back to back. */
        for (size_t i = 0; i < ok; i++)
            ratio[i] = (compile_round_t){
                .par = rs[i].seq / rs[i].par,
                .pool = rs[i].seq / rs[i].pool,
                .proc = rs[i].seq / rs[i].proc,
                .cont_mean = rs[i].cont_mean / rs[i].alone_mean,
                .proc_mean = rs[i].proc_mean / rs[i].alone_mean,
            };
        *m = (compile_round_t){
            .seq = ROUND_MEDIAN(rs, ok, seq),
            .par = ROUND_MEDIAN(rs, ok, par),
            .proc = ROUND_MEDIAN(rs, ok, proc),
            .pool = ROUND_MEDIAN(rs, ok, pool),
            .alone_mean = ROUND_MEDIAN(rs, ok, alone_mean),
            .cont_mean = ROUND_MEDIAN(rs, ok, cont_mean),
            .proc_mean = ROUND_MEDIAN(rs, ok, proc_mean),
            .pool_in_mean = ROUND_MEDIAN(rs, ok, pool_in_mean),
            .pool_over = ROUND_MEDIAN(rs, ok, pool_over),
            .compiles = rs[0].compiles,
        };
        proc_speedup[n - 1] = ROUND_MEDIAN(ratio, ok, proc);
        proc_slowdown[n - 1] = ROUND_MEDIAN(ratio, ok, proc_mean);
        double target = 0.7 * (double)((long)n < cpus ? (long)n : cpus);
        printf("  %2zu %10.1f %10.1f %8.2fx | %12.1f %12.1f %8.2fx | %10.1f %8.2fx | "
               "%.2fx (compiles %" PRIu64 ")\n",
               n, m->seq / 1e3, m->par / 1e3, ROUND_MEDIAN(ratio, ok, par),
               m->alone_mean / 1e3, m->cont_mean / 1e3,
               ROUND_MEDIAN(ratio, ok, cont_mean), m->pool / 1e3,
               ROUND_MEDIAN(ratio, ok, pool), target, m->compiles);
    }
    printf(
        "  in the pool: each candidate's NVRTC time as kcache timed it (mean), and the "
        "pool's wall time less the slowest candidate's (kcache's own share: the "
        "pool, build keys, leases, the store):\n");
    for (size_t n = 1; n <= max_cands; n++)
        if (med[n - 1].proc >= 0)
            printf("  %2zu NVRTC in the pool %8.1f ms, kcache's share %6.1f ms\n", n,
                   med[n - 1].pool_in_mean / 1e3, med[n - 1].pool_over / 1e3);
    printf("  the same compiles in N processes (nothing shared but the machine): if "
           "these scale where threads do not, a process's threads contend; if not, "
           "the cores do:\n");
    for (size_t n = 1; n <= max_cands; n++) {
        if (med[n - 1].proc < 0) {
            printf("  %2zu processes: a child could not be started or did not compile\n",
                   n);
            continue;
        }
        printf("  %2zu processes wall %8.1f ms, speed-up %5.2fx, each compile %8.1f ms "
               "(%.2fx alone)\n",
               n, med[n - 1].proc / 1e3, proc_speedup[n - 1], med[n - 1].proc_mean / 1e3,
               proc_slowdown[n - 1]);
    }
    return failed;
}

/* ---- driver ------------------------------------------------------------- */

int main(int argc, char **argv)
{
    const char *root = NULL;
    long distinct = 16384, hot = 1000000;
    size_t max_cands = 6, rounds = 1;
    int no_prefetch = 0, skip_create = 0, skip_distinct = 0, skip_hot = 0,
        skip_compile = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            i++;
            if (!strcmp(argv[i], "cuda"))
                g_cuda = 1;
            else if (strcmp(argv[i], "sim") != 0) {
                fprintf(stderr, "bench: --device sim or cuda\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--breakdown") && i + 1 < argc) {
            return breakdown(argv[i + 1], 0);
        } else if (!strcmp(argv[i], "--breakdown-faults") && i + 1 < argc) {
            return breakdown(argv[i + 1], 1);
        } else if (!strcmp(argv[i], "--populate") && i + 2 < argc) {
            return populate(argv[i + 1], atol(argv[i + 2]));
        } else if (!strcmp(argv[i], "-s") && i + 1 < argc)
            root = argv[++i];
        else if (!strcmp(argv[i], "--distinct") && i + 1 < argc)
            distinct = atol(argv[++i]);
        else if (!strcmp(argv[i], "--hot") && i + 1 < argc)
            hot = atol(argv[++i]);
        else if (!strcmp(argv[i], "--max-cands") && i + 1 < argc)
            max_cands = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--compile-threads") && i + 1 < argc)
            g_compile_threads = (unsigned)atol(argv[++i]);
        else if (!strcmp(argv[i], "--faults"))
            g_faults = 1;
        else if (!strcmp(argv[i], "--no-prefetch"))
            no_prefetch = 1;
        else if (!strcmp(argv[i], "--one-name"))
            g_one_name = 1;
        else if (!strcmp(argv[i], "--compile-only"))
            skip_create = skip_distinct = skip_hot = 1;
        else if (!strcmp(argv[i], "--skip") && i + 1 < argc) {
            i++;
            skip_create |= !strcmp(argv[i], "create");
            skip_distinct |= !strcmp(argv[i], "distinct");
            skip_hot |= !strcmp(argv[i], "hot");
            skip_compile |= !strcmp(argv[i], "compile");
        } else {
            fprintf(stderr,
                    "usage: %s [--device sim|cuda] [-s DIR] [--distinct N] [--hot N] "
                    "[--max-cands C] [--rounds R] [--compile-threads T] [--no-prefetch] "
                    "[--one-name] [--skip "
                    "create|distinct|hot|compile]... [--compile-only]\n",
                    argv[0]);
            return 2;
        }
    }
    if (distinct < 1 || hot < 1 || max_cands < 1 || max_cands > MAX_CANDS || rounds < 1 ||
        rounds > MAX_ROUNDS) {
        fprintf(stderr,
                "bench: --distinct and --hot >= 1, --max-cands 1..%zu, --rounds 1..%d\n",
                MAX_CANDS, MAX_ROUNDS);
        return 2;
    }
    char tmpl[] = "/tmp/kcache-bench-launcher-XXXXXX";
    if (!root) {
        if (!mkdtemp(tmpl)) {
            perror("mkdtemp");
            return 1;
        }
        root = tmpl;
    } else {
        mkdir(root, 0700);
    }
    int need_device = !skip_create || !skip_distinct || !skip_hot;
    /* The populate child opens the device itself: no CUDA before it. */
    if (need_device && g_cuda && !skip_distinct) {
        char dir[4200];
        if (ensure_populated(argv[0], root, distinct, dir, sizeof(dir)) != 0)
            return 1;
    }
    if (need_device && device_open() != 0) {
        fprintf(stderr, "bench: cannot open the %s device\n", g_cuda ? "CUDA" : "sim");
        return 1;
    }
    int rc = 0;
    if (!skip_create)
        part_create(root, no_prefetch);
    if (!skip_distinct)
        rc |= part_distinct(argv[0], root, distinct, no_prefetch);
    if (!skip_hot)
        rc |= part_hot(root, hot);
    if (!skip_compile)
        rc |= part_compile(root, max_cands, rounds);
    kc_sim_destroy(g_sim);
    return rc;
}
