/* The hash index (index.h). */
#include "index.h"

#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "kcache/errors.h"

#define INDEX_MIN_CAP 16

void *kc__index_get(const kc__index_t *ix, uint64_t hash, kc__index_same_fn same,
                    const void *key)
{
    if (!ix->cap)
        return NULL;
    size_t mask = ix->cap - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        const kc__index_slot_t *s = &ix->slots[i];
        if (!s->item)
            return NULL;
        if (s->hash == hash && same(s->item, key))
            return s->item;
    }
}

static void place(kc__index_slot_t *slots, size_t cap, uint64_t hash, void *item)
{
    size_t mask = cap - 1, i = (size_t)hash & mask;
    while (slots[i].item)
        i = (i + 1) & mask;
    slots[i] = (kc__index_slot_t){hash, item};
}

int kc__index_reserve(kc__index_t *ix, size_t n)
{
    if (n * 2 <= ix->cap)
        return KC_OK;
    size_t cap = ix->cap ? ix->cap : INDEX_MIN_CAP;
    while (n * 2 > cap)
        cap *= 2;
    kc__index_slot_t *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return KC_ENOMEM;
    for (size_t i = 0; i < ix->cap; i++)
        if (ix->slots[i].item)
            place(slots, cap, ix->slots[i].hash, ix->slots[i].item);
    free(ix->slots);
    ix->slots = slots;
    ix->cap = cap;
    return KC_OK;
}

int kc__index_put(kc__index_t *ix, uint64_t hash, void *item, kc__index_same_fn same,
                  const void *key, void **old)
{
    if (old)
        *old = NULL;
    if (ix->cap) {
        size_t mask = ix->cap - 1;
        for (size_t i = (size_t)hash & mask; ix->slots[i].item; i = (i + 1) & mask)
            if (ix->slots[i].hash == hash && same(ix->slots[i].item, key)) {
                if (old)
                    *old = ix->slots[i].item;
                ix->slots[i].item = item;
                return KC_OK;
            }
    }
    int rc = kc__index_reserve(ix, ix->count + 1);
    if (rc != KC_OK)
        return rc;
    place(ix->slots, ix->cap, hash, item);
    ix->count++;
    return KC_OK;
}

void kc__index_each(const kc__index_t *ix, void (*fn)(void *item))
{
    for (size_t i = 0; i < ix->cap; i++)
        if (ix->slots[i].item)
            fn(ix->slots[i].item);
}

void kc__index_free(kc__index_t *ix)
{
    free(ix->slots);
    *ix = (kc__index_t)KC__INDEX_INIT;
}

uint64_t kc__index_key_hash(const void *key16)
{
    uint64_t h;
    memcpy(&h, key16, sizeof(h));
    return h;
}

uint64_t kc__index_str_hash(const char *s)
{
    return XXH3_64bits(s, strlen(s));
}
