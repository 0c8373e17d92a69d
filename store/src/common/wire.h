/* Little-endian byte writer and bounds-checked reader shared by the record,
 * preimage, shape-signature and bundle codecs. Internal. */
#ifndef KCACHE_WIRE_H
#define KCACHE_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* A growing output buffer. On allocation failure it sets failed and ignores
 * later writes, so encoders check once at the end. */
typedef struct kc__wbuf {
    uint8_t *data;
    size_t len;
    size_t cap;
    int failed;
} kc__wbuf_t;

void kc__wbuf_init(kc__wbuf_t *w);
void kc__wbuf_free(kc__wbuf_t *w);
void kc__w_bytes(kc__wbuf_t *w, const void *p, size_t n);
void kc__w_u8(kc__wbuf_t *w, uint8_t v);
void kc__w_u16(kc__wbuf_t *w, uint16_t v);
void kc__w_u32(kc__wbuf_t *w, uint32_t v);
void kc__w_u64(kc__wbuf_t *w, uint64_t v);
/* u32 length, then the bytes. Fails the buffer if n > UINT32_MAX. */
void kc__w_lbytes(kc__wbuf_t *w, const void *p, size_t n);
/* u32 length, then the string's bytes (no NUL). NULL fails the buffer. */
void kc__w_str(kc__wbuf_t *w, const char *s);
/* Overwrite 4 bytes at off (for lengths patched in later). */
void kc__w_patch_u32(kc__wbuf_t *w, size_t off, uint32_t v);
/* Hand the bytes to the caller: KC_OK with *out, *len, or KC_ENOMEM /
 * KC_EINVAL if any write failed (the buffer is then freed). */
int kc__wbuf_finish(kc__wbuf_t *w, void **out, size_t *len);

/* A reader over [p, p + n). Every read checks the bounds; after the first
 * short read `bad` is set and reads return zeros. */
typedef struct kc__rcur {
    const uint8_t *p;
    size_t n;
    size_t off;
    int bad;
} kc__rcur_t;

void kc__rcur_init(kc__rcur_t *r, const void *p, size_t n);
uint8_t kc__r_u8(kc__rcur_t *r);
uint16_t kc__r_u16(kc__rcur_t *r);
uint32_t kc__r_u32(kc__rcur_t *r);
uint64_t kc__r_u64(kc__rcur_t *r);
/* A pointer to the next n bytes, or NULL (and bad set) if fewer remain. */
const uint8_t *kc__r_bytes(kc__rcur_t *r, size_t n);
/* A u32 length and that many bytes; *len receives the length. */
const uint8_t *kc__r_lbytes(kc__rcur_t *r, uint32_t *len);
size_t kc__r_left(const kc__rcur_t *r);

static inline uint16_t kc__load_u16le(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t kc__load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}
static inline uint64_t kc__load_u64le(const uint8_t *p)
{
    return (uint64_t)kc__load_u32le(p) | (uint64_t)kc__load_u32le(p + 4) << 32;
}
static inline void kc__store_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline void kc__store_u64le(uint8_t *p, uint64_t v)
{
    kc__store_u32le(p, (uint32_t)v);
    kc__store_u32le(p + 4, (uint32_t)(v >> 32));
}

/* The value of a hexadecimal digit (either case), or -1. */
static inline int kc__hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
