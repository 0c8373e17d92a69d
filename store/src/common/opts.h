/* Reading a caller's options struct that can grow (kcache/api.h, "Options
 * structs"): its first member is a size_t `size` the caller set to the
 * sizeof of the struct it was compiled with.
 *
 * Header only (static inline), for the store and the launcher alike.
 */
#ifndef KC_OPTS_H
#define KC_OPTS_H

#include <stddef.h>
#include <string.h>

#include "kcache/errors.h"

/* Copy the caller's options src into the library's struct dst (dst_size
 * bytes, the library's sizeof): the first src->size bytes are the caller's,
 * the rest, fields that a newer library added, read as 0 (their defaults).
 * src NULL gives every default (dst zeroed, size set). KC_EINVAL for a size
 * of 0 (not set: the caller's other fields would be ignored), one too
 * small to hold the size itself, or one larger than the library knows (a
 * caller built against a newer kcache than it runs with). */
static inline int kc__opts_read(void *dst, size_t dst_size, const void *src)
{
    size_t size = dst_size;

    memset(dst, 0, dst_size);
    if (src) {
        memcpy(&size, src, sizeof size);
        if (size < sizeof size || size > dst_size)
            return KC_EINVAL;
        memcpy(dst, src, size);
    }
    /* Internal calls pass dst on: it is now a whole struct of this version. */
    memcpy(dst, &dst_size, sizeof dst_size);
    return KC_OK;
}

#endif
