/* Real cubins for the store benchmarks: the files of a directory (e.g. the
 * test fixtures' build/tests/tmp/cubins), read whole. */
#ifndef KCACHE_BENCH_CUBINS_H
#define KCACHE_BENCH_CUBINS_H

#include <stddef.h>
#include <stdint.h>

typedef struct cubin {
    uint8_t *data;
    size_t len;
} cubin_t;

/* Every regular file of dir of at least 64 bytes (dot files skipped) into
 * *out (n of them; free each data, then *out). 0, or -1 when the directory
 * cannot be read or holds none. */
int bench_load_cubins(const char *dir, cubin_t **out, size_t *n);

#endif
