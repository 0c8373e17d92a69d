/* The in-process memo: per kernel, a map from encoded shape signatures to
 * what a launch needs (the kept module or function, the winning config).
 * Internal.
 *
 * Readers use atomic loads only: no lock, no allocation. Inserts take a
 * mutex. The table grows by publishing a larger copy; the old table is
 * retired, not freed, because a reader may still be probing it, and is only
 * freed by kc__memo_destroy. Entries are immutable once inserted and live
 * until destroy.
 */
#ifndef KCACHE_MEMO_H
#define KCACHE_MEMO_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct kept;

typedef struct kc__memo_entry {
    uint64_t hash;
    /* The kept module that launches pin (kernel_int.h), or NULL: then fn,
     * a function whose module stays loaded until the kernel is freed. */
    struct kept *kept;
    void *fn;
    size_t cand; /* index of the winning candidate in the kernel's space */
    size_t n_config;
    const int64_t *config; /* n_config values, in the spec's parameter order */
    /* Geometry values that depend on the config alone, evaluated once
     * (kc__spec_eval_geometry_fixed); NULL to evaluate everything. */
    const int64_t *geo;
    size_t sig_len;
    const uint8_t *sig;
} kc__memo_entry_t;

typedef struct kc__memo_table kc__memo_table_t;

typedef struct kc__memo {
    _Atomic(kc__memo_table_t *) table;
    pthread_mutex_t lock;
    size_t count;              /* entries; under lock */
    kc__memo_table_t *retired; /* older tables, freed at destroy; under lock */
} kc__memo_t;

uint64_t kc__memo_hash(const void *sig, size_t len);

int kc__memo_init(kc__memo_t *memo);
/* Frees every table and entry. No reader may be running. */
void kc__memo_destroy(kc__memo_t *memo);

/* The entry for sig, or NULL. Lock-free, allocation-free. */
const kc__memo_entry_t *kc__memo_find(const kc__memo_t *memo, const void *sig, size_t len,
                                      uint64_t hash);

#define KC__MEMO_GEO 7

/* Copy sig, config and geo (KC__MEMO_GEO values, or NULL) into a new entry
 * and insert it. If an entry for sig already exists, it is kept and
 * returned in *out instead. */
int kc__memo_insert(kc__memo_t *memo, const void *sig, size_t len, uint64_t hash,
                    struct kept *kept, void *fn, size_t cand, const int64_t *config,
                    size_t n_config, const int64_t *geo, const kc__memo_entry_t **out);

#endif
