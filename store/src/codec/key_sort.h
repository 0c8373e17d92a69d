/* Arrays sorted by key, searched by halving. Internal. */
#ifndef KCACHE_CODEC_KEY_SORT_H
#define KCACHE_CODEC_KEY_SORT_H

#include <stddef.h>

#include "kcache/key.h"

/* qsort's comparator for elements that start with a kc_key_t: the keys'
 * bytes in order (memcmp), which is also the order LMDB keeps them in. */
int kc__key_order(const void *a, const void *b);

/* The index of key in arr[n] (elements of sz bytes, each starting with a
 * kc_key_t, sorted by kc__key_order), or -1. */
long kc__key_find(const void *arr, size_t n, size_t sz, const kc_key_t *key);

#endif
