/* kcache_bench_busy: a write that needs a store's map lock exclusively,
 * among threads that keep reading the store. Two such writes: a lazily
 * writable store's first write (KC_STORE_LAZY_WRITE, which the launcher
 * sets: the environment is reopened writable) and a put that grows the
 * map. For each number of reader threads, the write's time, the reads
 * done meanwhile and the slowest read while it ran (readers wait at the
 * gate while the write waits and works: core/lmdb_env.c). Before the gate,
 * glibc's rwlock let new readers past the waiting writer, and 8 readers on
 * 2 cores kept the write waiting for over a minute; so a write still
 * waiting after --limit seconds (default 30) is reported as such, the
 * readers are stopped, and the run goes on (exit status 1 at the end).
 *
 * Usage: kcache_bench_busy -s DIR [--threads 1,3,8,16] [--limit S] */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_time.h"
#include "kcache/store.h"

#define MAX_THREADS 64

typedef struct reader {
    kc_store_t *st;
    kc_key_t key;
    _Atomic int *stop;
    _Atomic int *measuring;
    _Atomic long reads, errors;
    double worst_us; /* while measuring */
} reader_t;

static void *reader_main(void *arg)
{
    reader_t *r = arg;
    while (!atomic_load(r->stop)) {
        void *out = NULL;
        size_t len = 0;
        int measuring = atomic_load(r->measuring);
        double t0 = bench_now_us();
        if (kc_store_get_cubin(r->st, &r->key, &out, &len) != KC_OK)
            atomic_fetch_add(&r->errors, 1);
        double us = bench_now_us() - t0;
        kc_free(out);
        if (measuring && us > r->worst_us)
            r->worst_us = us;
        atomic_fetch_add(&r->reads, 1);
    }
    return NULL;
}

typedef struct writer {
    kc_store_t *st;
    const void *data;
    size_t len;
    int rc;
    double us;
    _Atomic int done;
} writer_t;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    kc_key_t k;
    double t0 = bench_now_us();
    w->rc = kc_store_put_cubin(w->st, w->data, w->len, &k);
    w->us = bench_now_us() - t0;
    atomic_store(&w->done, 1);
    return NULL;
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        p[i] = (uint8_t)seed;
    }
}

/* One run: a fresh store in dir/<name>-<n>, n readers, then the write. */
static int run(const char *dir, const char *name, int lazy, unsigned n, double limit_s)
{
    char path[4096];
    kc_store_opts_t o = KC_STORE_OPTS_INIT;
    kc_store_t *st = NULL;
    kc_key_t key;
    static uint8_t first[16384], big[1 << 20];

    snprintf(path, sizeof(path), "%s/%s-%u", dir, lazy ? "lazy" : "grow", n);
    fill_random(first, sizeof(first), 1 + n);
    fill_random(big, sizeof(big), 2 + n);
    if (!lazy)
        o.map_size = 256 << 10; /* the 1 MiB put must grow it */
    if (kc_store_open(path, &o, &st) != KC_OK ||
        kc_store_put_cubin(st, first, sizeof(first), &key) != KC_OK) {
        fprintf(stderr, "bench_busy: %s: %s\n", path, kc_store_open_errmsg());
        return 1;
    }
    if (lazy) {
        kc_store_close(st);
        o.flags = KC_STORE_LAZY_WRITE;
        if (kc_store_open(path, &o, &st) != KC_OK) {
            fprintf(stderr, "bench_busy: %s: %s\n", path, kc_store_open_errmsg());
            return 1;
        }
    }
    _Atomic int stop = 0, measuring = 0;
    reader_t *r = calloc(n, sizeof(*r));
    pthread_t th[MAX_THREADS], wt;
    if (!r)
        return 1;
    for (unsigned i = 0; i < n; i++) {
        r[i].st = st;
        r[i].key = key;
        r[i].stop = &stop;
        r[i].measuring = &measuring;
        pthread_create(&th[i], NULL, reader_main, &r[i]);
    }
    for (unsigned i = 0; i < n; i++)
        while (atomic_load(&r[i].reads) < 100)
            usleep(100);
    long before = 0, after = 0;
    for (unsigned i = 0; i < n; i++)
        before += atomic_load(&r[i].reads);
    writer_t w = {.st = st,
                  .data = lazy ? first + 1 : big,
                  .len = lazy ? sizeof(first) - 1 : sizeof(big)};
    atomic_store(&measuring, 1);
    pthread_create(&wt, NULL, writer_main, &w);
    double t0 = bench_now_us();
    while (!atomic_load(&w.done) && bench_now_us() - t0 < limit_s * 1e6)
        usleep(200);
    int starved = !atomic_load(&w.done);
    for (unsigned i = 0; i < n; i++)
        after += atomic_load(&r[i].reads);
    atomic_store(&stop, 1);
    for (unsigned i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_join(wt, NULL);
    double worst = 0;
    long errors = 0;
    for (unsigned i = 0; i < n; i++) {
        if (r[i].worst_us > worst)
            worst = r[i].worst_us;
        errors += r[i].errors;
    }
    if (starved)
        printf("  %-18s %7u  still waiting after %.0f s (%ld reads meanwhile); it "
               "finished after "
               "%.1f ms, once the readers had stopped\n",
               name, n, limit_s, after - before, w.us / 1e3);
    else
        printf("  %-18s %7u  %10.2f  %14ld  %16.2f  %s\n", name, n, w.us / 1e3,
               after - before, worst / 1e3,
               w.rc == KC_OK && errors == 0 ? "ok" : "FAILED");
    free(r);
    kc_store_close(st);
    return !starved && w.rc == KC_OK && errors == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *list = "1,3,8,16";
    double limit_s = 30;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-s") || !strcmp(argv[i], "--store")) && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            list = argv[++i];
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc)
            limit_s = atof(argv[++i]);
        else
            dir = NULL, i = argc;
    }
    if (!dir) {
        fprintf(stderr, "usage: %s -s DIR [--threads 1,3,8,16] [--limit S]\n", argv[0]);
        return 2;
    }
    unsigned ns[16], nn = 0;
    for (char *s = (char *)list; *s && nn < 16;) {
        unsigned long v = strtoul(s, &s, 10);
        if (v == 0 || v > MAX_THREADS) {
            fprintf(stderr, "bench_busy: --threads: 1 to %d each\n", MAX_THREADS);
            return 2;
        }
        ns[nn++] = (unsigned)v;
        if (*s == ',')
            s++;
    }
    printf("a write that takes the map lock exclusively, among readers (%ld cores)\n",
           sysconf(_SC_NPROCESSORS_ONLN));
    printf("  %-18s %7s  %10s  %14s  %16s\n", "write", "readers", "write (ms)",
           "reads meanwhile", "slowest read (ms)");
    int rc = 0;
    for (unsigned i = 0; i < nn; i++)
        rc |= run(dir, "lazy first write", 1, ns[i], limit_s);
    for (unsigned i = 0; i < nn; i++)
        rc |= run(dir, "map growth", 0, ns[i], limit_s);
    return rc;
}
