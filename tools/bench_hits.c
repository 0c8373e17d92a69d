/* kcache_bench_hits: tail latency of store hits, as a serving process sees
 * them. Fills a fresh store with N cubins (random 2 KiB each), then does M
 * hits: kc_store_get_cubin of a random stored key and kc_store_touch of it
 * (the launcher's hit: the usage stamp for LRU), timing each. Prints the
 * median, p99, p99.9 and max of a hit and how many hits took over 1 ms
 * and over 5 ms. Usage stamps are flushed every few thousand distinct
 * touches: a flush run on the caller's thread (a write transaction and its
 * fsync) shows up here as a hit of milliseconds.
 *
 * Usage: kcache_bench_hits -s DIR [--records N] [--hits M] */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_time.h"
#include "kcache/store.h"

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    size_t n = 20000, m = 200000;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-s") || !strcmp(argv[i], "--store")) && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--records") && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--hits") && i + 1 < argc)
            m = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s -s DIR [--records N] [--hits M]\n", argv[0]);
            return 2;
        }
    }
    if (!dir || !n || !m) {
        fprintf(stderr, "usage: %s -s DIR [--records N] [--hits M]\n", argv[0]);
        return 2;
    }
    kc_store_t *st = NULL;
    if (kc_store_open(dir, NULL, &st) != KC_OK) {
        fprintf(stderr, "bench_hits: %s\n", kc_store_open_errmsg());
        return 1;
    }
    kc_key_t *keys = malloc(n * sizeof(*keys));
    double *lat = malloc(m * sizeof(*lat));
    uint8_t buf[2048];
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    if (!keys || !lat)
        return 1;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < sizeof(buf); j += 8) {
            uint64_t r = rng(&seed);
            memcpy(buf + j, &r, 8);
        }
        if (kc_store_put_cubin(st, buf, sizeof(buf), &keys[i]) != KC_OK) {
            fprintf(stderr, "bench_hits: put: %s\n", kc_store_errmsg(st));
            return 1;
        }
    }
    kc_store_flush(st);
    size_t over1 = 0, over5 = 0;
    for (size_t i = 0; i < m; i++) {
        const kc_key_t *k = &keys[rng(&seed) % n];
        void *cubin = NULL;
        size_t len = 0;
        double t0 = bench_now_us();
        int rc = kc_store_get_cubin(st, k, &cubin, &len);
        if (rc == KC_OK)
            rc = kc_store_touch(st, KC_REC_BLOB, k);
        lat[i] = bench_now_us() - t0;
        kc_free(cubin);
        if (rc != KC_OK) {
            fprintf(stderr, "bench_hits: %s\n", kc_strerror(rc));
            return 1;
        }
        over1 += lat[i] > 1000;
        over5 += lat[i] > 5000;
    }
    qsort(lat, m, sizeof(*lat), bench_cmp_double);
    printf(
        "%zu hits on %zu records: median %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f "
        "us; %zu over 1 ms, %zu over 5 ms\n",
        m, n, lat[m / 2], lat[m * 99 / 100], lat[m * 999 / 1000], lat[m - 1], over1,
        over5);
    kc_store_close(st);
    free(keys);
    free(lat);
    return 0;
}
