/* The lock-free-read signature memo (see memo.h). Open addressing with
 * linear probing over a power-of-two table kept at most half full, so a
 * probe always ends at an empty slot. */
#include "memo.h"

#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "kcache/errors.h"

#define MEMO_MIN_CAP 16

struct kc__memo_table {
    size_t cap; /* a power of two */
    kc__memo_table_t *next_retired;
    _Atomic(kc__memo_entry_t *) slots[];
};

uint64_t kc__memo_hash(const void *sig, size_t len)
{
    return XXH3_64bits(sig, len);
}

static kc__memo_table_t *table_new(size_t cap)
{
    kc__memo_table_t *t = calloc(1, sizeof(*t) + cap * sizeof(t->slots[0]));

    if (!t)
        return NULL;
    t->cap = cap;
    for (size_t i = 0; i < cap; i++)
        atomic_init(&t->slots[i], NULL);
    return t;
}

int kc__memo_init(kc__memo_t *memo)
{
    kc__memo_table_t *t = table_new(MEMO_MIN_CAP);

    if (!t)
        return KC_ENOMEM;
    if (pthread_mutex_init(&memo->lock, NULL) != 0) {
        free(t);
        return KC_ENOMEM;
    }
    atomic_init(&memo->table, t);
    memo->count = 0;
    memo->retired = NULL;
    return KC_OK;
}

void kc__memo_destroy(kc__memo_t *memo)
{
    kc__memo_table_t *t = atomic_load(&memo->table);

    if (!t)
        return;
    /* Every entry is in the current table; retired tables only alias them. */
    for (size_t i = 0; i < t->cap; i++)
        free(atomic_load_explicit(&t->slots[i], memory_order_relaxed));
    free(t);
    while (memo->retired) {
        kc__memo_table_t *next = memo->retired->next_retired;
        free(memo->retired);
        memo->retired = next;
    }
    atomic_store(&memo->table, NULL);
    pthread_mutex_destroy(&memo->lock);
}

static int entry_is(const kc__memo_entry_t *e, const void *sig, size_t len, uint64_t hash)
{
    return e->hash == hash && e->sig_len == len && memcmp(e->sig, sig, len) == 0;
}

const kc__memo_entry_t *kc__memo_find(const kc__memo_t *memo, const void *sig, size_t len,
                                      uint64_t hash)
{
    kc__memo_table_t *t = atomic_load_explicit(&memo->table, memory_order_acquire);
    size_t mask = t->cap - 1;

    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        /* Acquire pairs with the release in insert: the entry's fields are
         * visible before its pointer is. */
        kc__memo_entry_t *e = atomic_load_explicit(&t->slots[i], memory_order_acquire);
        if (!e)
            return NULL;
        if (entry_is(e, sig, len, hash))
            return e;
    }
}

static void place(kc__memo_table_t *t, kc__memo_entry_t *e)
{
    size_t mask = t->cap - 1;
    size_t i = (size_t)e->hash & mask;

    while (atomic_load_explicit(&t->slots[i], memory_order_relaxed))
        i = (i + 1) & mask;
    atomic_store_explicit(&t->slots[i], e, memory_order_release);
}

int kc__memo_insert(kc__memo_t *memo, const void *sig, size_t len, uint64_t hash,
                    struct kept *kept, void *fn, size_t cand, const int64_t *config,
                    size_t n_config, const int64_t *geo, const kc__memo_entry_t **out)
{
    kc__memo_entry_t *e;
    kc__memo_table_t *t;
    int rc = KC_OK;

    pthread_mutex_lock(&memo->lock);
    const kc__memo_entry_t *old = kc__memo_find(memo, sig, len, hash);
    if (old) {
        *out = old;
        goto done;
    }
    /* One allocation: the entry, the geometry, the config values, then the
     * signature bytes. */
    e = malloc(sizeof(*e) + (KC__MEMO_GEO + n_config) * sizeof(int64_t) + len);
    if (!e) {
        rc = KC_ENOMEM;
        goto done;
    }
    int64_t *g = (int64_t *)(e + 1);
    int64_t *cfg = g + KC__MEMO_GEO;
    uint8_t *bytes = (uint8_t *)(cfg + n_config);
    if (geo)
        memcpy(g, geo, KC__MEMO_GEO * sizeof(int64_t));
    if (n_config)
        memcpy(cfg, config, n_config * sizeof(int64_t));
    memcpy(bytes, sig, len);
    *e = (kc__memo_entry_t){.hash = hash,
                            .kept = kept,
                            .fn = fn,
                            .cand = cand,
                            .n_config = n_config,
                            .config = cfg,
                            .geo = geo ? g : NULL,
                            .sig_len = len,
                            .sig = bytes};

    t = atomic_load_explicit(&memo->table, memory_order_relaxed);
    if ((memo->count + 1) * 2 > t->cap) {
        kc__memo_table_t *bigger = table_new(t->cap * 2);
        if (!bigger) {
            free(e);
            rc = KC_ENOMEM;
            goto done;
        }
        for (size_t i = 0; i < t->cap; i++) {
            kc__memo_entry_t *x =
                atomic_load_explicit(&t->slots[i], memory_order_relaxed);
            if (x)
                place(bigger, x);
        }
        atomic_store_explicit(&memo->table, bigger, memory_order_release);
        t->next_retired = memo->retired;
        memo->retired = t;
        t = bigger;
    }
    place(t, e);
    memo->count++;
    *out = e;
done:
    pthread_mutex_unlock(&memo->lock);
    return rc;
}
