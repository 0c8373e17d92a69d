/* kcache_bench_open: what the structure check of a store file costs at
 * open (docs/RELIABILITY.md, "Damaged store files"). Fills a fresh store
 * with N cubins (random 2 KiB each, one publish transaction per 1,000),
 * then times kc_store_open + kc_store_close of it, each the process's
 * first map of the file (the environment closes with the last handle), R
 * times each way: KCACHE_CHECK=never (no check), the default with the
 * stamp matching (a stat, two meta reads and the stamp), and
 * KCACHE_CHECK=always (the whole walk, as in a read-only directory where no
 * stamp can be kept). Prints the median of each.
 *
 * Usage: kcache_bench_open -s DIR [--records N] [--rounds R] */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bench_time.h"
#include "kcache/store.h"

static double median_open(const char *dir, const char *policy, size_t rounds)
{
    double *t = malloc(rounds * sizeof(*t)), m;
    kc_store_opts_t o = KC_STORE_OPTS_INIT;

    o.flags = KC_STORE_RDONLY;
    setenv("KCACHE_CHECK", policy, 1);
    for (size_t i = 0; i < rounds; i++) {
        kc_store_t *st = NULL;
        double t0 = bench_now_us();
        if (kc_store_open(dir, &o, &st) != KC_OK) {
            fprintf(stderr, "bench_open: %s\n", kc_store_open_errmsg());
            exit(1);
        }
        kc_store_close(st);
        t[i] = bench_now_us() - t0;
    }
    qsort(t, rounds, sizeof(*t), bench_cmp_double);
    m = t[rounds / 2];
    free(t);
    return m;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    size_t n = 1000, rounds = 31;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-s") || !strcmp(argv[i], "--store")) && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--records") && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s -s DIR [--records N] [--rounds R]\n", argv[0]);
            return 2;
        }
    }
    if (!dir || !n || !rounds) {
        fprintf(stderr, "usage: %s -s DIR [--records N] [--rounds R]\n", argv[0]);
        return 2;
    }
    kc_store_t *st = NULL;
    if (kc_store_open(dir, NULL, &st) != KC_OK) {
        fprintf(stderr, "bench_open: %s\n", kc_store_open_errmsg());
        return 1;
    }
    uint8_t *bufs = malloc(1000 * 2048);
    kc_buf_t *cubins = malloc(1000 * sizeof(*cubins));
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < 1000 ? n - done : 1000;
        for (size_t i = 0; i < k * 2048; i += 8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            memcpy(bufs + i, &seed, 8);
        }
        for (size_t i = 0; i < k; i++)
            cubins[i] = (kc_buf_t){bufs + i * 2048, 2048};
        kc_publish_t p = {.cubins = cubins, .n_cubins = k};
        if (kc_store_publish(st, &p) != KC_OK) {
            fprintf(stderr, "bench_open: publish: %s\n", kc_store_errmsg(st));
            return 1;
        }
        done += k;
    }
    kc_store_close(st);
    free(bufs);
    free(cubins);
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    stat(path, &sb);
    /* The first open checks and stamps; the rounds below then time each way. */
    median_open(dir, "auto", 1);
    double never = median_open(dir, "never", rounds);
    double stamped = median_open(dir, "auto", rounds);
    double always = median_open(dir, "always", rounds);
    printf("%zu records, data.mdb %.1f MiB: open+close median of %zu: no check %.1f us, "
           "stamp matched %.1f us, full check %.1f us (+%.1f us)\n",
           n, sb.st_size / 1048576.0, rounds, never, stamped, always, always - never);
    return 0;
}
