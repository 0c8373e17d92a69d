/* Growable arrays (grow.h). */
#include "grow.h"

#include <stdlib.h>

#include "kcache/errors.h"

int kc__grow(void **arr, size_t n, size_t *cap, size_t elem, size_t first)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : first;
    void *a = realloc(*arr, ncap * elem);
    if (!a)
        return KC_ENOMEM;
    *arr = a;
    *cap = ncap;
    return 0;
}
