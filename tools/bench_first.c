/* kcache_bench_first: a fresh process's first call of a prebuilt kernel
 * (binaries as `cachectl import-triton` stores them) whose tuning is
 * stored, on the simulation device: what kc_run_spec measures on a GPU,
 * here on any machine.
 *
 *   kcache_bench_first --populate DIR [--kernels K]   once: NVRTC compiles a
 *       kernel; its cubin is stored as three prebuilt builds with their
 *       launch metadata, DIR/spec.json names them, and one launch tunes the
 *       three and publishes the tuning. With K > 1 the spec lists K - 1
 *       more kernels of the same binaries after it (tadd_1, ...), as a
 *       model's spec lists many: the first call then loads them all.
 *   kcache_bench_first DIR [--runs N] [--dirty-heap] [--cold-caches]
 *       N fresh processes (default 10), each, from a ready device: launcher
 *       create, the store's open (kc_launcher_store), kc_kernel_load_file of
 *       the spec, the first launch (a store hit: tuning lookup, cubin fetch
 *       and decompress, module load; the simulation device runs it before
 *       it returns). Prints each process's parts, the
 * threads the process has after the call, and the medians.
 *
 * --dirty-heap: before the clock, the process uses and frees its heap as a
 * host program does (CUDA's initialization does: a large freed block
 * raises glibc's mmap threshold, so later large allocations come from
 * reused, dirty heap that calloc must zero). Without it, a bare process
 * gets large allocations as fresh zero pages from mmap.
 *
 * --cold-caches: before the clock, the process writes and reads 256 MiB
 * (more than any CPU cache), so the first call finds none of kcache's,
 * LMDB's, zstd's or jansson's code and data in the caches, as a process
 * does right after CUDA's initialization has run through the driver's
 * hundreds of megabytes. What the first call then costs more is its
 * share of cache misses. */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_time.h"
#include "compiler.h"
#include "kcache/launch.h"
#include "kcache/record.h"
#include "kcache/sim.h"
#include "kcache/store.h"

static const char kSource[] =
    "extern \"C\" __global__ void tadd(float *x, float *y, int n, void *gs, void *ps)\n"
    "{ int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) y[i] = x[i] + 1.0f; }\n";

#define N_ELEMS 4096

/* The kernel on the simulation device: y = x + 1; its cost falls with the
 * block size, so the tuning has a winner. */
static int sim_tadd(void *user, const kc_sim_launch_t *l)
{
    (void)user;
    float *x = *(float **)l->params[0], *y = *(float **)l->params[1];
    int n = *(int *)l->params[2];
    for (int i = 0; i < n; i++)
        y[i] = x[i] + 1.0f;
    return 0;
}

static uint64_t sim_cost(void *user, const kc_sim_launch_t *l)
{
    (void)user;
    return 1000000u / (l->block[0] ? l->block[0] : 1);
}

static const kc_binmeta_arg_t kArgs[] = {
    {"x_ptr", "*fp32"}, {"y_ptr", "*fp32"}, {"n", "i32"}};

/* Store cubin as a prebuilt build of num_warps warps and its binmeta. */
static int put_prebuilt(kc_store_t *st, const void *cubin, size_t len, unsigned warps,
                        kc_key_t *build)
{
    char tag[16];
    const char *opt = tag;
    kc_key_t blob;
    void *pre = NULL;
    size_t pre_len = 0;
    int rc;

    snprintf(tag, sizeof(tag), "w%u", warps);
    if ((rc = kc_store_put_cubin(st, cubin, len, &blob)) != KC_OK)
        return rc;
    kc_build_desc_t d = {.source_kind = KC_SOURCE_PREBUILT,
                         .source_digest = blob,
                         .entry = "tadd",
                         .options = &opt,
                         .n_options = 1,
                         .arch = "sm_90",
                         .toolchain = "triton-3.6.0"};
    if ((rc = kc_build_preimage_encode(&d, &pre, &pre_len)) != KC_OK)
        return rc;
    *build = kc_key_hash(pre, pre_len);
    kc_record_t b = {.kind = KC_REC_BUILD};
    b.u.build = (kc_build_rec_t){
        .preimage = {pre, pre_len}, .blob = blob, .entry = "tadd", .created = 1};
    rc = kc_store_put(st, build, &b);
    kc_free(pre);
    if (rc != KC_OK)
        return rc;
    kc_record_t r = {.kind = KC_REC_BINMETA};
    r.u.binmeta = (kc_binmeta_rec_t){
        .build = *build,
        .entry = "tadd",
        .arch = "sm_90",
        .threads_per_block = warps * 32,
        .num_warps = warps,
        .warp_size = 32,
        .num_ctas = 1,
        .global_scratch_align = 1,
        .profile_scratch_align = 1,
        .compiler = "triton",
        .compiler_version = "3.6.0",
        .args = kArgs,
        .n_args = 3,
    };
    return kc_store_put(st, build, &r);
}

static kc_sim_t *make_sim(void)
{
    kc_sim_opts_t so = KC_SIM_OPTS_INIT;
    kc_sim_t *sim = NULL;
    so.arch = "sm_90";
    if (kc_sim_create(&so, &sim) != KC_OK ||
        kc_sim_register(sim, "tadd", sim_tadd, sim_cost, NULL) != KC_OK) {
        fprintf(stderr, "bench_first: cannot make the simulation device\n");
        exit(1);
    }
    return sim;
}

typedef struct bufs {
    float *x, *y;
    int64_t dim;
    kc_arg_t a[3];
} bufs_t;

static void bufs_init(bufs_t *b)
{
    b->x = malloc(N_ELEMS * sizeof(float));
    b->y = malloc(N_ELEMS * sizeof(float));
    if (!b->x || !b->y)
        exit(1);
    for (int i = 0; i < N_ELEMS; i++)
        b->x[i] = (float)i, b->y[i] = -1;
    b->dim = N_ELEMS;
    b->a[0] = (kc_arg_t){.ptr = (uint64_t)(uintptr_t)b->x, .rank = 1, .dims = &b->dim};
    b->a[1] = (kc_arg_t){.ptr = (uint64_t)(uintptr_t)b->y, .rank = 1, .dims = &b->dim};
    b->a[2] = (kc_arg_t){.value.i = N_ELEMS};
}

static void bufs_free(bufs_t *b)
{
    free(b->x);
    free(b->y);
}

static int bufs_ok(const bufs_t *b)
{
    for (int i = 0; i < N_ELEMS; i++)
        if (b->y[i] != b->x[i] + 1.0f)
            return 0;
    return 1;
}

static kc_launcher_t *make_launcher(kc_sim_t *sim, const char *dir)
{
    kc_launcher_opts_t o = KC_LAUNCHER_OPTS_INIT;
    kc_launcher_t *l = NULL;
    o.device = KC_DEVICE_SIM;
    o.sim = sim;
    o.store_dir = dir;
    o.budget_ms = 0.01;
    o.min_reps = 3;
    o.max_reps = 5;
    o.no_remote = 1;
    if (kc_launcher_create(&o, &l) != KC_OK) {
        fprintf(stderr, "bench_first: %s\n", kc_launcher_create_errmsg());
        exit(1);
    }
    return l;
}

static int populate(const char *dir, long kernels)
{
    static const unsigned warps[3] = {2, 4, 8};
    static const int xblock[3] = {64, 128, 256};
    const char *opts[] = {"--gpu-architecture=sm_90"};
    kc__compile_in_t in = {.source = kSource,
                           .source_len = sizeof(kSource) - 1,
                           .name = "tadd.cu",
                           .entry = "tadd",
                           .options = opts,
                           .n_options = 1,
                           .arch = "sm_90"};
    kc__compile_out_t out = {0};
    char err[1024], path[4096], hex[3][KC_KEY_HEX_LEN + 1];
    kc_store_t *st = NULL;
    kc_key_t build[3];

    if (kc__nvrtc_load(err, sizeof(err)) != KC_OK ||
        kc__nvrtc_compile(&in, &out) != KC_OK) {
        fprintf(stderr, "bench_first: NVRTC: %s %s\n", err, out.log ? out.log : "");
        return 1;
    }
    if (kc_store_open(dir, NULL, &st) != KC_OK) {
        fprintf(stderr, "bench_first: %s\n", kc_store_open_errmsg());
        return 1;
    }
    for (int i = 0; i < 3; i++) {
        if (put_prebuilt(st, out.cubin, out.cubin_len, warps[i], &build[i]) != KC_OK) {
            fprintf(stderr, "bench_first: %s\n", kc_store_errmsg(st));
            return 1;
        }
        kc_key_to_hex(&build[i], hex[i]);
    }
    kc_store_close(st);
    kc__compile_out_free(&out);

    snprintf(path, sizeof(path), "%s/spec.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return 1;
    /* The kernel first; with --kernels K, K - 1 more of the same binaries
     * under other names after it, as a model's spec lists many. */
    fprintf(f, "{\"version\": 1, \"kernels\": [");
    for (long k = 0; k < kernels; k++) {
        if (k == 0)
            fprintf(f, "{\"name\": \"tadd\", ");
        else
            fprintf(f, ",\n{\"name\": \"tadd_%ld\", ", k);
        fprintf(f, "\"source_kind\": \"prebuilt\", \"candidates\": [");
        for (int i = 0; i < 3; i++)
            fprintf(f, "%s{\"build\": \"%s\", \"config\": {\"XBLOCK\": %d}}",
                    i ? ", " : "", hex[i], xblock[i]);
        fprintf(
            f, "], \"args\": [{\"name\": \"x\", \"type\": \"f32*\", \"access\": "
               "\"in\"}, {\"name\": \"y\", \"type\": \"f32*\", \"access\": \"out\"}, "
               "{\"name\": \"n\", \"type\": \"i32\"}], \"grid\": [\"cdiv(n, XBLOCK)\"]}");
    }
    fprintf(f, "]}\n");
    fclose(f);

    /* One launch tunes the three and publishes the tuning. */
    kc_sim_t *sim = make_sim();
    kc_launcher_t *l = make_launcher(sim, dir);
    kc_kernel_t **ks = NULL;
    size_t n = 0;
    bufs_t b;
    bufs_init(&b);
    kc_kernel_stats_t s;
    if (kc_kernel_load_file(l, path, &ks, &n) != KC_OK || n != (size_t)kernels ||
        kc_kernel_launch(ks[0], NULL, b.a, 3) != KC_OK || !bufs_ok(&b) ||
        kc_kernel_stats(ks[0], &s) != KC_OK || s.tunes != 1) {
        fprintf(stderr, "bench_first: the tuning launch failed: %s\n",
                kc_launcher_errmsg(l));
        return 1;
    }
    kc_free(ks);
    bufs_free(&b);
    kc_launcher_destroy(l);
    kc_sim_destroy(sim);
    printf("populated %s: 3 prebuilt builds, spec.json of %ld kernels, the tuning\n", dir,
           kernels);
    return 0;
}

/* What a host program leaves in its heap: a large block freed (glibc then
 * serves large requests from the heap), then memory used and freed. */
static void dirty_heap(void)
{
    void *big = malloc(16u << 20);
    if (big)
        ((volatile char *)big)[0] = 1;
    free(big);
    char *used = malloc(8u << 20);
    if (used) {
        memset(used, 0x5a, 8u << 20);
        /* A memset just before free is a dead store the compiler drops
         * (it did: the heap stayed untouched and every later allocation
         * faulted in a fresh page); this keeps it. */
        __asm__ volatile("" : : "r"(used) : "memory");
    }
    free(used);
}

/* --cold-caches: run through more memory than the caches hold. */
static void cold_caches(void)
{
    size_t len = (size_t)256 << 20;
    volatile unsigned char *m = malloc(len);
    if (!m)
        return;
    for (size_t i = 0; i < len; i += 64)
        m[i] = (unsigned char)i;
    unsigned sum = 0;
    for (size_t i = 0; i < len; i += 64)
        sum += m[i];
    __asm__ volatile("" : : "r"(sum) : "memory");
    free((void *)m);
}

static int threads_now(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* One fresh process's first call; one line of numbers on stdout. */
static int child(const char *dir, int dirty, int cold)
{
    char path[4096];
    kc_kernel_t **ks = NULL;
    size_t n = 0;
    bufs_t b;

    snprintf(path, sizeof(path), "%s/spec.json", dir);
    kc_sim_t *sim = make_sim();
    bufs_init(&b);
    if (dirty)
        dirty_heap();
    if (cold)
        cold_caches();
    int threads_before = threads_now();
    double t0 = bench_now_us();
    kc_launcher_t *l = make_launcher(sim, dir);
    double t1 = bench_now_us();
    /* The store opens at the first kernel; opening it here first splits
     * the spec load's time into the open and the rest, as kc_run_spec does. */
    kc_launcher_store(l);
    double t_open = bench_now_us();
    int rc = kc_kernel_load_file(l, path, &ks, &n);
    double t2 = bench_now_us();
    if (rc == KC_OK && n >= 1)
        rc = kc_kernel_launch(ks[0], NULL, b.a, 3);
    /* The simulation device runs a launch before it returns. */
    double t3 = bench_now_us(), t4 = t3;
    int threads_after = threads_now();
    kc_kernel_stats_t s = {0};
    if (rc != KC_OK || n < 1 || !bufs_ok(&b) || kc_kernel_stats(ks[0], &s) != KC_OK ||
        s.store_hits != 1 || s.tunes != 0) {
        fprintf(stderr, "bench_first: the first call was not a store hit: %s\n",
                kc_launcher_errmsg(l));
        return 1;
    }
    printf("%.1f %.1f %.1f %.1f %.1f %d %zu\n", t1 - t0, t_open - t1, t2 - t_open,
           t3 - t2, t4 - t0, threads_after - threads_before, n);
    kc_free(ks);
    bufs_free(&b);
    kc_launcher_destroy(l);
    kc_sim_destroy(sim);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *populate_dir = NULL;
    int runs = 10, dirty = 0, cold = 0, is_child = 0;
    long kernels = 1;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--populate") && i + 1 < argc)
            populate_dir = argv[++i];
        else if (!strcmp(argv[i], "--kernels") && i + 1 < argc)
            kernels = atol(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dirty-heap"))
            dirty = 1;
        else if (!strcmp(argv[i], "--cold-caches"))
            cold = 1;
        else if (!strcmp(argv[i], "--child"))
            is_child = 1;
        else if (argv[i][0] != '-')
            dir = argv[i];
        else {
            fprintf(stderr,
                    "usage: %s --populate DIR [--kernels K] | DIR [--runs N] "
                    "[--dirty-heap] [--cold-caches]\n",
                    argv[0]);
            return 2;
        }
    }
    if (populate_dir) {
        if (kernels < 1 || kernels > 100000) {
            fprintf(stderr, "bench_first: --kernels 1..100000\n");
            return 2;
        }
        return populate(populate_dir, kernels);
    }
    if (!dir || runs < 1) {
        fprintf(stderr,
                "usage: %s --populate DIR [--kernels K] | DIR [--runs N] [--dirty-heap] "
                "[--cold-caches]\n",
                argv[0]);
        return 2;
    }
    if (is_child)
        return child(dir, dirty, cold);

    double(*v)[5] = calloc((size_t)runs, sizeof(*v));
    if (!v)
        return 1;
    printf(
        "fresh process, first call of a stored prebuilt kernel (sim device%s%s), us:\n",
        dirty ? ", dirty heap" : "", cold ? ", cold caches" : "");
    printf("  run  create    open  spec-load  launch  first-call  threads-started  "
           "kernels-in-spec\n");
    for (int r = 0; r < runs; r++) {
        char cmd[8192], line[256];
        snprintf(cmd, sizeof(cmd), "'%s' --child '%s'%s%s", argv[0], dir,
                 dirty ? " --dirty-heap" : "", cold ? " --cold-caches" : "");
        FILE *p = popen(cmd, "r");
        int threads = -1;
        size_t kernels_in_spec = 0;
        if (!p || !fgets(line, sizeof(line), p) ||
            sscanf(line, "%lf %lf %lf %lf %lf %d %zu", &v[r][0], &v[r][1], &v[r][2],
                   &v[r][3], &v[r][4], &threads, &kernels_in_spec) != 7) {
            fprintf(stderr, "bench_first: run %d failed\n", r);
            return 1;
        }
        pclose(p);
        printf("  %3d  %6.1f  %6.1f  %9.1f  %6.1f  %10.1f  %15d  %15zu\n", r, v[r][0],
               v[r][1], v[r][2], v[r][3], v[r][4], threads, kernels_in_spec);
    }
    printf("  median");
    for (int c = 0; c < 5; c++) {
        double col[runs];
        for (int r = 0; r < runs; r++)
            col[r] = v[r][c];
        printf("  %.1f", bench_median(col, (size_t)runs));
    }
    printf("\n");
    free(v);
    return 0;
}
