/* kcache_bench_limit: what a store's size limit costs the publishes under
 * it, and what an eviction costs, on a store of many kernels.
 *
 * Usage: kcache_bench_limit [--kernels N] [--publishes P] [--dir DIR] [--keep]
 *                           [--fill-only]
 *
 * A fresh store DIR/store is filled with N kernels (default 100,000), each
 * a blob (a unique 512-byte cubin-like image), its build and a tuning,
 * through kc_store_publish_many (256 kernels a call), all created a day
 * ago. Then, each in a handle of its own:
 *
 *   no limit       P publishes of one new kernel each (default 20): ms each
 *   limit above    the same with the limit 1.25x the records' bytes, under
 *                  the pages LMDB holds for them (so a check by pages would
 *                  call the store full): ms each; nothing may be evicted
 *   gc half        kc_store_gc down to half the records' bytes: seconds and
 *                  records evicted
 *   limit below    a limit under the records' bytes: the first publish
 *                  evicts down to 90% of it (its time), then P publishes
 *                  under it: ms each
 *
 * Prints each row's median and maximum. --keep leaves DIR/store;
 * --fill-only stops after the fill and leaves it (kernel i's entry is
 * "kernel_i": a store for timing cachectl on, e.g. `why 'kernel_1*'`). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_time.h"
#include "kcache/key.h"
#include "kcache/record.h"
#include "kcache/store.h"

#define PER_CALL 256
#define CUBIN 512
#define MAX_PUBLISHES 1000

typedef struct kern {
    char entry[48];
    uint8_t cubin[CUBIN];
    kc_buf_t buf;
    kc_param_t params[2];
    kc_candidate_t cand;
    kc_build_rec_t b;
    kc_tuning_rec_t t;
    void *pre[2];
} kern_t;

/* Kernel id: a cubin-like image (compressible, unique by its last bytes),
 * its build and a tuning that picked it. */
static int kern_make(kern_t *k, uint64_t id, uint64_t created)
{
    size_t len;

    memset(k, 0, sizeof(*k));
    snprintf(k->entry, sizeof(k->entry), "kernel_%" PRIu64, id);
    for (size_t i = 0; i < CUBIN; i++)
        k->cubin[i] = (uint8_t)((i * 7) ^ (i >> 3) ^ (id * 13));
    memcpy(k->cubin, "\177ELF", 4);
    memcpy(k->cubin + CUBIN - 8, &id, 8);
    k->buf = (kc_buf_t){k->cubin, CUBIN};
    kc_key_t src = kc_key_hash(k->entry, strlen(k->entry));
    k->params[0] = (kc_param_t){"BLOCK", 64};
    k->params[1] = (kc_param_t){"WARPS", 4};
    kc_build_desc_t bd = {.source_kind = KC_SOURCE_CUDA,
                          .source_digest = src,
                          .entry = k->entry,
                          .params = k->params,
                          .n_params = 2,
                          .arch = "sm_90",
                          .toolchain = "nvrtc-13.0"};
    if (kc_build_preimage_encode(&bd, &k->pre[0], &len) != KC_OK)
        return -1;
    kc_key_t build = kc_key_hash(k->pre[0], len);
    k->b = (kc_build_rec_t){.preimage = {k->pre[0], len},
                            .blob = kc_key_hash(k->cubin, CUBIN),
                            .entry = k->entry,
                            .registers = 40,
                            .max_threads = 1024,
                            .compile_us = 200000,
                            .created = created};
    k->cand = (kc_candidate_t){.params = k->params,
                               .n_params = 2,
                               .build = build,
                               .status = KC_CAND_OK,
                               .median_ns = 10000,
                               .reason = ""};
    kc_tuning_desc_t td = {.source_kind = KC_SOURCE_CUDA,
                           .source_digest = src,
                           .entry = k->entry,
                           .space_digest = kc_key_hash("space", 5),
                           .shape_sig = {"f32[4096]", 9},
                           .arch = "sm_90",
                           .sm_count = 132,
                           .device_name = "NVIDIA H200"};
    if (kc_tuning_preimage_encode(&td, &k->pre[1], &len) != KC_OK)
        return -1;
    k->t = (kc_tuning_rec_t){.preimage = {k->pre[1], len},
                             .winner = k->params,
                             .n_winner = 2,
                             .winner_build = build,
                             .candidates = &k->cand,
                             .n_candidates = 1,
                             .tuning_us = 1000000,
                             .device_name = "NVIDIA H200",
                             .arch = "sm_90",
                             .sm_count = 132,
                             .driver_version = 13000,
                             .created = created};
    return 0;
}

static void kern_free(kern_t *k)
{
    kc_free(k->pre[0]);
    kc_free(k->pre[1]);
}

static kc_publish_t kern_pub(kern_t *k)
{
    return (kc_publish_t){&k->buf, 1, &k->b, 1, &k->t, NULL, 0};
}

static kc_store_t *open_store(const char *dir, uint64_t max_size)
{
    kc_store_opts_t o = KC_STORE_OPTS_INIT;
    kc_store_t *st = NULL;

    o.max_size = max_size;
    if (kc_store_open(dir, &o, &st) != KC_OK) {
        fprintf(stderr, "bench_limit: %s\n", kc_store_open_errmsg());
        exit(1);
    }
    return st;
}

static void fill(kc_store_t *st, uint64_t n)
{
    static kern_t ks[PER_CALL];
    kc_publish_t pubs[PER_CALL];
    uint64_t created = (uint64_t)time(NULL) - 86400;

    for (uint64_t first = 0; first < n; first += PER_CALL) {
        unsigned m = (unsigned)(n - first < PER_CALL ? n - first : PER_CALL);
        for (unsigned i = 0; i < m; i++) {
            if (kern_make(&ks[i], first + i, created) != 0) {
                fprintf(stderr, "bench_limit: cannot encode a kernel\n");
                exit(1);
            }
            pubs[i] = kern_pub(&ks[i]);
        }
        if (kc_store_publish_many(st, pubs, m) != KC_OK) {
            fprintf(stderr, "bench_limit: fill: %s\n", kc_store_errmsg(st));
            exit(1);
        }
        for (unsigned i = 0; i < m; i++)
            kern_free(&ks[i]);
    }
}

/* P publishes of one new kernel each (ids from *next on): their ms in ms[]. */
static void publishes(kc_store_t *st, unsigned p, uint64_t *next, double *ms)
{
    kern_t k;

    for (unsigned i = 0; i < p; i++) {
        if (kern_make(&k, (*next)++, (uint64_t)time(NULL)) != 0)
            exit(1);
        kc_publish_t pub = kern_pub(&k);
        double t0 = bench_now_us();
        int rc = kc_store_publish(st, &pub);
        ms[i] = (bench_now_us() - t0) / 1000;
        kern_free(&k);
        if (rc != KC_OK) {
            fprintf(stderr, "bench_limit: publish: %s\n", kc_store_errmsg(st));
            exit(1);
        }
    }
}

static void row_ms(const char *name, double *ms, unsigned n)
{
    double max = 0;
    for (unsigned i = 0; i < n; i++)
        max = ms[i] > max ? ms[i] : max;
    printf("| %s | %.2f | %.2f |\n", name, bench_median(ms, n), max);
}

static uint64_t records_bytes(kc_store_t *st, kc_store_stats_t *s)
{
    if (kc_store_stats(st, s) != KC_OK) {
        fprintf(stderr, "bench_limit: stats: %s\n", kc_store_errmsg(st));
        exit(1);
    }
    return s->record_bytes;
}

int main(int argc, char **argv)
{
    uint64_t n = 100000, next;
    unsigned p = 20;
    const char *root = "/tmp/kcache_bench_limit";
    int keep = 0, fill_only = 0;
    char dir[4096], cmd[4200];
    static double ms[MAX_PUBLISHES];
    kc_store_stats_t s;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--kernels") && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--publishes") && i + 1 < argc)
            p = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            root = argv[++i];
        else if (!strcmp(argv[i], "--keep"))
            keep = 1;
        else if (!strcmp(argv[i], "--fill-only"))
            fill_only = keep = 1;
        else {
            fprintf(stderr,
                    "usage: %s [--kernels N] [--publishes P] [--dir DIR] [--keep] "
                    "[--fill-only]\n",
                    argv[0]);
            return 2;
        }
    }
    if (n < 16 || p < 1 || p > MAX_PUBLISHES) {
        fprintf(stderr, "bench_limit: --kernels at least 16, --publishes 1 to %d\n",
                MAX_PUBLISHES);
        return 2;
    }
    snprintf(dir, sizeof(dir), "%s/store", root);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", dir, root);
    if (system(cmd) != 0)
        return 1;
    next = n;

    kc_store_t *st = open_store(dir, 0);
    double t0 = bench_now_us();
    fill(st, n);
    double fill_s = (bench_now_us() - t0) / 1e6;
    uint64_t records = records_bytes(st, &s);
    printf("store: %" PRIu64 " kernels (%" PRIu64 " records) filled in %.1f s; records "
           "%.2f MiB, pages in use %.2f MiB\n\n",
           n, s.records[KC_REC_BLOB] + s.records[KC_REC_BUILD] + s.records[KC_REC_TUNING],
           fill_s, records / 1048576.0, s.used_bytes / 1048576.0);
    if (fill_only) {
        kc_store_close(st);
        return 0;
    }
    printf("| row | median (ms) | max (ms) |\n| --- | --- | --- |\n");
    publishes(st, p, &next, ms);
    row_ms("publish, no limit", ms, p);
    kc_store_close(st);

    /* Above the records, under the pages. */
    st = open_store(dir, records + records / 4);
    publishes(st, p, &next, ms);
    row_ms("publish, limit 1.25x the records' bytes", ms, p);
    uint64_t evictions = records_bytes(st, &s) ? s.counters[KC_COUNTER_EVICTIONS] : 0;
    kc_store_close(st);

    /* gc down to half. */
    st = open_store(dir, 0);
    kc_gc_opts_t go = KC_GC_OPTS_INIT;
    kc_gc_report_t r;
    records = records_bytes(st, &s);
    go.max_bytes = records / 2;
    t0 = bench_now_us();
    if (kc_store_gc(st, &go, &r) != KC_OK) {
        fprintf(stderr, "bench_limit: gc: %s\n", kc_store_errmsg(st));
        return 1;
    }
    double gc_ms = (bench_now_us() - t0) / 1000;
    uint64_t evicted = r.evicted[KC_REC_BLOB] + r.evicted[KC_REC_BUILD] +
                       r.evicted[KC_REC_TUNING] + r.evicted[KC_REC_BINMETA];
    printf("| kc_store_gc down to half the records: %" PRIu64 " records evicted | %.1f "
           "| |\n",
           evicted, gc_ms);
    records = records_bytes(st, &s);
    kc_store_close(st);

    /* Under the records: the first publish evicts, the rest do not. */
    st = open_store(dir, records / 4 * 3);
    publishes(st, 1, &next, ms);
    printf("| first publish over a limit of 0.75x the records (evicts to 90%%) | %.1f | "
           "|\n",
           ms[0]);
    publishes(st, p, &next, ms);
    row_ms("publish after it, under the limit", ms, p);
    kc_store_close(st);

    printf("\nevictions while the limit was above the records: %" PRIu64 "\n", evictions);
    if (!keep) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            return 1;
    }
    return evictions == 0 ? 0 : 1;
}
