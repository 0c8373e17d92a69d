/* A small hash index: items (pointers) found by a 64-bit hash and an
 * equality the caller gives, in constant time however many there are. Open
 * addressing with linear probing over a power-of-two table kept at most
 * half full. Not thread-safe: the owner holds its lock around every call.
 * Internal.
 *
 * The launcher finds its kernels by identity and by name with it, and the
 * winners a store holds by kernel (the prefetch), instead of scanning lists
 * that grow with every kernel a process registers. */
#ifndef KCACHE_INDEX_H
#define KCACHE_INDEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct kc__index_slot {
    uint64_t hash;
    void *item; /* NULL: empty */
} kc__index_slot_t;

typedef struct kc__index {
    kc__index_slot_t *slots;
    size_t cap; /* 0 or a power of two */
    size_t count;
} kc__index_t;

/* Whether item is the one key names. */
typedef int (*kc__index_same_fn)(const void *item, const void *key);

#define KC__INDEX_INIT                                                                   \
    {                                                                                    \
        NULL, 0, 0                                                                       \
    }

/* The item with this hash that same() says is key's, or NULL. */
void *kc__index_get(const kc__index_t *ix, uint64_t hash, kc__index_same_fn same,
                    const void *key);

/* Put item under hash: it replaces the item same() says is key's, if any
 * (*old receives that one, or NULL). KC_ENOMEM leaves the index as it was. */
int kc__index_put(kc__index_t *ix, uint64_t hash, void *item, kc__index_same_fn same,
                  const void *key, void **old);

/* Make room for n items in all, so that the puts up to n cannot fail. */
int kc__index_reserve(kc__index_t *ix, size_t n);

/* Call fn on every item, in no particular order. */
void kc__index_each(const kc__index_t *ix, void (*fn)(void *item));

/* Frees the table (not the items). */
void kc__index_free(kc__index_t *ix);

/* The first 8 bytes of a 16-byte key that is already a hash (kc_key_t). */
uint64_t kc__index_key_hash(const void *key16);

/* XXH3 of a string, for indexes by name. */
uint64_t kc__index_str_hash(const char *s);

#endif
