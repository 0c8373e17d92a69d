#include "wire.h"

#include <stdlib.h>
#include <string.h>

#include "kcache/errors.h"

void kc__wbuf_init(kc__wbuf_t *w)
{
    memset(w, 0, sizeof(*w));
}

void kc__wbuf_free(kc__wbuf_t *w)
{
    free(w->data);
    kc__wbuf_init(w);
}

static int reserve(kc__wbuf_t *w, size_t n)
{
    if (w->failed)
        return 0;
    if (n > SIZE_MAX - w->len) {
        w->failed = KC_ETOOBIG;
        return 0;
    }
    if (w->len + n <= w->cap)
        return 1;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + n)
        cap = cap > SIZE_MAX / 2 ? w->len + n : cap * 2;
    uint8_t *d = realloc(w->data, cap);
    if (!d) {
        w->failed = KC_ENOMEM;
        return 0;
    }
    w->data = d;
    w->cap = cap;
    return 1;
}

void kc__w_bytes(kc__wbuf_t *w, const void *p, size_t n)
{
    if (n == 0 || !reserve(w, n))
        return;
    memcpy(w->data + w->len, p, n);
    w->len += n;
}

void kc__w_u8(kc__wbuf_t *w, uint8_t v)
{
    kc__w_bytes(w, &v, 1);
}

void kc__w_u16(kc__wbuf_t *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    kc__w_bytes(w, b, 2);
}

void kc__w_u32(kc__wbuf_t *w, uint32_t v)
{
    uint8_t b[4];
    kc__store_u32le(b, v);
    kc__w_bytes(w, b, 4);
}

void kc__w_u64(kc__wbuf_t *w, uint64_t v)
{
    uint8_t b[8];
    kc__store_u64le(b, v);
    kc__w_bytes(w, b, 8);
}

void kc__w_lbytes(kc__wbuf_t *w, const void *p, size_t n)
{
    if (n > UINT32_MAX) {
        if (!w->failed)
            w->failed = KC_EINVAL;
        return;
    }
    if (n && !p) {
        if (!w->failed)
            w->failed = KC_EINVAL;
        return;
    }
    kc__w_u32(w, (uint32_t)n);
    kc__w_bytes(w, p, n);
}

void kc__w_str(kc__wbuf_t *w, const char *s)
{
    if (!s) {
        if (!w->failed)
            w->failed = KC_EINVAL;
        return;
    }
    kc__w_lbytes(w, s, strlen(s));
}

void kc__w_patch_u32(kc__wbuf_t *w, size_t off, uint32_t v)
{
    if (!w->failed && off + 4 <= w->len)
        kc__store_u32le(w->data + off, v);
}

int kc__wbuf_finish(kc__wbuf_t *w, void **out, size_t *len)
{
    if (w->failed) {
        int rc = w->failed;
        kc__wbuf_free(w);
        return rc;
    }
    if (!w->data && !reserve(w, 1)) {
        kc__wbuf_free(w);
        return KC_ENOMEM;
    }
    *out = w->data;
    *len = w->len;
    kc__wbuf_init(w);
    return KC_OK;
}

void kc__rcur_init(kc__rcur_t *r, const void *p, size_t n)
{
    r->p = p;
    r->n = p ? n : 0;
    r->off = 0;
    r->bad = 0;
}

const uint8_t *kc__r_bytes(kc__rcur_t *r, size_t n)
{
    if (r->bad || n > r->n - r->off) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

uint8_t kc__r_u8(kc__rcur_t *r)
{
    const uint8_t *p = kc__r_bytes(r, 1);
    return p ? p[0] : 0;
}

uint16_t kc__r_u16(kc__rcur_t *r)
{
    const uint8_t *p = kc__r_bytes(r, 2);
    return p ? (uint16_t)(p[0] | p[1] << 8) : 0;
}

uint32_t kc__r_u32(kc__rcur_t *r)
{
    const uint8_t *p = kc__r_bytes(r, 4);
    return p ? kc__load_u32le(p) : 0;
}

uint64_t kc__r_u64(kc__rcur_t *r)
{
    const uint8_t *p = kc__r_bytes(r, 8);
    return p ? kc__load_u64le(p) : 0;
}

const uint8_t *kc__r_lbytes(kc__rcur_t *r, uint32_t *len)
{
    uint32_t n = kc__r_u32(r);
    const uint8_t *p = kc__r_bytes(r, n);
    *len = p ? n : 0;
    return p;
}

size_t kc__r_left(const kc__rcur_t *r)
{
    return r->bad ? 0 : r->n - r->off;
}
