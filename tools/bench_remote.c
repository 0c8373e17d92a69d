/* kcache_bench_remote: the remote tier's costs, side by side in one run,
 * on the simulation device with real NVRTC compiles (no GPU needed).
 *
 *   1. A fresh launcher's first launch of a kernel (kc_kernel_get and the
 *      first kc_kernel_launch, as a new process on a new machine does it):
 *        local hit   its tuning and builds are in the local store;
 *        remote hit  the local store is empty, the remote holds them: the
 *                    builds are pulled at registration, the tuning chain
 *                    on the miss;
 *        compile     the local store is empty and there is no remote:
 *                    NVRTC compiles every candidate, then the tuning.
 *      Rounds alternate the three; medians and the spread are printed.
 *   2. Pull throughput: --chains distinct tuning chains (a tuning, its
 *      build, a --cubin-kib cubin) pushed, then pulled with kc_remote_pull
 *      into an empty store, one by one: chains per second and MB/s of
 *      cubin; the same for kc_remote_push.
 *
 * Usage: kcache_bench_remote --url redis://127.0.0.1:6379 [--rounds N]
 *        [--chains N] [--cubin-kib N] [--dir TMPDIR]
 * The remote's keys go under the prefix "bench:<pid>:"; it deletes nothing
 * else. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kcache/launch.h"
#include "kcache/remote.h"
#include "kcache/sim.h"
#include "kcache/store.h"

static const char kSource[] = "extern \"C\" __global__ void inc(float *x, int n)\n"
                              "{\n"
                              "    int i = blockIdx.x * BLOCK + threadIdx.x;\n"
                              "    if (i < n)\n"
                              "        x[i] += 1.0f;\n"
                              "}\n";
static const int64_t kBlocks[] = {64, 128, 256, 512};
static const kc_param_spec_t kParams[] = {{"BLOCK", kBlocks, 4}};
static const kc_arg_spec_t kArgs[] = {
    {"x", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_INOUT, 0},
    {"n", KC_ARG_SCALAR, KC_DTYPE_I32, 0, 0},
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int sim_inc(void *user, const kc_sim_launch_t *l)
{
    float *x = (float *)(uintptr_t) * (const uint64_t *)l->params[0];
    int n = *(const int32_t *)l->params[1];
    (void)user;
    for (unsigned b = 0; b < l->grid[0]; b++)
        for (unsigned t = 0; t < l->block[0]; t++) {
            long i = (long)b * l->block[0] + t;
            if (i < n)
                x[i] += 1.0f;
        }
    return 0;
}

static uint64_t cost(void *user, const kc_sim_launch_t *l)
{
    long d = (long)l->block[0] - 256;
    (void)user;
    return (uint64_t)(d < 0 ? -d : d) + 1000;
}

/* One fresh launcher on dir: kc_kernel_get + the first launch, timed.
 * *stats receives the kernel's statistics. Returns seconds, or -1. */
static double first_launch(const char *dir, const char *remote, int kernel_no,
                           kc_kernel_stats_t *stats)
{
    kc_sim_t *sim = NULL;
    kc_launcher_t *l = NULL;
    kc_kernel_t *k = NULL;
    char name[64];
    int n = 4096;
    float *x = calloc((size_t)n, sizeof(float));
    int64_t dims[1] = {n};
    kc_arg_t a[2] = {{.ptr = (uint64_t)(uintptr_t)x, .rank = 1, .dims = dims},
                     {.value.i = n}};
    double t0, t = -1;

    snprintf(name, sizeof(name), "bench.inc%d", kernel_no);
    /* A distinct source per kernel_no: every round is a new kernel. */
    char src[sizeof(kSource) + 64];
    snprintf(src, sizeof(src), "// round %d\n%s", kernel_no, kSource);
    kc_kernel_spec_t spec = {.name = name,
                             .source_kind = KC_SOURCE_CUDA,
                             .source = src,
                             .entry = "inc",
                             .params = kParams,
                             .n_params = 1,
                             .args = kArgs,
                             .n_args = 2,
                             .grid = {"cdiv(n, BLOCK)"},
                             .block = {"BLOCK"}};
    if (!x || kc_sim_create(NULL, &sim) != KC_OK ||
        kc_sim_register(sim, "inc", sim_inc, cost, NULL) != KC_OK)
        goto out;
    kc_launcher_opts_t o = KC_LAUNCHER_OPTS_INIT;
    o.device = KC_DEVICE_SIM;
    o.sim = sim;
    o.store_dir = dir;
    o.remote_url = remote;
    o.no_remote = remote == NULL;
    o.budget_ms = 0.01;
    o.min_reps = 3;
    o.max_reps = 5;
    t0 = now_s();
    if (kc_launcher_create(&o, &l) != KC_OK || kc_kernel_get(l, &spec, &k) != KC_OK ||
        kc_kernel_launch(k, NULL, a, 2) != KC_OK) {
        fprintf(stderr, "bench_remote: launch: %s\n",
                l ? kc_launcher_errmsg(l) : kc_launcher_create_errmsg());
        goto out;
    }
    t = now_s() - t0;
    kc_kernel_wait_compiled(k);
    kc_kernel_stats(k, stats);
out:
    kc_launcher_destroy(l);
    kc_sim_destroy(sim);
    free(x);
    return t;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void summary(const char *what, double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_d);
    printf("  %-11s median %9.3f ms   min %9.3f   max %9.3f   (%d rounds)\n", what,
           v[n / 2] * 1e3, v[0] * 1e3, v[n - 1] * 1e3, n);
}

static void rmrf(const char *dir)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_remote: could not remove %s\n", dir);
}

/* ---- part 2: synthetic chains ------------------------------------------- */

typedef struct chain {
    kc_key_t tkey;
} chain_t;

static int make_chain(kc_store_t *st, int i, size_t cubin_bytes, chain_t *out)
{
    uint8_t *cubin = malloc(cubin_bytes);
    char digest_src[32], sig[32];
    kc_param_t p = {"BLOCK", 128};
    void *bpre = NULL, *tpre = NULL;
    size_t bpre_len = 0, tpre_len = 0;
    int rc;

    if (!cubin)
        return KC_ENOMEM;
    /* Compressible like a cubin (zstd gets ~3x on them), not constant. */
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
    for (size_t j = 0; j < cubin_bytes; j++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        cubin[j] = (uint8_t)((j % 4 == 0) ? s : (j / 64) & 0x3f);
    }
    snprintf(digest_src, sizeof(digest_src), "bench source %d", i);
    kc_build_desc_t bd = {.source_kind = KC_SOURCE_CUDA,
                          .source_digest = kc_key_hash(digest_src, strlen(digest_src)),
                          .entry = "bench",
                          .params = &p,
                          .n_params = 1,
                          .arch = "sm_90",
                          .toolchain = "bench-1"};
    rc = kc_build_preimage_encode(&bd, &bpre, &bpre_len);
    kc_key_t bkey = kc_key_hash(bpre, bpre_len);
    kc_build_rec_t build = {.preimage = {bpre, bpre_len},
                            .blob = kc_key_hash(cubin, cubin_bytes),
                            .entry = "bench",
                            .registers = 32,
                            .max_threads = 1024,
                            .compile_us = 100000,
                            .created = (uint64_t)time(NULL)};
    kc_candidate_t cand = {
        .params = &p, .n_params = 1, .build = bkey, .status = KC_CAND_OK, .reason = ""};
    int sig_len = snprintf(sig, sizeof(sig), "sig%d", i);
    kc_tuning_desc_t td = {.source_kind = KC_SOURCE_CUDA,
                           .source_digest = bd.source_digest,
                           .entry = "bench",
                           .space_digest = kc_key_hash("space", 5),
                           .shape_sig = {sig, (size_t)sig_len},
                           .arch = "sm_90",
                           .sm_count = 132,
                           .device_name = "bench"};
    if (rc == KC_OK)
        rc = kc_tuning_preimage_encode(&td, &tpre, &tpre_len);
    if (rc == KC_OK) {
        out->tkey = kc_key_hash(tpre, tpre_len);
        kc_tuning_rec_t tr = {.preimage = {tpre, tpre_len},
                              .winner = &p,
                              .n_winner = 1,
                              .winner_build = bkey,
                              .candidates = &cand,
                              .n_candidates = 1,
                              .tuning_us = 1000,
                              .device_name = "bench",
                              .arch = "sm_90",
                              .sm_count = 132,
                              .created = (uint64_t)time(NULL)};
        kc_buf_t buf = {cubin, cubin_bytes};
        kc_publish_t pub = {&buf, 1, &build, 1, &tr, NULL, 0};
        rc = kc_store_publish(st, &pub);
    }
    kc_free(bpre);
    kc_free(tpre);
    free(cubin);
    return rc;
}

int main(int argc, char **argv)
{
    const char *url = getenv("KCACHE_REMOTE"), *tmp = getenv("TMPDIR");
    int rounds = 9, chains = 300;
    size_t cubin_kib = 64;
    char root[512], dir[700], prefix[64], full_url[1024];

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--url") && i + 1 < argc)
            url = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--chains") && i + 1 < argc)
            chains = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cubin-kib") && i + 1 < argc)
            cubin_kib = (size_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            tmp = argv[++i];
        else {
            fprintf(stderr, "usage: kcache_bench_remote --url URL [--rounds N] "
                            "[--chains N] [--cubin-kib N] [--dir TMPDIR]\n");
            return 2;
        }
    }
    if (!url || rounds < 1 || chains < 1) {
        fprintf(stderr, "bench_remote: --url (or KCACHE_REMOTE) is needed\n");
        return 2;
    }
    snprintf(full_url, sizeof(full_url), "%s", url);
    snprintf(prefix, sizeof(prefix), "bench:%d:", (int)getpid());
    setenv("KCACHE_REMOTE_PREFIX", prefix, 1);
    snprintf(root, sizeof(root), "%s/kcache_bench_remote.%d", tmp ? tmp : "/tmp",
             (int)getpid());
    rmrf(root);

    /* ---- part 1 ---- */
    double *local = calloc((size_t)rounds, sizeof(double));
    double *remote = calloc((size_t)rounds, sizeof(double));
    double *compile = calloc((size_t)rounds, sizeof(double));
    uint64_t compiles_remote = 0, tunes_remote = 0, remote_hits = 0;
    for (int r = 0; r < rounds; r++) {
        kc_kernel_stats_t st;
        /* Machine A tunes kernel r and pushes it (not timed). */
        snprintf(dir, sizeof(dir), "%s/a%d", root, r);
        if (first_launch(dir, full_url, r, &st) < 0)
            return 1;
        /* Wait for the write-behind: A's launcher was destroyed, which
         * drains it. Local hit: A again, a fresh launcher. */
        int order[3] = {r % 3, (r + 1) % 3, (r + 2) % 3};
        for (int j = 0; j < 3; j++) {
            double t;
            if (order[j] == 0) {
                t = first_launch(dir, NULL, r, &st);
                local[r] = t;
            } else if (order[j] == 1) {
                char b[760];
                snprintf(b, sizeof(b), "%s/b%d", root, r);
                t = first_launch(b, full_url, r, &st);
                remote[r] = t;
                compiles_remote += st.compiles;
                tunes_remote += st.tunes;
                remote_hits += st.remote_hits;
            } else {
                char c[760];
                snprintf(c, sizeof(c), "%s/c%d", root, r);
                t = first_launch(c, NULL, r, &st);
                compile[r] = t;
            }
            if (t < 0)
                return 1;
        }
    }
    printf("first launch of a kernel in a fresh launcher (sim device, 4 candidates, "
           "NVRTC):\n");
    summary("local hit", local, rounds);
    summary("remote hit", remote, rounds);
    summary("compile", compile, rounds);
    printf("  remote hits: %" PRIu64 " of %d rounds, with %" PRIu64
           " compiles and %" PRIu64 " tunings in all\n",
           remote_hits, rounds, compiles_remote, tunes_remote);

    /* ---- part 2 ---- */
    kc_store_t *src = NULL, *dst = NULL;
    kc_remote_t *rem = NULL;
    chain_t *cs = calloc((size_t)chains, sizeof(*cs));
    snprintf(dir, sizeof(dir), "%s/src", root);
    if (kc_store_open(dir, NULL, &src) != KC_OK)
        return 1;
    snprintf(dir, sizeof(dir), "%s/dst", root);
    if (kc_store_open(dir, NULL, &dst) != KC_OK || kc_remote_open(full_url, NULL, &rem))
        return 1;
    for (int i = 0; i < chains; i++)
        if (make_chain(src, i, cubin_kib * 1024, &cs[i]) != KC_OK)
            return 1;
    double t0 = now_s();
    for (int i = 0; i < chains; i++)
        if (kc_remote_push(rem, src, &cs[i].tkey) != KC_OK) {
            fprintf(stderr, "push: %s\n", kc_remote_errmsg(rem));
            return 1;
        }
    double push_s = now_s() - t0;
    t0 = now_s();
    for (int i = 0; i < chains; i++)
        if (kc_remote_pull(rem, dst, &cs[i].tkey) != KC_OK) {
            fprintf(stderr, "pull: %s\n", kc_remote_errmsg(rem));
            return 1;
        }
    double pull_s = now_s() - t0;
    /* The network part alone: the three GETs of each chain, unchecked. */
    t0 = now_s();
    for (int i = 0; i < chains; i++) {
        void *v = NULL;
        size_t n = 0;
        kc_record_t *t = NULL, *b = NULL;
        if (kc_remote_get_record(rem, KC_REC_TUNING, &cs[i].tkey, &v, &n, NULL) !=
                KC_OK ||
            kc_record_decode(v, n, &t) != KC_OK)
            return 1;
        kc_free(v);
        if (kc_remote_get_record(rem, KC_REC_BUILD, &t->u.tuning.winner_build, &v, &n,
                                 NULL) != KC_OK ||
            kc_record_decode(v, n, &b) != KC_OK)
            return 1;
        kc_free(v);
        if (kc_remote_get(rem, KC_REC_BLOB, &b->u.build.blob, &v, &n) != KC_OK)
            return 1;
        kc_free(v);
        kc_free(b);
        kc_free(t);
    }
    double get_s = now_s() - t0;
    double mb = (double)chains * (double)cubin_kib / 1024.0;
    printf("\n%d chains (tuning + build + %zu KiB cubin), one at a time:\n", chains,
           cubin_kib);
    printf("  push  %8.1f chains/s  %7.1f MB/s of cubin  (%.3f ms a chain)\n",
           chains / push_s, mb / push_s, push_s * 1e3 / chains);
    printf("  pull  %8.1f chains/s  %7.1f MB/s of cubin  (%.3f ms a chain; checked, "
           "published)\n",
           chains / pull_s, mb / pull_s, pull_s * 1e3 / chains);
    printf("  get   %8.1f chains/s  %7.1f MB/s of cubin  (%.3f ms a chain; the 3 GETs "
           "alone)\n",
           chains / get_s, mb / get_s, get_s * 1e3 / chains);
    kc_remote_close(rem);
    kc_store_close(src);
    kc_store_close(dst);
    rmrf(root);
    free(cs);
    free(local);
    free(remote);
    free(compile);
    return 0;
}
