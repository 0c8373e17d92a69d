/* kcache_bench_get: the store's read path on the CPU, on an existing store.
 *
 * Fetches every blob of the store (record lookup, decompress, hash check)
 * round after round in one process and prints the mean and best time per
 * fetch, and the mean cubin size. Run it on a store before and after
 * `cachectl train-dict` to see what decoding with a dictionary costs.
 *
 * Usage: kcache_bench_get -s DIR [--rounds N] */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_time.h"
#include "kcache/store.h"

typedef struct keys {
    kc_key_t *k;
    size_t n, cap;
} keys_t;

static int collect(void *user, kc_rec_kind_t kind, const kc_key_t *key, const void *data,
                   size_t len)
{
    keys_t *ks = user;
    (void)kind;
    (void)data;
    (void)len;
    if (ks->n == ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 256;
        kc_key_t *k = realloc(ks->k, cap * sizeof(*k));
        if (!k)
            return 1;
        ks->k = k;
        ks->cap = cap;
    }
    ks->k[ks->n++] = *key;
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int rounds = 50;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-s") || !strcmp(argv[i], "--store")) && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s -s DIR [--rounds N]\n", argv[0]);
            return 2;
        }
    }
    if (!dir || rounds < 1) {
        fprintf(stderr, "usage: %s -s DIR [--rounds N]\n", argv[0]);
        return 2;
    }
    kc_store_t *st = NULL;
    if (kc_store_open(dir, NULL, &st) != KC_OK) {
        fprintf(stderr, "bench_get: %s\n", kc_store_open_errmsg());
        return 1;
    }
    keys_t ks = {0};
    if (kc_store_iterate(st, KC_REC_BLOB, collect, &ks) != 0 || ks.n == 0) {
        fprintf(stderr, "bench_get: no blobs in %s (or out of memory)\n", dir);
        kc_store_close(st);
        return 1;
    }
    double sum = 0, best = 1e30;
    uint64_t bytes = 0, fetches = 0;
    for (int r = 0; r < rounds; r++)
        for (size_t i = 0; i < ks.n; i++) {
            void *cubin = NULL;
            size_t len = 0;
            double t0 = bench_now_us();
            int rc = kc_store_get_cubin(st, &ks.k[i], &cubin, &len);
            double t = bench_now_us() - t0;
            if (rc != KC_OK) {
                fprintf(stderr, "bench_get: %s\n", kc_strerror(rc));
                return 1;
            }
            kc_free(cubin);
            sum += t;
            best = t < best ? t : best;
            bytes += len;
            fetches++;
        }
    printf("%zu blobs x %d rounds: %.2f us per fetch (best %.2f), mean cubin %" PRIu64
           " bytes\n",
           ks.n, rounds, sum / (double)fetches, best, bytes / fetches);
    free(ks.k);
    kc_store_close(st);
    return 0;
}
