/* What the record codec (record.c) shares with the payload codecs it
 * dispatches to (binmeta.c, group.c). Internal.
 *
 * Decoding runs twice over the payload. The first pass (base == NULL)
 * validates everything and adds up the space that arrays and strings need;
 * the second fills one block sized by the first. Both passes make the same
 * reservations in the same order, so the sizes agree. The helpers are
 * inline so that the files using them do not call each other. */
#ifndef KCACHE_RECORD_INTERNAL_H
#define KCACHE_RECORD_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kcache/errors.h"
#include "kcache/record.h"
#include "wire.h"

typedef struct kc__dec {
    uint8_t *base;
    size_t used;
} kc__dec_t;

static inline void *kc__dec_reserve(kc__dec_t *d, size_t size, size_t align)
{
    d->used = (d->used + align - 1) & ~(align - 1);
    void *p = d->base ? d->base + d->used : NULL;
    d->used += size;
    return p;
}

static inline int kc__dec_key(kc__rcur_t *r, kc_key_t *k)
{
    const uint8_t *p = kc__r_bytes(r, sizeof(k->b));
    if (!p)
        return KC_ECORRUPT;
    memcpy(k->b, p, sizeof(k->b));
    return KC_OK;
}

/* A str field: *out is a NUL-terminated copy in the block (NULL on the first
 * pass); *raw and *n (either may be NULL) the bytes as they are in the
 * payload, for checks that must run on the first pass too. */
static inline int kc__dec_str(kc__dec_t *d, kc__rcur_t *r, const char **out,
                              const uint8_t **raw, uint32_t *n)
{
    uint32_t len;
    const uint8_t *p = kc__r_lbytes(r, &len);
    if (!p || memchr(p, '\0', len))
        return KC_ECORRUPT;
    char *s = kc__dec_reserve(d, (size_t)len + 1, 1);
    if (s) {
        memcpy(s, p, len);
        s[len] = '\0';
    }
    *out = s;
    if (raw)
        *raw = p;
    if (n)
        *n = len;
    return KC_OK;
}

/* ---- binmeta.c -------------------------------------------------------------- */

/* Write a binmeta payload; KC_EINVAL for a field the decoder would refuse. */
int kc__binmeta_put(kc__wbuf_t *w, const kc_binmeta_rec_t *b);

/* Parse a binmeta payload from r (one pass, as above); KC_ECORRUPT for any
 * missing or invalid field. Trailing bytes are the caller's to refuse. */
int kc__binmeta_get(kc__dec_t *d, kc__rcur_t *r, kc_binmeta_rec_t *b);

/* ---- group.c ---------------------------------------------------------------- */

/* Write a group payload; KC_EINVAL for a field the decoder would refuse. */
int kc__group_put(kc__wbuf_t *w, const kc_group_rec_t *g);

/* Parse a group payload from r (one pass, as above); KC_ECORRUPT for any
 * invalid field. Trailing bytes are the caller's to refuse. */
int kc__group_get(kc__dec_t *d, kc__rcur_t *r, kc_group_rec_t *g);

/* Whether p[n] is a valid file name in a group, and the order of two. */
int kc__group_fname_ok(const uint8_t *p, size_t n);
int kc__group_fname_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn);

#endif
