/* test_damage: damaged copies of real stores, read by every kcache entry
 * point that reads a store; none may crash, hang or hand out a wrong cubin.
 *
 * Base stores hold real NVRTC cubins (vec_add in 8 block sizes, saxpy,
 * block_sum) under synthetic builds and tunings (tests/support's kct_pub with
 * its cubins replaced by the real ones), plus what a launcher on the
 * simulation device publishes for the kernel "inc": small (~45 records),
 * medium (~1,000) and large (more than 10,000). Each damaged copy is one of:
 *
 *   flip      1 to 3 runs of 1 to 8 random bytes, anywhere in data.mdb
 *   zero      one page zeroed (any page, meta pages included)
 *   swap      two pages exchanged
 *   cut-page  truncated at a page boundary
 *   cut-any   truncated at any byte
 *   torn      copied (read/write in 64 KiB pieces) while another process
 *             publishes into the store
 *
 * On each copy, each entry point runs in its own process under alarm():
 * `cachectl ls`, `stats`, `verify`, `export`, `gc --dry-run`, `snapshot`;
 * `cachectl recover` into a new
 * store, which the library entry points below then read (what it saved must
 * read back right); the library (kc_store_open,
 * then every known build's cubin and tuning compared byte for byte with
 * what was published, iteration of every kind, stats, a verify walk, a
 * bundle export, and a publish after a writable reopen); and a launcher on
 * the simulation device (open with set-aside, lookup, prefetch, a launch
 * whose output is checked, a publish of what it compiled). Outcomes are
 * counted: ok, damage detected (KC_EDAMAGED, cachectl exit 3), another
 * clean error, crash (a signal), hang (the alarm), wrong (a cubin differing
 * from the one published, a wrong launch result, or a module the
 * simulation device rejected). Pass: zero crashes, hangs and wrongs.
 *
 * Sizes: KC_DAMAGE_COPIES damaged copies per base store (default 24, half
 * that for the large one), KC_DAMAGE_TORN torn copies (default 8), KC_DAMAGE_SEED the
 * random seed (default: the time, printed). docs/RELIABILITY.md has the figures.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kc_simkernels.h"
#include "kc_testutil.h"
#include "kcache/bundle.h"
#include "kcache/key.h"
#include "kcache/launch.h"
#include "kcache/sim.h"
#include "kcache/store.h"
#include "nvrtc_dl.h"

#define PSIZE 4096
#define N_REAL 10
#define ALARM_S 20

enum outcome { O_OK, O_DETECTED, O_ERROR, O_CRASH, O_HANG, O_WRONG, O_COUNT };
static const char *const outcome_names[O_COUNT] = {"ok",    "detected", "error",
                                                   "crash", "hang",     "wrong"};

enum entry {
    E_LS,
    E_STATS,
    E_VERIFY,
    E_EXPORT,
    E_GC,
    E_SNAPSHOT,
    E_LIBRARY,
    E_RECOVER,
    E_LAUNCHER,
    E_COUNT,
};
static const char *const entry_names[E_COUNT] = {
    "cachectl ls",     "cachectl stats",        "cachectl verify",
    "cachectl export", "cachectl gc --dry-run", "cachectl snapshot",
    "library",         "cachectl recover",      "launcher"};

enum damage { D_FLIP, D_ZERO, D_SWAP, D_CUT_PAGE, D_CUT_ANY, D_TORN, D_COUNT };
static const char *const damage_names[D_COUNT] = {"flip",     "zero",    "swap",
                                                  "cut-page", "cut-any", "torn"};

static const kc_param_spec_t block_param[] = {
    {"BLOCK", (const int64_t[]){32, 64}, 2},
};

/* The real cubins, and the publishes of a base store. */
static void *real[N_REAL];
static size_t real_len[N_REAL];
static kc_key_t real_key[N_REAL];
static int n_real;

typedef struct base {
    char dir[512];
    uint64_t pubs; /* publishes 0..pubs-1, 4 builds each */
    uint8_t *data;
    size_t size;
} base_t;

static uint64_t counts[E_COUNT][O_COUNT];
static uint64_t by_damage[D_COUNT][O_COUNT];
static uint64_t set_aside_total;
static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void load_real_cubins(void)
{
    static const char src[] = "extern \"C\" __global__ void __launch_bounds__(BLOCK)\n"
                              "vec_add(const float *a, const float *b, float *c, int n)\n"
                              "{\n"
                              "    int i = blockIdx.x * BLOCK + threadIdx.x;\n"
                              "    if (i < n)\n"
                              "        c[i] = a[i] + b[i] * BLOCK;\n"
                              "}\n";
    kct_nvrtc_t nv;
    char err[2048];

    if (n_real)
        return;
    if (kct_nvrtc_load(&nv, err, sizeof(err)) != 0)
        fail_msg("NVRTC: %s", err);
    for (int i = 0; i < N_REAL; i++) {
        char block[32];
        snprintf(block, sizeof(block), "-DBLOCK=%d", 32 << (i % 6));
        const char *opts[] = {"--gpu-architecture=sm_80", block,
                              i >= 6 ? "-lineinfo" : "-DX=1",
                              i >= 8 ? "--use_fast_math" : "-DY=1"};
        if (kct_nvrtc_compile(&nv, src, "damage_vec_add.cu", opts, 4, &real[i],
                              &real_len[i], err, sizeof(err)) != 0)
            fail_msg("compile: %s", err);
        real_key[i] = kc_key_hash(real[i], real_len[i]);
    }
    kct_nvrtc_unload(&nv);
    n_real = N_REAL;
}

/* Publish id with 4 builds whose cubins are real ones. */
static int make_pub(kct_pub_t *p, uint64_t id)
{
    int rc = kct_pub_make(p, id, 4);
    if (rc != KC_OK)
        return rc;
    for (unsigned j = 0; j < p->n; j++) {
        int r = (int)((id * 4 + j) % (uint64_t)n_real);
        p->cubins[j] = (kc_buf_t){real[r], real_len[r]};
        p->blob_keys[j] = real_key[r];
        p->builds[j].blob = real_key[r];
    }
    return KC_OK;
}

static int publish_range(kc_store_t *st, uint64_t from, uint64_t to)
{
    for (uint64_t id = from; id < to; id++) {
        kct_pub_t p;
        int rc = make_pub(&p, id);
        if (rc == KC_OK)
            rc = kc_store_publish(st, &p.pub);
        kct_pub_free(&p);
        if (rc != KC_OK)
            return rc;
    }
    return KC_OK;
}

static int read_file(const char *path, uint8_t **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    long n;
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *data = malloc((size_t)n + 1);
    *size = fread(*data, 1, (size_t)n, f);
    fclose(f);
    return *size == (size_t)n ? 0 : -1;
}

static int write_file(const char *path, const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)n;
    }
    close(fd);
    return 0;
}

/* A launch of inc through a launcher on dir (the launcher's store open,
 * lookup, prefetch, publish), checked element by element; the sim's
 * rejected modules are "wrong". Runs in a child. */
static int child_launcher(const char *dir)
{
    kc_sim_t *sim = NULL;
    kc_launcher_t *l = NULL;
    kc_kernel_t *k = NULL;
    kc_kernel_spec_t spec = kcs_inc_spec("damage.inc", block_param);
    kc_launcher_opts_t o = KC_LAUNCHER_OPTS_INIT;
    kc_sim_counters_t sc;
    enum { N = 500 };
    static float x[N];
    int64_t dims[1] = {N};
    kc_arg_t args[2] = {{.ptr = (uint64_t)(uintptr_t)x, .rank = 1, .dims = dims}};
    int out = O_OK;

    args[1].value.i = N;
    for (int i = 0; i < N; i++)
        x[i] = (float)i;
    if (kc_sim_create(NULL, &sim) != KC_OK ||
        kc_sim_register(sim, "inc", kcs_sim_inc, kcs_cost_linear, NULL) != KC_OK)
        return O_ERROR;
    o.device = KC_DEVICE_SIM;
    o.sim = sim;
    o.store_dir = dir;
    o.budget_ms = 0.01;
    o.min_reps = 2;
    o.max_reps = 3;
    if (kc_launcher_create(&o, &l) != KC_OK)
        return O_WRONG; /* the launcher must go on without a store */
    if (kc_kernel_get(l, &spec, &k) != KC_OK ||
        kc_kernel_launch(k, NULL, args, 2) != KC_OK)
        out = O_WRONG;
    for (int i = 0; out == O_OK && i < N; i++)
        if (x[i] != (float)(i + 1))
            out = O_WRONG;
    kc_launcher_destroy(l);
    kc_sim_counters(sim, &sc);
    if (sc.modules_rejected)
        out = O_WRONG;
    kc_sim_destroy(sim);
    return out;
}

typedef struct keys {
    kc_key_t *k;
    size_t n, cap;
} keys_t;

static int walk_fn(void *user, kc_rec_kind_t kind, const kc_key_t *key, const void *data,
                   size_t len)
{
    keys_t *ks = user;
    (void)data;
    (void)len;
    if (kind != KC_REC_BLOB)
        return 0;
    if (ks->n == ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 64;
        kc_key_t *k = realloc(ks->k, cap * sizeof(*k));
        if (!k)
            return 1;
        ks->k = k;
        ks->cap = cap;
    }
    ks->k[ks->n++] = *key;
    return 0;
}

static int cubin_is_real(const void *c, size_t len)
{
    for (int i = 0; i < n_real; i++)
        if (len == real_len[i] && memcmp(c, real[i], len) == 0)
            return 1;
    return 0;
}

/* Count a failed step; KC_DAMAGE_VERBOSE says which. */
#define STEP(expr)                                                                       \
    do {                                                                                 \
        if (expr) {                                                                      \
            errors++;                                                                    \
            if (getenv("KC_DAMAGE_VERBOSE"))                                             \
                fprintf(stderr, "step failed: %s (%s)\n", #expr, kc_store_errmsg(st));   \
        }                                                                                \
    } while (0)

/* Every library entry point that reads a store, then a publish. */
static int child_library(const char *dir, uint64_t pubs)
{
    kc_store_opts_t so = KC_STORE_OPTS_INIT;
    kc_store_t *st = NULL;
    kc_store_stats_t stats;
    uint64_t step = pubs > 300 ? pubs / 300 : 1;
    int rc, errors = 0;

    so.flags = KC_STORE_RDONLY | KC_STORE_NOCREATE;
    rc = kc_store_open(dir, &so, &st);
    if (rc == KC_EDAMAGED)
        return O_DETECTED;
    if (rc != KC_OK)
        return O_ERROR;
    for (uint64_t id = 0; id < pubs; id += step) {
        kct_pub_t p;
        if (make_pub(&p, id) != KC_OK)
            return O_ERROR;
        for (unsigned j = 0; j < p.n; j++) {
            kc_record_t *b = NULL;
            void *c = NULL;
            size_t len = 0;
            rc = kc_store_get_build_cubin(st, &p.build_keys[j], &b, &c, &len);
            if (rc == KC_OK &&
                (len != p.cubins[j].size || memcmp(c, p.cubins[j].data, len) != 0)) {
                kct_pub_free(&p);
                return O_WRONG;
            }
            STEP(rc != KC_OK);
            kc_free(b);
            kc_free(c);
        }
        kc_record_t *t = NULL;
        rc = kc_store_get(st, KC_REC_TUNING, &p.tuning_key, &t);
        if (rc == KC_OK && kc_key_cmp(&t->u.tuning.winner_build, &p.build_keys[0]) != 0) {
            kc_free(t);
            kct_pub_free(&p);
            return O_WRONG;
        }
        STEP(rc != KC_OK);
        kc_free(t);
        kct_pub_free(&p);
    }
    keys_t ks = {0};
    STEP(kc_store_iterate(st, 0, walk_fn, &ks) != KC_OK);
    /* Every cubin the store hands out is one that was published: a real
     * one under its key, else (the launcher's) one that hashes to its key. */
    for (size_t i = 0; i < ks.n; i++) {
        void *c = NULL;
        size_t len = 0;
        rc = kc_store_get_cubin(st, &ks.k[i], &c, &len);
        if (rc == KC_OK) {
            kc_key_t h = kc_key_hash(c, len);
            int real_key_seen = 0;
            for (int r = 0; r < n_real; r++)
                real_key_seen |= kc_key_cmp(&ks.k[i], &real_key[r]) == 0;
            if ((real_key_seen && !cubin_is_real(c, len)) ||
                kc_key_cmp(&h, &ks.k[i]) != 0) {
                kc_free(c);
                free(ks.k);
                return O_WRONG;
            }
        }
        STEP(rc != KC_OK);
        kc_free(c);
    }
    free(ks.k);
    STEP(kc_store_stats(st, &stats) != KC_OK);
    STEP(kct_store_consistency(st, NULL, NULL, NULL) != 0);
    FILE *f = tmpfile();
    if (f) {
        STEP(kc_bundle_export(st, NULL, f, NULL) != KC_OK);
        fclose(f);
    }
    kc_store_close(st);
    so.flags = KC_STORE_NOCREATE;
    rc = kc_store_open(dir, &so, &st);
    if (rc == KC_OK) {
        STEP(publish_range(st, 1000000, 1000001) != KC_OK);
        kc_store_close(st);
    } else {
        errors++;
    }
    return errors ? O_ERROR : O_OK;
}

/* Run an entry point in a child under alarm(); the outcome. */
static int run_entry(int entry, const char *dir, uint64_t pubs)
{
    pid_t pid = fork();
    int status;

    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(ALARM_S);
        if (entry == E_LIBRARY)
            _exit(child_library(dir, pubs));
        if (entry == E_LAUNCHER)
            _exit(child_launcher(dir));
        const char *ctl = kct_cachectl();
        int fd = open("/dev/null", O_WRONLY);
        char rec[700];
        if (!ctl || fd < 0)
            _exit(100);
        dup2(fd, 1);
        dup2(fd, 2);
        snprintf(rec, sizeof(rec), "%s.rec", dir);
        switch (entry) {
        case E_RECOVER:
            alarm(ALARM_S * 6);
            execl(ctl, ctl, "recover", dir, rec, (char *)NULL);
            break;
        case E_LS:
            execl(ctl, ctl, "-s", dir, "ls", (char *)NULL);
            break;
        case E_STATS:
            execl(ctl, ctl, "-s", dir, "stats", (char *)NULL);
            break;
        case E_VERIFY:
            execl(ctl, ctl, "-s", dir, "verify", (char *)NULL);
            break;
        case E_GC:
            execl(ctl, ctl, "-s", dir, "gc", "--dry-run", "--max-size", "1",
                  (char *)NULL);
            break;
        case E_SNAPSHOT:
            snprintf(rec, sizeof(rec), "%s.snap", dir);
            execl(ctl, ctl, "-s", dir, "snapshot", rec, (char *)NULL);
            break;
        default:
            execl(ctl, ctl, "-s", dir, "export", "-o", "/dev/null", (char *)NULL);
            break;
        }
        _exit(101);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFSIGNALED(status))
        return WTERMSIG(status) == SIGALRM ? O_HANG : O_CRASH;
    int code = WEXITSTATUS(status);
    if (code >= 100)
        fail_msg("entry %s could not run (%d)", entry_names[entry], code);
    if (entry == E_LIBRARY || entry == E_LAUNCHER)
        return code;
    if (entry == E_SNAPSHOT) {
        char snap[700];
        snprintf(snap, sizeof(snap), "%s.snap", dir);
        kct_rmtree(snap, 0);
    }
    if (entry == E_RECOVER) {
        /* What recover saved must read back right in every entry point of
         * the library. */
        char rec[700];
        int o = O_ERROR;
        snprintf(rec, sizeof(rec), "%s.rec", dir);
        if (code == 0) {
            o = run_entry(E_LIBRARY, rec, pubs);
            if (o == O_DETECTED)
                o = O_WRONG; /* recover wrote a damaged file */
        }
        kct_rmtree(rec, 0);
        return o == O_ERROR && code == 0 ? O_OK : o;
    }
    return code == 0 ? O_OK : code == 3 ? O_DETECTED : O_ERROR;
}

static uint64_t tunings_in(const char *dir)
{
    kc_store_t *st = NULL;
    kc_store_stats_t s;
    assert_int_equal(kc_store_open(dir, NULL, &st), KC_OK);
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    kc_store_close(st);
    return s.records[KC_REC_TUNING];
}

static int count_set_aside(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return 0;
    while ((e = readdir(d)))
        n += strncmp(e->d_name, "data.mdb.damaged-", 17) == 0;
    closedir(d);
    return n;
}

/* All entry points on the store in dir; the worst outcome is returned,
 * every one counted. */
static void run_all(const char *dir, uint64_t pubs, int dmg, const char *what)
{
    for (int e = 0; e < E_COUNT; e++) {
        int before = count_set_aside(dir);
        int o = run_entry(e, dir, pubs);
        /* A launcher that set the file aside detected the damage. */
        if (o == O_OK && count_set_aside(dir) > before)
            o = O_DETECTED;
        counts[e][o]++;
        by_damage[dmg][o]++;
        if (o == O_CRASH || o == O_HANG || o == O_WRONG) {
            char keep[640]; /* dir is at most 600 bytes */
            snprintf(keep, sizeof(keep), "%s.kept", dir);
            rename(dir, keep);
            fail_msg("%s on a %s copy (%s): %s; the copy is kept in %s", entry_names[e],
                     damage_names[dmg], what, outcome_names[o], keep);
        }
    }
    set_aside_total += (uint64_t)count_set_aside(dir);
}

static void make_base(base_t *b, const char *tag, uint64_t pubs)
{
    kc_store_t *st = NULL;
    char path[600];

    load_real_cubins();
    assert_int_equal(kct_tmpdir(tag, b->dir, sizeof(b->dir)), 0);
    b->pubs = pubs;
    assert_int_equal(kc_store_open(b->dir, NULL, &st), KC_OK);
    assert_int_equal(publish_range(st, 0, pubs), KC_OK);
    kc_store_close(st);
    /* What a launcher publishes: the inc kernel's builds and tuning. */
    assert_int_equal(child_launcher(b->dir), O_OK);
    snprintf(path, sizeof(path), "%s/data.mdb", b->dir);
    assert_int_equal(read_file(path, &b->data, &b->size), 0);
}

static void free_base(base_t *b)
{
    free(b->data);
    kct_rmtree(b->dir, 0);
}

/* Damage a copy of data in memory. Returns the new size; what says how. */
static size_t damage(uint8_t *d, size_t size, int kind, char *what, size_t what_len)
{
    size_t pages = size / PSIZE;
    switch (kind) {
    case D_FLIP: {
        int runs = 1 + (int)(rnd() % 3);
        size_t n = 0;
        n += (size_t)snprintf(what, what_len, "flips");
        for (int r = 0; r < runs; r++) {
            size_t len = 1 + rnd() % 8, at = rnd() % size;
            for (size_t i = 0; i < len && at + i < size; i++)
                d[at + i] ^= (uint8_t)(1 + rnd() % 255);
            if (n < what_len)
                n += (size_t)snprintf(what + n, what_len - n, " %zu+%zu", at, len);
        }
        return size;
    }
    case D_ZERO: {
        size_t p = rnd() % pages;
        memset(d + p * PSIZE, 0, PSIZE);
        snprintf(what, what_len, "page %zu zeroed", p);
        return size;
    }
    case D_SWAP: {
        size_t p = rnd() % pages, q = rnd() % pages;
        uint8_t tmp[PSIZE];
        memcpy(tmp, d + p * PSIZE, PSIZE);
        memcpy(d + p * PSIZE, d + q * PSIZE, PSIZE);
        memcpy(d + q * PSIZE, tmp, PSIZE);
        snprintf(what, what_len, "pages %zu and %zu swapped", p, q);
        return size;
    }
    case D_CUT_PAGE: {
        size_t p = rnd() % pages;
        snprintf(what, what_len, "cut to %zu pages", p);
        return p * PSIZE;
    }
    default: {
        size_t n = rnd() % size;
        snprintf(what, what_len, "cut to %zu bytes", n);
        return n;
    }
    }
}

static void damaged_copies(base_t *b, uint64_t copies)
{
    uint8_t *d = malloc(b->size);
    char dir[600], path[700], what[200];

    assert_non_null(d);
    /* The undamaged store: every entry point succeeds. */
    snprintf(dir, sizeof(dir), "%s.copy", b->dir);
    for (uint64_t i = 0; i <= copies; i++) {
        int kind = i == 0 ? -1 : (int)(rnd() % D_TORN);
        size_t size = b->size;
        memcpy(d, b->data, b->size);
        if (kind >= 0)
            size = damage(d, b->size, kind, what, sizeof(what));
        else
            snprintf(what, sizeof(what), "undamaged");
        kct_rmtree(dir, 0);
        assert_int_equal(mkdir(dir, 0755), 0);
        snprintf(path, sizeof(path), "%s/data.mdb", dir);
        assert_int_equal(write_file(path, d, size), 0);
        if (kind < 0) {
            for (int e = 0; e < E_COUNT; e++) {
                int o = run_entry(e, dir, b->pubs);
                if (o != O_OK)
                    fail_msg("undamaged store: %s: %s", entry_names[e], outcome_names[o]);
            }
            continue;
        }
        run_all(dir, b->pubs, kind, what);
    }
    kct_rmtree(dir, 0);
    free(d);
}

static void report(const char *title)
{
    print_message("%s\n", title);
    for (int e = 0; e < E_COUNT; e++)
        print_message("  %-16s ok %6" PRIu64 "  detected %6" PRIu64 "  error %6" PRIu64
                      "  crash %" PRIu64 "  hang %" PRIu64 "  wrong %" PRIu64 "\n",
                      entry_names[e], counts[e][O_OK], counts[e][O_DETECTED],
                      counts[e][O_ERROR], counts[e][O_CRASH], counts[e][O_HANG],
                      counts[e][O_WRONG]);
    for (int k = 0; k < D_COUNT; k++)
        print_message("  %-16s ok %6" PRIu64 "  detected %6" PRIu64 "  error %6" PRIu64
                      "  (runs)\n",
                      damage_names[k], by_damage[k][O_OK], by_damage[k][O_DETECTED],
                      by_damage[k][O_ERROR]);
    print_message("  damaged files set aside by launchers: %" PRIu64 "\n",
                  set_aside_total);
}

static void sized(const char *tag, uint64_t pubs, uint64_t copies)
{
    base_t b;
    memset(counts, 0, sizeof(counts));
    memset(by_damage, 0, sizeof(by_damage));
    set_aside_total = 0;
    make_base(&b, tag, pubs);
    print_message("%s: %" PRIu64 " publishes, data.mdb %zu bytes, %" PRIu64 " copies\n",
                  tag, pubs, b.size, copies);
    damaged_copies(&b, copies);
    report(tag);
    free_base(&b);
}

static uint64_t copies_per_store(void)
{
    return kct_env_u64("KC_DAMAGE_COPIES", 24);
}

static void test_damaged_copies_of_a_small_store(void **state)
{
    (void)state;
    sized("damage-small", 5, copies_per_store());
}

static void test_damaged_copies_of_a_1k_record_store(void **state)
{
    (void)state;
    sized("damage-1k", 200, copies_per_store());
}

/* 2,100 publishes: 8,400 builds and 2,100 tunings, 10,500 records beside
 * the 10 blobs. */
static void test_damaged_copies_of_a_10k_record_store(void **state)
{
    (void)state;
    sized("damage-10k", 2100, copies_per_store() / 2 ? copies_per_store() / 2 : 1);
}

/* Copy the file in 64 KiB pieces while a child publishes into the store. */
static void test_torn_copies_taken_during_publishes(void **state)
{
    uint64_t copies = kct_env_u64("KC_DAMAGE_TORN", 8);
    base_t b;
    char dir[600], path[700], src[600];
    (void)state;

    memset(counts, 0, sizeof(counts));
    memset(by_damage, 0, sizeof(by_damage));
    set_aside_total = 0;
    make_base(&b, "damage-torn", 20);
    snprintf(src, sizeof(src), "%s/data.mdb", b.dir);
    snprintf(dir, sizeof(dir), "%s.copy", b.dir);
    uint64_t base_tunings = tunings_in(b.dir);
    pid_t writer = fork();
    assert_true(writer >= 0);
    if (writer == 0) {
        kc_store_t *st = NULL;
        if (kc_store_open(b.dir, NULL, &st) != KC_OK)
            _exit(1);
        for (uint64_t id = 20;; id++)
            if (publish_range(st, id, id + 1) != KC_OK)
                _exit(2);
    }
    for (uint64_t i = 0; i < copies; i++) {
        uint8_t buf[65536];
        struct timespec ts = {0, 2000000};
        int in, out;
        ssize_t n;
        nanosleep(&ts, NULL);
        kct_rmtree(dir, 0);
        assert_int_equal(mkdir(dir, 0755), 0);
        snprintf(path, sizeof(path), "%s/data.mdb", dir);
        in = open(src, O_RDONLY);
        out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_true(in >= 0 && out >= 0);
        while ((n = read(in, buf, sizeof(buf))) > 0) {
            assert_int_equal(write(out, buf, (size_t)n), n);
            nanosleep(&(struct timespec){0, 200000}, NULL);
        }
        close(in);
        close(out);
        run_all(dir, 20, D_TORN, "torn copy");
    }
    /* The writer published all along: it is still running (it exits only
     * on a failed open or publish), and the store holds more tunings than
     * before it started. */
    int wstatus = 0;
    assert_int_equal(waitpid(writer, &wstatus, WNOHANG), 0);
    kill(writer, SIGKILL);
    waitpid(writer, NULL, 0);
    assert_true(tunings_in(b.dir) > base_tunings);
    kct_rmtree(dir, 0);
    report("damage-torn");
    free_base(&b);
}

/* A launcher sets a damaged store aside, counts it and goes on with a fresh
 * store; the damaged file is kept. */
static void test_a_launcher_sets_a_damaged_store_aside(void **state)
{
    base_t b;
    char path[700];
    kc_store_t *st = NULL;
    kc_store_stats_t s;
    (void)state;

    make_base(&b, "damage-aside", 5);
    snprintf(path, sizeof(path), "%s/data.mdb", b.dir);
    assert_int_equal(truncate(path, (off_t)(b.size - PSIZE)), 0);
    unlink(strcat(strcpy((char[720]){0}, path), ".checked"));
    assert_int_equal(kc_store_open(b.dir, NULL, &st), KC_EDAMAGED);
    assert_non_null(strstr(kc_store_open_errmsg(), "cachectl recover"));
    assert_int_equal(child_launcher(b.dir), O_OK);
    assert_int_equal(count_set_aside(b.dir), 1);
    assert_int_equal(kc_store_open(b.dir, NULL, &st), KC_OK);
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    assert_int_equal(s.counters[KC_COUNTER_DAMAGED_SET_ASIDE], 1);
    kc_store_close(st);
    free_base(&b);
}

/* cachectl over KCACHE_PATH layers, one of them damaged: exit status 3 and
 * the message, not a listing that quietly leaves the layer out. */
static void test_cachectl_fails_on_a_damaged_layer(void **state)
{
    base_t good, bad;
    char path[700], cmd[2048];
    const char *ctl = kct_cachectl();
    (void)state;

    assert_non_null(ctl);
    make_base(&good, "damage-layer-good", 3);
    make_base(&bad, "damage-layer-bad", 3);
    snprintf(path, sizeof(path), "%s/data.mdb", bad.dir);
    assert_int_equal(truncate(path, (off_t)(bad.size - PSIZE)), 0);
    snprintf(path, sizeof(path), "%s/data.mdb.checked", bad.dir);
    unlink(path);
    snprintf(cmd, sizeof(cmd), "KCACHE_PATH='%s:%s' '%s' ls >/dev/null 2>&1", good.dir,
             bad.dir, ctl);
    assert_int_equal(WEXITSTATUS(system(cmd)), 3);
    snprintf(cmd, sizeof(cmd), "KCACHE_PATH='%s' '%s' ls >/dev/null 2>&1", good.dir, ctl);
    assert_int_equal(WEXITSTATUS(system(cmd)), 0);
    /* cachectl never moves the file. */
    assert_int_equal(count_set_aside(bad.dir), 0);
    free_base(&good);
    free_base(&bad);
}

int main(void)
{
    const char *seed = getenv("KC_DAMAGE_SEED");
    rng_state = seed ? strtoull(seed, NULL, 0) : (uint64_t)time(NULL) * 2654435761u + 1;
    if (!rng_state)
        rng_state = 1;
    print_message("KC_DAMAGE_SEED=%" PRIu64 "\n", rng_state);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_launcher_sets_a_damaged_store_aside),
        cmocka_unit_test(test_cachectl_fails_on_a_damaged_layer),
        cmocka_unit_test(test_damaged_copies_of_a_small_store),
        cmocka_unit_test(test_damaged_copies_of_a_1k_record_store),
        cmocka_unit_test(test_damaged_copies_of_a_10k_record_store),
        cmocka_unit_test(test_torn_copies_taken_during_publishes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
