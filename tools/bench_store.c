/* kcache_bench_store: the store at 1k, 100k and 1M records, side by side.
 *
 * Usage: kcache_bench_store [--sizes N[,N...]] [--cubins DIR] [--dir DIR]
 *                           [--cachectl PATH] [--threads T] [--per-call K]
 *                           [--quick] [--keep]
 *                           [--publish-only [--batches-only]]
 *
 * For each size N (records of every kind: blobs, builds and tunings), a
 * fresh store is filled with kernels of 4 configs: 4 blobs, 4 builds and one
 * tuning (about 430 bytes, 4 candidates), so N / 2.25 builds. Blobs are made
 * of real cubins (the files of --cubins DIR, e.g. build/tests/tmp/cubins or
 * `kc_testfill --dump DIR`): whole cubins concatenated up to a size drawn
 * log-uniformly from 4 to 64 KiB, then an 8-byte counter, so every blob is
 * unique and compresses like cubins do. Without --cubins, synthetic
 * cubin-like bytes. The fill uses kc_store_publish_many (--per-call K
 * kernels a call, default 16) from T threads (default: online CPUs),
 * compression included. K sets how many write transactions the fill takes,
 * and so how many pages LMDB's copy-on-write leaves free in a small store.
 *
 * Then, on that store:
 *   warm lookup    kc_store_get_build_cubin of random builds (a sample of
 *                  10,000, read once before), mean per lookup
 *   decode alone   kc_blob_decode (zstd decompress + XXH3 check) of the same
 *                  blobs' bytes held in memory: what a lookup cannot avoid
 *   cold lookup    the store closed, data.mdb dropped from the page cache
 *                  (posix_fadvise DONTNEED; the resident share after the drop
 *                  is printed, measured with mincore), reopened: the first
 *                  500 lookups of the sample
 *   cold+prefetch  the same after kc_store_prefetch_hot of those 500
 *                  kernels, stamped as the newest uses
 *   8 readers      8 threads of random lookups, alone and beside a writer
 *                  publishing batches all along: lookups per second
 *   publish        records per second: one kernel (a cubin, its build and a
 *                  tuning) per kc_store_publish, and 64 such a call through
 *                  kc_store_publish_many; both with cubins (compression in
 *                  the call) and without (builds and tunings naming blobs
 *                  already stored: the write path alone); without cubins
 *                  also 512 and 4096 kernels a call
 *   disk           of the store as filled (N records, before the publish
 *                  rows): data.mdb bytes per record, and over the records'
 *                  bytes; blobs' pages if stored whole, and as stored (the
 *                  "blob" and "blobtail" databases' pages, read with LMDB);
 *                  where the file's pages go: its pages up to the last in
 *                  use, those on LMDB's free list (copy-on-write: what the
 *                  last two write transactions replaced), and each
 *                  database's; then the ratio again after the publish
 *                  rows, which add tens of thousands of small records
 *                  (builds and tunings)
 *   cachectl       wall time of `stats`, of the first record line of
 *                  `ls | head`, of `gc --dry-run --max-size HALF`, of `verify`
 *
 * --quick: sizes 1000 only, smaller samples (the ctest smoke run).
 * --publish-only: no fill; each size's store DIR/store-N must exist (left
 * by an earlier run with --keep) and is kept. Only the publish rows are
 * measured (the others print "-"), with kernels of new names each run, the
 * blobs the no-cubin rows name being the store's first 100,000.
 * --batches-only (with --publish-only): only the rows of publish_many
 * without cubins (64, 512, 4096 kernels a call), the write path alone. */

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "kcache/blob.h"
#include "kcache/key.h"
#include "kcache/store.h"

#include "bench_cubins.h"

#define CONFIGS 4         /* builds (and blobs) per kernel */
#define PER_CALL_MAX 4096 /* kernels per publish_many call in the fill */
#define MAX_SIZES 8

static cubin_t *g_base;
static size_t g_n_base;
static int g_quick;
static unsigned g_per_call = 16; /* --per-call */
static int g_batches_only;       /* --batches-only */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* ---- cubins ------------------------------------------------------------ */

/* Cubin-like bytes when no real cubins are given (as bench_bundle makes). */
static void synth_base(void)
{
    static const uint32_t ops[] = {0x7919, 0x7b82, 0x7224, 0x7981, 0x7986, 0x7810,
                                   0x7947, 0x794d, 0x7c0c, 0x7221, 0x7223, 0x7a10};
    g_n_base = 32;
    g_base = calloc(g_n_base, sizeof *g_base);
    for (size_t b = 0; b < g_n_base; b++) {
        size_t n_insn = 200 + mix(b) % 400, len = 64 + n_insn * 16 + 512;
        uint8_t *p = calloc(1, len);
        memcpy(p,
               "\x7f"
               "ELF\x02\x01\x01\x33\x07",
               9);
        for (size_t i = 0; i < n_insn; i++) {
            uint8_t *q = p + 64 + i * 16;
            uint64_t r = mix(b * 100000 + i);
            uint32_t op = ops[r % (sizeof ops / sizeof ops[0])];
            q[0] = (uint8_t)op;
            q[1] = (uint8_t)(op >> 8);
            q[2] = (uint8_t)((r >> 8) & 0x3f);
            q[3] = (uint8_t)((r >> 16) & 0x3f);
            q[4] = (uint8_t)((r >> 24) & 0x3f);
            q[11] = 0x0f;
            q[13] = (uint8_t)(0xc0 | (r >> 32 & 0x1f));
        }
        g_base[b] = (cubin_t){p, len};
    }
}

/* Blob id: whole base cubins up to a log-uniform 4..64 KiB, cut at 64 KiB,
 * then id in the last 8 bytes. *len receives the size; buf holds 64 KiB. */
static size_t make_blob(uint64_t id, uint8_t *buf)
{
    /* 4 KiB x 2^e x (1 + f), e in 0..3, f in [0, 1): piecewise log-uniform. */
    uint64_t r = mix(id * 7 + 1);
    size_t target = ((size_t)4096 << (r % 4)) * (1024 + ((r >> 8) & 1023)) / 1024;
    size_t len = 0;

    if (target > 65536 - 8)
        target = 65536 - 8;
    for (uint64_t k = 0; len < target; k++) {
        const cubin_t *c = &g_base[mix(id * 131 + k) % g_n_base];
        size_t n = c->len < 65536 - 8 - len ? c->len : 65536 - 8 - len;
        memcpy(buf + len, c->data, n);
        /* Copies after the first get other operands (the register fields
         * of each 16-byte instruction word), as a different kernel of the
         * same family would: without it zstd finds the whole copy again and
         * the blob compresses far better than a real cubin. */
        if (k > 0)
            for (size_t i = 64; i + 16 <= n; i += 16) {
                uint64_t x = mix(id * 1000003u + k * 65599u + i);
                buf[len + i + 2] ^= (uint8_t)(x & 0x3f);
                buf[len + i + 3] ^= (uint8_t)((x >> 8) & 0x3f);
                buf[len + i + 4] ^= (uint8_t)((x >> 16) & 0x3f);
            }
        len += n;
        if (n == 0)
            break;
    }
    memcpy(buf + len, &id, 8);
    return len + 8;
}

/* ---- kernels ------------------------------------------------------------- */

/* One kernel's records, ready to publish: ids from kid * CONFIGS. */
typedef struct kern {
    char entry[48]; /* the builds' entry: they point at it */
    uint8_t *cubin_mem;
    kc_buf_t cubins[CONFIGS];
    kc_build_rec_t builds[CONFIGS];
    void *pre[CONFIGS + 1];
    kc_param_t params[CONFIGS][2];
    kc_candidate_t cands[CONFIGS];
    kc_tuning_rec_t tuning;
    kc_key_t build_keys[CONFIGS], blob_keys[CONFIGS];
} kern_t;

static int kern_make(kern_t *k, uint64_t kid, unsigned n_configs, int with_cubins,
                     const kc_key_t *existing_blobs, uint64_t variant)
{
    char sig[48], *entry = k->entry;
    size_t pre_len;
    kc_key_t src;

    memset(k, 0, sizeof *k);
    snprintf(entry, sizeof k->entry, "kernel_%" PRIu64, kid);
    src = kc_key_hash(entry, strlen(entry));
    if (with_cubins && !(k->cubin_mem = malloc((size_t)n_configs * 65536)))
        return KC_ENOMEM;
    for (unsigned j = 0; j < n_configs; j++) {
        if (with_cubins) {
            uint8_t *b = k->cubin_mem + (size_t)j * 65536;
            size_t len = make_blob(kid * CONFIGS + j, b);
            k->cubins[j] = (kc_buf_t){b, len};
            k->blob_keys[j] = kc_key_hash(b, len);
        } else {
            k->blob_keys[j] = existing_blobs[j];
        }
        k->params[j][0] = (kc_param_t){"BLOCK", 64 * (int64_t)(j + 1)};
        k->params[j][1] = (kc_param_t){"VARIANT", (int64_t)variant};
        kc_build_desc_t bd = {.source_kind = KC_SOURCE_CUDA,
                              .source_digest = src,
                              .entry = entry,
                              .params = k->params[j],
                              .n_params = 2,
                              .arch = "sm_90",
                              .toolchain = "nvrtc-13.0"};
        if (kc_build_preimage_encode(&bd, &k->pre[j], &pre_len) != KC_OK)
            return KC_ENOMEM;
        k->build_keys[j] = kc_key_hash(k->pre[j], pre_len);
        k->builds[j] = (kc_build_rec_t){.preimage = {k->pre[j], pre_len},
                                        .blob = k->blob_keys[j],
                                        .entry = entry,
                                        .registers = 40 + j,
                                        .max_threads = 1024,
                                        .compile_us = 150000 + j,
                                        .created = (uint64_t)time(NULL)};
        k->cands[j] = (kc_candidate_t){.params = k->params[j],
                                       .n_params = 2,
                                       .build = k->build_keys[j],
                                       .status = KC_CAND_OK,
                                       .median_ns = 10000 + j,
                                       .reason = ""};
    }
    int sl = snprintf(sig, sizeof sig, "f32[%" PRIu64 ",4096]", kid % 997);
    kc_tuning_desc_t td = {.source_kind = KC_SOURCE_CUDA,
                           .source_digest = src,
                           .entry = entry,
                           .space_digest = kc_key_hash("space", 5),
                           .shape_sig = {sig, (size_t)sl},
                           .arch = "sm_90",
                           .sm_count = 132,
                           .device_name = "NVIDIA H200"};
    if (kc_tuning_preimage_encode(&td, &k->pre[CONFIGS], &pre_len) != KC_OK)
        return KC_ENOMEM;
    k->tuning = (kc_tuning_rec_t){.preimage = {k->pre[CONFIGS], pre_len},
                                  .winner = k->params[0],
                                  .n_winner = 2,
                                  .winner_build = k->build_keys[0],
                                  .candidates = k->cands,
                                  .n_candidates = n_configs,
                                  .tuning_us = 2500000,
                                  .device_name = "NVIDIA H200",
                                  .arch = "sm_90",
                                  .sm_count = 132,
                                  .driver_version = 13000,
                                  .created = (uint64_t)time(NULL)};
    return KC_OK;
}

static void kern_free(kern_t *k)
{
    free(k->cubin_mem);
    for (unsigned j = 0; j <= CONFIGS; j++)
        kc_free(k->pre[j]);
}

static kc_publish_t kern_pub(kern_t *k, unsigned n_configs, int with_cubins)
{
    return (kc_publish_t){.cubins = with_cubins ? k->cubins : NULL,
                          .n_cubins = with_cubins ? n_configs : 0,
                          .builds = k->builds,
                          .n_builds = n_configs,
                          .tuning = &k->tuning};
}

/* ---- the fill -------------------------------------------------------------- */

typedef struct fill {
    kc_store_t *st;
    uint64_t n_kernels;
    atomic_uint_fast64_t next;
    kc_key_t *build_keys; /* [n_kernels * CONFIGS] */
    kc_key_t *blob_keys;
    int failed;
} fill_t;

static void *fill_thread(void *arg)
{
    fill_t *f = arg;
    kern_t *ks = calloc(g_per_call, sizeof(*ks));
    kc_publish_t *pubs = calloc(g_per_call, sizeof(*pubs));

    if (!ks || !pubs)
        f->failed = 1;
    while (!f->failed) {
        uint64_t first = atomic_fetch_add(&f->next, g_per_call);
        if (first >= f->n_kernels)
            break;
        unsigned n = (unsigned)(f->n_kernels - first < g_per_call ? f->n_kernels - first
                                                                  : g_per_call);
        for (unsigned i = 0; i < n; i++) {
            if (kern_make(&ks[i], first + i, CONFIGS, 1, NULL, 0) != KC_OK)
                f->failed = 1;
            pubs[i] = kern_pub(&ks[i], CONFIGS, 1);
            memcpy(&f->build_keys[(first + i) * CONFIGS], ks[i].build_keys,
                   sizeof ks[i].build_keys);
            memcpy(&f->blob_keys[(first + i) * CONFIGS], ks[i].blob_keys,
                   sizeof ks[i].blob_keys);
        }
        if (!f->failed && kc_store_publish_many(f->st, pubs, n) != KC_OK) {
            fprintf(stderr, "bench_store: fill: %s\n", kc_store_errmsg(f->st));
            f->failed = 1;
        }
        for (unsigned i = 0; i < n; i++)
            kern_free(&ks[i]);
    }
    free(ks);
    free(pubs);
    return NULL;
}

/* ---- lookups ----------------------------------------------------------------- */

static int lookup(kc_store_t *st, const kc_key_t *build)
{
    kc_record_t *rec = NULL;
    void *cubin = NULL;
    size_t len = 0;
    int rc = kc_store_get_build_cubin(st, build, &rec, &cubin, &len);
    kc_free(rec);
    kc_free(cubin);
    return rc;
}

typedef struct readers {
    kc_store_t *st;
    const kc_key_t *keys;
    size_t n_keys, per_thread;
    atomic_int done;
    int failed;
    uint64_t next_kid; /* the writer's kernels */
    uint64_t written;
} readers_t;

typedef struct reader_arg {
    readers_t *r;
    unsigned seed;
} reader_arg_t;

static void *reader_thread(void *arg)
{
    reader_arg_t *a = arg;
    for (size_t i = 0; i < a->r->per_thread; i++)
        if (lookup(a->r->st, &a->r->keys[mix(a->seed * 1000003ull + i) % a->r->n_keys]) !=
            KC_OK)
            a->r->failed = 1;
    return NULL;
}

static void *writer_thread(void *arg)
{
    readers_t *r = arg;
    while (!atomic_load(&r->done)) {
        kern_t ks[4];
        kc_publish_t pubs[4];
        for (unsigned i = 0; i < 4; i++) {
            kern_make(&ks[i], r->next_kid++, CONFIGS, 1, NULL, 0);
            pubs[i] = kern_pub(&ks[i], CONFIGS, 1);
        }
        if (kc_store_publish_many(r->st, pubs, 4) == KC_OK)
            r->written += 4 * (2 * CONFIGS + 1);
        for (unsigned i = 0; i < 4; i++)
            kern_free(&ks[i]);
    }
    return NULL;
}

/* Lookups per second of 8 readers, with a writer beside them or not. */
static double readers_rate(readers_t *r, int with_writer)
{
    pthread_t th[8], w;
    reader_arg_t args[8];
    double t0 = now_s();

    atomic_store(&r->done, 0);
    if (with_writer)
        pthread_create(&w, NULL, writer_thread, r);
    for (unsigned i = 0; i < 8; i++) {
        args[i] = (reader_arg_t){r, i + 1 + (with_writer ? 100 : 0)};
        pthread_create(&th[i], NULL, reader_thread, &args[i]);
    }
    for (unsigned i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    double t = now_s() - t0;
    atomic_store(&r->done, 1);
    if (with_writer)
        pthread_join(w, NULL);
    return (double)(8 * r->per_thread) / t;
}

/* ---- page cache ---------------------------------------------------------------- */

/* Drop data.mdb from the page cache; the resident share afterwards. */
static double drop_cache(const char *dir)
{
    char path[4096];
    struct stat sb;
    double resident = -1;

    snprintf(path, sizeof path, "%s/data.mdb", dir);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    if (fstat(fd, &sb) == 0 && sb.st_size > 0) {
        size_t pg = (size_t)sysconf(_SC_PAGESIZE), n = ((size_t)sb.st_size + pg - 1) / pg;
        void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
        unsigned char *vec = malloc(n);
        if (m != MAP_FAILED && vec && mincore(m, (size_t)sb.st_size, vec) == 0) {
            size_t in = 0;
            for (size_t i = 0; i < n; i++)
                in += vec[i] & 1;
            resident = (double)in / (double)n;
        }
        free(vec);
        if (m != MAP_FAILED)
            munmap(m, (size_t)sb.st_size);
    }
    close(fd);
    return resident;
}

/* ---- cachectl ------------------------------------------------------------------ */

static double run_cmd(const char *cmd)
{
    double t0 = now_s();
    int rc = system(cmd);
    double t = now_s() - t0;
    if (rc != 0)
        fprintf(stderr, "bench_store: '%s' exited %d\n", cmd, rc);
    return t;
}

/* Seconds to the first record line of `cachectl ls` (after its header). */
static double ls_first_line(const char *cachectl, const char *dir)
{
    char cmd[16384], line[4096];
    snprintf(cmd, sizeof cmd, "'%s' -s '%s' ls", cachectl, dir);
    double t0 = now_s();
    FILE *p = popen(cmd, "r");
    double t = -1;
    if (!p)
        return -1;
    if (fgets(line, sizeof line, p) && fgets(line, sizeof line, p))
        t = now_s() - t0;
    pclose(p); /* ls then dies of SIGPIPE, as under head */
    return t;
}

/* ---- one size ------------------------------------------------------------------ */

enum {
    M_RECORDS,
    M_FILL,
    M_WARM,
    M_DECODE,
    M_RATIO,
    M_COLD,
    M_RESIDENT,
    M_PREFETCH,
    M_READERS,
    M_READERS_W,
    M_READERS_RATIO,
    M_PUB1,
    M_PUBN,
    M_PUB1_NC,
    M_PUBN_NC,
    M_PUB512_NC,
    M_PUB4096_NC,
    M_PUB_THREADS,
    M_PUB_THREADS_NC,
    M_FILE_PER,
    M_BLOB_RATIO,
    M_OVERFLOW,
    M_STORED_PAGES,
    M_DISK_RATIO,
    M_USED_RATIO,
    M_PG_FILE,
    M_PG_FREE,
    M_PG_BLOB_LEAF, /* the PG_DBS rows, in their order */
    M_PG_BLOB_OV,
    M_PG_BLOBTAIL,
    M_PG_BUILD,
    M_PG_TUNING,
    M_PG_USAGE,
    M_DISK_RATIO_END,
    M_STATS,
    M_LS,
    M_GC,
    M_VERIFY,
    M_COUNT
};
static const char *const metric_names[M_COUNT] = {
    "records",
    "fill: kc_store_publish_many, --per-call kernels a call (records/s)",
    "warm lookup, get_build_cubin (us)",
    "kc_blob_decode alone, same blobs (us)",
    "warm lookup / decode alone",
    "cold lookup, first 500 after drop (us)",
    "data.mdb resident after the drop",
    "cold lookup after prefetch_hot (us)",
    "8 readers alone (lookups/s)",
    "8 readers + 1 writer (lookups/s)",
    "readers with writer / alone",
    "publish, 1 kernel a call, with cubin (records/s)",
    "publish_many, 64 kernels a call, with cubins (records/s)",
    "publish, 1 kernel a call, no cubin (records/s)",
    "publish_many, 64 kernels a call, no cubins (records/s)",
    "publish_many, 512 kernels a call, no cubins (records/s)",
    "publish_many, 4096 kernels a call, no cubins (records/s)",
    "publish, 1 kernel a call from 8 threads, with cubin (records/s)",
    "publish, 1 kernel a call from 8 threads, no cubin (records/s)",
    "data.mdb bytes per record",
    "blob compression (raw / stored)",
    "blobs: whole 4 KiB overflow pages / blob bytes",
    "blobs as stored: blob + blobtail pages / blob bytes",
    "data.mdb / records' bytes",
    "pages in use / records' bytes",
    "pages: data.mdb's (up to its last page in use)",
    "pages: on LMDB's free list (freed by the last two write transactions)",
    "pages: blob, leaves and branches (small blobs inline, the rest's page numbers)",
    "pages: blob, overflow (blob heads, blobs stored whole)",
    "pages: blobtail (split blobs' tails)",
    "pages: build",
    "pages: tuning",
    "pages: usage (stamps)",
    "data.mdb / records' bytes, after the publish rows",
    "cachectl stats (ms)",
    "cachectl ls: first record line (ms)",
    "cachectl gc --dry-run --max-size half (ms)",
    "cachectl verify (s)",
};

static int overflow_sum(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                        const void *data, size_t len)
{
    uint64_t *ov = user;
    (void)kind;
    (void)key;
    (void)data;
    ov[0] += len;
    ov[1] += (len + 16 + 4095) / 4096 * 4096;
    return 0;
}

/* The pages of the closed store in dir, read with LMDB alone: every
 * database's (branch, leaf and overflow), the free list's, and the file's. */
enum { PG_BLOB_LEAF, PG_BLOB_OV, PG_BLOBTAIL, PG_BUILD, PG_TUNING, PG_USAGE, PG_DBS };
/* The database of each row: "blob" fills both of its rows. */
static const char *const kPageDbs[PG_DBS] = {[PG_BLOB_LEAF] = "blob",
                                             [PG_BLOBTAIL] = "blobtail",
                                             [PG_BUILD] = "build",
                                             [PG_TUNING] = "tuning",
                                             [PG_USAGE] = "usage"};

typedef struct pages {
    uint64_t db[PG_DBS]; /* blob: leaves and branches apart from overflow */
    uint64_t free;       /* on LMDB's free list */
    uint64_t file;
    uint64_t psize;
} pages_t;

static int read_pages(const char *dir, pages_t *pg)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_envinfo info;
    MDB_val k, v;

    memset(pg, 0, sizeof(*pg));
    if (mdb_env_create(&env) != 0)
        return -1;
    if (mdb_env_set_maxdbs(env, 16) != 0 ||
        mdb_env_open(env, dir, MDB_RDONLY | MDB_NOLOCK, 0644) != 0 ||
        mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0) {
        mdb_env_close(env);
        return -1;
    }
    for (int i = 0; i < PG_DBS; i++) {
        MDB_dbi dbi;
        MDB_stat ms;
        if (!kPageDbs[i] || mdb_dbi_open(txn, kPageDbs[i], 0, &dbi) != 0 ||
            mdb_stat(txn, dbi, &ms) != 0)
            continue;
        pg->psize = ms.ms_psize;
        pg->db[i] = ms.ms_branch_pages + ms.ms_leaf_pages;
        if (i == PG_BLOB_LEAF)
            pg->db[PG_BLOB_OV] = ms.ms_overflow_pages;
        else
            pg->db[i] += ms.ms_overflow_pages;
    }
    /* The free list is LMDB's database 0: each value is a page-number list
     * whose first word is its length (what `mdb_stat -f` reads). */
    if (mdb_cursor_open(txn, 0, &cur) == 0) {
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            size_t n = 0;
            if (v.mv_size >= sizeof(n))
                memcpy(&n, v.mv_data, sizeof(n));
            pg->free += n;
        }
        mdb_cursor_close(cur);
    }
    if (mdb_env_info(env, &info) == 0 && pg->psize)
        pg->file = info.me_last_pgno + 1;
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return pg->psize ? 0 : -1;
}

/* Records per second of publishing count kernels (of 1 config + tuning), per
 * per_call a call; kernels from kid. */
static double publish_rate(kc_store_t *st, uint64_t kid, unsigned count,
                           unsigned per_call, int with_cubins, const kc_key_t *blobs,
                           size_t n_blobs, uint64_t variant)
{
    kern_t *ks = calloc(per_call, sizeof *ks);
    kc_publish_t *pubs = calloc(per_call, sizeof *pubs);
    double spent = 0;
    unsigned done = 0;

    while (done < count) {
        unsigned n = count - done < per_call ? count - done : per_call;
        for (unsigned i = 0; i < n; i++) {
            const kc_key_t *b = &blobs[(kid + done + i) % n_blobs];
            kern_make(&ks[i], kid + done + i, 1, with_cubins, b, variant);
            pubs[i] = kern_pub(&ks[i], 1, with_cubins);
        }
        double t0 = now_s();
        int rc = n == 1 && per_call == 1 ? kc_store_publish(st, &pubs[0])
                                         : kc_store_publish_many(st, pubs, n);
        spent += now_s() - t0;
        if (rc != KC_OK)
            fprintf(stderr, "bench_store: publish: %s\n", kc_store_errmsg(st));
        for (unsigned i = 0; i < n; i++)
            kern_free(&ks[i]);
        done += n;
    }
    free(ks);
    free(pubs);
    return (double)count * (with_cubins ? 3 : 2) / spent;
}

typedef struct pub_thread {
    kc_store_t *st;
    uint64_t kid;
    unsigned count;
    int with_cubins;
    const kc_key_t *blobs; /* without cubins: blobs already stored */
    size_t n_blobs;
} pub_thread_t;

static void *pub_thread(void *arg)
{
    pub_thread_t *t = arg;
    for (unsigned i = 0; i < t->count; i++) {
        kern_t k;
        const kc_key_t *b = t->blobs ? &t->blobs[(t->kid + i) % t->n_blobs] : NULL;
        kern_make(&k, t->kid + i, 1, t->with_cubins, b, 3);
        kc_publish_t pub = kern_pub(&k, 1, t->with_cubins);
        if (kc_store_publish(t->st, &pub) != KC_OK)
            fprintf(stderr, "bench_store: publish: %s\n", kc_store_errmsg(t->st));
        kern_free(&k);
    }
    return NULL;
}

/* Records per second of 8 threads each publishing count kernels of one
 * config, one kc_store_publish a kernel (group commit shares their
 * transactions). Compression is in the calls, as a launcher's. */
static double threads_publish_rate(kc_store_t *st, uint64_t kid, unsigned count,
                                   int with_cubins, const kc_key_t *blobs, size_t n_blobs)
{
    pthread_t th[8];
    pub_thread_t args[8];
    double t0 = now_s();

    for (unsigned i = 0; i < 8; i++) {
        args[i] = (pub_thread_t){
            st, kid + (uint64_t)i * count, count, with_cubins, blobs, n_blobs};
        pthread_create(&th[i], NULL, pub_thread, &args[i]);
    }
    for (unsigned i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    return 8.0 * count * (with_cubins ? 3 : 2) / (now_s() - t0);
}

/* The publish rows, into st: kernels from kid; the no-cubin ones name
 * blobs[0..n_blobs), which must be stored. */
static void publish_rows(kc_store_t *st, uint64_t kid, const kc_key_t *blobs,
                         size_t n_blobs, double *m)
{
    unsigned n_single = g_quick ? 50 : 300, n_batch = g_quick ? 256 : 3200;
    unsigned n_big = g_quick ? 4096 : 4 * 4096;
    if (g_batches_only) {
        m[M_PUBN_NC] = publish_rate(st, kid, n_batch, 64, 0, blobs, n_blobs, 1);
        kid += n_batch;
        m[M_PUB512_NC] = publish_rate(st, kid, n_batch * 2, 512, 0, blobs, n_blobs, 2);
        kid += n_batch * 2;
        m[M_PUB4096_NC] = publish_rate(st, kid, n_big, 4096, 0, blobs, n_blobs, 4);
        return;
    }
    m[M_PUB1] = publish_rate(st, kid, n_single, 1, 1, blobs, n_blobs, 0);
    kid += n_single;
    m[M_PUBN] = publish_rate(st, kid, n_batch, 64, 1, blobs, n_blobs, 0);
    kid += n_batch;
    m[M_PUB1_NC] = publish_rate(st, kid, n_single, 1, 0, blobs, n_blobs, 1);
    kid += n_single;
    m[M_PUBN_NC] = publish_rate(st, kid, n_batch, 64, 0, blobs, n_blobs, 1);
    kid += n_batch;
    m[M_PUB512_NC] = publish_rate(st, kid, n_batch * 2, 512, 0, blobs, n_blobs, 2);
    kid += n_batch * 2;
    m[M_PUB4096_NC] = publish_rate(st, kid, n_big, 4096, 0, blobs, n_blobs, 4);
    kid += n_big;
    m[M_PUB_THREADS] = threads_publish_rate(st, kid, g_quick ? 100 : 400, 1, NULL, 0);
    kid += 8 * (g_quick ? 100 : 400);
    m[M_PUB_THREADS_NC] =
        threads_publish_rate(st, kid, g_quick ? 100 : 400, 0, blobs, n_blobs);
}

/* A key of every blob visited, up to the room left. */
typedef struct blob_keys {
    kc_key_t *keys;
    size_t n, cap;
} blob_keys_t;

static int collect_blob(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                        const void *data, size_t len)
{
    blob_keys_t *b = user;
    (void)kind;
    (void)data;
    (void)len;
    b->keys[b->n++] = *key;
    return b->n == b->cap;
}

/* --publish-only: the publish rows alone, into the store an earlier run
 * left (--keep); kernels named from the time, so that each run publishes
 * new ones. */
static int bench_publish_only(uint64_t n_records, const char *root, double *m)
{
    char dir[4096];
    kc_store_t *st = NULL;
    kc_store_stats_t s;
    blob_keys_t b = {calloc(100000, sizeof(kc_key_t)), 0, 100000};

    snprintf(dir, sizeof dir, "%s/store-%" PRIu64, root, n_records);
    if (!b.keys || kc_store_open(dir, NULL, &st) != KC_OK) {
        fprintf(stderr, "bench_store: %s\n",
                b.keys ? kc_store_open_errmsg() : "no memory");
        free(b.keys);
        return -1;
    }
    kc_store_iterate(st, KC_REC_BLOB, collect_blob, &b);
    kc_store_stats(st, &s);
    m[M_RECORDS] = (double)(s.records[KC_REC_BLOB] + s.records[KC_REC_BUILD] +
                            s.records[KC_REC_TUNING]);
    if (b.n == 0) {
        fprintf(stderr, "bench_store: %s holds no blobs\n", dir);
        kc_store_close(st);
        free(b.keys);
        return -1;
    }
    publish_rows(st, 100000000 + (uint64_t)time(NULL) % 100000 * 100000, b.keys, b.n, m);
    kc_store_close(st);
    free(b.keys);
    return 0;
}

static int bench_size(uint64_t n_records, const char *root, const char *cachectl,
                      unsigned threads, int keep, double *m)
{
    char dir[4096], cmd[16384];
    kc_store_t *st = NULL;
    kc_store_stats_t s;
    uint64_t n_kernels = n_records * 4 / 9 / CONFIGS;
    uint64_t n_builds;
    size_t sample, cold_n = g_quick ? 100 : 500;

    if (n_kernels < 8)
        n_kernels = 8;
    n_builds = n_kernels * CONFIGS;
    sample =
        n_builds < (g_quick ? 2000u : 10000u) ? n_builds : (g_quick ? 2000u : 10000u);
    if (cold_n > sample)
        cold_n = sample;
    snprintf(dir, sizeof dir, "%s/store-%" PRIu64, root, n_records);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return -1;
    if (kc_store_open(dir, NULL, &st) != KC_OK) {
        fprintf(stderr, "bench_store: %s\n", kc_store_open_errmsg());
        return -1;
    }

    /* Fill. */
    fill_t f = {.st = st, .n_kernels = n_kernels};
    f.build_keys = malloc(n_builds * sizeof(kc_key_t));
    f.blob_keys = malloc(n_builds * sizeof(kc_key_t));
    pthread_t th[16];
    double t0 = now_s();
    for (unsigned i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, fill_thread, &f);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    double fill_s = now_s() - t0;
    if (f.failed)
        return -1;
    kc_store_flush(st);
    kc_store_stats(st, &s);
    uint64_t recs =
        s.records[KC_REC_BLOB] + s.records[KC_REC_BUILD] + s.records[KC_REC_TUNING];
    m[M_RECORDS] = (double)recs;
    m[M_FILL] = (double)recs / fill_s;
    fprintf(stderr, "[%" PRIu64 "] filled: %" PRIu64 " records in %.1f s\n", n_records,
            recs, fill_s);

    /* Bytes on disk of the store as filled: N records (the publish rows
     * below add more, smaller ones; their figure is a row of its own). */
    m[M_FILE_PER] = (double)s.file_bytes / (double)recs;
    m[M_DISK_RATIO] = (double)s.file_bytes / (double)s.record_bytes;
    m[M_BLOB_RATIO] = (double)s.blob_raw_bytes / (double)s.blob_stored_bytes;
    m[M_USED_RATIO] = (double)s.used_bytes / (double)s.record_bytes;
    /* A value too large for a leaf page goes to overflow pages of its own,
     * whole pages with a 16-byte header: what that rounding costs. */
    uint64_t ov[2] = {0, 0};
    kc_store_iterate(st, KC_REC_BLOB, overflow_sum, ov);
    m[M_OVERFLOW] = (double)ov[1] / (double)ov[0];
    /* The blob databases' pages, read with LMDB alone: the store closed. */
    kc_store_close(st);
    pages_t pg;
    if (read_pages(dir, &pg) == 0) {
        m[M_STORED_PAGES] =
            (double)((pg.db[PG_BLOB_LEAF] + pg.db[PG_BLOB_OV] + pg.db[PG_BLOBTAIL]) *
                     pg.psize) /
            (double)s.blob_stored_bytes;
        m[M_PG_FILE] = (double)pg.file;
        m[M_PG_FREE] = (double)pg.free;
        for (int i = 0; i < PG_DBS; i++)
            m[M_PG_BLOB_LEAF + i] = (double)pg.db[i];
    }
    if (kc_store_open(dir, NULL, &st) != KC_OK) {
        fprintf(stderr, "bench_store: %s\n", kc_store_open_errmsg());
        return -1;
    }

    /* The sample: random builds, and their blobs' stored bytes. */
    kc_key_t *keys = malloc(sample * sizeof *keys);
    void **blob_raw = calloc(sample, sizeof *blob_raw);
    size_t *blob_len = calloc(sample, sizeof *blob_len);
    for (size_t i = 0; i < sample; i++) {
        size_t j = mix(i + 17) % n_builds;
        keys[i] = f.build_keys[j];
        kc_store_get_raw(st, KC_REC_BLOB, &f.blob_keys[j], &blob_raw[i], &blob_len[i]);
    }
    /* Warm: one pass to fault everything in, then timed. */
    for (size_t i = 0; i < sample; i++)
        lookup(st, &keys[i]);
    t0 = now_s();
    for (size_t i = 0; i < sample; i++)
        lookup(st, &keys[i]);
    m[M_WARM] = (now_s() - t0) / (double)sample * 1e6;
    t0 = now_s();
    for (size_t i = 0; i < sample; i++) {
        kc_key_t bk;
        void *raw = NULL;
        size_t rl = 0;
        size_t j = mix(i + 17) % n_builds;
        bk = f.blob_keys[j];
        kc_blob_decode(blob_raw[i], blob_len[i], &bk, 0, NULL, 0, &raw, &rl);
        kc_free(raw);
    }
    m[M_DECODE] = (now_s() - t0) / (double)sample * 1e6;
    m[M_RATIO] = m[M_WARM] / m[M_DECODE];
    for (size_t i = 0; i < sample; i++)
        kc_free(blob_raw[i]);
    free(blob_raw);
    free(blob_len);

    /* Readers, alone and with a writer. */
    readers_t r = {.st = st,
                   .keys = keys,
                   .n_keys = sample,
                   .per_thread = g_quick ? 2000 : 20000,
                   .next_kid = n_kernels + 1000000};
    m[M_READERS] = readers_rate(&r, 0);
    m[M_READERS_W] = readers_rate(&r, 1);
    m[M_READERS_RATIO] = m[M_READERS_W] / m[M_READERS];
    fprintf(stderr,
            "[%" PRIu64 "] readers: %.0f alone, %.0f with a writer (%" PRIu64
            " records written meanwhile)\n",
            n_records, m[M_READERS], m[M_READERS_W], r.written);

    /* Publishing into the filled store. */
    publish_rows(st, n_kernels + 2000000, f.blob_keys, n_builds, m);

    /* The cold read: stamp the first cold_n sample kernels as the newest
     * uses (for the prefetch run), close, drop, reopen. */
    sleep(1);
    for (size_t i = 0; i < cold_n; i++)
        kc_store_touch(st, KC_REC_BUILD, &keys[i]);
    kc_store_close(st);
    m[M_RESIDENT] = drop_cache(dir);
    kc_store_open(dir, NULL, &st);
    t0 = now_s();
    for (size_t i = 0; i < cold_n; i++)
        lookup(st, &keys[i]);
    m[M_COLD] = (now_s() - t0) / (double)cold_n * 1e6;
    kc_store_close(st);
    drop_cache(dir);
    kc_store_open(dir, NULL, &st);
    uint64_t pf_bytes = 0, pf_recs = 0;
    kc_store_prefetch_hot(st, (uint64_t)cold_n * 80 * 1024, &pf_bytes, &pf_recs);
    usleep(300 * 1000); /* the reads it asked for run in the background */
    t0 = now_s();
    for (size_t i = 0; i < cold_n; i++)
        lookup(st, &keys[i]);
    m[M_PREFETCH] = (now_s() - t0) / (double)cold_n * 1e6;
    fprintf(stderr,
            "[%" PRIu64 "] prefetch_hot advised %" PRIu64 " records, %" PRIu64 " bytes\n",
            n_records, pf_recs, pf_bytes);

    kc_store_stats(st, &s);
    m[M_DISK_RATIO_END] = (double)s.file_bytes / (double)s.record_bytes;
    uint64_t half = s.record_bytes / 2;
    kc_store_close(st);

    snprintf(cmd, sizeof cmd, "'%s' -s '%s' stats >/dev/null", cachectl, dir);
    m[M_STATS] = run_cmd(cmd) * 1e3;
    m[M_LS] = ls_first_line(cachectl, dir) * 1e3;
    snprintf(cmd, sizeof cmd,
             "'%s' -s '%s' gc --dry-run --max-size %" PRIu64 "B >/dev/null", cachectl,
             dir, half);
    m[M_GC] = run_cmd(cmd) * 1e3;
    snprintf(cmd, sizeof cmd, "'%s' -s '%s' verify >/dev/null", cachectl, dir);
    m[M_VERIFY] = run_cmd(cmd);

    free(keys);
    free(f.build_keys);
    free(f.blob_keys);
    if (!keep) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t sizes[MAX_SIZES] = {1000, 100000, 1000000};
    size_t n_sizes = 3;
    const char *root = "/tmp/kcache_bench_store", *cubins = NULL;
    char cachectl[4096];
    unsigned threads = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
    int keep = 0, publish_only = 0;
    double m[MAX_SIZES][M_COUNT];

    /* cachectl beside this program (build/tools/). */
    snprintf(cachectl, sizeof cachectl, "%s", argv[0]);
    char *slash = strrchr(cachectl, '/');
    snprintf(slash ? slash + 1 : cachectl,
             sizeof cachectl - (size_t)(slash ? slash + 1 - cachectl : 0), "cachectl");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
            n_sizes = 0;
            for (char *p = argv[++i]; *p && n_sizes < MAX_SIZES;) {
                sizes[n_sizes++] = strtoull(p, &p, 10);
                if (*p == ',')
                    p++;
            }
        } else if (!strcmp(argv[i], "--records") && i + 1 < argc) {
            sizes[0] = strtoull(argv[++i], NULL, 10);
            n_sizes = 1;
        } else if (!strcmp(argv[i], "--cubins") && i + 1 < argc) {
            cubins = argv[++i];
        } else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
            root = argv[++i];
        } else if (!strcmp(argv[i], "--cachectl") && i + 1 < argc) {
            snprintf(cachectl, sizeof cachectl, "%s", argv[++i]);
        } else if (!strcmp(argv[i], "--per-call") && i + 1 < argc) {
            g_per_call = (unsigned)strtoul(argv[++i], NULL, 10);
            if (g_per_call < 1 || g_per_call > PER_CALL_MAX) {
                fprintf(stderr, "bench_store: --per-call: 1 to %d\n", PER_CALL_MAX);
                return 2;
            }
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = (unsigned)atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--quick")) {
            g_quick = 1;
            sizes[0] = 1000;
            n_sizes = 1;
        } else if (!strcmp(argv[i], "--keep")) {
            keep = 1;
        } else if (!strcmp(argv[i], "--publish-only")) {
            publish_only = 1;
        } else if (!strcmp(argv[i], "--batches-only")) {
            g_batches_only = 1;
        } else {
            fprintf(
                stderr,
                "usage: %s [--sizes N,N...] [--records N] [--cubins DIR] [--dir DIR]\n"
                "       [--cachectl PATH] [--threads T] [--per-call K] [--quick] "
                "[--keep]\n"
                "       [--publish-only [--batches-only]]\n",
                argv[0]);
            return 2;
        }
    }
    if (g_batches_only && !publish_only) {
        fprintf(stderr, "bench_store: --batches-only goes with --publish-only\n");
        return 2;
    }
    if (threads < 1 || threads > 16)
        threads = threads < 1 ? 1 : 16;
    if (cubins ? bench_load_cubins(cubins, &g_base, &g_n_base) != 0 : (synth_base(), 0)) {
        fprintf(stderr, "bench_store: no cubins in %s\n", cubins);
        return 1;
    }
    mkdir(root, 0755);
    for (size_t i = 0; i < n_sizes; i++) {
        for (int k = 0; k < M_COUNT; k++)
            m[i][k] = NAN; /* not measured: "-" */
        if (publish_only
                ? bench_publish_only(sizes[i], root, m[i]) != 0
                : bench_size(sizes[i], root, cachectl, threads, keep, m[i]) != 0) {
            fprintf(stderr, "bench_store: the run at %" PRIu64 " records failed\n",
                    sizes[i]);
            return 1;
        }
    }

    printf("cubins: %s (%zu files); fill threads: %u\n\n", cubins ? cubins : "synthetic",
           g_n_base, threads);
    printf("| |");
    for (size_t i = 0; i < n_sizes; i++)
        printf(" %" PRIu64 " |", sizes[i]);
    printf("\n| --- |");
    for (size_t i = 0; i < n_sizes; i++)
        printf(" --- |");
    printf("\n");
    for (int k = 0; k < M_COUNT; k++) {
        printf("| %s |", metric_names[k]);
        for (size_t i = 0; i < n_sizes; i++) {
            double v = m[i][k];
            if (isnan(v))
                printf(" - |");
            else if (k == M_RECORDS || k == M_FILL || k == M_READERS ||
                     k == M_READERS_W || (k >= M_PUB1 && k <= M_PUB_THREADS_NC) ||
                     (k >= M_PG_FILE && k <= M_PG_USAGE))
                printf(" %.0f |", v);
            else if (k == M_RESIDENT)
                printf(" %.1f%% |", v * 100);
            else if (k == M_RATIO || k == M_READERS_RATIO || k == M_DISK_RATIO ||
                     k == M_BLOB_RATIO || k == M_OVERFLOW || k == M_USED_RATIO ||
                     k == M_STORED_PAGES || k == M_DISK_RATIO_END)
                printf(" %.2fx |", v);
            else
                printf(" %.1f |", v);
        }
        printf("\n");
    }
    return 0;
}
