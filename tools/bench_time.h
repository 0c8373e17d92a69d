/* What every benchmark program measures with: a monotonic clock in
 * microseconds, the median and percentiles of a sample, and one line of
 * its tail. Header-only, for tools/. */
#ifndef KCACHE_BENCH_TIME_H
#define KCACHE_BENCH_TIME_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* For qsort of doubles, ascending. */
static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[n] (n > 0), sorting v in place. */
static inline double bench_median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The p-th percentile of v[n] (nearest rank; 100: the max), v left as it
 * is; 0 if n is 0 or without memory. */
static inline double bench_pct(const double *v, size_t n, double p)
{
    double *c = n ? malloc(n * sizeof(*c)) : NULL;
    if (!c)
        return 0;
    memcpy(c, v, n * sizeof(*c));
    qsort(c, n, sizeof(*c), bench_cmp_double);
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    double r = c[i < n ? i : n - 1];
    free(c);
    return r;
}

/* One line of v[n] (microseconds): p50, p99, p99.9, max, and how many
 * were over 1 ms and over 5 ms. */
static inline void bench_print_dist(const char *what, const double *v, size_t n)
{
    size_t over1 = 0, over5 = 0;
    for (size_t i = 0; i < n; i++) {
        over1 += v[i] > 1000.0;
        over5 += v[i] > 5000.0;
    }
    printf("  %-28s p50 %8.2f us  p99 %8.2f us  p99.9 %8.2f us  max %9.2f us  "
           "(>1 ms: %zu, >5 ms: %zu)\n",
           what, bench_pct(v, n, 50), bench_pct(v, n, 99), bench_pct(v, n, 99.9),
           bench_pct(v, n, 100), over1, over5);
}

#endif
