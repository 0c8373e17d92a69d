#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "kc_testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kcache/record.h"

uint64_t kct_env_u64(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    char *end;
    unsigned long long x;

    if (!v || !*v)
        return def;
    errno = 0;
    x = strtoull(v, &end, 10);
    return errno || *end ? def : (uint64_t)x;
}

int kct_tmpdir(const char *tag, char *out, size_t cap)
{
    const char *base = getenv("KC_TEST_TMP");
    char path[PATH_MAX];

    if (!base || !base[0])
        base = "/tmp";
    snprintf(path, sizeof(path), "%s", base);
    /* KC_TEST_TMP may not exist yet: create it and its parents. */
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            (void)!mkdir(path, 0755);
            *p = '/';
        }
    (void)!mkdir(path, 0755);
    if ((size_t)snprintf(out, cap, "%s/%s.XXXXXX", path, tag) >= cap)
        return -1;
    return mkdtemp(out) ? 0 : -1;
}

void kct_rmrf(const char *path)
{
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    (void)!system(cmd);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int rm_entry_chmod(const char *path, const struct stat *sb, int flag,
                          struct FTW *ftw)
{
    /* Tests make trees read-only; their entries cannot be removed until
     * the directory is writable again. */
    if (flag == FTW_DP || flag == FTW_D)
        chmod(path, 0755);
    return rm_entry(path, sb, flag, ftw);
}

void kct_rmtree(const char *path, int chmod_dirs)
{
    nftw(path, chmod_dirs ? rm_entry_chmod : rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int kct_store_scratch(const char *tag, char *root, size_t cap, kc_store_t **st)
{
    *st = NULL;
    if (kct_tmpdir(tag, root, cap) != 0)
        return -1;
    return kc_store_open(root, NULL, st) == KC_OK ? 0 : -1;
}

void kct_store_scratch_free(const char *root, kc_store_t *st)
{
    kc_store_close(st);
    kct_rmtree(root, 0);
}

int kct_store_fx_setup(void **state, const char *tag)
{
    kct_store_fx_t *f = calloc(1, sizeof(*f));
    if (!f || kct_store_scratch(tag, f->root, sizeof(f->root), &f->st) != 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

int kct_store_fx_teardown(void **state)
{
    kct_store_fx_t *f = *state;
    kct_store_scratch_free(f->root, f->st);
    free(f);
    return 0;
}

uint64_t kct_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int kct_wait_child(int pid, int timeout_ms, int *status)
{
    for (int ms = 0; ms < timeout_ms; ms++) {
        if (waitpid((pid_t)pid, status, WNOHANG) == (pid_t)pid)
            return 0;
        usleep(1000);
    }
    kill((pid_t)pid, SIGKILL);
    waitpid((pid_t)pid, status, 0);
    return -1;
}

/* ---- synthetic cubins ------------------------------------------------------ */

#define CUBIN_HDR 16

size_t kct_cubin_size(uint64_t id, unsigned j)
{
    return 1024 + (size_t)((id * 2654435761u + j * 40503u) % 6144);
}

void kct_cubin_fill(uint64_t id, unsigned j, uint8_t *buf)
{
    size_t size = kct_cubin_size(id, j);
    uint64_t x = (id + 1) * 0x9e3779b97f4a7c15ull ^ (j + 1) * 0xbf58476d1ce4e5b9ull;

    memcpy(buf, "KCTU", 4);
    for (int i = 0; i < 8; i++)
        buf[4 + i] = (uint8_t)(id >> (8 * i));
    for (int i = 0; i < 4; i++)
        buf[12 + i] = (uint8_t)(j >> (8 * i));
    /* Half random, half repetitive: compressible, like real cubins. */
    for (size_t i = CUBIN_HDR; i < size; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (i & 64) ? (uint8_t)(i & 0x0f) : (uint8_t)x;
    }
}

int kct_cubin_intact(const void *cubin, size_t len)
{
    const uint8_t *c = cubin;
    uint64_t id = 0;
    uint32_t j = 0;
    uint8_t *want;
    int ok;

    if (len < CUBIN_HDR || memcmp(c, "KCTU", 4) != 0)
        return 0;
    for (int i = 0; i < 8; i++)
        id |= (uint64_t)c[4 + i] << (8 * i);
    for (int i = 0; i < 4; i++)
        j |= (uint32_t)c[12 + i] << (8 * i);
    if (len != kct_cubin_size(id, j) || !(want = malloc(len)))
        return 0;
    kct_cubin_fill(id, j, want);
    ok = memcmp(want, c, len) == 0;
    free(want);
    return ok;
}

/* ---- synthetic publishes ---------------------------------------------------- */

static kc_key_t source_digest(uint64_t id)
{
    char s[64];
    int n = snprintf(s, sizeof(s), "kct source %llu", (unsigned long long)id);
    return kc_key_hash(s, (size_t)n);
}

int kct_pub_make(kct_pub_t *p, uint64_t id, unsigned n)
{
    static const char space[] = "kct space";
    char sig[32];
    int rc, sig_len;
    void *pre;
    size_t pre_len;

    memset(p, 0, sizeof(*p));
    if (n == 0 || n > KCT_PUB_MAX)
        return KC_EINVAL;
    p->n = n;
    for (unsigned j = 0; j < n; j++) {
        size_t size = kct_cubin_size(id, j);
        uint8_t *c = malloc(size);
        if (!c)
            goto fail_nomem;
        p->mem[2 * j] = c;
        kct_cubin_fill(id, j, c);
        p->cubins[j] = (kc_buf_t){c, size};
        p->blob_keys[j] = kc_key_hash(c, size);

        p->params[j] = (kc_param_t){"BLOCK", 32 * (int64_t)(j + 1)};
        kc_build_desc_t bd = {.source_kind = KC_SOURCE_CUDA,
                              .source_digest = source_digest(id),
                              .entry = "kct",
                              .params = &p->params[j],
                              .n_params = 1,
                              .arch = "sm_90",
                              .toolchain = "kct-1"};
        rc = kc_build_preimage_encode(&bd, &pre, &pre_len);
        if (rc != KC_OK)
            goto fail;
        p->mem[2 * j + 1] = pre;
        p->build_keys[j] = kc_key_hash(pre, pre_len);
        p->builds[j] = (kc_build_rec_t){.preimage = {pre, pre_len},
                                        .blob = p->blob_keys[j],
                                        .entry = "kct",
                                        .registers = 32,
                                        .max_threads = 1024,
                                        .compile_us = 1000 + j,
                                        .created = (uint64_t)time(NULL)};
        p->cands[j] = (kc_candidate_t){.params = &p->params[j],
                                       .n_params = 1,
                                       .build = p->build_keys[j],
                                       .status = KC_CAND_OK,
                                       .median_ns = 1000 + j,
                                       .reason = ""};
    }
    sig_len = snprintf(sig, sizeof(sig), "sig%llu", (unsigned long long)id);
    kc_tuning_desc_t td = {.source_kind = KC_SOURCE_CUDA,
                           .source_digest = source_digest(id),
                           .entry = "kct",
                           .space_digest = kc_key_hash(space, sizeof(space) - 1),
                           .shape_sig = {sig, (size_t)sig_len},
                           .arch = "sm_90",
                           .sm_count = 132,
                           .device_name = "kct device"};
    rc = kc_tuning_preimage_encode(&td, &pre, &pre_len);
    if (rc != KC_OK)
        goto fail;
    p->mem[2 * KCT_PUB_MAX] = pre;
    p->tuning_key = kc_key_hash(pre, pre_len);
    p->tuning = (kc_tuning_rec_t){.preimage = {pre, pre_len},
                                  .winner = &p->params[0],
                                  .n_winner = 1,
                                  .winner_build = p->build_keys[0],
                                  .candidates = p->cands,
                                  .n_candidates = n,
                                  .tuning_us = 5000,
                                  .device_name = "kct device",
                                  .arch = "sm_90",
                                  .sm_count = 132,
                                  .created = (uint64_t)time(NULL)};
    p->pub = (kc_publish_t){.cubins = p->cubins,
                            .n_cubins = n,
                            .builds = p->builds,
                            .n_builds = n,
                            .tuning = &p->tuning};
    return KC_OK;

fail_nomem:
    rc = KC_ENOMEM;
fail:
    kct_pub_free(p);
    return rc;
}

void kct_pub_free(kct_pub_t *p)
{
    for (size_t i = 0; i < sizeof(p->mem) / sizeof(p->mem[0]); i++) {
        if (i % 2 == 0 && i < 2 * KCT_PUB_MAX)
            free(p->mem[i]); /* cubins: malloc */
        else
            kc_free(p->mem[i]); /* preimages: the library's */
        p->mem[i] = NULL;
    }
}

static int present(kc_store_t *st, kc_rec_kind_t kind, const kc_key_t *key, unsigned *n)
{
    void *data = NULL;
    size_t len = 0;
    int rc = kc_store_get_raw(st, kind, key, &data, &len);

    kc_free(data);
    if (rc == KC_OK)
        (*n)++;
    return rc == KC_ENOTFOUND ? KC_OK : rc;
}

int kct_pub_state(kc_store_t *st, uint64_t id, unsigned n, unsigned *present_out,
                  unsigned *intact_out)
{
    kct_pub_t p;
    unsigned np = 0, ni = 0;
    int rc = kct_pub_make(&p, id, n);

    if (rc != KC_OK)
        return rc;
    for (unsigned j = 0; j < n && rc == KC_OK; j++) {
        kc_record_t *b = NULL;
        void *c = NULL;
        size_t len = 0;
        int g;

        if ((rc = present(st, KC_REC_BLOB, &p.blob_keys[j], &np)) != KC_OK ||
            (rc = present(st, KC_REC_BUILD, &p.build_keys[j], &np)) != KC_OK)
            break;
        g = kc_store_get_cubin(st, &p.blob_keys[j], &c, &len);
        if (g == KC_OK && len == p.cubins[j].size &&
            memcmp(c, p.cubins[j].data, len) == 0)
            ni++;
        kc_free(c);
        c = NULL;
        g = kc_store_get_build_cubin(st, &p.build_keys[j], &b, &c, &len);
        if (g == KC_OK && kc_key_cmp(&b->u.build.blob, &p.blob_keys[j]) == 0 &&
            len == p.cubins[j].size && memcmp(c, p.cubins[j].data, len) == 0)
            ni++;
        kc_free(b);
        kc_free(c);
    }
    if (rc == KC_OK && (rc = present(st, KC_REC_TUNING, &p.tuning_key, &np)) == KC_OK) {
        kc_record_t *t = NULL;
        if (kc_store_get(st, KC_REC_TUNING, &p.tuning_key, &t) == KC_OK &&
            kc_key_cmp(&t->u.tuning.winner_build, &p.build_keys[0]) == 0 &&
            t->u.tuning.n_candidates == n)
            ni++;
        kc_free(t);
    }
    kct_pub_free(&p);
    if (present_out)
        *present_out = np;
    if (intact_out)
        *intact_out = ni;
    return rc;
}

/* ---- consistency ------------------------------------------------------------- */

typedef struct keylist {
    kc_rec_kind_t *kinds;
    kc_key_t *keys;
    size_t n, cap;
    int oom;
} keylist_t;

static int collect(void *user, kc_rec_kind_t kind, const kc_key_t *key, const void *data,
                   size_t len)
{
    keylist_t *l = user;
    (void)data;
    (void)len;
    if (kind != KC_REC_BLOB && kind != KC_REC_BUILD && kind != KC_REC_TUNING)
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        kc_key_t *k = realloc(l->keys, cap * sizeof(*k));
        kc_rec_kind_t *kk;
        if (k)
            l->keys = k;
        kk = k ? realloc(l->kinds, cap * sizeof(*kk)) : NULL;
        if (!kk) {
            l->oom = 1;
            return 1;
        }
        l->kinds = kk;
        l->cap = cap;
    }
    l->kinds[l->n] = kind;
    l->keys[l->n++] = *key;
    return 0;
}

/* Real cubins (from a launcher) are checked by the store's hash alone. */
static int is_synthetic(const void *c, size_t len)
{
    return len >= 4 && memcmp(c, "KCTU", 4) == 0;
}

long kct_store_consistency(kc_store_t *st, uint64_t *tunings, uint64_t *builds,
                           uint64_t *blobs)
{
    keylist_t l = {0};
    uint64_t count[KC_REC_KIND_MAX + 1] = {0};
    long bad = 0;
    int rc;

    /* List first, check after: each check is its own read transaction. */
    rc = kc_store_iterate(st, 0, collect, &l);
    if (l.oom || (rc != KC_OK && rc != KC_ENOTFOUND)) {
        bad = l.oom ? KC_ENOMEM : rc;
        goto out;
    }
    for (size_t i = 0; i < l.n; i++) {
        kc_record_t *rec = NULL;
        void *c = NULL;
        size_t len = 0;

        count[l.kinds[i]]++;
        switch (l.kinds[i]) {
        case KC_REC_TUNING:
            rc = kc_store_get(st, KC_REC_TUNING, &l.keys[i], &rec);
            if (rc == KC_OK) {
                kc_record_t *b = NULL;
                rc = kc_store_get(st, KC_REC_BUILD, &rec->u.tuning.winner_build, &b);
                kc_free(b);
            }
            break;
        case KC_REC_BUILD:
            rc = kc_store_get_build_cubin(st, &l.keys[i], &rec, &c, &len);
            if (rc == KC_OK && is_synthetic(c, len) && !kct_cubin_intact(c, len))
                rc = KC_ECORRUPT;
            break;
        default:
            rc = kc_store_get_cubin(st, &l.keys[i], &c, &len);
            if (rc == KC_OK && is_synthetic(c, len) && !kct_cubin_intact(c, len))
                rc = KC_ECORRUPT;
            break;
        }
        kc_free(rec);
        kc_free(c);
        if (rc != KC_OK)
            bad++;
    }
out:
    free(l.keys);
    free(l.kinds);
    if (tunings)
        *tunings = count[KC_REC_TUNING];
    if (builds)
        *builds = count[KC_REC_BUILD];
    if (blobs)
        *blobs = count[KC_REC_BLOB];
    return bad;
}

/* ---- cachectl ---------------------------------------------------------------- */

const char *kct_cachectl(void)
{
    static char path[PATH_MAX];
    char exe[PATH_MAX];
    const char *env = getenv("CACHECTL");
    ssize_t n;

    if (env && access(env, X_OK) == 0)
        return env;
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    snprintf(path, sizeof(path), "%s/../tools/cachectl", dirname(exe));
    return access(path, X_OK) == 0 ? path : NULL;
}

int kct_cachectl_verify(const char *dir, int repair)
{
    const char *ctl = kct_cachectl();
    pid_t pid;
    int status;

    if (!ctl)
        return -1;
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(ctl, ctl, "-s", dir, "verify", repair ? "--repair" : NULL, (char *)NULL);
        _exit(127);
    }
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

/* ---- byte flips -------------------------------------------------------------- */

long kct_file_find_flip(const char *path, const void *needle, size_t len, int flip,
                        size_t flip_at)
{
    struct stat sb;
    uint8_t *map;
    long found = 0;
    int fd = open(path, flip ? O_RDWR : O_RDONLY);

    if (fd < 0)
        return -1;
    if (fstat(fd, &sb) != 0 || sb.st_size == 0 || len == 0 || flip_at >= len) {
        close(fd);
        return -1;
    }
    map = mmap(NULL, (size_t)sb.st_size, flip ? PROT_READ | PROT_WRITE : PROT_READ,
               MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return -1;
    for (size_t off = 0; off + len <= (size_t)sb.st_size;) {
        uint8_t *hit = memmem(map + off, (size_t)sb.st_size - off, needle, len);
        if (!hit)
            break;
        found++;
        off = (size_t)(hit - map) + 1;
        if (flip)
            hit[flip_at] ^= 0x5a;
    }
    if (flip)
        msync(map, (size_t)sb.st_size, MS_SYNC);
    munmap(map, (size_t)sb.st_size);
    return found;
}
