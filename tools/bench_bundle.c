/* bench_bundle: throughput of bundle export and import.
 *
 * Usage: kcache_bench_bundle [--kernels N] [--cubins DIR] [--reps R] [--dir DIR]
 *
 * Fills a fresh store with N builds (default 3000), one blob each, and one
 * tuning per 4 builds, published 4 builds and a tuning at a time as the
 * launcher would. The cubins are the files in DIR (e.g. made with
 * `kc_testfill --dump DIR`), each copy made distinct by a counter written
 * into its last 8 bytes so that it compresses like the real one; without
 * --cubins, synthetic cubin-like bytes (an ELF header, 16-byte instructions
 * from a small vocabulary, a string table, zero padding) of 6 to 40 KiB.
 *
 * Then times, best of R runs (default 3): export of the whole store to
 * memory; import of that bundle into an empty store (every frame checked,
 * every cubin decompressed and hashed, one write transaction); and import
 * of it again into the filled store (everything already present).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kcache/bundle.h"
#include "kcache/key.h"
#include "kcache/store.h"

#include "bench_cubins.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Bytes that look and compress like a cubin. */
static cubin_t synth_cubin(void)
{
    static const uint32_t ops[] = {0x7919, 0x7b82, 0x7224, 0x7981, 0x7986, 0x7810,
                                   0x7947, 0x794d, 0x7c0c, 0x7221, 0x7223, 0x7a10};
    size_t n_insn = 300 + next() % 2100, len = 64 + n_insn * 16 + 1024 + 512;
    cubin_t c = {calloc(1, len), len};
    uint8_t *p = c.data;

    if (!p)
        return c;
    memcpy(p,
           "\x7f"
           "ELF\x02\x01\x01\x33\x07",
           9);
    p[16] = 2;
    p[18] = 0xbe;
    for (size_t i = 0; i < n_insn; i++) {
        uint8_t *q = p + 64 + i * 16;
        uint64_t r = next();
        uint32_t op = ops[r % (sizeof(ops) / sizeof(ops[0]))];
        q[0] = (uint8_t)op;
        q[1] = (uint8_t)(op >> 8);
        q[2] = (uint8_t)((r >> 8) & 0x3f); /* register fields */
        q[3] = (uint8_t)((r >> 16) & 0x3f);
        q[4] = (uint8_t)((r >> 24) & 0x3f);
        if (r >> 60 == 0) /* an immediate now and then */
            memcpy(q + 5, &r, 3);
        q[11] = 0x0f;
        q[13] = (uint8_t)(0xc0 | (r >> 32 & 0x1f)); /* scheduling control */
        q[14] = (uint8_t)(r >> 40 & 0x3f);
    }
    char *strs = (char *)p + 64 + n_insn * 16;
    snprintf(strs, 1024,
             ".shstrtab.strtab.symtab.symtab_shndx.nv.info.text.kernel_%" PRIu64
             ".nv.info.kernel.nv.shared.kernel.nv.constant0.kernel.debug_frame"
             ".rel.debug_frame.nv.callgraph.nv.prototype.nv.rel.action",
             next() % 1000);
    return c;
}

static int rm_store(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/lock.mdb", dir);
    unlink(path);
    return rmdir(dir);
}

/* Publish n_kernels builds, 4 to a tuning. */
static int fill(kc_store_t *st, long n_kernels, const cubin_t *real, size_t n_real)
{
    enum { GROUP = 4 };
    for (long g = 0; g < n_kernels; g += GROUP) {
        cubin_t cub[GROUP];
        kc_buf_t bufs[GROUP];
        kc_build_rec_t recs[GROUP];
        void *pre[GROUP];
        size_t pre_len[GROUP];
        kc_key_t keys[GROUP];
        kc_param_t params[GROUP];
        kc_candidate_t cands[GROUP];
        char entry[32], space[32];
        int n = (int)(n_kernels - g < GROUP ? n_kernels - g : GROUP), rc;
        static const char *const opts[] = {"-lineinfo", "-std=c++17"};
        kc_key_t digest;
        uint64_t gid = (uint64_t)g;

        snprintf(entry, sizeof(entry), "kernel_%ld", g / GROUP);
        digest = kc_key_hash(entry, strlen(entry));
        for (int i = 0; i < n; i++) {
            if (real) {
                const cubin_t *r = &real[(size_t)(g + i) % n_real];
                uint64_t tag = (uint64_t)(g + i);
                cub[i].len = r->len;
                cub[i].data = malloc(r->len);
                if (!cub[i].data)
                    return KC_ENOMEM;
                memcpy(cub[i].data, r->data, r->len);
                memcpy(cub[i].data + r->len - 8, &tag, 8);
            } else {
                cub[i] = synth_cubin();
                if (!cub[i].data)
                    return KC_ENOMEM;
            }
            params[i] = (kc_param_t){"BLOCK", 64 << i};
            kc_build_desc_t d = {
                .source_kind = KC_SOURCE_CUDA,
                .source_digest = digest,
                .entry = entry,
                .options = opts,
                .n_options = 2,
                .params = &params[i],
                .n_params = 1,
                .arch = (gid / GROUP) % 2 ? "sm_80" : "sm_90",
                .toolchain = "nvrtc-13.0",
            };
            if ((rc = kc_build_preimage_encode(&d, &pre[i], &pre_len[i])) != KC_OK)
                return rc;
            keys[i] = kc_key_hash(pre[i], pre_len[i]);
            bufs[i] = (kc_buf_t){cub[i].data, cub[i].len};
            recs[i] = (kc_build_rec_t){
                .preimage = {pre[i], pre_len[i]},
                .blob = kc_key_hash(cub[i].data, cub[i].len),
                .entry = entry,
                .registers = 32,
                .max_threads = 1024,
                .compile_us = 150000,
                .created = 1700000000 + gid,
            };
            cands[i] = (kc_candidate_t){
                &params[i], 1, keys[i], KC_CAND_OK, 10000 + (uint64_t)i * 700, ""};
        }
        uint8_t sig[] = {1, 1, 1, 0, 0x50, 12, 1, 0, 0, 16, 0, 0, 0, 0, 0, 1};
        snprintf(space, sizeof(space), "BLOCK in 64..%d", 64 << (n - 1));
        kc_tuning_desc_t td = {
            .source_kind = KC_SOURCE_CUDA,
            .source_digest = digest,
            .entry = entry,
            .options = opts,
            .n_options = 2,
            .space_digest = kc_key_hash(space, strlen(space)),
            .shape_sig = {sig, sizeof(sig)},
            .arch = (gid / GROUP) % 2 ? "sm_80" : "sm_90",
            .sm_count = 132,
            .device_name = "NVIDIA H100 80GB HBM3",
        };
        void *tpre = NULL;
        size_t tpre_len;
        if ((rc = kc_tuning_preimage_encode(&td, &tpre, &tpre_len)) != KC_OK)
            return rc;
        kc_tuning_rec_t tr = {
            .preimage = {tpre, tpre_len},
            .winner = &params[0],
            .n_winner = 1,
            .winner_build = keys[0],
            .candidates = cands,
            .n_candidates = (size_t)n,
            .tuning_us = 400000,
            .device_name = td.device_name,
            .arch = td.arch,
            .sm_count = 132,
            .driver_version = 13000,
            .created = 1700000000 + gid,
        };
        kc_publish_t pub = {bufs, (size_t)n, recs, (size_t)n, &tr, NULL, 0};
        rc = kc_store_publish(st, &pub);
        kc_free(tpre);
        for (int i = 0; i < n; i++) {
            kc_free(pre[i]);
            free(cub[i].data);
        }
        if (rc != KC_OK) {
            fprintf(stderr, "publish: %s\n", kc_store_errmsg(st));
            return rc;
        }
    }
    return KC_OK;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"kernels", required_argument, NULL, 'n'},
        {"cubins", required_argument, NULL, 'c'},
        {"reps", required_argument, NULL, 'r'},
        {"dir", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    long n_kernels = 3000, reps = 3;
    const char *cubin_dir = NULL, *base = getenv("TMPDIR");
    cubin_t *real = NULL;
    size_t n_real = 0;
    char root[4096], src[4200], dst[4200];
    kc_store_t *st = NULL;
    kc_store_stats_t ss;
    int c, rc;

    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            n_kernels = strtol(optarg, NULL, 10);
            break;
        case 'c':
            cubin_dir = optarg;
            break;
        case 'r':
            reps = strtol(optarg, NULL, 10);
            break;
        case 'd':
            base = optarg;
            break;
        default:
            fprintf(c == 'h' ? stdout : stderr,
                    "Usage: kcache_bench_bundle [--kernels N] [--cubins DIR] [--reps R] "
                    "[--dir DIR]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (n_kernels < 1 || reps < 1)
        return 2;
    if (cubin_dir && bench_load_cubins(cubin_dir, &real, &n_real) != 0) {
        fprintf(stderr, "bench_bundle: no cubins in %s\n", cubin_dir);
        return 1;
    }
    snprintf(root, sizeof(root), "%s/bench_bundle.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(root)) {
        perror(root);
        return 1;
    }
    snprintf(src, sizeof(src), "%s/src", root);
    snprintf(dst, sizeof(dst), "%s/dst", root);

    if ((rc = kc_store_open(src, NULL, &st)) != KC_OK ||
        (rc = fill(st, n_kernels, real, n_real)) != KC_OK)
        goto fail;
    kc_store_stats(st, &ss);
    printf("store: %" PRIu64 " blobs, %" PRIu64 " builds, %" PRIu64
           " tunings; cubins %.1f MiB raw, %.1f MiB stored (%.2fx, %s)\n",
           ss.records[KC_REC_BLOB], ss.records[KC_REC_BUILD], ss.records[KC_REC_TUNING],
           ss.blob_raw_bytes / 1048576.0, ss.blob_stored_bytes / 1048576.0,
           ss.blob_stored_bytes ? (double)ss.blob_raw_bytes / ss.blob_stored_bytes : 0.0,
           real ? "real cubins" : "synthetic cubins");

    char *bundle = NULL;
    size_t len = 0;
    kc_bundle_stats_t bs;
    double best_ex = 1e9, best_im = 1e9, best_again = 1e9;
    for (long r = 0; r < reps; r++) {
        free(bundle);
        bundle = NULL;
        FILE *m = open_memstream(&bundle, &len);
        double t0 = now_s();
        rc = kc_bundle_export(st, NULL, m, &bs);
        fclose(m);
        double t = now_s() - t0;
        if (rc != KC_OK)
            goto fail;
        if (t < best_ex)
            best_ex = t;
    }
    for (long r = 0; r < reps; r++) {
        kc_store_t *d = NULL;
        kc_bundle_stats_t is;
        if ((rc = kc_store_open(dst, NULL, &d)) != KC_OK)
            goto fail;
        FILE *m = fmemopen(bundle, len, "rb");
        double t0 = now_s();
        rc = kc_bundle_import(d, m, NULL, &is);
        double t = now_s() - t0;
        fclose(m);
        if (rc != KC_OK) {
            fprintf(stderr, "import: %s\n", kc_store_errmsg(d));
            kc_store_close(d);
            goto fail;
        }
        if (t < best_im)
            best_im = t;
        m = fmemopen(bundle, len, "rb");
        t0 = now_s();
        rc = kc_bundle_import(d, m, NULL, &is);
        t = now_s() - t0;
        fclose(m);
        if (rc != KC_OK || is.added != 0)
            goto fail;
        if (t < best_again)
            best_again = t;
        kc_store_close(d);
        rm_store(dst);
    }
    double mib = (double)len / 1048576.0;
    printf("bundle: %" PRIu64 " records, %.2f MiB\n", bs.records, mib);
    printf("export:              %8.1f ms  %8.1f MiB/s  %9.0f records/s\n", best_ex * 1e3,
           mib / best_ex, bs.records / best_ex);
    printf("import (empty store): %7.1f ms  %8.1f MiB/s  %9.0f records/s\n",
           best_im * 1e3, mib / best_im, bs.records / best_im);
    printf("import (all present): %7.1f ms  %8.1f MiB/s  %9.0f records/s\n",
           best_again * 1e3, mib / best_again, bs.records / best_again);
    free(bundle);
    kc_store_close(st);
    rm_store(src);
    rmdir(root);
    for (size_t i = 0; i < n_real; i++)
        free(real[i].data);
    free(real);
    return 0;
fail:
    fprintf(stderr, "bench_bundle: %s: %s\n", kc_strerror(rc),
            st ? kc_store_errmsg(st) : "");
    kc_store_close(st);
    return 1;
}
