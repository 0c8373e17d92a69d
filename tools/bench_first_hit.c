/* kcache_bench_first_hit: a process's first store hit against a later one,
 * on the simulation device: what kcache_bench_launch's "first kcache hit"
 * rows measure on a GPU, without the driver, so that kcache's own
 * first-use costs show alone.
 *
 *   kcache_bench_first_hit --populate DIR   once: two CUDA-source kernels
 *       (scale, scale_other; 6 BLOCK configs each) compiled by NVRTC,
 *       tuned on the simulation device and published to DIR.
 *   kcache_bench_first_hit DIR [--runs N] [--gap-us G]
 *       N fresh processes (default 11) in each set-up, alternating. Each
 *       registers both kernels with prefetch off (kc_kernel_get, then
 *       kc_kernel_wait_compiled: the candidates' build lookups), waits G
 *       microseconds spinning (default 100: what a host program does
 *       between its registrations and its first launch; on the GPU
 *       benchmark, the driver's load of another module), then times the
 *       first kc_kernel_launch of scale, a store hit: tuning lookup, build
 *       and cubin fetch, decompress, module load. Set-ups:
 *         first        the process's first kcache hit, the launcher's
 *                      warm-up on (the default)
 *         no-warmup    the same with the warm-up off
 *         after-other  scale_other is launched (a store hit) before the
 *                      gap: the timed hit is the process's second, kcache's
 *                      code and state already used on this thread
 *         caller-warm  kc_store_warm runs on the caller's thread before the
 *                      gap (the launcher's warm-up runs on a pool thread):
 *                      what is left of a first hit once this thread has run
 *                      the store's read path
 *       Prints each set-up's sorted times and median (us).
 *
 * Set-ups differ in one thing each, so "first" against "after-other" is
 * the price of a first hit, and "no-warmup" against "first" what the
 * warm-up takes off it. KC_BENCH_FAULTS=1 prints each process's page
 * faults during the timed hit, with their mappings, to stderr (with the
 * warm-up on: 2, both in the heap, on the 2-core CPU box). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_time.h"
#include "fault_log.h"
#include "kcache/launch.h"
#include "kcache/sim.h"
#include "kcache/store.h"

static const char kSource[] =
    "extern \"C\" __global__ void scale(float *x, float a, int n)\n"
    "{ int i = blockIdx.x * BLOCK + threadIdx.x; if (i < n) x[i] = x[i] * a + 1.0f; }\n";
static const char kOtherSource[] =
    "extern \"C\" __global__ void scale_other(float *x, float a, int n)\n"
    "{ int i = blockIdx.x * BLOCK + threadIdx.x; if (i < n) x[i] = x[i] * a + 2.0f; }\n";
static const int64_t kBlocks[] = {32, 64, 128, 256, 512, 1024};
#define N_ELEMS 4096

enum { SETUP_FIRST, SETUP_NO_WARMUP, SETUP_AFTER_OTHER, SETUP_CALLER_WARM, SETUPS };
static const char *const kSetups[SETUPS] = {"first", "no-warmup", "after-other",
                                            "caller-warm"};

/* x = x * a + c, c = 1 for scale and 2 for scale_other (user). */
static int sim_scale(void *user, const kc_sim_launch_t *l)
{
    float *x = *(float **)l->params[0];
    float a = *(float *)l->params[1];
    int n = *(int *)l->params[2];
    float c = (float)(uintptr_t)user;
    for (int i = 0; i < n; i++)
        x[i] = x[i] * a + c;
    return 0;
}

/* Falls with the block size: the tuning has a winner. */
static uint64_t sim_cost(void *user, const kc_sim_launch_t *l)
{
    (void)user;
    return 1000000u / (l->block[0] ? l->block[0] : 1);
}

static kc_kernel_spec_t spec_of(int other)
{
    static const kc_param_spec_t params[] = {
        {"BLOCK", kBlocks, sizeof(kBlocks) / sizeof(kBlocks[0])}};
    static const kc_arg_spec_t args[] = {
        {"x", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_INOUT, 0},
        {"a", KC_ARG_SCALAR, KC_DTYPE_F32, 0, 0},
        {"n", KC_ARG_SCALAR, KC_DTYPE_I32, 0, 0},
    };
    kc_kernel_spec_t s = {0};
    s.name = other ? "scale_other" : "scale";
    s.source_kind = KC_SOURCE_CUDA;
    s.source = other ? kOtherSource : kSource;
    s.entry = other ? "scale_other" : "scale";
    s.params = params;
    s.n_params = 1;
    s.args = args;
    s.n_args = 3;
    s.grid[0] = "cdiv(n, BLOCK)";
    s.block[0] = "BLOCK";
    return s;
}

static kc_sim_t *make_sim(void)
{
    kc_sim_opts_t so = KC_SIM_OPTS_INIT;
    kc_sim_t *sim = NULL;
    so.arch = "sm_90";
    if (kc_sim_create(&so, &sim) != KC_OK ||
        kc_sim_register(sim, "scale", sim_scale, sim_cost, (void *)(uintptr_t)1) !=
            KC_OK ||
        kc_sim_register(sim, "scale_other", sim_scale, sim_cost, (void *)(uintptr_t)2) !=
            KC_OK) {
        fprintf(stderr, "bench_first_hit: cannot make the simulation device\n");
        exit(1);
    }
    return sim;
}

static kc_launcher_t *make_launcher(kc_sim_t *sim, const char *dir, int no_prefetch,
                                    int no_warmup)
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
    o.no_prefetch = no_prefetch;
    o.no_warmup = no_warmup;
    if (kc_launcher_create(&o, &l) != KC_OK) {
        fprintf(stderr, "bench_first_hit: %s\n", kc_launcher_create_errmsg());
        exit(1);
    }
    return l;
}

typedef struct bufs {
    float *x;
    int64_t dim;
    kc_arg_t a[3];
} bufs_t;

static void bufs_init(bufs_t *b)
{
    if (!(b->x = malloc(N_ELEMS * sizeof(float))))
        exit(1);
    for (int i = 0; i < N_ELEMS; i++)
        b->x[i] = (float)i;
    b->dim = N_ELEMS;
    b->a[0] = (kc_arg_t){.ptr = (uint64_t)(uintptr_t)b->x, .rank = 1, .dims = &b->dim};
    b->a[1] = (kc_arg_t){.value.f = 1.0f};
    b->a[2] = (kc_arg_t){.value.i = N_ELEMS};
}

static int populate(const char *dir)
{
    kc_sim_t *sim = make_sim();
    kc_launcher_t *l = make_launcher(sim, dir, 1, 1);
    bufs_t b;
    bufs_init(&b);
    for (int other = 0; other < 2; other++) {
        kc_kernel_spec_t s = spec_of(other);
        kc_kernel_t *k = NULL;
        kc_kernel_stats_t st;
        if (kc_kernel_get(l, &s, &k) != KC_OK ||
            kc_kernel_launch(k, NULL, b.a, 3) != KC_OK ||
            kc_kernel_stats(k, &st) != KC_OK || st.tunes != 1) {
            fprintf(stderr, "bench_first_hit: tuning %s failed: %s\n", s.name,
                    kc_launcher_errmsg(l));
            return 1;
        }
    }
    kc_launcher_destroy(l);
    kc_sim_destroy(sim);
    free(b.x);
    printf("populated %s: scale and scale_other, 6 configs each, tuned\n", dir);
    return 0;
}

/* One fresh process: prints the timed hit's microseconds. */
static int child(const char *dir, int setup, double gap_us)
{
    kc_sim_t *sim = make_sim();
    kc_launcher_t *l = make_launcher(sim, dir, 1, setup == SETUP_NO_WARMUP);
    kc_kernel_spec_t s = spec_of(0), so = spec_of(1);
    kc_kernel_t *k = NULL, *ko = NULL;
    bufs_t b;
    bufs_init(&b);
    if (kc_kernel_get(l, &s, &k) != KC_OK || kc_kernel_get(l, &so, &ko) != KC_OK ||
        kc_kernel_wait_compiled(k) != KC_OK || kc_kernel_wait_compiled(ko) != KC_OK) {
        fprintf(stderr, "bench_first_hit: registration: %s\n", kc_launcher_errmsg(l));
        return 1;
    }
    if (setup == SETUP_AFTER_OTHER && kc_kernel_launch(ko, NULL, b.a, 3) != KC_OK)
        return 1;
    if (setup == SETUP_CALLER_WARM)
        kc_store_warm(kc_launcher_store(l));
    for (double g0 = bench_now_us(); bench_now_us() - g0 < gap_us;)
        ;
    /* KC_BENCH_FAULTS=1: the page faults of the timed hit, to stderr. */
    const char *fe = getenv("KC_BENCH_FAULTS");
    kc_fault_log_t *flog = fe && *fe == '1' ? kc_fault_log_start() : NULL;
    double t0 = bench_now_us();
    int rc = kc_kernel_launch(k, NULL, b.a, 3);
    double us = bench_now_us() - t0;
    kc_fault_log_print(flog, "the timed hit", stderr);
    kc_kernel_stats_t st = {0};
    if (rc != KC_OK || kc_kernel_stats(k, &st) != KC_OK || st.store_hits != 1 ||
        st.compiles != 0 || st.tunes != 0) {
        fprintf(stderr, "bench_first_hit: the timed launch was not a store hit: %s\n",
                kc_launcher_errmsg(l));
        return 1;
    }
    printf("%.2f\n", us);
    kc_launcher_destroy(l);
    kc_sim_destroy(sim);
    free(b.x);
    return 0;
}

static int usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s --populate DIR\n"
            "       %s DIR [--runs N] [--gap-us G]\n",
            argv0, argv0);
    return 2;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *populate_dir = NULL;
    int runs = 11, setup = -1;
    double gap_us = 100;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--populate") && i + 1 < argc)
            populate_dir = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gap-us") && i + 1 < argc)
            gap_us = atof(argv[++i]);
        else if (!strcmp(argv[i], "--child") && i + 1 < argc)
            setup = atoi(argv[++i]);
        else if (argv[i][0] != '-')
            dir = argv[i];
        else
            return usage(argv[0]);
    }
    if (populate_dir)
        return populate(populate_dir);
    if (!dir || runs < 1 || gap_us < 0)
        return usage(argv[0]);
    if (setup >= 0)
        return setup < SETUPS ? child(dir, setup, gap_us) : usage(argv[0]);

    double *t[SETUPS];
    for (int s = 0; s < SETUPS; s++)
        if (!(t[s] = calloc((size_t)runs, sizeof(double))))
            return 1;
    for (int r = 0; r < runs; r++) {
        for (int s = 0; s < SETUPS; s++) {
            char cmd[8192];
            snprintf(cmd, sizeof(cmd), "'%s' '%s' --child %d --gap-us %g", argv[0], dir,
                     s, gap_us);
            FILE *p = popen(cmd, "r");
            if (!p || fscanf(p, "%lf", &t[s][r]) != 1) {
                fprintf(stderr, "bench_first_hit: run %d (%s) failed\n", r, kSetups[s]);
                if (p)
                    pclose(p);
                return 1;
            }
            if (pclose(p) != 0) {
                fprintf(stderr, "bench_first_hit: run %d (%s) failed\n", r, kSetups[s]);
                return 1;
            }
        }
    }
    printf("a store hit of a fresh process (us; %d processes each, gap %g us):\n", runs,
           gap_us);
    double med[SETUPS];
    for (int s = 0; s < SETUPS; s++) {
        med[s] = bench_median(t[s], (size_t)runs);
        printf("  %-12s median %8.1f:", kSetups[s], med[s]);
        for (int r = 0; r < runs; r++)
            printf(" %.1f", t[s][r]);
        printf("\n");
        free(t[s]);
    }
    printf("first / after-other: %.2fx; no-warmup / first: %.2fx\n",
           med[SETUP_FIRST] / med[SETUP_AFTER_OTHER],
           med[SETUP_NO_WARMUP] / med[SETUP_FIRST]);
    return 0;
}
