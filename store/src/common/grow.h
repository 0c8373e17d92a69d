/* Growable arrays. Internal. */
#ifndef KCACHE_COMMON_GROW_H
#define KCACHE_COMMON_GROW_H

#include <stddef.h>

/* Make room for one more element of elem bytes in *arr, which holds n of
 * *cap: doubled when full (first elements at the first growth). 0, or
 * KC_ENOMEM with *arr and *cap as they were. */
int kc__grow(void **arr, size_t n, size_t *cap, size_t elem, size_t first);

#endif
